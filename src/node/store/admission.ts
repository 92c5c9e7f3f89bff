// Admission: the one door through which bytes become blobs.
//
// Every way content enters the CAS ends here: a tier's stream, an archive
// (an S3 pack, a peer's backfill), a file written inside a mount, an
// ingested file, a tree. Bytes from outside are hashed and named only if
// they hash to the name they claim (nothing from outside is trusted);
// local bytes are named by their hash. After each admission the blob
// index records the blob, the admission counters move
// (vrift_admitted_blobs_total{source=…}), and whoever waits for that
// digest is told (`arrival`): a fetch of the same blob by another caller,
// a peer asking for a blob this node is still fetching.
//
// The low-level writers (cas.ts, blob-writer.ts, blob-batch.ts) are used
// only from here: test/layout checks that nothing else calls them.
import { closeSync, openSync, readSync } from 'node:fs';
import type { Readable } from 'node:stream';
import type { Digest } from '../../lib/digest.js';
import { VriftError } from '../../lib/errors.js';
import type { Metrics } from '../../lib/metrics.js';
import { BaoVerifier } from '../../lib/bao.js';
import { writeBlobs, writeVerifiedBlobs, type BlobSlice } from './blob-batch.js';
import { RangeWriter, type BlobWriter, type WrittenBlob } from './blob-writer.js';
import { blobState, recordGood } from './blob-check.js';
import { hashFileSync, type Cas, type FileBlob } from './cas.js';
import type { Meta } from './meta.js';
import type { StatLike } from './scan.js';
import { checkEncodedTree, type TreeSummary } from './tree.js';

/**
 * Where admitted bytes came from, for counters and messages: a tier's
 * name ("s3", "redis", "peer") for bytes from outside, or one of these.
 */
export type AdmissionSource = string;
export const FROM_INGEST = 'ingest';
export const FROM_MOUNT = 'mount';
export const FROM_LOCAL = 'local';

export const ADMISSION_COUNTERS = {
  blobs: 'vrift_admitted_blobs_total',
  bytes: 'vrift_admitted_bytes_total',
  /** Blobs whose bytes did not hash to their name: discarded. */
  rejected: 'vrift_admission_rejected_total',
} as const;

const CHUNK = 1 << 20;

/** A blob's bytes arriving as a stream, with the size its source announced (if any). */
export interface IncomingBody {
  stream: Readable;
  size?: number;
}

/**
 * Someone who reads a blob while it is admitted (a lazy mount's large
 * file, docs/lazy.md "Large files stream"): told where its bytes land and
 * how far they are verified, through the blob's Bao outboard, in order.
 */
export interface AdmissionWatch {
  /** The blob's outboard (docs/bao.md), from the same tier: untrusted, a wrong one fails verification. */
  outboard: Buffer;
  /** The temp file, already at the blob's full size, is about to be filled; readers may open it once this resolves. */
  opened(tmp: string, size: number): Promise<void>;
  /** Bytes [0, n) are verified. */
  verified(n: number): void;
  /** The blob is admitted (`ok`), or the stream was abandoned: reads of what was not verified must fail. */
  finished(ok: boolean): void;
}

/** A watch as a fetch's caller gives it: the tier the blob comes from supplies the outboard. */
export type BlobWatch = Omit<AdmissionWatch, 'outboard'>;

export function digestMismatch(digest: Digest, detail: string): VriftError {
  return new VriftError('ERR_VRIFT_CAS_DIGEST_MISMATCH', `content of ${digest} ${detail}`, {
    hint: 'the source sent corrupt or wrong bytes; they were discarded',
  });
}

export class Admission {
  private readonly waiting = new Map<Digest, (() => void)[]>();
  private readonly listeners = new Set<(digest: Digest, size: number, source: AdmissionSource) => void>();
  /** One labels object per source: counters are bumped per blob, and Metrics caches keys per labels object. */
  private readonly labelsOf = new Map<AdmissionSource, { source: AdmissionSource }>();

  constructor(
    private readonly cas: Cas,
    private readonly meta: Meta,
    readonly metrics: Metrics,
  ) {}

