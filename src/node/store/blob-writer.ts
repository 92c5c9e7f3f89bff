// Writing one blob into the CAS, atomically.
//
// Bytes go to a fresh temp file in $VRIFT_HOME/tmp (same filesystem as
// cas/), hashed as they are written, so the name a blob gets is the digest
// of exactly the bytes on disk. Only after the last byte is written is the
// temp file renamed to cas/ab/<digest>: a crash, a full disk or a digest
// mismatch leaves at most a temp file, never a half blob under a real name.
import { closeSync, ftruncateSync, futimesSync, openSync, renameSync, unlinkSync, writeSync, constants as C } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { LAYOUT } from '../../gen/layout.js';
import { StreamHasher, type Digest } from '../../lib/digest.js';
import { VriftError, fsError } from '../../lib/errors.js';
import type { Cas } from './cas.js';

export interface WrittenBlob {
  digest: Digest;
  size: number;
  /** False when an identical blob was already stored (this write was a duplicate). */
  created: boolean;
}

/**
 * Every blob file has this mtime (seconds since the epoch), as in the Nix
 * store. A write into a blob moves its mtime, so one lstat() tells an
 * untouched blob from one that must be re-hashed before it is handed out.
 */
export const BLOB_MTIME_SEC: number = LAYOUT.blob.mtimeSec;
export const BLOB_MTIME_MS = BLOB_MTIME_SEC * 1000;

let tmpCounter = 0;
// Random per process (not per file: randomness costs a syscall): pids are
// reused across containers sharing one store, so the pid alone is not enough.
const tmpPrefix = `${process.pid}.${randomBytes(6).toString('hex')}`;

/** The name prefix of this process's temp files (also used by native batch writers). */
export function tempPrefix(): string {
  return tmpPrefix;
}

/** A unique temp path: pid + per-process randomness + counter, so concurrent writers never collide. */
export function tempPath(tmpDir: string): string {
  return join(tmpDir, `${tmpPrefix}.${++tmpCounter}.tmp`);
}

function openTemp(cas: Cas): { fd: number; tmp: string } {
  const tmp = tempPath(cas.layout.tmp);
  try {
    // O_EXCL: the temp name is ours alone. Mode 0444: the blob is
    // read-only from birth; our open fd can still write it.
    return { fd: openSync(tmp, C.O_WRONLY | C.O_CREAT | C.O_EXCL, LAYOUT.blob.mode), tmp };
  } catch (e) {
    throw fsError(e, tmp, 'creating a temp file in the store');
  }
}

function writeAll(fd: number, chunk: Uint8Array): void {
  let off = 0;
  while (off < chunk.byteLength) off += writeSync(fd, chunk, off, chunk.byteLength - off);
}

function discard(tmp: string): void {
  try {
    unlinkSync(tmp);
  } catch {
    /* gone already, or the disk is in trouble; `vrift gc` sweeps tmp/ */
  }
}

/** Closes a fully written temp file and renames it to its digest's name. */
function publish(cas: Cas, fd: number, tmp: string, digest: Digest, size: number): WrittenBlob {
  try {
    futimesSync(fd, BLOB_MTIME_SEC, BLOB_MTIME_SEC);
    closeSync(fd);
  } catch (e) {
    try {
      closeSync(fd);
    } catch {
      /* already closed */
    }
    discard(tmp);
    throw fsError(e, tmp, 'finishing a blob');
  }
  const existing = cas.statOf(digest);
  if (existing) {
    // One copy per content: keep the stored blob, drop ours.
    discard(tmp);
    return { digest, size, created: false };
  }
  const final = cas.pathOf(digest);
  try {
    cas.ensureShard(digest);
    // rename(2) is atomic: readers see no blob or the whole blob. If a
    // concurrent writer got there first it replaces identical bytes.
    renameSync(tmp, final);
  } catch (e) {
    discard(tmp);
    throw fsError(e, final, 'storing a blob');
  }
  return { digest, size, created: true };
}

/** Stores bytes whose digest the caller computed from these very bytes. */
export function writeHashedBuffer(cas: Cas, buf: Uint8Array, digest: Digest): WrittenBlob {
  const { fd, tmp } = openTemp(cas);
  try {
    writeAll(fd, buf);
  } catch (e) {
    try {
      closeSync(fd);
    } catch {
      /* failing already */
    }
    discard(tmp);
    throw fsError(e, cas.layout.root, 'writing a blob');
  }
  return publish(cas, fd, tmp, digest, buf.byteLength);
}

