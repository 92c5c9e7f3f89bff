// VDir: the per-mount shared-memory path index the shim answers stat(),
// open() and readdir() from. The layout is specified in shim/vrift_vdir.h;
// this is the daemon's typed handle on the native writer (native/).
//
// A batch crosses into C++ as ONE Buffer (addon.cc documents the record
// layout): a 100 000-entry mount is one call and one seqlock window.
import { constants } from 'node:os';
import { VriftError, type ErrorCode } from '../../lib/errors.js';
import { loadNative, type NativeVDirStats, type NativeVDirWriter } from '../../lib/native.js';

export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;
/** Entry flag: the file's blob is not in the local CAS yet (lazy start). */
export const VDIR_F_REMOTE = 0x1;
/** Entry flag: the file lives in the mount's upper layer, upper/<vdir name>/<digest field as hex> (a real file). */
export const VDIR_F_UPPER = 0x2;
/** Entry flag: a directory made in the mount, whose inode number derives from its claim directory's (`claimIno`; vrift_vdir.h). */
export const VDIR_F_CLAIM = 0x4;

export interface VDirEntryInput {
  /** Relative to the mount root, '/'-separated; "" is the root directory. */
  path: string;
  /** Full st_mode: S_IFREG, S_IFDIR or S_IFLNK | permission bits. */
  mode: number;
  /** st_size; ignored for symlinks (their size is the target's byte length). */
  size: number;
  mtimeSec: number;
  /** 64 hex: BLAKE3 of the content (files; required). */
  digest?: string;
  /** Files: the blob file's inode change time (ns; its .x twin's for an executable) when last known good; the shim compares it on open (vrift_vdir.h). Absent = unknown (the first open asks the daemon). */
  ctimeNs?: bigint;
  /** Link target (symlinks; required). */
  target?: string;
  /** VDIR_F_* bits (16). */
  flags?: number;
  /** Directories with VDIR_F_CLAIM: st_ino of the claim directory in the upper layer. */
  claimIno?: number;
}

export interface VDirEntry extends VDirEntryInput {
  flags: number;
  /** Entry slot; the shim reports inode index + 2. Stable while the entry exists. */
  index: number;
  /** Directories: number of children. */
  nchildren?: number;
  /** The entry's 16-bit checksum as stored. */
  check: number;
}

export interface VDirCreateOptions {
  /** Directory of blobs: <casRoot>/<2 hex>/<digest>[.x]. Absolute. */
  casRoot: string;
  /** Absolute path where the tree is mounted. */
  mountRoot: string;
  /** Entries to make room for, besides the root (default 1024). It grows by itself past that. */
  capacity?: number;
  /** String-pool bytes to make room for (paths + NULs + link targets; default capacity * 64). */
  poolBytes?: number;
}

/** What a VDir writer reports (see NativeVDirStats). */
export type VDirStats = NativeVDirStats;

const REC = 64; // upsert record header, see native/src/addon.cc
const PATH_MAX = 4095;
const E = constants.errno;

// errno from the addon -> [code, hint]
const ERRORS = new Map<number, [ErrorCode, string | undefined]>([
  [E.EINVAL, ['ERR_VRIFT_VDIR_INVALID', 'paths are relative, "/"-separated, without "." or ".." parts; files need a digest, symlinks a target']],
  [E.ENOENT, ['ERR_VRIFT_VDIR_NOT_FOUND', 'add the parent directory first (or earlier in the same batch); removals must name existing paths']],
  [E.ENOTDIR, ['ERR_VRIFT_VDIR_NOT_DIR', 'only directories can have children']],
  [E.ENOTEMPTY, ['ERR_VRIFT_VDIR_NOT_EMPTY', 'remove the children first, or in the same batch']],
  [E.ENOSPC, ['ERR_VRIFT_VDIR_FULL', 'a VDir holds at most 16 777 214 entries and 4 GiB of paths: split the mount, or free space in /dev/shm']],
  [E.EBADF, ['ERR_VRIFT_VDIR_CLOSED', 'create a new VDir']],
  [E.EACCES, ['ERR_VRIFT_VDIR_ACCESS', 'check the owner and mode of /dev/shm and of the object']],
  [E.EPERM, ['ERR_VRIFT_VDIR_ACCESS', 'check the owner and mode of /dev/shm and of the object']],
  [E.EEXIST, ['ERR_VRIFT_VDIR_EXISTS', 'another writer is creating the same VDir; use a distinct name']],
  [E.ENOMEM, ['ERR_VRIFT_VDIR_NO_MEMORY', 'free memory or space in /dev/shm']],
]);

