// The daemon's side of changes inside a mount: the shim's UPPER (a path
// now names a file in the mount's upper layer: upper.ts), LINK, MKDIR,
// UNLINK, RMDIR, RENAME, SYMLINK and CHMOD requests, plus SNAPSHOT (the
// shim's FETCH goes to the resolver: src/node/daemon/fetch.ts). Each change
// is checked against the mount's live state (its VDir), applied to the VDir
// in one seqlock window (so every process of the mount sees it at once), and
// recorded in the mount's overlay (overlay.ts) so it survives a daemon
// restart. File bytes never pass through here: programs write upper files
// themselves, and a snapshot hashes them into the CAS.
//
// Errors a program must see as an errno carry it at the end of their code
// (ERR_VRIFT_MOUNTFS_ENOTEMPTY ...); shim/ipc.c maps them back.
import { linkSync, lstatSync, renameSync, rmdirSync, unlinkSync } from 'node:fs';
import type { MountErrno } from '../../lib/error-codes.js';
import { VriftError } from '../../lib/errors.js';
import { requireStr, type Handler } from '../control/server.js';
import { overlayOf, mergedEntries, setOverlay, setOverlays, type OverlayEntry } from './overlay.js';
import type { MountManager, MountRecord } from './mounts.js';
import { F, Msg, type FieldList, type Fields } from '../control/protocol.js';
import type { Store } from '../store/store.js';
import { NO_DIGEST_YET } from '../store/names.js';
import { quickPathProblem } from '../store/tree.js';
import { Change, type Announcement } from './journal.js';
import { withoutShortLived } from './short-lived.js';
import { upperNameOf, upperPath } from './upper.js';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, VDIR_F_CLAIM, VDIR_F_UPPER, type VDir, type VDirEntry, type VDirEntryInput } from './vdir.js';

export interface MountWritesContext {
  store: Store;
  mounts: MountManager;
  log: (line: string) => void;
  /** Brings a tree's full listing into the store (a partial mount's, for a snapshot: docs/lazy.md "Partial metadata"). */
  ensureTree?(tree: string): Promise<unknown>;
  /** Names every file of the partial mount at `root` (its full listing), before files no program opened yet move (partial-mounts.ts). */
  nameAll?(root: string): Promise<void>;
}

function fsErr(errno: MountErrno, message: string): VriftError {
  return new VriftError(`ERR_VRIFT_MOUNTFS_${errno}`, message, { exitCode: 1 });
}

export interface Target {
  rec: MountRecord;
  vdir: VDir;
}

/**
 * A partial mount's files that no program opened yet have no digest in the
 * VDir, and the lazy index finds them by their paths in the tree only:
 * before such files move or gain a name, the mount reads its full listing
 * and names them all.
 */
