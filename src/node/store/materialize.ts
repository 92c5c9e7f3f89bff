// `vrift materialize <tree|ref> <dir>`: a tree as real files, made of hard
// links into the CAS (as pnpm does): no bytes are copied. Hard links share
// their inode's mode, so files come out read-only (0444, or 0555 via the
// executable twin). Where links cannot be made (another filesystem, an
// inode at its link limit) files are copied, with the tree's exact modes.
import { chmodSync, copyFileSync, constants as C, lstatSync, mkdirSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import type { Digest } from '../../lib/digest.js';
import { errnoError, errnoName, errnoOf, fsError, VriftError } from '../../lib/errors.js';
import { missingBlob } from './cas.js';
import { loadNative } from '../../lib/native.js';
import { rememberMaterialized } from './materialized.js';
import type { Store } from './store.js';
import { planMtimes, type MtimeMode } from './times.js';
import type { TreeEntry } from './tree.js';

export interface MaterializeOptions {
  /** Replace whatever the target directory holds. */
  force?: boolean;
  /** Copy files instead of linking them (writable files with the tree's modes). */
  copy?: boolean;
  onProgress?: (done: number, total: number) => void;
  /** Called once if hard links are not possible and files are copied instead. */
  notice?: (message: string) => void;
  /**
   * Give each file its modification time (store/times.ts): the recorded
   * times (per file entry, tree order), as recorded or packed just before
   * now. Files are then copies: a hard link shares the store's inode, whose
   * time belongs to every path and tree with that content.
   */
  mtimes?: { mode: 'kept' | 'now'; times: readonly bigint[] };
}

export interface MaterializeResult {
  tree: Digest;
  dir: string;
  files: number;
  dirs: number;
  symlinks: number;
  linked: number;
  copied: number;
  /** How files got their modification times ("none": the time of writing, or the store's for links). */
  mtimes: MtimeMode;
}

/** Fails unless `dir` is absent or an empty directory (or `force`, which empties it). */
export function prepareTarget(dir: string, force: boolean): void {
  let names: string[];
  try {
    const st = lstatSync(dir);
    if (!st.isDirectory()) {
      if (!force) {
        throw new VriftError('ERR_VRIFT_MATERIALIZE_NOT_EMPTY', `${dir} exists and is not a directory`, {
          hint: 'choose another target or pass --force to replace it',
        });
      }
      rmSync(dir, { force: true });
      names = [];
    } else names = readdirSync(dir);
  } catch (e) {
    if (errnoOf(e) !== 'ENOENT') throw e instanceof VriftError ? e : fsError(e, dir, 'checking the target');
    names = [];
  }
  if (names.length > 0) {
    if (!force) {
      throw new VriftError('ERR_VRIFT_MATERIALIZE_NOT_EMPTY', `${dir} is not empty`, {
        hint: 'choose an empty directory or pass --force to replace its contents',
      });
    }
    for (const n of names) rmSync(join(dir, n), { recursive: true, force: true });
  }
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw fsError(e, dir, 'creating the target');
  }
}

const THREADS = Math.max(1, Math.min(4, availableParallelism()));


/**
 * Writes a tree out. The link farm is made on native threads, off the
 * JavaScript thread (a daemon keeps serving meanwhile).
 */