/** Turns a native error (numeric errno `code`) into a VriftError. */
function rethrow(e: unknown): never {
  const errno = (e as { code?: unknown } | null)?.code;
  if (typeof errno !== 'number') throw e;
  const [code, hint] = ERRORS.get(errno) ?? ['ERR_VRIFT_VDIR_IO', undefined];
  throw new VriftError(code, `vdir: ${(e as Error).message}`, { hint, cause: e });
}

function invalid(what: string): never {
  throw new VriftError('ERR_VRIFT_VDIR_INVALID', `vdir: ${what}`, { hint: ERRORS.get(E.EINVAL)![1] });
}

function checkInt(v: number, max: number, what: string, path: string): number {
  if (!Number.isInteger(v) || v < 0 || v > max) invalid(`${JSON.stringify(path)}: ${what} ${v} is not an integer in [0, ${max}]`);
  return v;
}

// Hex digit values by char code (-1 = not hex), for decoding digests in JS.
const HEX = new Int8Array(128).fill(-1);
for (let i = 0; i < 16; i++) {
  HEX['0123456789abcdef'.charCodeAt(i)] = i;
  HEX['0123456789ABCDEF'.charCodeAt(i)] = i;
}

/** Writes `s` at `off` as UTF-8; ASCII in a JS loop (no native call per string). Returns bytes written. */
function writeStr(buf: Buffer, s: string, off: number): number {
  const n = s.length;
  for (let k = 0; k < n; k++) {
    const c = s.charCodeAt(k);
    if (c >= 0x80) return buf.write(s, off, 'utf8');
    buf[off + k] = c;
  }
  return n;
}

/** Decodes 64 hex chars into buf[off, off+32); false if `hex` is not that. */
function writeDigest(buf: Buffer, hex: string, off: number): boolean {
  if (hex.length !== 64) return false;
  for (let k = 0; k < 32; k++) {
    const a = hex.charCodeAt(2 * k), b = hex.charCodeAt(2 * k + 1);
    const hi = a < 128 ? HEX[a]! : -1, lo = b < 128 ? HEX[b]! : -1;
    if ((hi | lo) < 0) return false;
    buf[off + k] = (hi << 4) | lo;
  }
  return true;
}

/**
 * Packs upserts into the addon's record format (one allocation). Strings
 * and digests are copied by JS loops: a native call per string costs more
 * than the copy (measured: Buffer.write per string took twice as long for
 * a 100 000-entry mount, ~80 ms vs ~40 ms).
 */
export function encodeUpserts(entries: readonly VDirEntryInput[]): Buffer {
  let bound = 0;
  for (const e of entries) bound += REC + 3 * (e.path.length + (e.target?.length ?? 0));
  const buf = Buffer.allocUnsafe(bound);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = 0;
  for (const e of entries) {
    const p = off + REC;
    const pathLen = writeStr(buf, e.path, p);
    if (pathLen > PATH_MAX) invalid(`path ${JSON.stringify(e.path.slice(0, 80))}... is longer than ${PATH_MAX} bytes`);
    const targetLen = e.target === undefined ? 0 : writeStr(buf, e.target, p + pathLen);
    if (targetLen > PATH_MAX) invalid(`${JSON.stringify(e.path)}: symlink target longer than ${PATH_MAX} bytes`);
    const size = checkInt(e.size, 2 ** 48 - 1, 'size', e.path);
    dv.setUint32(off, checkInt(e.mode, 0xffff, 'mode', e.path), true);
    dv.setUint32(off + 4, checkInt(e.mtimeSec, 0xffffffff, 'mtimeSec', e.path), true);
    dv.setUint32(off + 8, size % 2 ** 32, true);
    dv.setUint16(off + 12, Math.floor(size / 2 ** 32), true);
    dv.setUint16(off + 14, checkInt(e.flags ?? 0, 0xffff, 'flags', e.path), true);
    dv.setUint16(off + 16, pathLen, true);
    dv.setUint16(off + 18, targetLen, true);
    dv.setUint32(off + 20, 0, true);
    dv.setBigUint64(off + 56, e.ctimeNs ?? 0n, true);
    if (e.claimIno !== undefined) {
      for (let k = off + 24; k < off + 56; k++) buf[k] = 0; // (Buffer.fill of a range cost ~1 µs per directory)
      dv.setBigUint64(off + 24, BigInt(checkInt(e.claimIno, Number.MAX_SAFE_INTEGER, 'claimIno', e.path)), true);
      buf[off + 20] = 1;
    } else if (e.digest !== undefined) {
      if (!writeDigest(buf, e.digest, off + 24)) {
        invalid(`${JSON.stringify(e.path)}: digest ${JSON.stringify(e.digest)} is not 64 hex characters`);
      }
      buf[off + 20] = 1;
    }
    off = p + pathLen + targetLen;
  }
  return buf.subarray(0, off);
}