  // --- bytes from outside: verified ----------------------------------------

  /**
   * Streams `body` into the CAS under `digest`, verified. With
   * `expectedSize`, a body that runs longer is cut off at once (a source
   * cannot fill the disk) and one that ends short fails the digest check.
   * Throws ERR_VRIFT_CAS_DIGEST_MISMATCH when the bytes are wrong; nothing
   * is stored then.
   */
  async stream(digest: Digest, body: IncomingBody, source: AdmissionSource, expectedSize?: number, watch?: AdmissionWatch): Promise<WrittenBlob> {
    const limit = expectedSize ?? body.size;
    if (watch && limit !== undefined) return this.watched(digest, body, source, limit, watch);
    const w = this.cas.writer();
    try {
      for await (const chunk of body.stream as AsyncIterable<Uint8Array>) {
        if (limit !== undefined && w.bytes + chunk.byteLength > limit) {
          body.stream.destroy();
          throw digestMismatch(digest, `is longer than its ${limit} bytes`);
        }
        w.write(chunk);
      }
    } catch (e) {
      w.abort();
      throw e;
    }
    return this.commit(w, digest, source);
  }

  /**
   * `stream` for a watched blob: the temp file gets its full size first,
   * each chunk is verified against the outboard as it is written (the
   * watcher learns the verified prefix). Every group checked against the
   * digest through the hash tree is the blob checked whole: the writer
   * does not hash it again.
   */
  private async watched(digest: Digest, body: IncomingBody, source: AdmissionSource, size: number, watch: AdmissionWatch): Promise<WrittenBlob> {
    // The verifier checks every byte against the digest: the writer need not hash them again.
    const w = this.cas.writer({ hash: false });
    let ok = false;
    try {
      let verifier: BaoVerifier;
      try {
        verifier = new BaoVerifier(digest, size, watch.outboard);
      } catch (e) {
        body.stream.destroy();
        throw digestMismatch(digest, `has an outboard that does not match it (${(e as Error).message})`);
      }
      w.reserve(size);
      await watch.opened(w.tmp, size);
      for await (const chunk of body.stream as AsyncIterable<Uint8Array>) {
        if (w.bytes + chunk.byteLength > size) {
          body.stream.destroy();
          throw digestMismatch(digest, `is longer than its ${size} bytes`);
        }
        w.write(chunk);
        let n: number;
        try {
          n = verifier.push(chunk);
        } catch (e) {
          body.stream.destroy();
          throw digestMismatch(digest, `failed verification at its tree (${(e as Error).message})`);
        }
        watch.verified(n);
      }
      if (!verifier.complete || w.bytes !== size) throw digestMismatch(digest, `ended after ${w.bytes} of its ${size} bytes`);
      const b = this.commit(w, digest, source);
      ok = true;
      return b;
    } catch (e) {
      w.abort();
      throw e;
    } finally {
      watch.finished(ok);
    }
  }

  /** A blob whose verified bytes are written piece by piece (an archive's large blob); `commit` checks the name. */
  writer(source: AdmissionSource): AdmittingWriter {
    return new AdmittingWriter(this, this.cas.writer(), source);
  }

  /** A large blob whose ranges arrive in any order, each verified by the caller through the blob's Bao tree (a swarm's chunks). */
  ranges(size: number, source: AdmissionSource): VerifiedRanges {
    const w = new RangeWriter(this.cas, size);
    return {
      tmp: w.tmp,
      writeAt: (chunk, offset) => w.writeAt(chunk, offset),
      commit: (digest) => this.admitted(w.commit(digest), source),
      abort: () => w.abort(),
    };
  }

  /**
   * Admits the slices of `data` (an archive's small blobs, batched): each
   * is hashed on native threads and written only if it hashes to its
   * digest. Returns the admitted blobs and the digests rejected.
   */
  async batch(data: Buffer, slices: BlobSlice[], source: AdmissionSource): Promise<{ written: WrittenBlob[]; mismatched: Digest[] }> {
    const r = await writeVerifiedBlobs(this.cas, data, slices);
    for (const b of r.written) this.admitted(b, source);
    if (r.mismatched.length > 0) this.metrics.inc(ADMISSION_COUNTERS.rejected, this.labels(source), r.mismatched.length);
    return r;
  }