export async function materialize(store: Store, treeish: string, dir: string, opts: MaterializeOptions = {}): Promise<MaterializeResult> {
  const id = store.resolve(treeish);
  const encoded = store.readTreeBlob(id); // verified against its id
  const fast = loadNative().fastFs;
  const casDir = store.layout.cas;
  // Entries as JavaScript objects only when something needs them (a problem, a copy).
  let decoded: TreeEntry[] | undefined;
  const entries = (): TreeEntry[] => (decoded ??= store.getTree(id).entries);

  // 1. Every blob file to link is here, the right size and unchanged since it was last
  //    known good: one lstat each (native), its ctime compared with the index's record
  //    (blob-check.ts). Anything else is re-hashed, made (twins) or reported missing.
  const problems = changedBlobs(store, entries, await fast.checkTree(encoded, casDir, THREADS, true));
  if (problems.length > 0) checkProblems(store, entries(), problems);

  const root = resolve(dir);
  prepareTarget(root, opts.force ?? false);
  const res: MaterializeResult = { tree: id, dir: root, files: 0, dirs: 0, symlinks: 0, linked: 0, copied: 0, mtimes: 'none' };

  if (opts.copy || opts.mtimes) {
    if (!opts.copy) opts.notice?.('copying files instead of hard-linking them, so that each keeps its own modification time');
    // Writable copies with the tree's modes: dirs, files, then symlinks.
    for (const e of entries()) {
      const dst = join(root, e.path);
      try {
        if (e.kind === 'dir') {
          mkdirSync(dst, { mode: e.mode });
          res.dirs++;
        } else if (e.kind === 'file') {
          copyOut(store.cas.pathOf(e.digest!), dst, e.mode);
          res.files++;
          res.copied++;
        }
      } catch (err) {
        throw fsError(err, dst, 'materializing');
      }
    }
    for (const e of entries()) if (e.kind === 'symlink') linkOut(e, root, res);
    if (opts.mtimes) res.mtimes = applyMtimes(root, entries(), opts.mtimes);
    opts.onProgress?.(entries().length, entries().length);
    store.meta.touchTree(id);
    return res;
  }

  // 2. The link farm, in one native call: mkdirs level by level, links, symlinks last.
  const r = await fast.linkTree(encoded, root, casDir, THREADS);
  res.dirs = r.dirs;
  res.files = r.files;
  res.symlinks = r.symlinks;
  res.linked = r.files;
  let noticed = false;
  for (let k = 0; k < r.failures.length; k += 3) {
    const [phase, i, errno] = [r.failures[k]!, r.failures[k + 1]!, r.failures[k + 2]!];
    const e = entries()[i]!;
    const dst = join(root, e.path);
    const code = errnoName(errno);
    if (phase === 2 && (code === 'EXDEV' || code === 'EPERM' || code === 'EMLINK')) {
      // Not the store's filesystem (or an inode at its link limit): copy this one.
      if (code !== 'EMLINK' && !noticed) opts.notice?.(`${root} is on another filesystem than the store (${store.layout.root}): copying files instead of hard-linking`);
      noticed ||= code !== 'EMLINK';
      try {
        copyOut(store.cas.pathOf(e.digest!), dst, e.mode);
      } catch (err) {
        throw fsError(err, dst, 'materializing');
      }
      res.linked--;
      res.copied++;
      continue;
    }
    throw fsError(errnoError(errno, phase === 1 ? 'mkdir' : phase === 2 ? 'link' : 'symlink', dst), dst, 'materializing');
  }
  opts.onProgress?.(res.dirs + res.files + res.symlinks, res.dirs + res.files + res.symlinks);
  // A link moves its inode's ctime: record the blobs' new ctimes as known good (checked in step 1;
  // a write in the instant between a link and this stat is the one change this does not see).
  if (res.linked > 0) renewAfterLink(store, entries, await fast.checkTree(encoded, casDir, THREADS, true));
  store.meta.touchTree(id);
  if (res.copied === 0) rememberMaterialized(store, root, id); // a later ingest of it reads no linked file
  return res;
}

const ctimeOf = (all: Float64Array, k: number): bigint => BigInt(all[k + 2]!) * 1_000_000_000n + BigInt(all[k + 3]!);

/**
 * checkTree's full answer ([entryIndex, problem, ctimeSec, ctimeNsec] per
 * distinct blob file) as problems: those checkTree found, and the blob files
 * whose ctime differs from the one the index recorded (2: re-hash).
 */
