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
// Creates are announced asynchronously, in the mount's journal
// (journal.ts): the shim makes the file, adds one to the mount's `.issued`
// count and records the change; the daemon counts what it has published
// in the VDir header. Requests whose answer depends on every create so far
// (rmdir, renaming a directory, snapshot) wait until the two agree.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, ftruncateSync, mkdirSync, openSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { LAYOUT } from '../../gen/layout.js';
import { loadNative } from '../../lib/native.js';
import type { Store } from '../store/store.js';
import { ensureJournalDir } from './journal.js';


export function upperDir(store: Store, vdirName: string): string {
  return join(store.layout.root, LAYOUT.home.upper, vdirName);
}

/** The upper file (or claim) `name`, one path component (a string join: the daemon asks this per create). */
export function upperPath(store: Store, vdirName: string, name: string): string {
  return `${upperDir(store, vdirName)}/${name}`;
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
    ensureJournalDir(dir);
    const fd = openSync(join(dir, LAYOUT.home.upperIssued), 'a', 0o600);
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

/** Upper layers being deleted: upper/<TRASH><vdir name>.<random> (a VDir name never starts with '.'). */
const TRASH = '.gone-';

/**
 * Removes the upper layer of a mount that is gone (unmount, or a fresh
 * mount at its path): renamed aside at once, deleted in the background.
 * Deleting it in place took the daemon's event loop for ~0.3 s per
 * `tar -x` of node_modules in it, every request waiting meanwhile.
 */
export function dropUpperDir(store: Store, vdirName: string): void {
  const dir = upperDir(store, vdirName);
  const aside = join(store.layout.root, LAYOUT.home.upper, `${TRASH}${vdirName}.${randomBytes(4).toString('hex')}`);
  try {
    renameSync(dir, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return; // it had none
    rmSync(dir, { recursive: true, force: true });
    return;
  }
  deleteAside(aside);
}

/**
 * Deletes a directory set aside in another process (`rm -rf`): neither the
 * unlinks nor their callbacks use the daemon's event loop. What a stopped
 * daemon leaves is swept at its next start.
 */
function deleteAside(dir: string): void {
  const here = () => void rm(dir, { recursive: true, force: true }).catch(() => undefined); // (no `rm` program)
  try {
    const child = spawn('rm', ['-rf', '--', dir], { stdio: 'ignore', detached: true });
    child.on('error', here);
    child.unref();
  } catch {
    here();
  }
}

/** Deletes, in the background, upper layers a stopped daemon was still deleting. */
export function sweepDroppedUppers(store: Store): void {
  const root = join(store.layout.root, LAYOUT.home.upper);
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return; // no upper layers yet
  }
  for (const n of names) if (n.startsWith(TRASH)) deleteAside(join(root, n));
}
