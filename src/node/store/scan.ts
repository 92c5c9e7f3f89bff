// Walking a directory for ingest: every file, dir and symlink below the
// root, with the stat a file had when it was listed. Symlinks are recorded,
// never followed, so a symlink loop inside the tree is just two symlinks.
// The walk itself is native (fastFs.scanTree): one call, compact arrays,
// no per-entry JavaScript objects from fs.
import { isUtf8 } from 'node:buffer';
import { statSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { StreamHasher, type Digest } from '../../lib/digest.js';
import { errnoError, fsError, VriftError } from '../../lib/errors.js';
import { loadNative } from '../../lib/native.js';
import type { EntryKind } from './tree.js';

/** The parts of a stat that ingest uses (same values as fs.Stats). */
export interface StatLike {
  mode: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  dev: number;
  ino: number;
}

export interface ScanItem {
  /** Path relative to the root, '/'-separated. */
  path: string;
  abs: string;
  kind: EntryKind;
  /** lstat of files (for size, exec bit and the re-ingest cache). */
  stat?: StatLike;
  /** Files: the nanoseconds part of the mtime (stat.mtimeMs rounds it), for the tree's times. */
  mtimeNsec?: number;
  /** Symlink target. */
  target?: string;
}

export interface ScanResult {
  /** Decoded on first use: an unchanged directory (same fingerprint) never needs them. */
  readonly items: ScanItem[];
  files: number;
  bytes: number;
  /** Things that are not files, dirs or symlinks (fifos, sockets, devices), skipped. */
  skipped: { path: string; what: string }[];
  /**
   * Digest of everything the walk saw (paths, kinds, modes, sizes, times,
   * inodes, link targets): equal fingerprints mean an unchanged directory.
   */
  fingerprint: Digest;
  /** Latest mtime or ctime of any entry (ms): a fingerprint this fresh is not trusted ("racy"). */
  newestChangeMs: number;
}

const SPECIAL: Record<number, string> = { 4: 'fifo', 5: 'socket', 6: 'block device', 7: 'character device' };
const FIELDS = 8;

/** Checks that `root` is a directory we can walk; one-line errors otherwise. */
export function assertWalkableDir(root: string): void {
  let st: Stats;
  try {
    st = statSync(root);
  } catch (e) {
    throw fsError(e, root, 'reading');
  }
  if (!st.isDirectory()) {
    throw new VriftError('ERR_VRIFT_INGEST_NOT_DIR', `${root}: not a directory`, { hint: 'ingest takes a directory' });
  }
}

/** Splits a buffer of NUL-terminated strings, insisting each is UTF-8 (one decode for all: 100 000 names cost milliseconds). */
function splitUtf8(buf: Buffer, what: (raw: Buffer) => VriftError): string[] {
  if (!isUtf8(buf)) {
    // Find the offender, to name it.
    let start = 0;
    for (let i = buf.indexOf(0, start); i >= 0; i = buf.indexOf(0, start)) {
      const raw = buf.subarray(start, i);
      if (!isUtf8(raw)) throw what(raw);
      start = i + 1;
    }
  }
  if (buf.byteLength === 0) return [];
  const out = buf.toString('utf8').split('\0');
  out.pop(); // after the last NUL
  return out;
}

export function scanDir(root: string): ScanResult {
  assertWalkableDir(root);
  const r = loadNative().fastFs.scanTree(root);
  if (r.error) throw fsError(errnoError(r.error.errno, 'scandir', r.error.path), r.error.path, 'listing');
  const s = r.stats;
  const fp = new StreamHasher();
  fp.update(r.paths);
  fp.update(new Uint8Array(s.buffer, s.byteOffset, s.byteLength));
  fp.update(r.targets);
  // Counts from the stats alone; names and objects only when asked for.
  const n = s.length / FIELDS;
  let files = 0;
  let bytes = 0;
  let newestChangeMs = 0;
  let special = false;
  for (let i = 0; i < n; i++) {
    const o = i * FIELDS;
    newestChangeMs = Math.max(newestChangeMs, s[o + 3]!, s[o + 4]!);
    if (s[o] === 1) {
      files++;
      bytes += s[o + 2]!;
    } else if (s[o]! > 3) special = true;
  }
  let decoded: { items: ScanItem[]; skipped: { path: string; what: string }[] } | undefined;
  const decode = () => (decoded ??= decodeItems(root, r.paths, r.stats, r.targets));
  return {
    files,
    bytes,
    fingerprint: fp.digest(),
    newestChangeMs,
    get items() {
      return decode().items;
    },
    // Special files are rare: only then are the names decoded for them.
    skipped: special ? decode().skipped : [],
  };
}

function decodeItems(root: string, rawPaths: Buffer, s: Float64Array, rawTargets: Buffer): { items: ScanItem[]; skipped: { path: string; what: string }[] } {
  const paths = splitUtf8(rawPaths, (raw) => {
    return new VriftError('ERR_VRIFT_INGEST_PATH', `${JSON.stringify(join(root, raw.toString('latin1')))}: file name is not valid UTF-8`, {
      hint: 'rename it; trees store UTF-8 paths so every machine agrees on them',
    });
  });
  const targets = splitUtf8(rawTargets, () => {
    return new VriftError('ERR_VRIFT_INGEST_PATH', `${root}: a symlink target is not valid UTF-8`, { hint: 'point the symlink at a UTF-8 path' });
  });
  const items: ScanItem[] = [];
  const skipped: { path: string; what: string }[] = [];
  let t = 0;
  for (let i = 0; i < paths.length; i++) {
    const kind = s[i * FIELDS]!;
    const path = paths[i]!;
    const abs = `${root}/${path}`;
    if (kind === 2) items.push({ path, abs, kind: 'dir' });
    else if (kind === 3) items.push({ path, abs, kind: 'symlink', target: targets[t++]! });
    else if (kind === 1) {
      const o = i * FIELDS;
      items.push({ path, abs, kind: 'file', stat: { mode: s[o + 1]!, size: s[o + 2]!, mtimeMs: s[o + 3]!, ctimeMs: s[o + 4]!, dev: s[o + 5]!, ino: s[o + 6]! }, mtimeNsec: s[o + 7]! });
    } else skipped.push({ path, what: SPECIAL[kind] ?? 'special file' });
  }
  return { items, skipped };
}
