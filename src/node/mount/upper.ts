// A mount's upper layer, as overlayfs has one: the first write, truncate or
// create of a path makes ONE real file for it, upper/<vdir name>/<64 hex>
// (vrift_layout.h), and the VDir entry points there (VDIR_F_UPPER, the
// name in the digest field). Every later open of the path, by any process
// of the mount, opens that same file, so shared offsets, O_APPEND, locks
// and mmap come from the kernel. The shim creates the file itself (it owns
// the bytes and the copy-up); the daemon only publishes the name, counts
// the paths that name one file (link() gives a second), and removes the
// file when the last path goes. Content enters the CAS at snapshot.
import { mkdirSync, rmSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { LAYOUT } from '../../gen/layout.js';
import type { Store } from '../store/store.js';
import { overlayOf } from './overlay.js';

/** Upper-file names are 64 lowercase hex characters, like digests. */
export const UPPER_NAME = /^[0-9a-f]{64}$/;

export function upperDir(store: Store, vdirName: string): string {
  return join(store.layout.root, LAYOUT.home.upper, vdirName);
}

export function upperPath(store: Store, vdirName: string, name: string): string {
  return join(upperDir(store, vdirName), name);
}

/** Makes the mount's upper directory (0700: the user's own files). */
export function ensureUpperDir(store: Store, vdirName: string): void {
  mkdirSync(upperDir(store, vdirName), { recursive: true, mode: 0o700 });
}

/** Removes the upper layer of a mount that is gone (unmount, or a fresh mount at its path). */
export function dropUpperDir(store: Store, vdirName: string): void {
  rmSync(upperDir(store, vdirName), { recursive: true, force: true });
}

const refs = new WeakMap<Store, Map<string, Map<string, number>>>();

/** How many paths of mount `vdirName` name each upper file (built once from the overlay). */
function refsOf(store: Store, vdirName: string): Map<string, number> {
  let byMount = refs.get(store);
  if (!byMount) refs.set(store, (byMount = new Map()));
  let m = byMount.get(vdirName);
  if (!m) {
    m = new Map();
    for (const v of overlayOf(store, vdirName).values()) {
      if (!('deleted' in v) && v.upper) m.set(v.upper, (m.get(v.upper) ?? 0) + 1);
    }
    byMount.set(vdirName, m);
  }
  return m;
}

/** One more path names upper file `name`. */
export function holdUpper(store: Store, vdirName: string, name: string): void {
  const m = refsOf(store, vdirName);
  m.set(name, (m.get(name) ?? 0) + 1);
}

/**
 * One path fewer names upper file `name`; the last one removes the file
 * (descriptors still open keep reading and writing it, as after unlink()).
 */
export function releaseUpper(store: Store, vdirName: string, name: string): void {
  const m = refsOf(store, vdirName);
  const n = (m.get(name) ?? 1) - 1;
  if (n > 0) {
    m.set(name, n);
    return;
  }
  m.delete(name);
  try {
    unlinkSync(upperPath(store, vdirName, name));
  } catch {
    /* already gone */
  }
}

/** Forgets the counts of a mount (its overlay was cleared). */
export function forgetUpperRefs(store: Store, vdirName: string): void {
  refs.get(store)?.delete(vdirName);
}
