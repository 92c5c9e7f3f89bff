// Admitting many blobs from a stream (an archive): their bytes are
// gathered into batch buffers, and each full batch goes through the door
// (admission.ts `batch`: native threads hash every blob and write the ones
// whose bytes match their name into the CAS) while the stream goes on. The main thread only copies bytes: verification is off it. A blob
// that does not match is reported (onReject) when its batch comes back.
// Memory stays bounded: at most MAX_IN_FLIGHT batches of ADMIT_BATCH_BYTES
// are held at once (plus the one being filled).
import type { Digest } from '../../lib/digest.js';
import type { Admission, AdmissionSource } from './admission.js';
import type { BlobSlice } from './blob-batch.js';

/**
 * Blobs up to this size are batched (hashed and written on native
 * threads); larger ones stream through a BlobWriter, written and hashed
 * chunk by chunk on the main thread straight from the socket's buffer.
 * Since peer streams are encrypted (TLS then; sealed frames now,
 * src/lib/sealed-socket.ts), the main thread also decrypts every byte:
 * batching up to 8 MiB took a 1 GiB peer pull from 2.25 s to 1.78 s here
 * (when the stream was plain TCP, 8 MiB measured no faster than 1 MiB:
 * the copy into the batch cost what native hashing saved).
 */
export const BATCHED_MAX = 8 << 20;
const MAX_IN_FLIGHT = 2;
/**
 * One batch buffer: room for two of the largest batched blobs. Each stream
 * allocates its MAX_IN_FLIGHT + 1 buffers afresh, and fresh memory costs
 * twice: a page fault per 4 KiB on first touch, and a V8 collection per
 * 64 MiB of new buffers (external memory pressure). At 32 MiB (ingest's
 * read batches, BATCH_BYTES) a 1 GiB pull from a peer took ~25 000 page
 * faults and 5 collections in the receiving daemon; at 16 MiB ~12 800 and 2.
 */
const ADMIT_BATCH_BYTES = 2 * BATCHED_MAX;

/** Why a blob was not admitted (the same text as for a streamed blob). */
export const MISMATCH_REASON = 'its bytes do not hash to its name';

type Slice = BlobSlice;

export class AdmitBatcher {
  private buf: Buffer = Buffer.allocUnsafe(ADMIT_BATCH_BYTES);
  private used = 0;
  private slices: Slice[] = [];
  private sealed: { buf: Buffer; slices: Slice[] }[] = [];
  private readonly inflight = new Set<Promise<void>>();
  private error: unknown;
  private readonly spare: Buffer[] = [];
  private cur: { digest: Digest; offset: number; size: number; filled: number } | undefined;

  /**
   * @param onReject told of each blob whose bytes did not hash to its name,
   *   once its batch is written; if it throws, the batcher fails with that
   *   error (check(), ready() and finish() throw it) and reports no more.
   */
  constructor(
    private readonly admission: Admission,
    private readonly source: AdmissionSource,
    private readonly onAdmit: (digest: Digest, size: number) => void,
    private readonly onReject: (digest: Digest, reason: string) => void,
  ) {}

  /** Starts a blob of `size` bytes (≤ BATCHED_MAX) named `digest`. */
  begin(digest: Digest, size: number): void {
    if (this.used + size > this.buf.length) this.seal();
    this.cur = { digest, offset: this.used, size, filled: 0 };
    this.used += size;
  }

  /** The next `n` bytes of the current blob: `chunk`'s from `at` (a LazyChunk writes them straight into the batch). */
  write(chunk: Uint8Array | { copyTo(at: number, len: number, dst: Uint8Array, dstOff: number): void }, at: number, n: number): void {
    const c = this.cur!;
    if (chunk instanceof Uint8Array) this.buf.set(at === 0 && n === chunk.byteLength ? chunk : chunk.subarray(at, at + n), c.offset + c.filled);
    else chunk.copyTo(at, n, this.buf, c.offset + c.filled);
    c.filled += n;
  }

  /** Ends the current blob: it is verified and admitted (or rejected) with its batch. */
  end(): void {
    const c = this.cur!;
    this.cur = undefined;
    this.slices.push({ digest: c.digest, offset: c.offset, size: c.size });
  }

  /** Throws the first error of a batch (a full disk, an onReject that threw). */
  check(): void {
    if (this.error !== undefined) throw this.error;
  }

  /** Drops a blob begun but not ended (the stream was cut inside it). */
  abandon(): void {
    if (this.cur) this.used = this.cur.offset;
    this.cur = undefined;
  }

  /** Starts writing the batches that are full (without waiting for them). */
  kick(): void {
    while (this.sealed.length > 0) {
      const b = this.sealed.shift()!;
      const p: Promise<void> = this.writeBatch(b.buf, b.slices)
        .catch((e: unknown) => {
          this.error ??= e;
        })
        .finally(() => this.inflight.delete(p));
      this.inflight.add(p);
    }
  }

  /** Enough batches are being written that the stream should wait. */
  busy(): boolean {
    return this.inflight.size >= MAX_IN_FLIGHT;
  }

  /** Resolves when fewer batches are in flight; throws the first write error (a full disk …). */
  async ready(): Promise<void> {
    while (this.inflight.size >= MAX_IN_FLIGHT) await Promise.race(this.inflight);
    if (this.error !== undefined) throw this.error;
  }

  /** Writes everything verified so far and waits for it; throws the first write error. */
  async finish(): Promise<void> {
    this.abandon();
    this.seal();
    this.kick();
    await Promise.all(this.inflight);
    if (this.error !== undefined) throw this.error;
  }

  private seal(): void {
    if (this.slices.length > 0) this.sealed.push({ buf: this.buf, slices: this.slices });
    if (this.slices.length > 0 || this.used > 0) {
      // Reuse a buffer whose batch is written (no garbage: these are 16 MiB each).
      this.buf = this.spare.pop() ?? Buffer.allocUnsafe(ADMIT_BATCH_BYTES);
      this.used = 0;
      this.slices = [];
    }
  }

  private async writeBatch(buf: Buffer, slices: Slice[]): Promise<void> {
    const { written, mismatched } = await this.admission.batch(buf, slices, this.source);
    this.spare.push(buf);
    // Every written blob is recorded (by the door) before any rejection is reported (onReject may throw).
    for (const b of written) this.onAdmit(b.digest, b.size);
    for (const d of mismatched) {
      // Once the batcher failed (onReject threw: the caller abandoned the stream), later
      // mismatches are dropped unreported, as if never read: a liar is told once.
      if (this.error !== undefined) break;
      try {
        this.onReject(d, MISMATCH_REASON);
      } catch (e) {
        this.error ??= e;
      }
    }
  }
}