function encodeRemovals(paths: readonly string[]): Buffer {
  let bound = 0;
  for (const p of paths) bound += 2 + 3 * p.length;
  const buf = Buffer.allocUnsafe(bound);
  let off = 0;
  for (const p of paths) {
    const len = buf.write(p, off + 2, 'utf8');
    if (len > PATH_MAX) invalid(`path ${JSON.stringify(p.slice(0, 80))}... is longer than ${PATH_MAX} bytes`);
    buf.writeUInt16LE(len, off);
    off += 2 + len;
  }
  return buf.subarray(0, off);
}

const EMPTY = Buffer.alloc(0);

export class VDir {
  private constructor(
    private readonly native: NativeVDirWriter,
    readonly name: string,
  ) {}

  /**
   * Creates the VDir `name` (published at /dev/shm/vrift.<uid>.<name>, mode
   * 0600) holding only the root directory. A stale object of the same name
   * is replaced, and its readers are pointed at the new one.
   */
  static create(name: string, opts: VDirCreateOptions): VDir {
    const capacity = opts.capacity ?? 1024;
    if (!Number.isInteger(capacity) || capacity < 0) invalid(`capacity ${capacity} is not a non-negative integer`);
    const poolBytes = opts.poolBytes ?? 0;
    if (!Number.isInteger(poolBytes) || poolBytes < 0) invalid(`poolBytes ${poolBytes} is not a non-negative integer`);
    const { VDirWriter } = loadNative();
    try {
      return new VDir(new VDirWriter(name, opts.casRoot, opts.mountRoot, capacity, poolBytes), name);
    } catch (e) {
      rethrow(e);
    }
  }

  /**
   * Publishes a copy of another VDir's `image()` as `name` at `mountRoot`
   * (same CAS): the same entries, without decoding or inserting any of them
   * (a memory copy, then every entry's mtime set to `mtimeSec` when given).
   * A stale object of the same name is replaced, as by create().
   */
  static fromImage(name: string, opts: { casRoot: string; mountRoot: string; image: Buffer; mtimeSec?: number }): VDir {
    const mtime = opts.mtimeSec ?? -1;
    if (!Number.isInteger(mtime) || mtime < -1 || mtime > 0xffffffff) invalid(`mtimeSec ${mtime} is not an integer in [0, ${0xffffffff}]`);
    const { VDirWriter } = loadNative();
    try {
      return new VDir(new VDirWriter(name, opts.casRoot, opts.mountRoot, opts.image, mtime), name);
    } catch (e) {
      rethrow(e);
    }
  }

  /**
   * Creates the VDir `name` holding every entry of an encoded tree (what
   * decodeTree reads), parsed natively: a large tree's mount without a JS
   * record per entry. `ctimes`: per entry, its blob's ctime when known good
   * (files; 0 = unknown), as VDirEntryInput.ctimeNs.
   */
  static fromTree(name: string, opts: { casRoot: string; mountRoot: string; tree: Buffer; mtimeSec: number; ctimes?: BigUint64Array }): VDir {
    checkInt(opts.mtimeSec, 0xffffffff, 'mtimeSec', name);
    // (sized by its one batch: a VDir grows to exactly what a batch larger than twice its size needs)
    const vdir = VDir.create(name, { casRoot: opts.casRoot, mountRoot: opts.mountRoot, capacity: 0, poolBytes: 0 });
    try {
      vdir.native.applyTree(opts.tree, opts.mtimeSec, opts.ctimes);
    } catch (e) {
      vdir.close();
      rethrow(e);
    }
    return vdir;
  }

  /**
   * Creates the VDir `name` holding every entry of a tree's names blob
   * (names.ts), parsed natively as fromTree parses a tree: every file names
   * the digest 0…0 until a program opens it (a partial mount).
   */
  static fromNames(name: string, opts: { casRoot: string; mountRoot: string; names: Buffer; mtimeSec: number }): VDir {
    checkInt(opts.mtimeSec, 0xffffffff, 'mtimeSec', name);
    const vdir = VDir.create(name, { casRoot: opts.casRoot, mountRoot: opts.mountRoot, capacity: 0, poolBytes: 0 });
    try {
      vdir.native.applyTree(opts.names, opts.mtimeSec, undefined, true);
    } catch (e) {
      vdir.close();
      rethrow(e);
    }
    return vdir;
  }

  /**
   * fromNames built on a worker thread: a lazy MOUNT of 100 000 entries
   * leaves the daemon's thread (~40 ms) to the start-up set's reads.
   */
  static async fromNamesAsync(name: string, opts: { casRoot: string; mountRoot: string; names: Buffer; mtimeSec: number }): Promise<VDir> {
    checkInt(opts.mtimeSec, 0xffffffff, 'mtimeSec', name);
    const vdir = VDir.create(name, { casRoot: opts.casRoot, mountRoot: opts.mountRoot, capacity: 0, poolBytes: 0 });
    try {
      await vdir.native.applyNamesAsync(opts.names, opts.mtimeSec);
    } catch (e) {
      vdir.close();
      rethrow(e);
    }
    return vdir;
  }

