// Programs the shim cannot see (static binaries, Go programs, setuid
// programs) run in a private mount namespace where each vrift mount is a
// real overlayfs (shim/ns/vrift-ns.c; started by `vrift _ns-exec`,
// src/cli/ns-exec.ts). The daemon's two parts:
//
//   NSFARM  builds a run directory under <home>/tmp/: lower/ is an exact
//           hard-link farm of the mount's current view (every directory,
//           symlink, and a hard link per file to the blob that serves it),
//           upper/ and work/ are empty (overlayfs needs them on one filesystem).
//   NSMERGE walks upper/ once the program has exited and applies it to the
//           mount through the same path as the shim's writes (VDir + overlay):
//           files are admitted into the CAS, directories and symlinks become
//           entries, whiteouts (character device 0/0) delete, and an opaque
//           directory first loses the children it had. Then the run
//           directory is deleted.
import { linkSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { LAYOUT } from '../../gen/layout.js';
import type { Digest } from '../../lib/digest.js';
import { errnoError, errnoName, fsError, VriftError } from '../../lib/errors.js';
import { loadNative } from '../../lib/native.js';
import { F, Msg, type FieldList } from '../control/protocol.js';
import { requireStr, type Handler } from '../control/server.js';
import { encodeSorted, sortEntries, type TreeEntry } from '../store/tree.js';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, VDIR_F_UPPER, type VDir, type VDirEntry, type VDirEntryInput } from './vdir.js';
import { change, subtree, type MountWritesContext } from './writes.js';

export interface NsContext extends MountWritesContext {
  /** The daemon's resolver (node/ops: above this layer), for blobs a lazily started mount does not have yet. */
  resolver: () => { fetchBlob(digest: Digest, opts: { tree?: Digest }): Promise<string | undefined> };
}

const THREADS = Math.max(1, Math.min(4, availableParallelism()));
const OVERLAY_OPAQUE = ['trusted.overlay.opaque', 'user.overlay.opaque'];

function target(ctx: NsContext, path: string): { rec: NonNullable<ReturnType<NsContext['mounts']['recordOf']>>; vdir: VDir } {
  const rec = ctx.mounts.recordOf(path);
  const vdir = ctx.mounts.vdirOf(path);
  if (!rec || !vdir) throw new VriftError('ERR_VRIFT_MOUNT_NOT_FOUND', `${path} is not mounted`, { hint: 'see `vrift status`', exitCode: 1 });
  return { rec, vdir };
}

/** Every entry of a VDir (not the root), parents before children. */
export function vdirWalk(vdir: VDir): VDirEntry[] {
  return subtree(vdir, '');
}

