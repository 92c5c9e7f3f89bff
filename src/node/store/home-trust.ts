// A home is trusted only if no other user could have prepared it. Another
// user who owns $VRIFT_HOME, or can write to it or to one of its parts,
// could plant blobs that get materialized as ours, a symlink our log follows
// (as root: onto any file), or a socket we talk to. So before anything is
// read or written there, the home and each part must be a real directory
// (not a symlink), owned by this process's user, with no group or other
// write bit. Missing parts are created owner-only (0700).
//
// The root itself may be a symlink we own to a directory we own (~/.vrift
// on another disk); the parts may not: nothing inside a home is a link.
import { closeSync, constants as C, fstatSync, lstatSync, mkdirSync, openSync, realpathSync, type Stats } from 'node:fs';
import { errnoOf, fsError, VriftError } from '../../lib/errors.js';

function unsafe(message: string, hint: string): VriftError {
  return new VriftError('ERR_VRIFT_HOME_UNSAFE', message, { hint, exitCode: 1 });
}

/** Throws ERR_VRIFT_HOME_UNSAFE unless `st` (of `path`) is a directory this user owns that others cannot write. */
function assertOwnDir(path: string, st: Stats, home: string): void {
  const uid = process.geteuid!();
  if (st.uid !== uid) {
    throw unsafe(`${path} belongs to uid ${st.uid}, not to this user (uid ${uid}): vrift will not use a home another user prepared`, `chown -R ${uid} ${home}, or set VRIFT_HOME to a directory of your own`);
  }
  if (!st.isDirectory()) throw unsafe(`${path} is not a directory`, `move it away, or set VRIFT_HOME to a directory of your own`);
  if ((st.mode & 0o022) !== 0) {
    const mode = (st.mode & 0o7777).toString(8).padStart(4, '0');
    throw unsafe(`${path} is writable by group or others (mode ${mode}): another user could plant files in it`, `chmod go-w ${path}`);
  }
}

/** lstat, or undefined when nothing is there. */
function lstatOrNone(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return undefined;
    throw fsError(e, path, 'checking the vrift home ($VRIFT_HOME)');
  }
}

/** The home root: created if missing (with its parents); a symlink is followed only if this user owns it. */
export function trustRoot(root: string): void {
  let st = lstatOrNone(root);
  if (!st) {
    try {
      mkdirSync(root, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw fsError(e, root, 'creating the vrift home ($VRIFT_HOME)');
    }
    st = lstatSync(root);
  }
  if (st.isSymbolicLink()) {
    const uid = process.geteuid!();
    if (st.uid !== uid) throw unsafe(`${root} is a symbolic link owned by uid ${st.uid}, not by this user (uid ${uid})`, `remove it (rm ${root}), or set VRIFT_HOME to a directory of your own`);
    const target = realpathSync(root);
    assertOwnDir(`${root} (${target})`, lstatSync(target), root);
    return;
  }
  assertOwnDir(root, st, root);
}

/** A part of the home (cas/, tmp/, run/ …): created owner-only if missing (`create`), else checked; never a symlink. */
export function trustPart(path: string, home: string, create = true): void {
  let st = lstatOrNone(path);
  if (!st) {
    if (!create) return;
    try {
      mkdirSync(path, { mode: 0o700 });
    } catch (e) {
      if (errnoOf(e) !== 'EEXIST') throw fsError(e, path, 'creating the vrift home ($VRIFT_HOME)');
    }
    st = lstatSync(path); // made just now, or by a racing vrift: checked the same
  }
  if (st.isSymbolicLink()) throw unsafe(`${path} is a symbolic link: nothing inside a vrift home may be one`, `remove it (rm ${path}); vrift recreates it`);
  assertOwnDir(path, st, home);
}

/**
 * Opens a file of the home's run/ for appending or writing (the daemon's
 * log, its pid file) without following a symlink (O_NOFOLLOW: ELOOP), and
 * refuses one another user owns. Returns the descriptor.
 */
export function openOwnFile(path: string, flags: number, doing: string): number {
  let fd: number;
  try {
    fd = openSync(path, flags | C.O_NOFOLLOW, 0o600);
  } catch (e) {
    if (errnoOf(e) === 'ELOOP') throw unsafe(`${path} is a symbolic link: vrift does not follow links in its home`, `remove it (rm ${path})`);
    throw fsError(e, path, doing);
  }
  const st = fstatSync(fd);
  const uid = process.geteuid!();
  if (st.uid !== uid || !st.isFile()) {
    closeSync(fd);
    throw unsafe(st.isFile() ? `${path} belongs to uid ${st.uid}, not to this user (uid ${uid})` : `${path} is not a regular file`, `remove it (rm ${path})`);
  }
  return fd;
}