function changedBlobs(store: Store, entries: () => TreeEntry[], all: Float64Array): number[] {
  const out: number[] = [];
  for (let k = 0; k < all.length; k += 4) {
    if (all[k + 1] !== 0) {
      out.push(all[k]!, all[k + 1]!);
      continue;
    }
    const e = entries()[all[k]!]!;
    const rec = store.meta.getBlob(e.digest!);
    const want = e.mode === 0o755 ? rec?.twinCtimeNs : rec?.ctimeNs;
    if (want !== undefined && want !== ctimeOf(all, k)) out.push(all[k]!, 2);
  }
  return out;
}

/** After linking: each blob file's ctime as it is now, recorded as known good. */
function renewAfterLink(store: Store, entries: () => TreeEntry[], all: Float64Array): void {
  for (let k = 0; k < all.length; k += 4) {
    if (all[k + 1] !== 0) continue;
    const e = entries()[all[k]!]!;
    const rec = store.meta.getBlob(e.digest!);
    if (!rec) continue;
    const exec = e.mode === 0o755;
    const now = ctimeOf(all, k);
    if ((exec ? rec.twinCtimeNs : rec.ctimeNs) === now) continue;
    store.meta.putBlob(e.digest!, exec ? { ...rec, twinCtimeNs: now } : { ...rec, ctimeNs: now });
  }
}

/** Handles what checkTree found: [entryIndex, problem] pairs (1 missing, 2 not untouched). */
function checkProblems(store: Store, entries: TreeEntry[], problems: ArrayLike<number>): void {
  const missing: Digest[] = [];
  for (let k = 0; k < problems.length; k += 2) {
    const e = entries[problems[k]!]!;
    const exec = e.mode === 0o755;
    if (problems[k + 1] === 2) {
      store.checkBlob(e.digest!, e.size, exec); // re-hash; quarantines and throws if corrupt
    } else if (exec && store.cas.has(e.digest!)) {
      store.checkBlob(e.digest!, e.size); // the twin is copied from the blob: check that first
      store.ensureExecTwin(e.digest!);
    } else missing.push(e.digest!);
  }
  // The index may still list them: make it forget, so a pull fetches them again.
  for (const d of missing) store.meta.removeBlob(d);
  if (missing.length === 1) throw missingBlob(missing[0]!);
  if (missing.length > 1) {
    throw new VriftError('ERR_VRIFT_CAS_MISSING', `${missing.length} blobs of the tree are not in the local store (first: ${missing[0]})`, {
      hint: 'pull the tree from a shared tier (`vrift pull`) or ingest it again',
      exitCode: 1,
    });
  }
}

function linkOut(e: TreeEntry, root: string, res: MaterializeResult): void {
  const dst = join(root, e.path);
  try {
    symlinkSync(e.target!, dst);
    res.symlinks++;
  } catch (err) {
    throw fsError(err, dst, 'materializing');
  }
}

/** Sets each file's recorded time (the times list has one per file entry, in tree order). */
function applyMtimes(root: string, entries: TreeEntry[], mtimes: NonNullable<MaterializeOptions['mtimes']>): MtimeMode {
  const paths: string[] = [];
  for (const e of entries) if (e.kind === 'file') paths.push(join(root, e.path));
  if (paths.length !== mtimes.times.length) throw new Error(`materialize: ${mtimes.times.length} times for ${paths.length} files`); // planTimes checked the count
  const { sec, nsec } = planMtimes(mtimes.times, mtimes.mode, BigInt(Date.now()) * 1_000_000n);
  const failures = loadNative().fastFs.setMtimes(paths, sec, nsec);
  if (failures.length > 0) {
    const p = paths[failures[0]!]!;
    throw fsError(errnoError(failures[1]!, 'utimensat', p), p, 'setting its modification time');
  }
  return mtimes.mode;
}

function copyOut(src: string, dst: string, mode: number): void {
  // FICLONE shares extents on filesystems that can; a plain copy elsewhere.
  copyFileSync(src, dst, C.COPYFILE_FICLONE);
  chmodSync(dst, mode);
}
