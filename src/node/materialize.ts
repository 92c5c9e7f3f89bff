// `vrift materialize <tree|ref> <dir>`: a tree as real files, made of hard
// links into the CAS (as pnpm does): no bytes are copied. Hard links share
// their inode's mode, so files come out read-only (0444, or 0555 via the
// executable twin). Where links cannot be made (another filesystem, an
// inode at its link limit) files are copied, with the tree's exact modes.
import { chmodSync, copyFileSync, constants as C, lstatSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import type { Digest } from '../lib/digest.js';
import { errnoError, errnoName, errnoOf, fsError, VriftError } from '../lib/errors.js';
import { missingBlob } from './cas.js';
import { loadNative } from './native.js';
import type { Store } from './store.js';
import type { TreeEntry } from './tree.js';

export interface MaterializeOptions {
  /** Replace whatever the target directory holds. */
  force?: boolean;
  /** Copy files instead of linking them (writable files with the tree's modes). */
  copy?: boolean;
  onProgress?: (done: number, total: number) => void;
  /** Called once if hard links are not possible and files are copied instead. */
  notice?: (message: string) => void;
}

export interface MaterializeResult {
  tree: Digest;
  dir: string;
  files: number;
  dirs: number;
  symlinks: number;
  linked: number;
  copied: number;
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

/** NUL-terminated strings in one buffer: how batches cross into the native helpers. */
function nulJoin(parts: string[]): Buffer {
  return Buffer.from(parts.length === 0 ? '' : `${parts.join('\0')}\0`, 'utf8');
}

/** Checks, before touching the target, that every blob the tree needs is here and intact. */
export function checkTreeBlobs(store: Store, entries: TreeEntry[]): void {
  const digests: Digest[] = [];
  const sizes: number[] = [];
  const seen = new Set<Digest>();
  for (const e of entries) {
    if (e.kind !== 'file' || seen.has(e.digest!)) continue;
    seen.add(e.digest!);
    digests.push(e.digest!);
    sizes.push(e.size);
  }
  // One lstat per blob, on native threads; the LMDB record says what it should be.
  const st = loadNative().fastFs.lstatMany(nulJoin(digests.map((d) => store.cas.pathOf(d))), THREADS);
  const missing: Digest[] = [];
  for (let i = 0; i < digests.length; i++) {
    const size = st[2 * i]!;
    const d = digests[i]!;
    if (size < 0) {
      missing.push(d);
      continue;
    }
    const rec = store.meta.getBlob(d);
    if (size !== sizes[i] || !rec || rec.mtimeMs !== st[2 * i + 1]) store.checkBlob(d, sizes[i]!); // re-hash; throws if corrupt
  }
  if (missing.length === 1) throw missingBlob(missing[0]!);
  if (missing.length > 1) {
    throw new VriftError('ERR_VRIFT_CAS_MISSING', `${missing.length} blobs of the tree are not in the local store (first: ${missing[0]})`, {
      hint: 'pull the tree from a shared tier (`vrift pull`) or ingest it again',
      exitCode: 1,
    });
  }
}

export function materialize(store: Store, treeish: string, dir: string, opts: MaterializeOptions = {}): MaterializeResult {
  const id = store.resolve(treeish);
  const { entries } = store.getTree(id);
  checkTreeBlobs(store, entries);
  const root = resolve(dir);
  prepareTarget(root, opts.force ?? false);
  const res: MaterializeResult = { tree: id, dir: root, files: 0, dirs: 0, symlinks: 0, linked: 0, copied: 0 };
  const fast = loadNative().fastFs;

  const dirs: string[] = [];
  const files: TreeEntry[] = [];
  const links: string[] = [];
  const symlinks: string[] = [];
  for (const e of entries) {
    if (e.kind === 'dir') dirs.push(e.path);
    else if (e.kind === 'symlink') symlinks.push(e.target!, e.path);
    else {
      const exec = e.mode === 0o755;
      if (exec) store.ensureExecTwin(e.digest!);
      files.push(e);
      links.push(store.cas.pathOf(e.digest!, exec), e.path);
    }
  }
  const total = entries.length;

  // 1. Directories, parents first (the native helper goes level by level).
  const dirFails = fast.mkdirs(root, nulJoin(dirs), 0o755, THREADS);
  if (dirFails.length > 0) throw fsError(errnoError(dirFails[1]!, 'mkdir', join(root, dirs[dirFails[0]!]!)), join(root, dirs[dirFails[0]!]!), 'materializing');
  res.dirs = dirs.length;
  opts.onProgress?.(dirs.length, total);

  // 2. Files: hard links into the CAS; copies where a link cannot be made.
  const copyIdx: number[] = [];
  if (opts.copy) files.forEach((_, i) => copyIdx.push(i));
  else {
    const fails = fast.links(root, nulJoin(links), THREADS);
    let noticed = false;
    for (let k = 0; k < fails.length; k += 2) {
      const i = fails[k]!;
      const errno = fails[k + 1]!;
      const code = errnoName(errno);
      if (code === 'EXDEV' || code === 'EPERM') {
        if (!noticed) opts.notice?.(`${root} is on another filesystem than the store (${store.layout.root}): copying files instead of hard-linking`);
        noticed = true;
      } else if (code !== 'EMLINK') {
        const dst = join(root, files[i]!.path);
        throw fsError(errnoError(errno, 'link', dst), dst, 'materializing');
      }
      copyIdx.push(i);
    }
  }
  for (const i of copyIdx) {
    const e = files[i]!;
    const dst = join(root, e.path);
    try {
      copyOut(links[2 * i]!, dst, e.mode);
    } catch (err) {
      throw fsError(err, dst, 'materializing');
    }
  }
  res.files = files.length;
  res.copied = copyIdx.length;
  res.linked = files.length - copyIdx.length;
  opts.onProgress?.(dirs.length + files.length, total);

  // 3. Symlinks.
  const symFails = fast.symlinks(root, nulJoin(symlinks), THREADS);
  if (symFails.length > 0) {
    const dst = join(root, symlinks[2 * symFails[0]! + 1]!);
    throw fsError(errnoError(symFails[1]!, 'symlink', dst), dst, 'materializing');
  }
  res.symlinks = symlinks.length / 2;
  opts.onProgress?.(total, total);
  store.meta.touchTree(id);
  return res;
}

function copyOut(src: string, dst: string, mode: number): void {
  // FICLONE shares extents on filesystems that can; a plain copy elsewhere.
  copyFileSync(src, dst, C.COPYFILE_FICLONE);
  chmodSync(dst, mode);
}
