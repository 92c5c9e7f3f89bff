// `vrift materialize <tree|ref> <dir>`: a tree as real files, made of hard
// links into the CAS (as pnpm does): no bytes are copied. Hard links share
// their inode's mode, so files come out read-only (0444, or 0555 via the
// executable twin). Where links cannot be made (another filesystem, an
// inode at its link limit) files are copied, with the tree's exact modes.
import {
  chmodSync,
  copyFileSync,
  constants as C,
  linkSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import type { Digest } from '../lib/digest.js';
import { errnoOf, fsError, VriftError } from '../lib/errors.js';
import { missingBlob } from './cas.js';
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

/** Checks, before touching the target, that every blob the tree needs is here and intact. */
export function checkTreeBlobs(store: Store, entries: TreeEntry[]): void {
  const missing: Digest[] = [];
  const seen = new Set<Digest>();
  for (const e of entries) {
    if (e.kind !== 'file' || seen.has(e.digest!)) continue;
    seen.add(e.digest!);
    const st = store.cas.statOf(e.digest!);
    if (!st) {
      missing.push(e.digest!);
      continue;
    }
    store.checkBlob(e.digest!, e.size, st);
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
  let linking = !opts.copy;
  let lastReport = 0;

  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    const dst = join(root, e.path);
    try {
      if (e.kind === 'dir') {
        mkdirSync(dst, { mode: e.mode });
        res.dirs++;
      } else if (e.kind === 'symlink') {
        symlinkSync(e.target!, dst);
        res.symlinks++;
      } else {
        const exec = e.mode === 0o755;
        if (exec) store.ensureExecTwin(e.digest!);
        const src = store.cas.pathOf(e.digest!, exec);
        if (linking) {
          try {
            linkSync(src, dst);
            res.linked++;
          } catch (le) {
            const code = errnoOf(le);
            if (code === 'EXDEV' || code === 'EPERM') {
              // Not the store's filesystem (or links forbidden there): copy from now on.
              linking = false;
              opts.notice?.(`${root} is on another filesystem than the store (${store.layout.root}): copying files instead of hard-linking`);
            } else if (code !== 'EMLINK') throw le;
            copyOut(src, dst, e.mode);
            res.copied++;
          }
        } else {
          copyOut(src, dst, e.mode);
          res.copied++;
        }
        res.files++;
      }
    } catch (err) {
      if (err instanceof VriftError) throw err;
      throw fsError(err, dst, 'materializing');
    }
    if (opts.onProgress && (i === entries.length - 1 || (i & 1023) === 0) && Date.now() - lastReport > 100) {
      lastReport = Date.now();
      opts.onProgress(i + 1, entries.length);
    }
  }
  opts.onProgress?.(entries.length, entries.length);
  store.meta.touchBlobs(entries.filter((e) => e.kind === 'file').map((e) => e.digest!));
  return res;
}

function copyOut(src: string, dst: string, mode: number): void {
  // FICLONE shares extents on filesystems that can; a plain copy elsewhere.
  copyFileSync(src, dst, C.COPYFILE_FICLONE);
  chmodSync(dst, mode);
}
