// Archives: many blobs in one stream (S3 packs; the peers' backfill).
// Format in docs/archive-format.md:
//
//   header  "VRIFTARC" u16 version u16 flags u32 reserved        16 bytes
//   blob    'B' digest[32] u64 size, then `size` bytes        41 + size
//   end     'E' u64 count u64 bytes                              17 bytes
//
// The reader never trusts a frame: each blob is hashed before it is
// committed under its name, and only if the digest matches. Small blobs
// are gathered in bounded batches and written on native threads
// (admit-batcher.ts); large ones stream into a temp file. Memory stays
// bounded either way. A cut stream keeps every blob that arrived whole, so the caller
// can ask again for just what is still missing.
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { hashBuffer, StreamHasher, type Digest } from '../lib/digest.js';
import { errnoOf, fsError, hasCode, VriftError } from '../lib/errors.js';
import { AdmitBatcher, BATCHED_MAX } from './admit-batcher.js';
import type { BlobWriter } from './blob-writer.js';
import { corruptBlob, missingBlob } from './cas.js';
import type { Store } from './store.js';

export const ARCHIVE_MAGIC = Buffer.from('VRIFTARC', 'latin1');
export const ARCHIVE_VERSION = 1;
const HEADER_LEN = 16;
const TAG_BLOB = 0x42; // 'B'
const TAG_END = 0x45; // 'E'
const FRAME_LEN = 41; // tag + digest + size
const END_LEN = 17; // tag + count + bytes
/** Blobs up to this size are read whole when writing; larger ones stream. */
const WHOLE_LIMIT = 8 << 20;
const CHUNK = 1 << 20;

export function archiveHeader(): Buffer {
  const b = Buffer.alloc(HEADER_LEN);
  ARCHIVE_MAGIC.copy(b, 0);
  b.writeUInt16BE(ARCHIVE_VERSION, 8);
  return b; // flags and reserved stay 0
}

export function blobFrame(digest: Digest, size: number): Buffer {
  const b = Buffer.allocUnsafe(FRAME_LEN);
  b[0] = TAG_BLOB;
  b.write(digest, 1, 32, 'hex');
  b.writeBigUInt64BE(BigInt(size), 33);
  return b;
}

export function endFrame(count: number, bytes: number): Buffer {
  const b = Buffer.allocUnsafe(END_LEN);
  b[0] = TAG_END;
  b.writeBigUInt64BE(BigInt(count), 1);
  b.writeBigUInt64BE(BigInt(bytes), 9);
  return b;
}

/** Bytes an archive of blobs of these sizes takes. */
export function archiveSize(sizes: Iterable<number>): number {
  let n = HEADER_LEN + END_LEN;
  for (const s of sizes) n += FRAME_LEN + s;
  return n;
}

/**
 * The archive of `blobs`, read from the local CAS, as a stream of chunks
 * (small frames are coalesced into ~1 MiB chunks). Every blob is hashed
 * as it is read: a corrupt local blob is quarantined and the stream fails
 * before its end frame, so the receiver sees a truncated archive, never a
 * complete one with bad content.
 */
export async function* archiveChunks(
  store: Store,
  blobs: Iterable<{ digest: Digest; size: number }>,
  opts: { onBlob?: (digest: Digest, size: number) => void } = {},
): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [archiveHeader()];
  let pendingBytes = HEADER_LEN;
  let count = 0;
  let total = 0;
  const flush = (): Buffer => {
    const out = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    return out;
  };
  for (const { digest, size } of blobs) {
    if (size <= WHOLE_LIMIT) {
      const buf = readLocal(store, digest);
      if (buf.byteLength !== size || hashBuffer(buf) !== digest) {
        store.quarantineBlob(digest);
        throw corruptBlob(digest);
      }
      pending.push(blobFrame(digest, size), buf);
      pendingBytes += FRAME_LEN + size;
      if (pendingBytes >= CHUNK) yield flush();
    } else {
      pending.push(blobFrame(digest, size));
      pendingBytes += FRAME_LEN;
      yield flush();
      yield* streamLocal(store, digest, size);
    }
    count++;
    total += size;
    opts.onBlob?.(digest, size);
  }
  pending.push(endFrame(count, total));
  pendingBytes += END_LEN;
  yield flush();
}

function readLocal(store: Store, digest: Digest): Buffer {
  try {
    return readFileSync(store.cas.pathOf(digest));
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') throw missingBlob(digest);
    throw fsError(e, store.cas.pathOf(digest), 'reading a blob');
  }
}

