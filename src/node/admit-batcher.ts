// Admitting many small blobs from a stream (an archive): their bytes are
// gathered into batch buffers, each blob hashed when its last byte
// arrives, and the verified ones written into the CAS on native threads
// (blob-batch.ts) while the stream goes on. Memory stays bounded: at most
// MAX_IN_FLIGHT batches of BATCH_BYTES are held at once.
import { hashBuffer, type Digest } from '../lib/digest.js';
import { BATCH_BYTES, writeBlobs } from './blob-batch.js';
import type { Store } from './store.js';

/** Blobs up to this size are batched; larger ones stream through a BlobWriter. */
export const BATCHED_MAX = 1 << 20;
const MAX_IN_FLIGHT = 2;

interface Slice {
  digest: Digest;
  offset: number;
  size: number;
}

export class AdmitBatcher {
  private buf: Buffer = Buffer.allocUnsafe(BATCH_BYTES);
  private used = 0;
  private slices: Slice[] = [];
  private sealed: { buf: Buffer; slices: Slice[] }[] = [];
  private readonly inflight = new Set<Promise<void>>();
  private error: unknown;
  private readonly spare: Buffer[] = [];
  private cur: { digest: Digest; offset: number; size: number; filled: number } | undefined;

  constructor(
    private readonly store: Store,
    private readonly onAdmit: (digest: Digest, size: number) => void,
  ) {}

  /** Starts a blob of `size` bytes (≤ BATCHED_MAX) named `digest`. */
  begin(digest: Digest, size: number): void {
    if (this.used + size > this.buf.length) this.seal();
    this.cur = { digest, offset: this.used, size, filled: 0 };
    this.used += size;
  }

  write(chunk: Uint8Array): void {
    const c = this.cur!;
    this.buf.set(chunk, c.offset + c.filled);
    c.filled += chunk.byteLength;
  }

  /** Ends the current blob: true when its bytes hash to its name (it will be admitted). */
  end(): boolean {
    const c = this.cur!;
    this.cur = undefined;
    if (hashBuffer(this.buf.subarray(c.offset, c.offset + c.size)) !== c.digest) {
      this.used = c.offset; // give the space back
      return false;
    }
    this.slices.push({ digest: c.digest, offset: c.offset, size: c.size });
    return true;
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
      // Reuse a buffer whose batch is written (no garbage: these are 32 MB each).
      this.buf = this.spare.pop() ?? Buffer.allocUnsafe(BATCH_BYTES);
      this.used = 0;
      this.slices = [];
    }
  }

  private async writeBatch(buf: Buffer, slices: Slice[]): Promise<void> {
    for (const b of await writeBlobs(this.store.cas, buf, slices)) {
      this.store.recordBlob(b);
      this.onAdmit(b.digest, b.size);
    }
    this.spare.push(buf);
  }
}
