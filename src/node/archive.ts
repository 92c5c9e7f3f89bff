// Archives: many blobs in one stream (S3 packs; the peers' backfill).
// Format in docs/archive-format.md:
//
//   header  "VRIFTARC" u16 version u16 flags u32 reserved        16 bytes
//   blob    'B' digest[32] u64 size, then `size` bytes        41 + size
//   end     'E' u64 count u64 bytes                              17 bytes
//
// The reader never trusts a frame: each blob is hashed before it is
// committed under its name, and only if the digest matches. Blobs up to
// 1 MiB are gathered in bounded batches, hashed and written on native
// threads (admit-batcher.ts); larger ones stream into a temp file. Memory stays
// bounded either way. A cut stream keeps every blob that arrived whole, so the caller
// can ask again for just what is still missing.
import { closeSync, readFileSync, readSync } from 'node:fs';
import { hashBuffer, StreamHasher, type Digest } from '../lib/digest.js';
import { errnoOf, fsError, hasCode, VriftError } from '../lib/errors.js';
import { AdmitBatcher, BATCHED_MAX, MISMATCH_REASON } from './admit-batcher.js';
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
  const fd = store.cas.openRead(digest);
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
  /**
   * A blob that was not admitted because it is wrong (logged and counted by the caller; throwing stops the
   * reader). Not always in stream order: a batched blob (≤ 1 MiB) is verified, and rejected, when its batch
   * is written, possibly after a later streamed one.
   */
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
 * A source that hands its chunks to a function synchronously, reusing its
 * buffer afterwards (a socket read with `onread`: no allocation per chunk).
 * `pump` resolves at the end of the stream and rejects if it fails or if
 * `sink` throws (the source then stops). A sink that returns false asks
 * the source to pause until `resumePump()`.
 */
export interface ChunkPump {
  pump(sink: (chunk: Uint8Array) => boolean | void): Promise<void>;
  resumePump(): void;
}

function isPump(source: unknown): source is ChunkPump {
  return typeof (source as Partial<ChunkPump>).pump === 'function';
}

/**
 * Reads an archive from `source`, admitting wanted blobs into the store
 * (verified) and reading past the rest. Resolves when the end frame is
 * read and matches; throws ArchiveError on a cut or malformed stream (a
 * source that fails midway is a cut stream: what arrived whole is kept).
 * A source that is also a ChunkPump is read through it (faster).
 */
export async function readArchive(store: Store, source: AsyncIterable<Uint8Array> | Iterable<Uint8Array> | ChunkPump, opts: ArchiveReadOptions): Promise<ArchiveReadResult> {
  const parser = new ArchiveParser(store, opts);
  let own: unknown; // an error of the reader itself (malformed input, a full disk), not of the source
  const take = (chunk: Uint8Array): void => {
    try {
      parser.push(chunk);
    } catch (e) {
      own = e;
      throw e;
    }
  };
  const settle = async (): Promise<void> => {
    try {
      await parser.ready();
    } catch (e) {
      own = e;
      throw e;
    }
  };
  try {
    if (isPump(source)) {
      await source.pump((chunk) => {
        take(chunk);
        if (!parser.busy()) return true;
        // Too many blob batches still being written: pause the source until they are
        // (a write error surfaces from finish()).
        void parser.ready().then(
          () => source.resumePump(),
          () => source.resumePump(),
        );
        return false;
      });
    } else {
      for await (const chunk of source) {
        take(chunk);
        await settle();
      }
    }
  } catch (e) {
    await parser.abort().catch(() => undefined);
    if (e === own || e instanceof ArchiveError) throw e;
    // The source itself failed (a cut connection, a damaged compressed pack): a truncated archive.
    parser.truncated(`the stream failed after ${parser.res.blobs} blobs: ${(e as Error)?.message ?? String(e)}`);
  }
  return parser.finish();
}

type State = 'header' | 'tag' | 'frame' | 'end' | 'body' | 'done';