async function* streamLocal(store: Store, digest: Digest, size: number): AsyncGenerator<Buffer> {
  const path = store.cas.pathOf(digest);
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') throw missingBlob(digest);
    throw fsError(e, path, 'reading a blob');
  }
  const hasher = new StreamHasher();
  try {
    let left = size;
    while (left > 0) {
      const buf = Buffer.allocUnsafe(Math.min(CHUNK * 4, left));
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      hasher.update(buf.subarray(0, n));
      left -= n;
      yield buf.subarray(0, n);
    }
    if (left !== 0 || readSync(fd, Buffer.allocUnsafe(1), 0, 1, null) !== 0 || hasher.digest() !== digest) {
      store.quarantineBlob(digest);
      throw corruptBlob(digest);
    }
  } finally {
    closeSync(fd);
  }
}

// --- reading ------------------------------------------------------------

export interface ArchiveReadOptions {
  /** Admit this blob? false reads past it (already here, or not asked for). */
  want(digest: Digest, size: number): boolean;
  /** The size the caller expects (from its tree): a frame declaring another size is rejected unread. */
  expectedSize?(digest: Digest): number | undefined;
  /** Largest blob admitted at all. */
  maxBlobBytes?: number;
  onAdmit?(digest: Digest, size: number): void;
  /** A blob that was not admitted because it is wrong (logged and counted by the caller). */
  onReject?(digest: Digest, reason: string): void;
  /** Stream bytes consumed so far (progress). */
  onBytes?(n: number): void;
}

export interface ArchiveReadResult {
  blobs: number;
  admitted: number;
  admittedBytes: number;
  skipped: number;
  rejected: { digest: Digest; reason: string }[];
  /** Bytes of the stream. */
  bytes: number;
}

/** A broken archive; `result` says what was admitted before the break. */
export class ArchiveError extends VriftError {
  constructor(
    code: 'ERR_VRIFT_ARCHIVE_TRUNCATED' | 'ERR_VRIFT_ARCHIVE_MALFORMED',
    message: string,
    readonly result: ArchiveReadResult,
  ) {
    super(code, message, { hint: 'the blobs that arrived whole were kept; fetch the rest again' });
  }
}

const DEFAULT_MAX_BLOB = 64 * 1024 ** 3;

/**
 * Reads an archive from `source`, admitting wanted blobs into the store
 * (verified) and reading past the rest. Resolves when the end frame is
 * read and matches; throws ArchiveError on a cut or malformed stream.
 */
