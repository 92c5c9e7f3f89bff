// Writing one blob into the CAS, atomically.
//
// Bytes go to a fresh temp file in $VRIFT_HOME/tmp (same filesystem as
// cas/), hashed as they are written, so the name a blob gets is the digest
// of exactly the bytes on disk. Only after the last byte is written is the
// temp file renamed to cas/ab/<digest>: a crash, a full disk or a digest
// mismatch leaves at most a temp file, never a half blob under a real name.
import { closeSync, fstatSync, openSync, renameSync, unlinkSync, writeSync, constants as C } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { StreamHasher, type Digest } from '../lib/digest.js';
import { VriftError, fsError } from '../lib/errors.js';
import type { Cas } from './cas.js';

export interface WrittenBlob {
  digest: Digest;
  size: number;
  /** False when an identical blob was already stored (this write was a duplicate). */
  created: boolean;
  /** mtime of the stored file, recorded so later tampering can be noticed cheaply. */
  mtimeMs: number;
}

let tmpCounter = 0;
// Drawn once per process: random bytes per file cost ~10 µs each, which adds
// up when an archive admits tens of thousands of blobs. O_EXCL still guards.
const tmpNonce = randomBytes(4).toString('hex');

/** A unique temp path: pid + per-process randomness + counter, so concurrent writers never collide. */
export function tempPath(tmpDir: string): string {
  return join(tmpDir, `${process.pid}.${tmpNonce}.${++tmpCounter}.tmp`);
}

export class BlobWriter {
  private readonly hasher = new StreamHasher();
  private fd: number | undefined;
  readonly tmp: string;

  constructor(private readonly cas: Cas) {
    this.tmp = tempPath(cas.layout.tmp);
    try {
      // O_EXCL: the temp name is ours alone. Mode 0444: the blob is
      // read-only from birth; our open fd can still write it.
      this.fd = openSync(this.tmp, C.O_WRONLY | C.O_CREAT | C.O_EXCL, 0o444);
    } catch (e) {
      throw fsError(e, this.tmp, 'creating a temp file in the store');
    }
  }

  get bytes(): number {
    return this.hasher.bytes;
  }

  write(chunk: Uint8Array): void {
    if (this.fd === undefined) throw new Error('BlobWriter: write after commit/abort');
    let off = 0;
    try {
      while (off < chunk.byteLength) off += writeSync(this.fd, chunk, off, chunk.byteLength - off);
    } catch (e) {
      this.abort();
      throw fsError(e, this.cas.layout.root, 'writing a blob');
    }
    this.hasher.update(chunk);
  }

  /**
   * Names the blob by its digest and moves it into place. With `expected`,
   * a blob whose bytes do not hash to that name is discarded and an error
   * thrown: nothing from outside is admitted unverified.
   */
  commit(expected?: Digest): WrittenBlob {
    if (this.fd === undefined) throw new Error('BlobWriter: commit after commit/abort');
    const digest = this.hasher.digest();
    const size = this.hasher.bytes;
    if (expected !== undefined && expected !== digest) {
      this.abort();
      throw new VriftError(
        'ERR_VRIFT_CAS_DIGEST_MISMATCH',
        `content does not match its name: expected ${expected}, got ${digest} (${size} bytes)`,
        { hint: 'the source sent corrupt or wrong bytes; they were discarded' },
      );
    }
    let mtimeMs: number;
    try {
      mtimeMs = fstatSync(this.fd).mtimeMs;
      closeSync(this.fd);
    } catch (e) {
      this.abort();
      throw fsError(e, this.tmp, 'finishing a blob');
    }
    this.fd = undefined;
    const final = this.cas.pathOf(digest);
    if (this.cas.has(digest)) {
      // One copy per content: keep the stored blob, drop ours.
      this.discardTemp();
      return { digest, size, created: false, mtimeMs: this.cas.statOf(digest)?.mtimeMs ?? mtimeMs };
    }
    try {
      this.cas.ensureShard(digest);
      // rename(2) is atomic: readers see no blob or the whole blob. If a
      // concurrent writer got there first it replaces identical bytes.
      renameSync(this.tmp, final);
    } catch (e) {
      this.discardTemp();
      throw fsError(e, final, 'storing a blob');
    }
    return { digest, size, created: true, mtimeMs };
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
    this.discardTemp();
  }

  private discardTemp(): void {
    try {
      unlinkSync(this.tmp);
    } catch {
      /* gone already, or the disk is in trouble; `vrift gc` sweeps tmp/ */
    }
  }
}