/** The reader as a push parser: `push` each chunk as it arrives (synchronously), then `finish`. */
export class ArchiveParser {
  readonly res: ArchiveReadResult = { blobs: 0, admitted: 0, admittedBytes: 0, skipped: 0, rejected: [], bytes: 0 };
  private readonly maxBlob: number;
  private readonly small = Buffer.alloc(FRAME_LEN);
  private need = HEADER_LEN;
  private fill = 0;
  private state: State = 'header';
  private digest = '';
  private size = 0;
  private remaining = 0;
  private writer: BlobWriter | undefined;
  /** The current blob goes through the batcher (small) rather than a writer. */
  private batched = false;
  private readonly batcher: AdmitBatcher;
  private rejectReason: string | undefined;
  private total = 0;

  constructor(
    private readonly store: Store,
    private readonly opts: ArchiveReadOptions,
  ) {
    this.maxBlob = opts.maxBlobBytes ?? DEFAULT_MAX_BLOB;
    this.batcher = new AdmitBatcher(
      store,
      (digest, size) => {
        this.res.admitted++;
        this.res.admittedBytes += size;
        this.opts.onAdmit?.(digest, size);
      },
      (digest, reason) => this.reject(digest, reason),
    );
  }

  private fail(code: 'ERR_VRIFT_ARCHIVE_TRUNCATED' | 'ERR_VRIFT_ARCHIVE_MALFORMED', why: string): never {
    throw new ArchiveError(code, `${code === 'ERR_VRIFT_ARCHIVE_TRUNCATED' ? 'truncated' : 'malformed'} archive: ${why}`, this.res);
  }

  private startBody(): void {
    const { opts, digest, size } = this;
    this.res.blobs++;
    this.total += size;
    this.rejectReason = undefined;
    const expected = opts.expectedSize?.(digest);
    if (!opts.want(digest, size)) {
      this.writer = undefined;
    } else if (expected !== undefined && expected !== size) {
      this.rejectReason = `declared size ${size} but the tree says ${expected}`;
    } else if (size > this.maxBlob) {
      this.rejectReason = `declared size ${size} exceeds the limit of ${this.maxBlob} bytes`;
    } else if (size <= BATCHED_MAX) {
      this.batcher.begin(digest, size);
      this.batched = true;
    } else {
      this.writer = this.store.cas.writer();
    }
    this.remaining = size;
    this.state = 'body';
    if (this.remaining === 0) this.endBody();
  }

  private endBody(): void {
    this.state = 'tag';
    this.need = 1;
    if (this.rejectReason !== undefined) {
      this.reject(this.digest, this.rejectReason);
      return;
    }
    if (this.batched) {
      // Verified on a native thread with its batch; a mismatch is rejected then.
      this.batched = false;
      this.batcher.end();
      return;
    }
    if (!this.writer) {
      this.res.skipped++;
      return;
    }
    const w = this.writer;
    this.writer = undefined;
    try {
      const b = w.commit(this.digest);
      this.store.recordBlob(b);
      this.res.admitted++;
      this.res.admittedBytes += b.size;
      this.opts.onAdmit?.(this.digest, b.size);
    } catch (e) {
      if (!hasCode(e, 'ERR_VRIFT_CAS_DIGEST_MISMATCH')) throw e;
      this.reject(this.digest, MISMATCH_REASON);
    }
  }

  private reject(digest: Digest, reason: string): void {
    this.res.rejected.push({ digest, reason });
    this.opts.onReject?.(digest, reason);
  }

