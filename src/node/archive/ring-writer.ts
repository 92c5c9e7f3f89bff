// Writing an archive (docs/archive-format.md) from the local CAS for a
// peer, fast: file bytes are read straight into a small ring of reusable
// buffers (one copy, no allocation per blob, nothing for the GC), small
// frames and blobs share a buffer, and at most RING × PIECE bytes are in
// flight. The sink is a socket (the bulk stream) or a gRPC call (each
// buffer one message). `archiveChunks` (chunks.ts) remains the general,
// verify-everything writer (S3 packs).
import { closeSync, readSync } from 'node:fs';
import type { Digest } from '../../lib/digest.js';
import { archiveHeader, blobFrame, endFrame } from './format.js';
import { corruptBlob, missingBlob } from '../store/cas.js';
import type { Store } from '../store/store.js';

/** Where filled buffers go: `done` is called once the buffer may be reused. */
export interface ArchiveSink {
  write(buf: Buffer, done: () => void): void;
  /** Registers a callback for when the other side goes away. */
  closed(cb: () => void): void;
}

/** Size of the buffers an archive is assembled in, and how many may be in flight on one socket. */
const PIECE = 1 << 20;
const RING = 8;

/** Fills buffers of a ring and hands them to a sink (a buffer comes back when the sink is done with it). */
export class RingWriter {
  private readonly free: Buffer[] = Array.from({ length: RING }, () => Buffer.allocUnsafe(PIECE));
  private readonly waiting: (() => void)[] = [];
  private cur: Buffer | undefined;
  private off = 0;
  private failed: Error | undefined;
  bytes = 0;

  constructor(private readonly sink: ArchiveSink) {
    sink.closed(() => {
      this.failed ??= new Error('the client went away');
      for (const w of this.waiting.splice(0)) w();
    });
  }

  /** The current buffer, with room for at least one byte. */
  async room(): Promise<{ buf: Buffer; off: number; len: number }> {
    if (this.cur && this.off < PIECE) return { buf: this.cur, off: this.off, len: PIECE - this.off };
    if (this.cur) await this.flush();
    while (this.free.length === 0 && !this.failed) await new Promise<void>((r) => this.waiting.push(r));
    if (this.failed) throw this.failed;
    this.cur = this.free.pop()!;
    this.off = 0;
    return { buf: this.cur, off: 0, len: PIECE };
  }

  /** Marks `n` bytes of the current buffer filled. */
  filled(n: number): void {
    this.off += n;
  }

  async put(data: Buffer): Promise<void> {
    let done = 0;
    while (done < data.byteLength) {
      const r = await this.room();
      const n = Math.min(r.len, data.byteLength - done);
      data.copy(r.buf, r.off, done, done + n);
      this.filled(n);
      done += n;
    }
  }

  /** Resolves once every buffer came back from the sink (all of it was handed on). */
  async drained(): Promise<void> {
    while (this.free.length + (this.cur ? 1 : 0) < RING && !this.failed) await new Promise<void>((r) => this.waiting.push(r));
    if (this.failed) throw this.failed;
  }

  async flush(): Promise<void> {
    const buf = this.cur;
    const n = this.off;
    this.cur = undefined;
    this.off = 0;
    if (!buf) return;
    if (n === 0) {
      this.free.push(buf);
      return;
    }
    if (this.failed) throw this.failed;
    this.bytes += n;
    this.sink.write(buf.subarray(0, n), () => {
      this.free.push(buf);
      this.waiting.shift()?.();
    });
  }
}

/**
 * The archive of `blobs` (docs/archive-format.md) from the local CAS into
 * `out`. A blob is sent as the index knows it: present, of its size and
 * untouched since it was written (the cheap check `materialize` trusts);
 * one that fails it is re-hashed, and a corrupt one quarantined and the
 * stream cut before its frame. The receiver verifies every blob anyway.
 */
export async function writeArchive(store: Store, blobs: { digest: Digest; size: number }[], out: RingWriter): Promise<void> {
  await out.put(archiveHeader());
  let total = 0;
  for (const { digest, size } of blobs) {
    const st = store.cas.statOf(digest);
    if (!st) throw missingBlob(digest);
    store.checkBlob(digest, size); // throws (and quarantines) when the blob is not what its name says
    const fd = store.cas.openRead(digest);
    try {
      await out.put(blobFrame(digest, size));
      let left = size;
      while (left > 0) {
        const r = await out.room();
        const n = readSync(fd, r.buf, r.off, Math.min(r.len, left), null);
        if (n === 0) throw corruptBlob(digest); // shorter than its size: changed under us
        out.filled(n);
        left -= n;
      }
    } finally {
      closeSync(fd);
    }
    total += size;
  }
  await out.put(endFrame(blobs.length, total));
}
