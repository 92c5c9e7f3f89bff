// Reading an archive (format.ts) into the local store. The reader never
// trusts a frame: each blob is hashed before it is committed under its
// name, and only if the digest matches. Blobs up to 8 MiB are gathered in
// bounded batches, hashed and written on native threads (admit-batcher.ts);
// larger ones stream into a temp file. Memory stays bounded either way. A
// cut stream keeps every blob that arrived whole, so the caller can ask
// again for just what is still missing.
import type { Digest } from '../../lib/digest.js';
import { hasCode, VriftError } from '../../lib/errors.js';
import type { Admission, AdmissionSource, AdmittingWriter } from '../store/admission.js';
import { AdmitBatcher, BATCHED_MAX, MISMATCH_REASON } from '../store/admit-batcher.js';
import { ARCHIVE_MAGIC, ARCHIVE_VERSION, END_LEN, FRAME_LEN, HEADER_LEN, TAG_BLOB, TAG_END } from './format.js';

export interface ArchiveReadOptions {
  /** Where the archive comes from (a tier's name), for the admission counters. */
  from: AdmissionSource;
  /** Admit this blob? false reads past it (already here, or not asked for). */
  want(digest: Digest, size: number): boolean;
  /** The size the caller expects (from its tree): a frame declaring another size is rejected unread. */
  expectedSize?(digest: Digest): number | undefined;
  /** Largest blob admitted at all. */
  maxBlobBytes?: number;
  onAdmit?(digest: Digest, size: number): void;
  /**
   * A blob that was not admitted because it is wrong (logged and counted by the caller; throwing stops the
   * reader). Not always in stream order: a batched blob (≤ 8 MiB) is verified, and rejected, when its batch
   * is written, possibly after a later streamed one.
   */
  onReject?(digest: Digest, reason: string): void;
  /** Stream bytes consumed so far (progress). */
  onBytes?(n: number): void;
  /**
   * Stop reading once this many wanted blobs have been read (admitted or
   * rejected): the rest of the stream is not needed (one blob of a pack).
   */
  stopAfter?: number;
  /** True once the caller needs nothing more (its pull was handed to a swarm): the reader stops at the next chunk, keeping every blob that arrived whole. */
  stop?(): boolean;
}

export interface ArchiveReadResult {
  blobs: number;
  admitted: number;
  admittedBytes: number;
  skipped: number;
  rejected: { digest: Digest; reason: string }[];
  /** Bytes of the stream. */
  bytes: number;
  /** The reader stopped before the end (`stopAfter`): the end frame was not read. */
  stoppedEarly?: boolean;
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
  /** The same, with chunks whose bytes are produced as the reader takes them (LazyChunk). */
  pumpLazy?(sink: (chunk: LazyChunk) => boolean | void): Promise<void>;
}

/**
 * A chunk whose bytes are produced as they are taken, each range once and
 * in order (a sealed frame whose tag verified: its bytes are decrypted
 * where the reader wants them, a blob's straight into its batch).
 */
export interface LazyChunk {
  readonly byteLength: number;
  /** Bytes [at, at+len), in place (valid during the push). */
  view(at: number, len: number): Uint8Array;
  /** Bytes [at, at+len), into `dst` at `dstOff`. */
  copyTo(at: number, len: number, dst: Uint8Array, dstOff: number): void;
}

type AnyChunk = Uint8Array | LazyChunk;

function viewOf(chunk: AnyChunk, at: number, len: number): Uint8Array {
  return chunk instanceof Uint8Array ? chunk.subarray(at, at + len) : chunk.view(at, len);
}

function isPump(source: unknown): source is ChunkPump {
  return typeof (source as Partial<ChunkPump>).pump === 'function';
}

/** Thrown into a pump to stop it once the reader has what it wants. */
const ENOUGH = new Error('vrift: archive read far enough');

/** Whether a source failed only because the reader stopped it on purpose (it had every blob it wanted): not its sender's fault. */
export function isReadStop(e: unknown): boolean {
  return e === ENOUGH;
}

/**
 * Reads an archive from `source`, admitting wanted blobs into the store
 * (verified) and reading past the rest. Resolves when the end frame is
 * read and matches; throws ArchiveError on a cut or malformed stream (a
 * source that fails midway is a cut stream: what arrived whole is kept).
 * A source that is also a ChunkPump is read through it (faster).
 */