export async function readArchive(store: Store, source: AsyncIterable<Uint8Array>, opts: ArchiveReadOptions): Promise<ArchiveReadResult> {
  const res: ArchiveReadResult = { blobs: 0, admitted: 0, admittedBytes: 0, skipped: 0, rejected: [], bytes: 0 };
  const maxBlob = opts.maxBlobBytes ?? DEFAULT_MAX_BLOB;
  const small = Buffer.alloc(FRAME_LEN);
  let need = HEADER_LEN;
  let fill = 0;
  type State = 'header' | 'tag' | 'frame' | 'end' | 'body' | 'done';
  // Typed wide on purpose: the helpers below change it, which flow analysis cannot see.
  let state = 'header' as State;
  let digest = '';
  let size = 0;
  let remaining = 0;
  let writer: BlobWriter | undefined;
  let batched = false;
  const batcher = new AdmitBatcher(store, (d, n) => {
    res.admitted++;
    res.admittedBytes += n;
    opts.onAdmit?.(d, n);
  });
  let rejectReason: string | undefined;
  let total = 0;
  const fail = (code: 'ERR_VRIFT_ARCHIVE_TRUNCATED' | 'ERR_VRIFT_ARCHIVE_MALFORMED', why: string): never => {
    throw new ArchiveError(code, `${code === 'ERR_VRIFT_ARCHIVE_TRUNCATED' ? 'truncated' : 'malformed'} archive: ${why}`, res);
  };

  const startBody = (): void => {
    res.blobs++;
    total += size;
    rejectReason = undefined;
    const expected = opts.expectedSize?.(digest);
    if (!opts.want(digest, size)) {
      writer = undefined;
    } else if (expected !== undefined && expected !== size) {
      rejectReason = `declared size ${size} but the tree says ${expected}`;
    } else if (size > maxBlob) {
      rejectReason = `declared size ${size} exceeds the limit of ${maxBlob} bytes`;
    } else if (size <= BATCHED_MAX) {
      batcher.begin(digest, size);
      batched = true;
    } else {
      writer = store.cas.writer();
    }
    remaining = size;
    state = 'body';
    if (remaining === 0) endBody();
  };

  const endBody = (): void => {
    state = 'tag';
    need = 1;
    if (rejectReason !== undefined) {
      reject(rejectReason);
      return;
    }
    if (batched) {
      batched = false;
      if (!batcher.end()) reject('its bytes do not hash to its name');
      return;
    }
    if (!writer) {
      res.skipped++;
      return;
    }
    const w = writer;
    writer = undefined;
    try {
      const b = w.commit(digest);
      store.recordBlob(b);
      res.admitted++;
      res.admittedBytes += b.size;
      opts.onAdmit?.(digest, b.size);
    } catch (e) {
      if (!hasCode(e, 'ERR_VRIFT_CAS_DIGEST_MISMATCH')) throw e;
      reject('its bytes do not hash to its name');
    }
  };

  const reject = (reason: string): void => {
    res.rejected.push({ digest, reason });
    opts.onReject?.(digest, reason);
  };

  const it = source[Symbol.asyncIterator]();
  try {
    for (;;) {
      let next: IteratorResult<Uint8Array>;
      try {
        next = await it.next();
      } catch (e) {
        // The source itself failed (a cut connection, a damaged compressed pack): a truncated archive.
        fail('ERR_VRIFT_ARCHIVE_TRUNCATED', `the stream failed after ${res.blobs} blobs: ${(e as Error)?.message ?? String(e)}`);
      }
      if (next!.done) break;
      const chunk = next!.value;
      res.bytes += chunk.byteLength;
      opts.onBytes?.(res.bytes);
      let off = 0;
      while (off < chunk.byteLength) {
        if ((state as State) === 'body') {
          const n = Math.min(remaining, chunk.byteLength - off);
          if (batched) batcher.write(chunk.subarray(off, off + n));
          else writer?.write(chunk.subarray(off, off + n));
          remaining -= n;
          off += n;
          if (remaining === 0) endBody();
          continue;
        }
        if (state === 'done') fail('ERR_VRIFT_ARCHIVE_MALFORMED', 'bytes after the end frame');
        const n = Math.min(need - fill, chunk.byteLength - off);
        small.set(chunk.subarray(off, off + n), fill);
        fill += n;
        off += n;
        if (fill < need) continue;
        fill = 0;
        if (state === 'header') {
          if (!small.subarray(0, 8).equals(ARCHIVE_MAGIC)) fail('ERR_VRIFT_ARCHIVE_MALFORMED', 'bad magic (not a vrift archive)');
          const version = small.readUInt16BE(8);
          if (version !== ARCHIVE_VERSION || small.readUInt16BE(10) !== 0) {
            fail('ERR_VRIFT_ARCHIVE_MALFORMED', `version ${version} flags ${small.readUInt16BE(10)} (this vrift reads version ${ARCHIVE_VERSION})`);
          }
          state = 'tag';
          need = 1;
        } else if (state === 'tag') {
          if (small[0] === TAG_BLOB) {
            state = 'frame';
            need = FRAME_LEN - 1;
          } else if (small[0] === TAG_END) {
            state = 'end';
            need = END_LEN - 1;
          } else fail('ERR_VRIFT_ARCHIVE_MALFORMED', `unknown frame tag 0x${small[0]!.toString(16)} after ${res.blobs} blobs`);
        } else if (state === 'frame') {
          digest = small.toString('hex', 0, 32);
          const big = small.readBigUInt64BE(32);
          if (big > BigInt(Number.MAX_SAFE_INTEGER)) fail('ERR_VRIFT_ARCHIVE_MALFORMED', `blob ${digest} declares an impossible size`);
          size = Number(big);
          startBody();
        } else {
          const count = small.readBigUInt64BE(0);
          const bytes = small.readBigUInt64BE(8);
          if (count !== BigInt(res.blobs) || bytes !== BigInt(total)) {
            fail('ERR_VRIFT_ARCHIVE_MALFORMED', `end frame says ${count} blobs / ${bytes} bytes but the stream held ${res.blobs} / ${total}`);
          }
          state = 'done';
        }
      }
      await batcher.drain();
    }
  } catch (e) {
    writer?.abort();
    // What was verified before the failure is kept (a retry asks only for the rest).
    await batcher.finish();
    throw e;
  }
  await batcher.finish();
  if (state !== 'done') {
    writer?.abort();
    const where = (state as State) === 'body' ? `inside blob ${digest} (${size - remaining} of ${size} bytes)` : 'before the end frame';
    fail('ERR_VRIFT_ARCHIVE_TRUNCATED', `the stream ended ${where} after ${res.admitted} blobs were admitted`);
  }
  return res;
}