async function nameBeforeMoving(ctx: MountWritesContext, t: Target, entries: readonly VDirEntry[]): Promise<void> {
  if (!ctx.nameAll || !entries.some((e) => (e.mode & S_IFMT) === S_IFREG && !upperOf(e) && e.digest === NO_DIGEST_YET)) return;
  try {
    await ctx.nameAll(t.rec.path);
  } catch (e) {
    throw fsErr('EIO', `${t.rec.path}: the digests of files not opened yet could not be read before moving them: ${(e as Error).message}`);
  }
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
  const problem = quickPathProblem(rel);
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

const upperOf = (e: { flags?: number; digest?: string } | undefined): string | undefined =>
  e && ((e.flags ?? 0) & VDIR_F_UPPER) !== 0 ? e.digest : undefined;

function overlayEntryOf(e: VDirEntryInput): OverlayEntry {
  const type = e.mode & S_IFMT;
  const upper = upperOf(e);
  if (upper) return { kind: 'file', mode: e.mode & 0o100 ? 0o755 : 0o644, size: 0, upper, mtimeSec: e.mtimeSec };
  if (type === S_IFDIR) return { kind: 'dir', mode: 0o755, size: 0, mtimeSec: e.mtimeSec };
  if (type === S_IFLNK) return { kind: 'symlink', mode: 0o777, size: Buffer.byteLength(e.target!), target: e.target!, mtimeSec: e.mtimeSec };
  return { kind: 'file', mode: e.mode & 0o100 ? 0o755 : 0o644, size: e.size, digest: e.digest!, mtimeSec: e.mtimeSec };
}

/**
 * Applies a batch to the VDir and records it in the overlay. An upper file
 * whose path the batch removes or replaces loses that name (unlink: the
 * kernel frees it with its last name and descriptor), unless `kept` says
 * the caller moved it already (rename).
 */
export function change(ctx: MountWritesContext, t: Target, upserts: VDirEntryInput[], removals: string[] = [], kept: ReadonlySet<string> = new Set()): void {
  const gone: string[] = [];
  const upperAt = (rel: string): boolean => ((t.vdir.probe(rel)?.flags ?? 0) & VDIR_F_UPPER) !== 0;
  for (const r of removals) if (!kept.has(r) && upperAt(r)) gone.push(r);
  for (const up of upserts) {
    if (kept.has(up.path) || !upperAt(up.path)) continue;
    if (upperOf(up) !== upperOf(t.vdir.lookup(up.path))) gone.push(up.path);
  }
  t.vdir.apply(upserts, removals);
  setOverlays(ctx.store, t.rec.name, removals.map((r) => [r, { deleted: true }] as const));
  setOverlays(ctx.store, t.rec.name, upserts.map((u) => [u.path, overlayEntryOf(u)] as const));
  for (const rel of gone) unlinkUpper(ctx.store, t.rec.name, upperNameOf(rel));
}

function unlinkUpper(store: Store, vdirName: string, name: string): void {
  try {
    unlinkSync(upperPath(store, vdirName, name));
  } catch {
    /* gone already */
  }
}

/**
 * The entry at `rel`, or — when the VDir has none — the upper file a shim
 * made there and announced but the daemon has not published yet (its name
 * is the path's: upperNameOf). Such a file is published on the spot.
 */
function entryAt(ctx: MountWritesContext, t: Target, rel: string): VDirEntry | undefined {
  const e = t.vdir.lookup(rel);
  if (e || rel === '') return e;
  const name = upperNameOf(rel);
  const st = lstatSync(upperPath(ctx.store, t.rec.name, name), { throwIfNoEntry: false });
  if (!st?.isFile() && !st?.isDirectory()) return undefined;
  // (a directory made just now may be the parent too)
  if (rel.includes('/') && !isDirAt(ctx, t, parentOf(rel))) return undefined;
  const u: VDirEntryInput = st.isDirectory()
    ? claimedDir(rel, st.ino)
    : { path: rel, mode: S_IFREG | (st.mode & 0o7777), size: 0, mtimeSec: nowSec(), digest: name, flags: VDIR_F_UPPER };
  change(ctx, t, [u]);
  return t.vdir.lookup(rel);
}

/** Whether `rel` is a directory of the mount: published, or made by a shim and published now (entryAt). */
function isDirAt(ctx: MountWritesContext, t: Target, rel: string): boolean {
  const p = t.vdir.probe(rel); // the common case, without building the entry
  return p ? p.type === S_IFDIR : isDir(entryAt(ctx, t, rel));
}

/** The entry of a directory made by a shim (its claim directory has inode `ino`): the shim reported that inode already. */
function claimedDir(rel: string, ino: number): VDirEntryInput {
  return { path: rel, mode: S_IFDIR | 0o755, size: 0, mtimeSec: nowSec(), flags: VDIR_F_CLAIM, claimIno: ino };
}

/**
 * New upper files and directories waiting to be published together: one VDir
 * write for a burst of creates. Creates in their turn (`fresh`) go in
 * unchecked and are published by VDir.applyNew, which leaves out those
 * whose path is taken or whose parent is not a directory in one native call
 * (a probe per create was the largest share of the daemon's work under
 * `tar -x`); each left out is then looked at as a late record is (`recheck`).
 */
class Creates {
  private batch: VDirEntryInput[] = [];
  private fresh: VDirEntryInput[] = [];
  private freshOf: Announcement[] = [];
  readonly paths = new Set<string>();
  /** Directories found in the VDir, or in this batch, since the last change that could remove one. */
  readonly dirs = new Set<string>();

  constructor(
    private readonly ctx: MountWritesContext,
    private readonly t: Target,
    private readonly recheck: (a: Announcement, creates: Creates) => void,
    private readonly onError: (a: Announcement, e: Error) => void,
  ) {}

  add(u: VDirEntryInput): void {
    this.batch.push(u);
    this.paths.add(u.path);
  }

  /** A create in its turn, checked when the batch is published (applyNew). */
  addFresh(u: VDirEntryInput, a: Announcement): void {
    this.fresh.push(u);
    this.freshOf.push(a);
  }

  /** Whether `rel` is in the VDir (this batch written first when it holds `rel`). */
  taken(rel: string): boolean {
    if (this.paths.has(rel)) this.flush();
    return this.t.vdir.probe(rel) !== undefined;
  }

  /** Whether the parent of `rel` is a directory: in this batch, or in the VDir (isDirAt). */
  parentIsDir(rel: string): boolean {
    const parent = parentOf(rel);
    if (parent === '' || this.dirs.has(parent)) return true;
    if (!isDirAt(this.ctx, this.t, parent)) return false;
    this.dirs.add(parent);
    return true;
  }

  flush(): void {
    this.flushFresh();
    if (this.batch.length === 0) return;
    this.t.vdir.apply(this.batch); // (nothing is replaced, so no change() bookkeeping)
    setOverlays(this.ctx.store, this.t.rec.name, this.batch.map((u) => [u.path, overlayEntryOf(u)] as const));
    this.batch = [];
    this.paths.clear();
  }

  private flushFresh(): void {
    if (this.fresh.length === 0) return;
    const fresh = this.fresh;
    const of = this.freshOf;
    this.fresh = [];
    this.freshOf = [];
    const left = this.t.vdir.applyNew(fresh);
    const published: (readonly [string, OverlayEntry])[] = [];
    for (let k = 0, l = 0; k < fresh.length; k++) {
      if (l < left.length && left[l] === k) l++;
      else published.push([fresh[k]!.path, overlayEntryOf(fresh[k]!)]);
    }
    setOverlays(this.ctx.store, this.t.rec.name, published);
    // (in their order, after the ones published: none of those needed them, or it would have been left out too)
    for (const k of left) {
      try {
        this.recheck(of[k]!, this);
      } catch (e) {
        this.onError(of[k]!, e as Error);
      }
    }
  }
}

/** Removes a directory's claim (the empty real directory under its path's name). */
function dropClaimDir(store: Store, vdirName: string, rel: string): void {
  try {
    rmdirSync(upperPath(store, vdirName, upperNameOf(rel)));
  } catch {
    /* it had none (a directory of the tree, or made by a merge) */
  }
}

/** Waits until every change announced in the mount is published (journal.ts). */
async function drained(ctx: MountWritesContext, t: Target): Promise<void> {
  await ctx.mounts.journalOf(t.rec.path)?.waitAll();
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
  if (e.ctimeNs) u.ctimeNs = e.ctimeNs; // a renamed lower file keeps its blob check
  if (e.target !== undefined) u.target = e.target;
  if (e.claimIno !== undefined) u.claimIno = e.claimIno;
  return u;
}

/**
 * The current tree of a mount (base + overlay), stored; returns its id.
 * Upper files are hashed into the CAS here (copied, never moved: programs
 * may still be writing them) and keep serving the mount afterwards.
 */
export function snapshotMount(store: Store, rec: MountRecord): string {
  const { entries, uppers } = mergedEntries(store.getTree(rec.tree).entries, overlayOf(store, rec.name));
  for (const e of entries) {
    const name = uppers.get(e.path);
    if (!name) continue;
    const file = upperPath(store, rec.name, name);
    const st = lstatSync(file, { throwIfNoEntry: false });
    const blob = store.admission.copyOf(file, (err) => fsErr('EIO', `${rec.path}/${e.path}: its upper file ${file} is unreadable: ${(err as Error).message}`));
    e.digest = blob.digest;
    e.size = blob.size;
    e.mode = st && st.mode & 0o100 ? 0o755 : 0o644;
    if (e.mode === 0o755) store.ensureExecTwin(blob.digest);
  }
  return store.putTree(entries);
}

export function registerMountWrites(h: Map<number, Handler>, ctx: MountWritesContext): void {
  const { store } = ctx;

  // The changes shims made in the upper layer themselves and announced in
  // the mount's journal (journal.ts), one at a time in their order. Each is
  // checked against the upper layer as it is now (the real files are the
  // truth), so one applied late or twice changes nothing.
  // A create. In its turn (`fresh`), the record's mode is the file's and a
  // file gone since is unpublished by the GONE record that follows, so the
  // entry joins a batch (`creates`: one VDir write for a burst of them);
  // applied late (a replay), the upper layer is looked at first.
  const madeFile = (t: Target, a: Announcement, fresh: boolean, creates: Creates, checked = false): void => {
    const rel = a.rel;
    const name = upperNameOf(rel);
    if (fresh && !checked) {
      creates.addFresh({ path: rel, mode: S_IFREG | (a.mode & 0o7777), size: 0, mtimeSec: nowSec(), digest: name, flags: VDIR_F_UPPER }, a);
      return;
    }
    if (creates.taken(rel)) {
      if (upperOf(t.vdir.lookup(rel)) !== name) unlinkUpper(store, t.rec.name, name); // the path was taken meanwhile
      return;
    }
    let mode = a.mode & 0o7777;
    if (!fresh) {
      const st = lstatSync(upperPath(store, t.rec.name, name), { throwIfNoEntry: false });
      if (!st?.isFile()) return; // unlinked or renamed before it was published
      mode = st.mode & 0o7777;
    }
    if (!creates.parentIsDir(rel)) {
      unlinkUpper(store, t.rec.name, name);
      throw fsErr('ENOENT', `${parentOf(rel)}: no such directory`);
    }
    creates.add({ path: rel, mode: S_IFREG | mode, size: 0, mtimeSec: nowSec(), digest: name, flags: VDIR_F_UPPER });
  };

  // The entry goes, unless a newer file has taken the path since.
  const unlinkedUpper = (t: Target, rel: string): void => {
    const name = upperOf(t.vdir.lookup(rel));
    if (!name || lstatSync(upperPath(store, t.rec.name, name), { throwIfNoEntry: false })) return;
    change(ctx, t, [], [rel], new Set([rel]));
  };

  // Published (with the burst's creates: a directory and the files made in
  // it are one VDir write), unless it was removed or the path taken meanwhile.
  const madeDir = (t: Target, a: Announcement, fresh: boolean, creates: Creates, checked = false): void => {
    const rel = a.rel;
    if (!(fresh && !checked) && creates.taken(rel)) return;
    const st = lstatSync(upperPath(store, t.rec.name, upperNameOf(rel)), { throwIfNoEntry: false });
    if (!st?.isDirectory()) return;
    if (fresh && !checked) {
      creates.addFresh(claimedDir(rel, st.ino), a);
      return;
    }
    if (!creates.parentIsDir(rel)) {
      dropClaimDir(store, t.rec.name, rel);
      throw fsErr('ENOENT', `${parentOf(rel)}: no such directory`);
    }
    creates.add(claimedDir(rel, st.ino));
    creates.dirs.add(rel);
  };

  ctx.mounts.applyAnnouncements = (rec: MountRecord, vdir: VDir, list: readonly Announcement[], fresh: boolean, onError: (a: Announcement, e: Error) => void): void => {
    const t: Target = { rec, vdir };
    // a fresh create applyNew left out: looked at as a late record is, in its order
    const recheck = (a: Announcement, c: Creates): void => {
      if (a.change === Change.FILE) madeFile(t, a, true, c, true);
      else madeDir(t, a, true, c, true);
    };
    const creates = new Creates(ctx, t, recheck, onError);
    // (in their turn, a file made and unlinked again within the batch is no change: short-lived.ts)
    const turn = fresh ? withoutShortLived(list, (rel) => vdir.probe(rel) === undefined) : list;
    for (const a of turn) {
      try {
        const problem = a.rel === '' ? 'the mount root' : quickPathProblem(a.rel);
        if (problem) throw fsErr('EINVAL', `${JSON.stringify(a.rel)}: ${problem}`);
        if (a.change === Change.FILE) {
          madeFile(t, a, fresh, creates);
          continue;
        }
        if (a.change === Change.DIR) {
          madeDir(t, a, fresh, creates);
          continue;
        }
        creates.flush(); // (what follows looks at the VDir, and may remove a directory)
        creates.dirs.clear();
        if (a.change === Change.GONE) unlinkedUpper(t, a.rel);
        else throw fsErr('EINVAL', `unknown change ${a.change}`);
      } catch (e) {
        onError(a, e as Error);
      }
    }
    creates.flush();
  };

  // A shim says the mount's journal has news, or sends a record it could
  // not append (a full disk). No reply (vrift_proto.h).
  h.set(Msg.JOURNAL, (f): FieldList => {
    const journal = ctx.mounts.journalOf(requireStr(f, F.PATH, 'path'));
    if (!journal) return [];
    const seq = f.u64(F.SEQ);
    if (seq === undefined) journal.wake(f.u32(F.NOW) === 1);
    else journal.receive({ seq: Number(seq), change: f.u32(F.CHANGE) ?? 0, rel: f.str(F.REL) ?? '', mode: f.u32(F.MODE) ?? 0 });
    return [];
  });

  // A copy-up: REL now names the file the shim copied to its upper name
  // (upperNameOf(rel)). REL must still be the lower file with digest BASE
  // (else ESTALE: another process changed it first).
  h.set(Msg.UPPER, (f): FieldList => {
    const t = mountOf(ctx, f);
    return copiedUp(t, f, requireStr(f, F.BASE, 'base digest'));
  });

  const copiedUp = (t: Target, f: Fields, base: string): FieldList => {
    const rel = relOf(f, F.REL, 'rel');
    const name = requireStr(f, F.DIGEST, 'upper name');
    if (name !== upperNameOf(rel)) throw fsErr('EINVAL', `${JSON.stringify(name)} is not the upper name of ${rel}`);
    const cur = t.vdir.lookup(rel);
    if (cur && upperOf(cur) === name) return [];
    if (!cur || (cur.mode & S_IFMT) !== S_IFREG || upperOf(cur) || cur.digest !== base) throw fsErr('ESTALE', `${rel}: changed while it was being copied up`);
    const u: VDirEntryInput = { path: rel, mode: cur.mode, size: 0, mtimeSec: nowSec(), digest: name, flags: VDIR_F_UPPER };
    t.vdir.apply([u]);
    setOverlay(store, t.rec.name, rel, overlayEntryOf(u));
    return [];
  };

  /** `e` (an entry of `from`) as the entry of `to`: an upper file's name follows its path. */
  const movedTo = (e: VDirEntry, to: string): VDirEntryInput => {
    const u = asInput(e, to);
    if (upperOf(e)) u.digest = upperNameOf(to);
    return u;
  };

  // link(): a second name for a file. An upper file gets a real hard link
  // (writes through one name show through the other); a lower one is the
  // same content until one of them is written.
  h.set(Msg.LINK, async (f): Promise<FieldList> => {
    const t = mountOf(ctx, f);
    const from = relOf(f, F.REL, 'rel');
    const to = relOf(f, F.REL2, 'rel2');
    const first = entryAt(ctx, t, from);
    if (first && !isDir(first)) await nameBeforeMoving(ctx, t, [first]);
    const src = entryAt(ctx, t, from);
    if (!src) throw fsErr('ENOENT', `${from}: no such file`);
    if (isDir(src)) throw fsErr('EPERM', `${from}: is a directory`);
    if (entryAt(ctx, t, to)) throw fsErr('EEXIST', `${to}: already exists`);
    checkParent(t.vdir, to);
    const u = movedTo(src, to);
    if (upperOf(src)) linkSync(upperPath(store, t.rec.name, upperOf(src)!), upperPath(store, t.rec.name, u.digest!));
    change(ctx, t, [u], [], new Set([to]));
    return [];
  });

  h.set(Msg.MKDIR, (f): FieldList => {
    const t = mountOf(ctx, f);
    const rel = relOf(f, F.REL, 'rel');
    if (entryAt(ctx, t, rel)) throw fsErr('EEXIST', `${rel}: already exists`);
    checkParent(t.vdir, rel);
    change(ctx, t, [{ path: rel, mode: S_IFDIR | 0o755, size: 0, mtimeSec: nowSec() }]);
    return [];
  });

  h.set(Msg.UNLINK, (f): FieldList => {
    const t = mountOf(ctx, f);
    const rel = relOf(f, F.REL, 'rel');
    const e = entryAt(ctx, t, rel);
    if (!e) throw fsErr('ENOENT', `${rel}: no such file`);
    if (isDir(e)) throw fsErr('EISDIR', `${rel}: is a directory`);
    change(ctx, t, [], [rel]);
    return [];
  });

  h.set(Msg.RMDIR, async (f): Promise<FieldList> => {
    const t = mountOf(ctx, f);
    const rel = relOf(f, F.REL, 'rel');
    const e = t.vdir.lookup(rel);
    if (!e) throw fsErr('ENOENT', `${rel}: no such directory`);
    if (!isDir(e)) throw fsErr('ENOTDIR', `${rel}: not a directory`);
    if ((e.nchildren ?? 0) > 0) throw fsErr('ENOTEMPTY', `${rel}: directory not empty`);
    change(ctx, t, [], [rel]);
    dropClaimDir(store, t.rec.name, rel);
    return [];
  });

  h.set(Msg.SYMLINK, (f): FieldList => {
    const t = mountOf(ctx, f);
    const rel = relOf(f, F.REL, 'rel');
    const target = f.str(F.TARGET);
    if (!target || target.includes('\0')) throw fsErr('ENOENT', 'empty symlink target');
    if (entryAt(ctx, t, rel)) throw fsErr('EEXIST', `${rel}: already exists`);
    checkParent(t.vdir, rel);
    change(ctx, t, [{ path: rel, mode: S_IFLNK | 0o777, size: Buffer.byteLength(target), mtimeSec: nowSec(), target }]);
    return [];
  });

  h.set(Msg.CHMOD, (f): FieldList => {
    const t = mountOf(ctx, f);
    const rel = relOf(f, F.REL, 'rel');
    const e = t.vdir.lookup(rel);
    if (!e) throw fsErr('ENOENT', `${rel}: no such file`);
    if ((e.mode & S_IFMT) !== S_IFREG || upperOf(e)) return []; // an upper file's mode is the real file's
    const exec = ((f.u32(F.MODE) ?? 0) & 0o100) !== 0;
    if (exec === ((e.mode & 0o100) !== 0)) return [];
    if (exec && store.cas.has(e.digest!)) store.ensureExecTwin(e.digest!);
    change(ctx, t, [{ ...asInput(e, rel), mode: S_IFREG | (exec ? 0o755 : 0o644), mtimeSec: nowSec() }]);
    return [];
  });

  h.set(Msg.RENAME, async (f): Promise<FieldList> => {
    const t = mountOf(ctx, f);
    const from = relOf(f, F.REL, 'rel');
    const to = relOf(f, F.REL2, 'rel2');
    const first = entryAt(ctx, t, from);
    if (first && from !== to) await nameBeforeMoving(ctx, t, isDir(first) ? subtree(t.vdir, from) : [first]);
    const src = entryAt(ctx, t, from);
    if (!src) throw fsErr('ENOENT', `${from}: no such file or directory`);
    if (from === to) return [];
    if (to.startsWith(`${from}/`)) throw fsErr('EINVAL', `cannot move ${from} into itself`);
    checkParent(t.vdir, to);
    const dst = entryAt(ctx, t, to);
    const removals: string[] = [];
    if (dst) {
      if (isDir(src) && !isDir(dst)) throw fsErr('ENOTDIR', `${to}: not a directory`);
      if (!isDir(src) && isDir(dst)) throw fsErr('EISDIR', `${to}: is a directory`);
      if (isDir(dst) && (dst.nchildren ?? 0) > 0) throw fsErr('ENOTEMPTY', `${to}: directory not empty`);
      removals.push(to);
    }
    // A directory moves with its whole subtree; an upper file's name follows
    // its path (a real rename: over an upper file at the target, the
    // kernel's rename-over-an-open-file).
    const below = isDir(src) ? subtree(t.vdir, from) : [];
    for (let i = below.length - 1; i >= 0; i--) removals.push(below[i]!.path);
    removals.push(from);
    const moved: [VDirEntry, string][] = [[src, to], ...below.map((e): [VDirEntry, string] => [e, to + e.path.slice(from.length)])];
    const kept = new Set<string>();
    for (const [e, path] of moved) {
      const name = upperOf(e);
      if (name) {
        renameSync(upperPath(store, t.rec.name, name), upperPath(store, t.rec.name, upperNameOf(path)));
        kept.add(e.path).add(path);
      } else if (isDir(e)) {
        try {
          // a directory's claim follows it (over the target's, if any)
          renameSync(upperPath(store, t.rec.name, upperNameOf(e.path)), upperPath(store, t.rec.name, upperNameOf(path)));
        } catch {
          /* it had none */
        }
      }
    }
    change(ctx, t, moved.map(([e, path]) => movedTo(e, path)), removals, kept);
    return [];
  });

  // A change request comes after every change announced in the journal
  // before it: its own process's (tar unlinks its placeholder, then makes
  // a symlink there) and other processes' (rmdir of a directory another
  // process just made a file in, moving a directory with its new files).
  for (const type of [Msg.UPPER, Msg.LINK, Msg.MKDIR, Msg.UNLINK, Msg.RMDIR, Msg.SYMLINK, Msg.CHMOD, Msg.RENAME]) {
    const handle = h.get(type)!;
    h.set(type, async (f, call) => {
      await drained(ctx, mountOf(ctx, f));
      return handle(f, call);
    });
  }

  h.set(Msg.SNAPSHOT, async (f): Promise<FieldList> => {
    const path = requireStr(f, F.PATH, 'path');
    const rec = ctx.mounts.recordOf(path);
    if (!rec) throw new VriftError('ERR_VRIFT_MOUNT_NOT_FOUND', `${path} is not mounted`, { hint: 'see `vrift status`', exitCode: 1 });
    await drained(ctx, mountOf(ctx, f)); // files just made by other processes are in
    if (!store.hasTree(rec.tree)) await ctx.ensureTree?.(rec.tree); // (a partial mount: its digests are in the listing)
    const id = snapshotMount(store, rec);
    ctx.log(`snapshot: ${path} -> ${id}`);
    return [[F.TREE, id]];
  });
}