export async function readArchive(admission: Admission, source: AsyncIterable<Uint8Array> | Iterable<Uint8Array> | ChunkPump, opts: ArchiveReadOptions): Promise<ArchiveReadResult> {
  const parser = new ArchiveParser(admission, opts);
  let own: unknown; // an error of the reader itself (malformed input, a full disk), not of the source
  let stopped = false; // opts.stop() said so
  const take = (chunk: AnyChunk): void => {
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
      const sink = (chunk: AnyChunk): boolean => {
        take(chunk);
        if (parser.enough || opts.stop?.()) throw ENOUGH;
        if (!parser.busy()) return true;
        // Too many blob batches still being written: pause the source until they are
        // (a write error surfaces from finish()).
        void parser.ready().then(
          () => source.resumePump(),
          () => source.resumePump(),
        );
        return false;
      };
      await (source.pumpLazy ? source.pumpLazy(sink) : source.pump(sink));
    } else {
      for await (const chunk of source) {
        take(chunk);
        await settle();
        if (parser.enough || opts.stop?.()) {
          stopped = true;
          break; // leaving the loop closes the source
        }
      }
    }
  } catch (e) {
    if (e === ENOUGH) return parser.finishEarly();
    await parser.abort().catch(() => undefined);
    if (e === own || e instanceof ArchiveError) throw e;
    // The source itself failed (a cut connection, a damaged compressed pack): a truncated archive.
    parser.truncated(`the stream failed after ${parser.res.blobs} blobs: ${(e as Error)?.message ?? String(e)}`);
  }
  return parser.enough || stopped ? parser.finishEarly() : parser.finish();
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
  private writer: AdmittingWriter | undefined;
  /** The current blob goes through the batcher (small) rather than a writer. */
  private batched = false;
  private readonly batcher: AdmitBatcher;
  private rejectReason: string | undefined;
  private total = 0;
  private wantedRead = 0;
  /** Every wanted blob the caller said it needs (`stopAfter`) has been read. */
  enough = false;

  constructor(
    private readonly admission: Admission,
    private readonly opts: ArchiveReadOptions,
  ) {
    this.maxBlob = opts.maxBlobBytes ?? DEFAULT_MAX_BLOB;
    this.batcher = new AdmitBatcher(
      admission,
      opts.from,
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
    } else if (expected !== undefined && size > expected) {
      // More than the tree holds is a lie about this stream, not a damaged blob: nothing is written
      // and the rest of the stream (possibly gigabytes of it) is not read.
      const why = `blob ${digest} declares ${size} bytes but the tree says ${expected}`;
      this.reject(digest, why);
      this.fail('ERR_VRIFT_ARCHIVE_MALFORMED', why);
    } else if (expected !== undefined && expected !== size) {
      this.rejectReason = `declared size ${size} but the tree says ${expected}`;
    } else if (size > this.maxBlob) {
      this.rejectReason = `declared size ${size} exceeds the limit of ${this.maxBlob} bytes`;
    } else if (size <= BATCHED_MAX) {
      this.batcher.begin(digest, size);
      this.batched = true;
    } else {
      this.writer = this.admission.writer(this.opts.from);
    }
    this.remaining = size;
    this.state = 'body';
    if (this.remaining === 0) this.endBody();
  }

  private endBody(): void {
    this.state = 'tag';
    this.need = 1;
    if (this.writer || this.batched || this.rejectReason !== undefined) {
      this.wantedRead++;
      if (this.opts.stopAfter !== undefined && this.wantedRead >= this.opts.stopAfter) this.enough = true;
    }
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
  push(chunk: Uint8Array | LazyChunk): void {
    // A batch came back with an error (or a rejection the caller threw on): stop reading.
    this.batcher.check();
    const res = this.res;
    res.bytes += chunk.byteLength;
    this.opts.onBytes?.(res.bytes);
    let off = 0;
    while (off < chunk.byteLength && !this.enough) {
      if (this.state === 'body') {
        const n = Math.min(this.remaining, chunk.byteLength - off);
        // A batched blob's bytes go straight into its batch (a sealed frame decrypts them there); a skipped one's are never decrypted.
        if (this.batched) this.batcher.write(chunk, off, n);
        else this.writer?.write(viewOf(chunk, off, n));
        this.remaining -= n;
        off += n;
        if (this.remaining === 0) this.endBody();
        continue;
      }
      if (this.state === 'done') this.fail('ERR_VRIFT_ARCHIVE_MALFORMED', 'bytes after the end frame');
      const small = this.small;
      const n = Math.min(this.need - this.fill, chunk.byteLength - off);
      small.set(viewOf(chunk, off, n), this.fill);
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
  /** The result when the reader stopped early on purpose (`stopAfter`): what it read is written and kept. */
  async finishEarly(): Promise<ArchiveReadResult> {
    this.writer?.abort();
    this.writer = undefined;
    await this.batcher.finish(); // drops a blob begun but not ended; writes the rest

    this.res.stoppedEarly = true;
    return this.res;
  }

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