/** The run directory for a mount: lower/ (the farm), upper/, work/. */
export async function buildFarm(ctx: NsContext, mountPath: string): Promise<{ dir: string; entries: number; ms: number }> {
  const started = performance.now();
  const { rec, vdir } = target(ctx, mountPath);
  const { store } = ctx;
  await ctx.mounts.journalOf(mountPath)?.waitAll(); // files the caller's processes just made are in the farm
  // A partial mount (docs/lazy.md "Partial metadata"): the farm links every file, so every digest is needed: the listing now.
  if (rec.lazy !== undefined && !store.hasTree(rec.tree) && ctx.ensureTree) {
    await ctx.ensureTree(rec.tree);
    ctx.mounts.upgradePartial(mountPath);
  }
  const tmp = join(store.layout.root, LAYOUT.home.tmp);
  mkdirSync(tmp, { recursive: true });
  const dir = mkdtempSync(join(tmp, 'ns-'));
  const lower = join(dir, 'lower');
  try {
    for (const d of ['lower', 'upper', 'work']) mkdirSync(join(dir, d), { mode: 0o755 });
    const all = vdirWalk(vdir);
    const tree: TreeEntry[] = [];
    const upper: VDirEntry[] = [];
    for (const e of all) {
      const type = e.mode & S_IFMT;
      if (type === S_IFDIR) tree.push({ path: e.path, kind: 'dir', mode: 0o755, size: 0 });
      else if (type === S_IFLNK) tree.push({ path: e.path, kind: 'symlink', mode: 0o777, size: Buffer.byteLength(e.target!), target: e.target! });
      else if (e.flags & VDIR_F_UPPER) upper.push(e);
      else tree.push({ path: e.path, kind: 'file', mode: e.mode & 0o100 ? 0o755 : 0o644, size: e.size, digest: e.digest! });
    }
    const walked = performance.now();
    const sorted = sortEntries(tree);
    const fast = loadNative().fastFs;
    const casDir = store.layout.cas;
    const r = await fast.linkTree(encodeSorted(sorted), lower, casDir, THREADS);
    // Blobs not here (a lazily started mount) or executables without their twin yet: fetch / make, then link.
    for (let k = 0; k < r.failures.length; k += 3) {
      const [phase, i, errno] = [r.failures[k]!, r.failures[k + 1]!, r.failures[k + 2]!];
      const e = sorted[i]!;
      const dst = join(lower, e.path);
      if (phase !== 2 || errnoName(errno) !== 'ENOENT') throw fsError(errnoError(errno, phase === 1 ? 'mkdir' : phase === 2 ? 'link' : 'symlink', dst), dst, 'building the namespace farm');
      await ensureBlob(ctx, e.digest!, rec.tree, e.path, mountPath);
      const exec = e.mode === 0o755;
      if (exec) store.ensureExecTwin(e.digest!);
      linkSync(store.cas.pathOf(e.digest!, exec), dst);
    }
    // Files of the mount's upper layer are real files of their own.
    for (const e of upper) linkSync(join(store.layout.root, LAYOUT.home.upper, vdir.name, e.digest!), join(lower, e.path));
    const ms = performance.now() - started;
    ctx.log(`ns: farm of ${mountPath} (${all.length} entries) in ${ms.toFixed(0)} ms (VDir walk ${(walked - started).toFixed(0)} ms) at ${dir}`);
    return { dir, entries: all.length, ms };
  } catch (e) {
    void rm(dir, { recursive: true, force: true });
    throw e;
  }
}

async function ensureBlob(ctx: NsContext, digest: Digest, tree: Digest, path: string, mountPath: string): Promise<void> {
  if (ctx.store.cas.has(digest)) return;
  let from: string | undefined;
  try {
    from = await ctx.resolver().fetchBlob(digest, { tree });
  } catch (e) {
    throw new VriftError('ERR_VRIFT_CAS_MISSING', `${mountPath}/${path}: blob ${digest} could not be fetched: ${(e as Error).message}`, {
      hint: 'check the remote tiers (`vrift status`), or materialize the tree where its blobs are',
      exitCode: 1,
    });
  }
  if (from === undefined) {
    throw new VriftError('ERR_VRIFT_CAS_MISSING', `${mountPath}/${path}: blob ${digest} is in no reachable tier`, { hint: 'push the tree from a node that has it', exitCode: 1 });
  }
}

function isOpaque(path: string): boolean {
  const { lgetxattr } = loadNative();
  for (const name of OVERLAY_OPAQUE) if (lgetxattr(path, name)?.toString() === 'y') return true;
  return false;
}

export interface MergeStats {
  files: number;
  dirs: number;
  symlinks: number;
  removed: number;
}

/** The run directory named by a client: only one of ours. */
function checkRunDir(ctx: NsContext, dir: string): void {
  if (dirname(dir) !== join(ctx.store.layout.root, LAYOUT.home.tmp) || !basename(dir).startsWith('ns-')) {
    throw new VriftError('ERR_VRIFT_PROTO_FIELD', `${dir} is not a namespace run directory of this store`, { hint: 'client and daemon versions may differ' });
  }
}

