// The daemon's side of writes inside a mount: the shim's COMMIT, MKDIR,
// UNLINK, RMDIR, RENAME, SYMLINK and CHMOD requests, plus SNAPSHOT (the
// shim's FETCH goes to the resolver: src/node/daemon/fetch.ts). Each change is checked against the mount's live state (its
// VDir), applied to the VDir in one seqlock window (so every process of the
// mount sees it at once), and recorded in the mount's overlay
// (mount-overlay.ts) so it survives a daemon restart.
//
// Errors a program must see as an errno carry it at the end of their code
// (ERR_VRIFT_MOUNTFS_ENOTEMPTY ...); shim/ipc.c maps them back.
import { readlinkSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { LAYOUT } from '../../gen/layout.js';
import { VriftError } from '../../lib/errors.js';
import { requireStr, type Handler } from '../control/server.js';
import { overlayOf, mergedEntries, setOverlay, type OverlayEntry } from './overlay.js';
import type { MountManager, MountRecord } from './mounts.js';
import { F, Msg, type FieldList, type Fields } from '../control/protocol.js';
import type { Store } from '../store/store.js';
import { pathProblem } from '../store/tree.js';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, type VDir, type VDirEntry, type VDirEntryInput } from './vdir.js';

export interface MountWritesContext {
  store: Store;
  mounts: MountManager;
  log: (line: string) => void;
}

function fsErr(errno: string, message: string): VriftError {
  return new VriftError(`ERR_VRIFT_MOUNTFS_${errno}`, message, { exitCode: 1 });
}

/** Where the shim stages files: beside cas/, so copies stay on one filesystem. */
export function stagingDir(store: Store): string {
  return join(store.layout.root, LAYOUT.home.staging);
}

export interface Target {
  rec: MountRecord;
  vdir: VDir;
}

function mountOf(ctx: MountWritesContext, f: Fields): Target {
  const path = requireStr(f, F.PATH, 'path');
  const rec = ctx.mounts.recordOf(path);
  const vdir = ctx.mounts.vdirOf(path);
  if (!rec || !vdir) throw new VriftError('ERR_VRIFT_MOUNT_NOT_FOUND', `${path} is not mounted`, { hint: 'see `vrift status`', exitCode: 1 });
  return { rec, vdir };
}

function relOf(f: Fields, tag: number, name: string): string {
  const rel = f.str(tag);
  if (rel === undefined) throw fsErr('EINVAL', `request is missing its ${name} field`);
  if (rel === '') throw fsErr('EBUSY', 'the mount root itself cannot be changed');
  const problem = pathProblem(rel);
  if (problem) throw fsErr(problem.includes('longer') ? 'ENAMETOOLONG' : 'EINVAL', `${JSON.stringify(rel)}: ${problem}`);
  return rel;
}

const parentOf = (rel: string): string => {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
};

const isDir = (e: VDirEntry | undefined): boolean => e !== undefined && (e.mode & S_IFMT) === S_IFDIR;

function checkParent(vdir: VDir, rel: string): void {
  const parent = parentOf(rel);
  if (parent === '') return;
  const p = vdir.lookup(parent);
  if (!p) throw fsErr('ENOENT', `${parent}: no such directory`);
  if (!isDir(p)) throw fsErr('ENOTDIR', `${parent}: not a directory`);
}

const nowSec = (): number => Math.floor(Date.now() / 1000);

function overlayEntryOf(e: VDirEntryInput): OverlayEntry {
  const type = e.mode & S_IFMT;
  if (type === S_IFDIR) return { kind: 'dir', mode: 0o755, size: 0, mtimeSec: e.mtimeSec };
  if (type === S_IFLNK) return { kind: 'symlink', mode: 0o777, size: Buffer.byteLength(e.target!), target: e.target!, mtimeSec: e.mtimeSec };
  return { kind: 'file', mode: e.mode & 0o100 ? 0o755 : 0o644, size: e.size, digest: e.digest!, mtimeSec: e.mtimeSec };
}