/**
 * A blob whose ranges arrive in any order (a swarm's pieces of a large
 * blob, src/node/swarm/): written in place into a sparse temp file of the
 * blob's size, named at commit. Unhashed here: the caller verifies each
 * range against the blob's digest through its Bao tree before writing it,
 * and commits only once every range was verified.
 */
export class RangeWriter {
  private fd: number | undefined;
  readonly tmp: string;

  constructor(
    private readonly cas: Cas,
    readonly size: number,
  ) {
    const t = openTemp(cas);
    this.fd = t.fd;
    this.tmp = t.tmp;
    try {
      ftruncateSync(t.fd, size);
    } catch (e) {
      this.abort();
      throw fsError(e, cas.layout.root, 'sizing a blob');
    }
  }

  writeAt(chunk: Uint8Array, offset: number): void {
    if (this.fd === undefined) throw new Error('RangeWriter: write after commit/abort');
    let off = 0;
    try {
      while (off < chunk.byteLength) off += writeSync(this.fd, chunk, off, chunk.byteLength - off, offset + off);
    } catch (e) {
      throw fsError(e, this.cas.layout.root, 'writing a blob');
    }
  }

  /** Names the blob `digest` (every range verified by the caller) and moves it into place. */
  commit(digest: Digest): WrittenBlob {
    const fd = this.fd;
    if (fd === undefined) throw new Error('RangeWriter: commit twice');
    this.fd = undefined;
    return publish(this.cas, fd, this.tmp, digest, this.size);
  }

  abort(): void {
    if (this.fd === undefined) return;
    try {
      closeSync(this.fd);
    } catch {
      /* closing anyway */
    }
    this.fd = undefined;
    discard(this.tmp);
  }
}

/**
 * A blob whose bytes arrive in pieces: hashed as written, named at commit.
 * With `hash: false` the caller verifies them itself against the name it
 * commits with (a Bao stream checks every group against the digest as it
 * arrives: hashing them a second time would only cost).
 */
export class BlobWriter {
  private readonly hasher: StreamHasher | undefined;
  private written = 0;
  private fd: number | undefined;
  readonly tmp: string;

  constructor(
    private readonly cas: Cas,
    opts: { hash?: boolean } = {},
  ) {
    this.hasher = opts.hash === false ? undefined : new StreamHasher();
    const t = openTemp(cas);
    this.fd = t.fd;
    this.tmp = t.tmp;
  }

  get bytes(): number {
    return this.written;
  }

  /**
   * Gives the temp file its final length at once (sparse): a blob read while
   * it streams in shows its whole size; the writes then fill it from the start.
   */
  reserve(size: number): void {
    if (this.fd === undefined) throw new Error('BlobWriter: reserve after commit/abort');
    try {
      ftruncateSync(this.fd, size);
    } catch (e) {
      this.abort();
      throw fsError(e, this.cas.layout.root, 'sizing a blob');
    }
  }

  write(chunk: Uint8Array): void {
    if (this.fd === undefined) throw new Error('BlobWriter: write after commit/abort');
    try {
      writeAll(this.fd, chunk);
    } catch (e) {
      this.abort();
      throw fsError(e, this.cas.layout.root, 'writing a blob');
    }
    this.hasher?.update(chunk);
    this.written += chunk.byteLength;
  }

  /**
   * Names the blob by its digest and moves it into place. With `expected`,
   * a blob whose bytes do not hash to that name is discarded and an error
   * thrown: nothing from outside is admitted unverified.
   */
  commit(expected?: Digest): WrittenBlob {
    if (this.fd === undefined) throw new Error('BlobWriter: commit after commit/abort');
    if (!this.hasher && expected === undefined) throw new Error('BlobWriter: an unhashed blob needs the name its bytes were verified against');
    const digest = this.hasher ? this.hasher.digest() : expected!;
    const size = this.written;
    if (expected !== undefined && expected !== digest) {
      this.abort();
      throw new VriftError(
        'ERR_VRIFT_CAS_DIGEST_MISMATCH',
        `content does not match its name: expected ${expected}, got ${digest} (${size} bytes)`,
        { hint: 'the source sent corrupt or wrong bytes; they were discarded' },
      );
    }
    const fd = this.fd;
    this.fd = undefined;
    return publish(this.cas, fd, this.tmp, digest, size);
  }

  abort(): void {
    if (this.fd !== undefined) {
      try {
        closeSync(this.fd);
      } catch {
        /* already failing; the temp file is removed below */
      }
      this.fd = undefined;
    }
    discard(this.tmp);
  }
}
