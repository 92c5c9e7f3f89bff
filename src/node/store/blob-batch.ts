// Many small blobs at once, on native threads (native/src/blob_io.cc):
// reading files for ingest, and writing blobs into the CAS for ingest and
// archive admission. Ingest hashes in JavaScript and the threads do the
// system calls; archive admission (writeVerifiedBlobs) leaves the hashing
// to the threads too, so the bytes from outside are verified off the main
// thread, right before they are written.
import { availableParallelism } from 'node:os';
import type { Digest } from '../../lib/digest.js';
import { errnoError, fsError } from '../../lib/errors.js';
import { tempPrefix, type WrittenBlob } from './blob-writer.js';
import type { Cas } from './cas.js';
import { loadNative } from '../../lib/native.js';

export const IO_THREADS = Math.max(2, Math.min(4, availableParallelism()));
/** A read batch holds at most this many bytes (bounded memory) … */
export const BATCH_BYTES = 32 << 20;
/** … and this many files. */
export const BATCH_FILES = 2048;

export const READ_OK = 0;
export const READ_CHANGED = -1;

export interface FileRead {
  /** 0 = read whole and unchanged; -1 = changed or not the listed size; -2 = not a regular file; > 0 = errno. */
  status: number;
  bytes: Buffer;
  /** Where `bytes` starts in the batch's buffer. */
  offset: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  dev: number;
  ino: number;
  /** BLAKE3 of `bytes`, computed on the reading thread (status 0 only). */
  digest: Digest | undefined;
}

function nulJoin(parts: string[]): Buffer {
  return Buffer.from(parts.length === 0 ? '' : `${parts.join('\0')}\0`, 'utf8');
}

/** Splits work into batches of at most BATCH_BYTES / BATCH_FILES. */
export function batches<T>(items: T[], sizeOf: (t: T) => number): T[][] {
  const out: T[][] = [];
  let cur: T[] = [];
  let bytes = 0;
  for (const it of items) {
    const n = sizeOf(it);
    if (cur.length > 0 && (bytes + n > BATCH_BYTES || cur.length >= BATCH_FILES)) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(it);
    bytes += n;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/** Reads files whose listed sizes are known (each must still be that size) and hashes them, on native threads. */
export async function readFiles(files: { abs: string; size: number }[]): Promise<{ data: Buffer; reads: FileRead[] }> {
  const { data, stats, digests } = await loadNative().blobIo.readFiles(nulJoin(files.map((f) => f.abs)), Float64Array.from(files, (f) => f.size), IO_THREADS, true);
  const reads: FileRead[] = [];
  let off = 0;
  for (let i = 0; i < files.length; i++) {
    const s = stats.subarray(i * 6, i * 6 + 6);
    const size = files[i]!.size;
    const digest = s[0] === READ_OK ? digests.toString('latin1', i * 64, i * 64 + 64) : undefined;
    reads.push({ status: s[0]!, bytes: data.subarray(off, off + size), offset: off, size: s[1]!, mtimeMs: s[2]!, ctimeMs: s[3]!, dev: s[4]!, ino: s[5]!, digest });
    off += size;
  }
  return { data, reads };
}

export interface BlobSlice {
  digest: Digest;
  offset: number;
  size: number;
}

/** writeBlobs' status for a slice whose bytes do not hash to its digest (with verify). */
const STATUS_MISMATCH = -1;

/** Per slice: the blob written, or undefined when (verifying) its bytes did not hash to its digest. */
async function writeSlices(cas: Cas, data: Buffer, slices: BlobSlice[], verify: boolean): Promise<(WrittenBlob | undefined)[]> {
  if (slices.length === 0) return [];
  const offsets = new Float64Array(slices.length * 2);
  slices.forEach((s, i) => {
    offsets[2 * i] = s.offset;
    offsets[2 * i + 1] = s.size;
  });
  const r = await loadNative().blobIo.writeBlobs(`${cas.layout.tmp}/${tempPrefix()}`, cas.layout.cas, data, offsets, nulJoin(slices.map((s) => s.digest)), IO_THREADS, verify);
  return slices.map((s, i) => {
    const status = r[3 * i]!;
    if (verify && status === STATUS_MISMATCH) return undefined;
    if (status !== 0) throw fsError(errnoError(status, 'write', cas.pathOf(s.digest)), cas.layout.root, 'storing a blob');
    return { digest: s.digest, size: s.size, created: r[3 * i + 1] === 1 };
  });
}

/**
 * Writes blobs (already hashed by the caller from these very bytes) into
 * the CAS. `data` holds them all; `slices` says where each one is.
 */
export async function writeBlobs(cas: Cas, data: Buffer, slices: BlobSlice[]): Promise<WrittenBlob[]> {
  return (await writeSlices(cas, data, slices, false)) as WrittenBlob[];
}

/**
 * Admits blobs from outside: each slice is hashed on the native threads
 * and written only if its bytes hash to its digest. `mismatched` lists the
 * digests of the slices that did not (nothing was written for them).
 */
export async function writeVerifiedBlobs(cas: Cas, data: Buffer, slices: BlobSlice[]): Promise<{ written: WrittenBlob[]; mismatched: Digest[] }> {
  const r = await writeSlices(cas, data, slices, true);
  const written: WrittenBlob[] = [];
  const mismatched: Digest[] = [];
  r.forEach((b, i) => (b ? written.push(b) : mismatched.push(slices[i]!.digest)));
  return { written, mismatched };
}