  /** Stores bytes held in memory; with `expected`, only if they hash to it. */
  buffer(buf: Uint8Array, source: AdmissionSource, expected?: Digest): WrittenBlob {
    try {
      let b = this.cas.putBuffer(buf, expected);
      if (!b.created && this.damaged(b.digest, b.size)) b = this.cas.putBuffer(buf, b.digest);
      return this.admitted(b, source);
    } catch (e) {
      if ((e as { code?: string }).code === 'ERR_VRIFT_CAS_DIGEST_MISMATCH') this.metrics.inc(ADMISSION_COUNTERS.rejected, this.labels(source));
      throw e;
    }
  }

  /** A tree blob from elsewhere: checked (not decoded: checkEncodedTree), then verified against its id, then stored. Its counts. */
  tree(id: Digest, encoded: Uint8Array, source: AdmissionSource): TreeSummary {
    const summary = checkEncodedTree(encoded); // before storing anything
    this.buffer(encoded, source, id);
    return summary;
  }

  // --- local bytes: named by their hash ------------------------------------

  /** Stores a regular file (ingest): refused if it changes while read (ERR_VRIFT_INGEST_CHANGED). */
  file(path: string, listed?: StatLike): FileBlob {
    let b = this.cas.putFile(path, listed);
    // The stored copy is damaged (and now quarantined): these bytes replace it.
    if (!b.created && this.damaged(b.digest, b.size)) b = this.cas.putFile(path);
    this.admitted(b, FROM_INGEST);
    return b;
  }

  /** Stores slices of `data` whose digests the caller computed from these very bytes (ingest's batches). */
  async hashedBatch(data: Buffer, slices: BlobSlice[]): Promise<WrittenBlob[]> {
    const written = await writeBlobs(this.cas, data, slices);
    // Duplicates of a stored blob that turns out damaged: quarantined, then written again from these bytes.
    const again = slices.filter((s, i) => !written[i]!.created && this.damaged(s.digest, s.size));
    if (again.length > 0) {
      const rewritten = new Map((await writeBlobs(this.cas, data, again)).map((b) => [b.digest, b]));
      for (let i = 0; i < written.length; i++) written[i] = rewritten.get(written[i]!.digest) ?? written[i]!;
    }
    for (const b of written) this.admitted(b, FROM_INGEST);
    return written;
  }

  /**
   * A blob the CAS already holds, about to be used as the copy of new
   * bytes: true (and quarantined) when it changed since it was last known
   * good and no longer hashes to its name. A good one that was only touched
   * gets its record renewed.
   */
  private damaged(digest: Digest, size: number): boolean {
    if (blobState(this.cas, this.meta, digest, size) === 'ok') return false;
    let actual: Digest | undefined;
    try {
      actual = hashFileSync(this.cas.pathOf(digest));
    } catch {
      actual = undefined; // gone meanwhile: write ours
    }
    if (actual === digest) {
      this.cas.resetMtime(digest);
      recordGood(this.cas, this.meta, digest, size, { checkedAt: Date.now() });
      return false;
    }
    if (actual !== undefined) this.cas.quarantine(digest);
    return true;
  }