/** Applies <dir>/upper to the mount (one batch), then deletes the run directory. */
export function mergeUpper(ctx: NsContext, mountPath: string, dir: string): MergeStats {
  checkRunDir(ctx, dir);
  const t = target(ctx, mountPath);
  const { store } = ctx;
  const upperRoot = join(dir, 'upper');
  const stats: MergeStats = { files: 0, dirs: 0, symlinks: 0, removed: 0 };
  const removals = new Set<string>();
  const upserts: VDirEntryInput[] = [];
  const now = Math.floor(Date.now() / 1000);
  /** Removes `rel` and everything under it, as the VDir has it now. */
  const remove = (rel: string, self = true): void => {
    const e = t.vdir.lookup(rel);
    if (!e) return;
    if ((e.mode & S_IFMT) === S_IFDIR) for (const c of subtree(t.vdir, rel)) removals.add(c.path);
    if (self) removals.add(rel);
  };
  const walk = (rel: string): void => {
    const full = rel === '' ? upperRoot : join(upperRoot, rel);
    for (const name of readdirSync(full).sort()) {
      const p = rel === '' ? name : `${rel}/${name}`;
      const abs = join(full, name);
      const st = lstatSync(abs);
      const cur = t.vdir.lookup(p);
      const curDir = cur !== undefined && (cur.mode & S_IFMT) === S_IFDIR;
      if (st.isCharacterDevice() && st.rdev === 0) {
        if (cur) stats.removed++;
        remove(p);
      } else if (st.isDirectory()) {
        if (curDir) {
          if (isOpaque(abs)) remove(p, false);
        } else {
          if (cur) remove(p);
          upserts.push({ path: p, mode: S_IFDIR | 0o755, size: 0, mtimeSec: now });
          stats.dirs++;
        }
        walk(p);
      } else if (st.isFile()) {
        if (cur && (cur.mode & S_IFMT) !== S_IFREG) remove(p);
        const blob = store.admission.copyOf(abs, (e) => fsError(e, abs, 'merging the namespace upper layer'));
        const exec = (st.mode & 0o100) !== 0;
        if (exec) store.ensureExecTwin(blob.digest);
        upserts.push({ path: p, mode: S_IFREG | (exec ? 0o755 : 0o644), size: blob.size, mtimeSec: now, digest: blob.digest });
        stats.files++;
      } else if (st.isSymbolicLink()) {
        if (cur && (cur.mode & S_IFMT) !== S_IFLNK) remove(p);
        const target = readlinkSync(abs);
        upserts.push({ path: p, mode: S_IFLNK | 0o777, size: Buffer.byteLength(target), mtimeSec: now, target });
        stats.symlinks++;
      } else {
        ctx.log(`ns: ${mountPath}/${p}: a ${st.isFIFO() ? 'FIFO' : st.isSocket() ? 'socket' : 'device'} cannot be kept in a mount; left out`);
      }
    }
  };
  walk('');
  // deepest first: a directory only after all its children
  const depth = (s: string): number => s.split('/').length;
  const rm_ = [...removals].sort((a, b) => depth(b) - depth(a));
  if (upserts.length > 0 || rm_.length > 0) change(ctx, t, upserts, rm_);
  return stats;
}

export function registerNs(h: Map<number, Handler>, ctx: NsContext): void {
  h.set(Msg.NSFARM, async (f): Promise<FieldList> => {
    const { dir, entries } = await buildFarm(ctx, requireStr(f, F.PATH, 'path'));
    return [
      [F.PATH, dir],
      [F.SIZE, { u64: entries }],
    ];
  });
  h.set(Msg.NSMERGE, (f): FieldList => {
    const path = requireStr(f, F.PATH, 'path');
    const dir = requireStr(f, F.RUN_DIR, 'run directory');
    let stats: MergeStats;
    try {
      stats = mergeUpper(ctx, path, dir);
    } catch (e) {
      ctx.log(`ns: merging ${dir} into ${path} failed (the directory is kept): ${(e as Error).message}`);
      throw e;
    }
    void rm(dir, { recursive: true, force: true }); // the farm may hold many links: deleted after the reply
    ctx.log(`ns: merged into ${path}: ${JSON.stringify(stats)}`);
    return [[F.JSON, JSON.stringify(stats)]];
  });
}
