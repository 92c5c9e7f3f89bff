// A tier whose traffic is counted (a decorator, as bazel-remote's and
// Buildbarn's metrics wrappers): hits and misses of `get`, blobs and bytes
// received (a blob's body as it is read; an archive's blobs as they are
// admitted) and sent. Names are the Prometheus ones of TIER_COUNTERS,
// labelled with the tier. Failures are counted by the guard (guarded.ts).
import { Transform, type TransformCallback } from 'node:stream';
import type { Digest } from '../lib/digest.js';
import { TIER_COUNTERS as M, type Metrics } from '../lib/metrics.js';
import type { ArchivePart, BlobBody, BlobSource, PushResult, RefInfo, Tier, TreePush } from './tier.js';

export class MeteredTier implements Tier {
  readonly name: string;
  readonly writable: boolean;
  readonly maxBlobBytes?: number;
  readonly parallelism: number;
  readonly archiveParallelism?: number;
  readonly looseBlobBytes?: number;
  readonly fetchTree?: Tier['fetchTree'];
  readonly pushTree?: Tier['pushTree'];
  private readonly labels: { tier: string };

  constructor(
    readonly inner: Tier,
    private readonly metrics: Metrics,
  ) {
    this.name = inner.name;
    this.writable = inner.writable;
    this.maxBlobBytes = inner.maxBlobBytes;
    this.parallelism = inner.parallelism;
    this.archiveParallelism = inner.archiveParallelism;
    this.looseBlobBytes = inner.looseBlobBytes;
    this.labels = { tier: inner.name };
    if (inner.fetchTree) this.fetchTree = async (tree, want) => (await inner.fetchTree!(tree, want))?.map((p) => this.countPart(p));
    if (inner.pushTree) {
      this.pushTree = async (push: TreePush): Promise<PushResult> => {
        const r = await inner.pushTree!(push);
        this.sent(r.blobs, r.bytes);
        return r;
      };
    }
  }

  private sent(blobs: number, bytes: number): void {
    this.metrics.inc(M.blobsOut, this.labels, blobs);
    this.metrics.inc(M.bytesOut, this.labels, bytes);
  }

  /** Counted per archive's blob as the reader admits it (tens of thousands stream through one part). */
  private countPart(p: ArchivePart): ArchivePart {
    return {
      ...p,
      onReject: p.onReject?.bind(p),
      onAdmit: (digest, size) => {
        this.metrics.inc(M.hits, this.labels);
        this.metrics.inc(M.blobsIn, this.labels);
        this.metrics.inc(M.bytesIn, this.labels, size);
        p.onAdmit?.(digest, size);
      },
    };
  }

  has(digests: readonly Digest[]): Promise<Set<Digest>> {
    return this.inner.has(digests);
  }

  async get(digest: Digest): Promise<BlobBody | undefined> {
    const body = await this.inner.get(digest);
    if (!body) {
      this.metrics.inc(M.misses, this.labels);
      return undefined;
    }
    this.metrics.inc(M.hits, this.labels);
    this.metrics.inc(M.blobsIn, this.labels);
    const { metrics, labels } = this;
    const counter = new Transform({
      transform(chunk: Buffer, _enc: string, cb: TransformCallback) {
        metrics.inc(M.bytesIn, labels, chunk.byteLength);
        cb(null, chunk);
      },
    });
    body.stream.on('error', (e) => counter.destroy(e));
    return { ...body, stream: body.stream.pipe(counter) };
  }

  async put(digest: Digest, source: BlobSource): Promise<void> {
    await this.inner.put(digest, source);
    this.sent(1, source.size);
  }

  getRef(name: string): Promise<Digest | undefined> {
    return this.inner.getRef(name);
  }

  setRef(name: string, tree: Digest): Promise<void> {
    return this.inner.setRef(name, tree);
  }

  listRefs(prefix: string, limit?: number): Promise<RefInfo[]> {
    return this.inner.listRefs(prefix, limit);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