/** Applies a batch to the VDir and records it in the overlay. */
export function change(ctx: MountWritesContext, t: Target, upserts: VDirEntryInput[], removals: string[] = []): void {
  t.vdir.apply(upserts, removals);
  for (const r of removals) setOverlay(ctx.store, t.rec.name, r, { deleted: true });
  for (const u of upserts) setOverlay(ctx.store, t.rec.name, u.path, overlayEntryOf(u));
}

/** Reads a staged file (a path, or /proc/<pid>/fd/<n>) into the CAS through the door: copied and hashed, never renamed. */
function ingestStaged(store: Store, staged: string): { digest: string; size: number } {
  const blob = store.admission.copyOf(staged, (e) => fsErr('ENOENT', `staged file ${staged} is gone: ${(e as Error).message}`));
  return { digest: blob.digest, size: blob.size };
}

/** Removes the staged file's name once its bytes are in the CAS (only inside staging/). */
function dropStaged(store: Store, staged: string): void {
  let real = staged;
  try {
    if (staged.startsWith('/proc/')) real = readlinkSync(staged);
  } catch {
    return;
  }
  if (!real.startsWith(`${stagingDir(store)}/`) || real.endsWith(' (deleted)')) return;
  try {
    unlinkSync(real);
  } catch {
    /* gone already: another commit of the same file */
  }
}

/** Every entry under directory `rel` (not rel itself), parents before children. */
export function subtree(vdir: VDir, rel: string): VDirEntry[] {
  const out: VDirEntry[] = [];
  const walk = (dir: string): void => {
    for (const name of vdir.list(dir)) {
      const p = dir === '' ? name : `${dir}/${name}`;
      const e = vdir.lookup(p);
      if (!e) continue;
      out.push(e);
      if (isDir(e)) walk(p);
    }
  };
  walk(rel);
  return out;
}

function asInput(e: VDirEntry, path: string): VDirEntryInput {
  const u: VDirEntryInput = { path, mode: e.mode, size: e.size, mtimeSec: e.mtimeSec, flags: e.flags };
  if (e.digest !== undefined) u.digest = e.digest;
  if (e.target !== undefined) u.target = e.target;
  return u;
}

/** The current tree of a mount (base + overlay), stored; returns its id. */
export function snapshotMount(store: Store, rec: MountRecord): string {
  const { entries } = mergedEntries(store.getTree(rec.tree).entries, overlayOf(store, rec.name));
  return store.putTree(entries);
}