  /** Takes the next chunk of the stream (it may be reused by the caller once this returns). */
  push(chunk: Uint8Array): void {
    // A batch came back with an error (or a rejection the caller threw on): stop reading.
    this.batcher.check();
    const res = this.res;
    res.bytes += chunk.byteLength;
    this.opts.onBytes?.(res.bytes);
    let off = 0;
    while (off < chunk.byteLength) {
      if (this.state === 'body') {
        const n = Math.min(this.remaining, chunk.byteLength - off);
        if (this.batched) this.batcher.write(chunk.subarray(off, off + n));
        else this.writer?.write(chunk.subarray(off, off + n));
        this.remaining -= n;
        off += n;
        if (this.remaining === 0) this.endBody();
        continue;
      }
      if (this.state === 'done') this.fail('ERR_VRIFT_ARCHIVE_MALFORMED', 'bytes after the end frame');
      const small = this.small;
      const n = Math.min(this.need - this.fill, chunk.byteLength - off);
      small.set(chunk.subarray(off, off + n), this.fill);
      this.fill += n;
      off += n;
      if (this.fill < this.need) continue;
      this.fill = 0;
      if (this.state === 'header') {
        if (!small.subarray(0, 8).equals(ARCHIVE_MAGIC)) this.fail('ERR_VRIFT_ARCHIVE_MALFORMED', 'bad magic (not a vrift archive)');
        const version = small.readUInt16BE(8);
        if (version !== ARCHIVE_VERSION || small.readUInt16BE(10) !== 0) {
          this.fail('ERR_VRIFT_ARCHIVE_MALFORMED', `version ${version} flags ${small.readUInt16BE(10)} (this vrift reads version ${ARCHIVE_VERSION})`);
        }
        this.state = 'tag';
        this.need = 1;
      } else if (this.state === 'tag') {
        if (small[0] === TAG_BLOB) {
          this.state = 'frame';
          this.need = FRAME_LEN - 1;
        } else if (small[0] === TAG_END) {
          this.state = 'end';
          this.need = END_LEN - 1;
        } else this.fail('ERR_VRIFT_ARCHIVE_MALFORMED', `unknown frame tag 0x${small[0]!.toString(16)} after ${res.blobs} blobs`);
      } else if (this.state === 'frame') {
        this.digest = small.toString('hex', 0, 32);
        const big = small.readBigUInt64BE(32);
        if (big > BigInt(Number.MAX_SAFE_INTEGER)) this.fail('ERR_VRIFT_ARCHIVE_MALFORMED', `blob ${this.digest} declares an impossible size`);
        this.size = Number(big);
        this.startBody();
      } else {
        const count = small.readBigUInt64BE(0);
        const bytes = small.readBigUInt64BE(8);
        if (count !== BigInt(res.blobs) || bytes !== BigInt(this.total)) {
          this.fail('ERR_VRIFT_ARCHIVE_MALFORMED', `end frame says ${count} blobs / ${bytes} bytes but the stream held ${res.blobs} / ${this.total}`);
        }
        this.state = 'done';
      }
    }
    this.batcher.kick();
  }

  /** Too many verified blobs are still being written: the source should wait (see ready()). */
  busy(): boolean {
    return this.batcher.busy();
  }

  /** Resolves once the writes in flight are few enough to take more input. */
  ready(): Promise<void> {
    return this.batcher.ready();
  }

  /** Drops a blob cut in the middle, and waits for the verified blobs before it to be written (they are kept). */
  async abort(): Promise<void> {
    this.writer?.abort();
    this.writer = undefined;
    this.batcher.abandon();
    await this.batcher.finish();
  }

  /** Throws the truncation error (with what was admitted so far). */
  truncated(why: string): never {
    this.fail('ERR_VRIFT_ARCHIVE_TRUNCATED', why);
  }

  /** The result, once the stream ended; ERR_VRIFT_ARCHIVE_TRUNCATED when it ended before its end frame. */
  async finish(): Promise<ArchiveReadResult> {
    await this.batcher.finish();
    if (this.state !== 'done') {
      await this.abort();
      const where = this.state === 'body' ? `inside blob ${this.digest} (${this.size - this.remaining} of ${this.size} bytes)` : 'before the end frame';
      this.fail('ERR_VRIFT_ARCHIVE_TRUNCATED', `the stream ended ${where} after ${this.res.admitted} blobs were admitted`);
    }
    return this.res;
  }
}