  /** A copy of the whole object as it is now (between batches), for fromImage(). */
  image(): Buffer {
    try {
      return this.native.image();
    } catch (e) {
      rethrow(e);
    }
  }

  /** The capacity and pool size that hold exactly `entries` (plus `headroom`, e.g. 0.1 = 10 %). */
  static sizeFor(entries: readonly VDirEntryInput[], headroom = 0): { capacity: number; poolBytes: number } {
    let pool = 0;
    for (const e of entries) pool += Buffer.byteLength(e.path) + 1 + (e.target === undefined ? 0 : Buffer.byteLength(e.target));
    return { capacity: Math.ceil(entries.length * (1 + headroom)), poolBytes: Math.ceil(pool * (1 + headroom)) };
  }

  /**
   * Applies one batch as one seqlock window: removals first (deepest paths
   * first; a directory only together with, or after, all its children),
   * then upserts in order (a parent before its children). The batch is
   * validated whole before anything changes: on error the VDir is untouched.
   */
  apply(upserts: readonly VDirEntryInput[], removals: readonly string[] = []): void {
    const ub = upserts.length === 0 ? EMPTY : encodeUpserts(upserts);
    const rb = removals.length === 0 ? EMPTY : encodeRemovals(removals);
    try {
      this.native.apply(ub, upserts.length, rb, removals.length);
    } catch (e) {
      rethrow(e);
    }
  }

  /**
   * apply() of the entries that are new: one whose path is taken (in the
   * VDir, or by an earlier entry of the batch) or whose parent is not a
   * directory is left out. Returns the indices of those left out, in order.
   * A burst of creates is one call, not a probe() per entry.
   */
  applyNew(upserts: readonly VDirEntryInput[]): Uint32Array {
    if (upserts.length === 0) return new Uint32Array(0);
    const ub = encodeUpserts(upserts);
    try {
      return this.native.applyNew(ub, upserts.length);
    } catch (e) {
      rethrow(e);
    }
  }

  private published = 0;

  /** Upper-layer creates published so far (header.upper_published, vrift_vdir.h section 6). */
  get upperPublished(): number {
    return this.published;
  }

  /** `awake`: the daemon is working through the journal and looks again soon (VRIFT_VDIR_UPPER_AWAKE). */
  setUpperPublished(n: number, awake = false): void {
    this.published = n;
    try {
      this.native.setUpperPublished(n, awake);
    } catch (e) {
      rethrow(e);
    }
  }

  /**
   * Whether `path` has an entry, and its type (mode & S_IFMT) and flags:
   * what the daemon asks once or twice per change (a `tar -x` into a
   * mount makes thousands), without building the whole entry.
   */
  probe(path: string): { type: number; flags: number } | undefined {
    let n: number;
    try {
      n = this.native.probe(path);
    } catch (e) {
      rethrow(e);
    }
    return n < 0 ? undefined : { type: n % 65536, flags: Math.floor(n / 65536) };
  }

  /** The entry at `path`, as the writer holds it. */
  lookup(path: string): VDirEntry | undefined {
    let n;
    try {
      n = this.native.lookup(path);
    } catch (e) {
      rethrow(e);
    }
    if (n === undefined) return undefined;
    const out: VDirEntry = { path, mode: n.mode, size: n.size, mtimeSec: n.mtimeSec, flags: n.flags, index: n.index, check: n.check };
    if (n.digest !== undefined) out.digest = n.digest;
    if (n.ctimeNs !== undefined) out.ctimeNs = n.ctimeNs;
    if (n.target !== undefined) out.target = n.target;
    if (n.nchildren !== undefined) out.nchildren = n.nchildren;
    if (n.claimIno !== undefined) out.claimIno = n.claimIno;
    return out;
  }

  /** Names of the children of directory `dirPath`, in list order (insertion order). */
  list(dirPath: string): string[] {
    try {
      return this.native.list(dirPath);
    } catch (e) {
      rethrow(e);
    }
  }

  stats(): VDirStats {
    try {
      return this.native.stats();
    } catch (e) {
      rethrow(e);
    }
  }

  /** Hash-table shape, for tests: probe lengths and how many lookups meet a same-tag stranger first. */
  probeStats(): { maxProbe: number; displaced: number; tagCollisions: number } {
    try {
      return this.native.probeStats();
    } catch (e) {
      rethrow(e);
    }
  }

  /**
   * Retires the VDir (readers get ESTALE and fall back) and by default
   * removes its name from /dev/shm; `unlink: false` leaves it for inspection.
   * Idempotent.
   */
  close(opts: { unlink?: boolean } = {}): void {
    this.native.close(opts.unlink ?? true);
  }
}