export function registerMountWrites(h: Map<number, Handler>, ctx: MountWritesContext): void {
  const { store } = ctx;

  h.set(Msg.COMMIT, (f): FieldList => {
    const t = mountOf(ctx, f);
    const rel = relOf(f, F.REL, 'rel');
    const staged = requireStr(f, F.STAGED, 'staged');
    const mode = f.u32(F.MODE) ?? S_IFREG | 0o644;
    if (isDir(t.vdir.lookup(rel))) throw fsErr('EISDIR', `${rel}: is a directory`);
    checkParent(t.vdir, rel);
    const blob = ingestStaged(store, staged);
    const exec = (mode & 0o100) !== 0;
    if (exec) store.ensureExecTwin(blob.digest);
    change(ctx, t, [{ path: rel, mode: S_IFREG | (exec ? 0o755 : 0o644), size: blob.size, mtimeSec: nowSec(), digest: blob.digest }]);
    dropStaged(store, staged);
    return [
      [F.DIGEST, blob.digest],
      [F.SIZE, { u64: blob.size }],
    ];
  });

  h.set(Msg.MKDIR, (f): FieldList => {
    const t = mountOf(ctx, f);
    const rel = relOf(f, F.REL, 'rel');
    if (t.vdir.lookup(rel)) throw fsErr('EEXIST', `${rel}: already exists`);
    checkParent(t.vdir, rel);
    change(ctx, t, [{ path: rel, mode: S_IFDIR | 0o755, size: 0, mtimeSec: nowSec() }]);
    return [];
  });

  h.set(Msg.UNLINK, (f): FieldList => {
    const t = mountOf(ctx, f);
    const rel = relOf(f, F.REL, 'rel');
    const e = t.vdir.lookup(rel);
    if (!e) throw fsErr('ENOENT', `${rel}: no such file`);
    if (isDir(e)) throw fsErr('EISDIR', `${rel}: is a directory`);
    change(ctx, t, [], [rel]);
    return [];
  });

  h.set(Msg.RMDIR, (f): FieldList => {
    const t = mountOf(ctx, f);
    const rel = relOf(f, F.REL, 'rel');
    const e = t.vdir.lookup(rel);
    if (!e) throw fsErr('ENOENT', `${rel}: no such directory`);
    if (!isDir(e)) throw fsErr('ENOTDIR', `${rel}: not a directory`);
    if ((e.nchildren ?? 0) > 0) throw fsErr('ENOTEMPTY', `${rel}: directory not empty`);
    change(ctx, t, [], [rel]);
    return [];
  });

  h.set(Msg.SYMLINK, (f): FieldList => {
    const t = mountOf(ctx, f);
    const rel = relOf(f, F.REL, 'rel');
    const target = f.str(F.TARGET);
    if (!target || target.includes('\0')) throw fsErr('ENOENT', 'empty symlink target');
    if (t.vdir.lookup(rel)) throw fsErr('EEXIST', `${rel}: already exists`);
    checkParent(t.vdir, rel);
    change(ctx, t, [{ path: rel, mode: S_IFLNK | 0o777, size: Buffer.byteLength(target), mtimeSec: nowSec(), target }]);
    return [];
  });

  h.set(Msg.CHMOD, (f): FieldList => {
    const t = mountOf(ctx, f);
    const rel = relOf(f, F.REL, 'rel');
    const e = t.vdir.lookup(rel);
    if (!e) throw fsErr('ENOENT', `${rel}: no such file`);
    if ((e.mode & S_IFMT) !== S_IFREG) return [];
    const exec = ((f.u32(F.MODE) ?? 0) & 0o100) !== 0;
    if (exec === ((e.mode & 0o100) !== 0)) return [];
    if (exec && store.cas.has(e.digest!)) store.ensureExecTwin(e.digest!);
    change(ctx, t, [{ ...asInput(e, rel), mode: S_IFREG | (exec ? 0o755 : 0o644), mtimeSec: nowSec() }]);
    return [];
  });

  h.set(Msg.RENAME, (f): FieldList => {
    const t = mountOf(ctx, f);
    const from = relOf(f, F.REL, 'rel');
    const to = relOf(f, F.REL2, 'rel2');
    const src = t.vdir.lookup(from);
    if (!src) throw fsErr('ENOENT', `${from}: no such file or directory`);
    if (from === to) return [];
    if (to.startsWith(`${from}/`)) throw fsErr('EINVAL', `cannot move ${from} into itself`);
    checkParent(t.vdir, to);
    const dst = t.vdir.lookup(to);
    const removals: string[] = [];
    if (dst) {
      if (isDir(src) && !isDir(dst)) throw fsErr('ENOTDIR', `${to}: not a directory`);
      if (!isDir(src) && isDir(dst)) throw fsErr('EISDIR', `${to}: is a directory`);
      if (isDir(dst) && (dst.nchildren ?? 0) > 0) throw fsErr('ENOTEMPTY', `${to}: directory not empty`);
      removals.push(to);
    }
    // A directory moves with its whole subtree.
    const below = isDir(src) ? subtree(t.vdir, from) : [];
    for (let i = below.length - 1; i >= 0; i--) removals.push(below[i]!.path);
    removals.push(from);
    const upserts = [asInput(src, to), ...below.map((e) => asInput(e, to + e.path.slice(from.length)))];
    change(ctx, t, upserts, removals);
    return [];
  });

  h.set(Msg.SNAPSHOT, (f): FieldList => {
    const path = requireStr(f, F.PATH, 'path');
    const rec = ctx.mounts.recordOf(path);
    if (!rec) throw new VriftError('ERR_VRIFT_MOUNT_NOT_FOUND', `${path} is not mounted`, { hint: 'see `vrift status`', exitCode: 1 });
    const id = snapshotMount(store, rec);
    ctx.log(`snapshot: ${path} -> ${id}`);
    return [[F.TREE, id]];
  });
}
