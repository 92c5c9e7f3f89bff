// A tier whose traffic is counted (a decorator, as bazel-remote's and
// Buildbarn's metrics wrappers): hits and misses of `get` and `getInTree` (and
// the hits of `getTreeBlob`), blobs and bytes
// received (a blob's body as it is read; an archive's blobs as they are
// admitted) and sent. Names are the Prometheus ones of TIER_COUNTERS,
// labelled with the tier. Failures are counted by the guard (guarded.ts).
import { Transform, type TransformCallback } from 'node:stream';
import type { Digest } from '../lib/digest.js';
import { TIER_COUNTERS as M, type Metrics } from '../lib/metrics.js';
import { TierDecorator } from './decorator.js';
import type { ArchivePart, BlobBody, BlobSource, PushResult, Tier, TreePush } from './tier.js';

export class MeteredTier extends TierDecorator {
  private readonly labels: { tier: string };

  constructor(
    inner: Tier,
    private readonly metrics: Metrics,
  ) {
    super(inner);
    this.labels = { tier: inner.name };
  }

  protected override async fetchTreeOf(tree: Digest, want: ReadonlySet<Digest>): Promise<ArchivePart[] | undefined> {
    return (await super.fetchTreeOf(tree, want))?.map((p) => this.countPart(p));
  }

  protected override async pushTreeOf(push: TreePush): Promise<PushResult> {
    const r = await super.pushTreeOf(push);
    this.sent(r.blobs, r.bytes);
    return r;
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

  override async get(digest: Digest): Promise<BlobBody | undefined> {
    return this.countBody(await this.inner.get(digest));
  }

  protected override async getInTreeOf(tree: Digest, digest: Digest): Promise<BlobBody | undefined> {
    return this.countBody(await super.getInTreeOf(tree, digest));
  }

  protected override async getRangeOf(digest: Digest, offset: number, length: number): Promise<BlobBody | undefined> {
    return this.countBody(await super.getRangeOf(digest, offset, length));
  }

  /** Each blob a batch read counts as a hit, its bytes as received. */
  protected override getManyInTreeOf(tree: Digest, digests: readonly Digest[], onBlob: (digest: Digest, bytes: Buffer) => Promise<void>): Promise<void> {
    return super.getManyInTreeOf(tree, digests, (digest, bytes) => {
      this.metrics.inc(M.hits, this.labels);
      this.metrics.inc(M.blobsIn, this.labels);
      this.metrics.inc(M.bytesIn, this.labels, bytes.length);
      return onBlob(digest, bytes);
    });
  }

  /** A hit counts like `get`'s; a miss does not (the tier is then asked with `get`, which counts it). */
  protected override async getTreeBlobOf(tree: Digest): Promise<BlobBody | undefined> {
    const body = await super.getTreeBlobOf(tree);
    return body && this.countBody(body);
  }

  /** A hit or a miss, and the body's bytes as they are read. */
  private countBody(body: BlobBody | undefined): BlobBody | undefined {
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

  override async put(digest: Digest, source: BlobSource): Promise<void> {
    await this.inner.put(digest, source);
    this.sent(1, source.size);
  }
}