  /**
   * Copies a file written inside a mount (a path, or /proc/<pid>/fd/<n>)
   * into the CAS: copied and hashed, never renamed (the writer may still
   * hold it open).
   */
  copyOf(path: string, onOpenError: (e: unknown) => Error): WrittenBlob {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      throw onOpenError(e);
    }
    const w = this.cas.writer();
    try {
      const buf = Buffer.allocUnsafe(CHUNK);
      for (let pos = 0; ; ) {
        const n = readSync(fd, buf, 0, CHUNK, pos);
        if (n === 0) break;
        w.write(n === CHUNK ? buf : buf.subarray(0, n));
        pos += n;
      }
    } catch (e) {
      w.abort();
      throw e;
    } finally {
      closeSync(fd);
    }
    return this.commit(w, undefined, FROM_MOUNT);
  }

  // --- after every admission -------------------------------------------------

  /** Names a written blob (checked against `expected`, when given) and admits it. */
  commit(w: BlobWriter, expected: Digest | undefined, source: AdmissionSource): WrittenBlob {
    try {
      return this.admitted(w.commit(expected), source);
    } catch (e) {
      if ((e as { code?: string }).code === 'ERR_VRIFT_CAS_DIGEST_MISMATCH') this.metrics.inc(ADMISSION_COUNTERS.rejected, this.labels(source));
      throw e;
    }
  }

  /** Records a blob the CAS now holds, counts it and wakes whoever waits for it. */
  private admitted<B extends WrittenBlob>(b: B, source: AdmissionSource): B {
    // A blob this write created is recorded even if the index lists it (gc may have unlinked it
    // as a writer indexed it); a duplicate of a stored blob costs no write. The record holds the
    // blob file's ctime from after its rename and mtime (blob-check.ts): later checks compare it.
    if (b.created || !this.meta.hasBlob(b.digest)) recordGood(this.cas, this.meta, b.digest, b.size, { lastUse: Date.now(), checkedAt: 0 });
    if (b.created) {
      const labels = this.labels(source);
      this.metrics.inc(ADMISSION_COUNTERS.blobs, labels);
      this.metrics.inc(ADMISSION_COUNTERS.bytes, labels, b.size);
    }
    const waiters = this.waiting.get(b.digest);
    if (waiters) {
      this.waiting.delete(b.digest);
      for (const wake of waiters) wake();
    }
    for (const l of this.listeners) l(b.digest, b.size, source);
    return b;
  }

  private labels(source: AdmissionSource): { source: AdmissionSource } {
    let l = this.labelsOf.get(source);
    if (!l) this.labelsOf.set(source, (l = { source }));
    return l;
  }

  /**
   * Resolves true when `digest` is next admitted in this process, false if
   * `signal` aborts first (the caller checks the store before waiting).
   */
  arrival(digest: Digest, signal?: AbortSignal): Promise<boolean> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve(false);
      const wake = (): void => {
        signal?.removeEventListener('abort', give);
        resolve(true);
      };
      const give = (): void => {
        const list = this.waiting.get(digest);
        const i = list?.indexOf(wake) ?? -1;
        if (i >= 0) list!.splice(i, 1);
        if (list?.length === 0) this.waiting.delete(digest);
        resolve(false);
      };
      signal?.addEventListener('abort', give, { once: true });
      const list = this.waiting.get(digest);
      if (list) list.push(wake);
      else this.waiting.set(digest, [wake]);
    });
  }

  /** Calls `fn` after every admission in this process; returns the function that stops it. */
  onAdmit(fn: (digest: Digest, size: number, source: AdmissionSource) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
}

/** A BlobWriter whose commit goes through the door (verified, recorded, counted). */
/** admission.ranges(): write verified ranges, then commit once all are in. */
export interface VerifiedRanges {
  /** The temp file (readable while ranges arrive: a swarm serves the verified ones on). */
  readonly tmp: string;
  writeAt(chunk: Uint8Array, offset: number): void;
  commit(digest: Digest): WrittenBlob;
  abort(): void;
}

export class AdmittingWriter {
  constructor(
    private readonly door: Admission,
    private readonly w: BlobWriter,
    private readonly source: AdmissionSource,
  ) {}

  get bytes(): number {
    return this.w.bytes;
  }

  write(chunk: Uint8Array): void {
    this.w.write(chunk);
  }

  /** Names the blob `expected` if its bytes hash to it (else ERR_VRIFT_CAS_DIGEST_MISMATCH, nothing stored). */
  commit(expected: Digest): WrittenBlob {
    return this.door.commit(this.w, expected, this.source);
  }

  abort(): void {
    this.w.abort();
  }
}
