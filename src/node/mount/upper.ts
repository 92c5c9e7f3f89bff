// A mount's upper layer, as overlayfs has one: the first write, truncate or
// create of a path makes ONE real file for it, upper/<vdir name>/<64 hex>
// (vrift_layout.h), and the VDir entry points there (VDIR_F_UPPER, the name
// in the digest field). Every later open of the path, by any process of the
// mount, opens that same file, so shared offsets, O_APPEND, locks and mmap
// come from the kernel.
//
// The name is a function of the path (upperNameOf, the same function the
// shim has: vrift_vdir_upper_name), so a create is an O_CREAT|O_EXCL the
// kernel decides, made by the shim without waiting for the daemon, and a
// path's file can be found before it is published (vrift_vdir.h section 6).
// The daemon keeps names in step with paths: a rename renames the file, a
// link() links it, an unlink unlinks it (the kernel counts the links).
// Content enters the CAS at snapshot.
//
// Creates are announced asynchronously: the shim adds one to the mount's
// `.issued` count before making the file and sends UPPER without waiting;
// the daemon counts what it has published in the VDir header. Requests
// whose answer depends on every create so far (rmdir, renaming a
// directory, snapshot) wait until the two agree (drained()).
import { closeSync, fstatSync, ftruncateSync, mkdirSync, openSync, readSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { LAYOUT } from '../../gen/layout.js';
import { loadNative } from '../../lib/native.js';
import type { Store } from '../store/store.js';
import type { VDir } from './vdir.js';

/** The count of announced creates, a u64 at offset 0 (vrift_vdir.h section 6). */
export const ISSUED_FILE = '.issued';

export function upperDir(store: Store, vdirName: string): string {
  return join(store.layout.root, LAYOUT.home.upper, vdirName);
}

export function upperPath(store: Store, vdirName: string, name: string): string {
  return join(upperDir(store, vdirName), name);
}

/** The name of path `rel`'s file in the upper layer. */
export function upperNameOf(rel: string): string {
  return loadNative().upperName(rel);
}

/**
 * Makes the mount's upper directory (0700: the user's own files) and its
 * `.issued` count (a sparse page: it needs no room on a full disk). Returns
 * the problem instead of throwing: a mount without an upper layer still
 * serves reads, and its writes fail with EROFS.
 */
export function ensureUpperDir(store: Store, vdirName: string): Error | undefined {
  const dir = upperDir(store, vdirName);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const fd = openSync(join(dir, ISSUED_FILE), 'a', 0o600);
    try {
      if (fstatSync(fd).size < 4096) ftruncateSync(fd, 4096);
    } finally {
      closeSync(fd);
    }
    return undefined;
  } catch (e) {
    return e as Error;
  }
}

/** Removes the upper layer of a mount that is gone (unmount, or a fresh mount at its path). */
export function dropUpperDir(store: Store, vdirName: string): void {
  rmSync(upperDir(store, vdirName), { recursive: true, force: true });
}

/** The mount's `.issued` count as the shims left it. */
export function readIssued(store: Store, vdirName: string): number {
  let fd: number;
  try {
    fd = openSync(join(upperDir(store, vdirName), ISSUED_FILE), 'r');
  } catch {
    return 0;
  }
  try {
    const b = Buffer.alloc(8);
    readSync(fd, b, 0, 8, 0);
    return Number(b.readBigUInt64LE(0));
  } finally {
    closeSync(fd);
  }
}

/**
 * Waits (yielding to the other connections) until every create announced
 * so far is published: rmdir, moving a directory, snapshots and the farms
 * of namespaced runs must see files other processes have just made. As
 * long as announcements keep arriving; 2 s without one means one was lost.
 */
export async function announcedPublished(store: Store, vdirName: string, vdir: VDir): Promise<void> {
  const want = readIssued(store, vdirName);
  let last = vdir.upperPublished;
  let until = Date.now() + 2000;
  while (vdir.upperPublished < want && Date.now() < until) {
    await new Promise((r) => setImmediate(r));
    if (vdir.upperPublished !== last) {
      last = vdir.upperPublished;
      until = Date.now() + 2000;
    }
  }
}
