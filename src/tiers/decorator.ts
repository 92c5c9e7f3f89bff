// The base of a tier that wraps another (metered.ts, guarded.ts): it has
// the wrapped tier's name and limits and passes every call through; a
// decorator overrides only the calls it changes.
import type { Digest } from '../lib/digest.js';
import type { ArchivePart, BlobBody, BlobSource, LazyPart, PrepareOptions, PushResult, RefInfo, RefTarget, Tier, TreePush } from './tier.js';

export abstract class TierDecorator implements Tier {
  readonly name: string;
  readonly writable: boolean;
  readonly maxBlobBytes?: number;
  readonly parallelism: number;
  readonly archiveParallelism?: number;
  readonly looseBlobBytes?: number;
  /** Present exactly when the wrapped tier has a bulk form. */
  readonly fetchTree?: (tree: Digest, want: ReadonlySet<Digest>) => Promise<ArchivePart[] | undefined>;
  readonly pushTree?: (push: TreePush) => Promise<PushResult>;
  readonly getInTree?: (tree: Digest, digest: Digest) => Promise<BlobBody | undefined>;
  readonly getOutboard?: (digest: Digest) => Promise<Buffer | undefined>;
  readonly getRange?: (digest: Digest, offset: number, length: number) => Promise<BlobBody | undefined>;
  readonly getTreeBlob?: (tree: Digest) => Promise<BlobBody | undefined>;
  readonly prepareTree?: (tree: Digest, opts?: PrepareOptions) => Promise<void>;
  readonly warmInTree?: (tree: Digest, digests: readonly Digest[], maxBytes: number, blobMax: number) => Promise<void>;
  readonly getManyInTree?: (tree: Digest, digests: readonly Digest[], onBlob: (digest: Digest, bytes: Buffer) => Promise<void>) => Promise<void>;
  readonly getLazyPart?: (head: Digest, part: LazyPart) => Promise<Buffer | undefined>;
  readonly getLocated?: (tree: Digest, digest: Digest, record: Buffer) => Promise<BlobBody | undefined>;
  readonly getManyLocated?: (tree: Digest, wants: readonly { digest: Digest; record: Buffer }[], onBlob: (digest: Digest, bytes: Buffer) => Promise<void>) => Promise<void>;

  constructor(readonly inner: Tier) {
    this.name = inner.name;
    this.writable = inner.writable;
    this.maxBlobBytes = inner.maxBlobBytes;
    this.parallelism = inner.parallelism;
    this.archiveParallelism = inner.archiveParallelism;
    this.looseBlobBytes = inner.looseBlobBytes;
    if (inner.fetchTree) this.fetchTree = (tree, want) => this.fetchTreeOf(tree, want);
    if (inner.pushTree) this.pushTree = (push) => this.pushTreeOf(push);
    if (inner.getInTree) this.getInTree = (tree, digest) => this.getInTreeOf(tree, digest);
    if (inner.getOutboard) this.getOutboard = (digest) => this.getOutboardOf(digest);
    if (inner.getRange) this.getRange = (digest, offset, length) => this.getRangeOf(digest, offset, length);
    if (inner.getTreeBlob) this.getTreeBlob = (tree) => this.getTreeBlobOf(tree);
    if (inner.prepareTree) this.prepareTree = (tree, opts) => this.prepareTreeOf(tree, opts);
    if (inner.warmInTree) this.warmInTree = (tree, digests, maxBytes, blobMax) => this.warmInTreeOf(tree, digests, maxBytes, blobMax);
    if (inner.getManyInTree) this.getManyInTree = (tree, digests, onBlob) => this.getManyInTreeOf(tree, digests, onBlob);
    if (inner.getLazyPart) this.getLazyPart = (head, part) => this.getLazyPartOf(head, part);
    if (inner.getLocated) this.getLocated = (tree, digest, record) => this.getLocatedOf(tree, digest, record);
    if (inner.getManyLocated) this.getManyLocated = (tree, wants, onBlob) => this.getManyLocatedOf(tree, wants, onBlob);
  }

  warm(): Promise<void> {
    return this.inner.warm?.() ?? Promise.resolve();
  }

  /** The wrapped tier's fetchTree, for a decorator to override (called only when the tier has one). */
  protected fetchTreeOf(tree: Digest, want: ReadonlySet<Digest>): Promise<ArchivePart[] | undefined> {
    return this.inner.fetchTree!(tree, want);
  }

  /** The wrapped tier's pushTree, for a decorator to override (called only when the tier has one). */
  protected pushTreeOf(push: TreePush): Promise<PushResult> {
    return this.inner.pushTree!(push);
  }

  /** The wrapped tier's getInTree, for a decorator to override (called only when the tier has one). */
  protected getInTreeOf(tree: Digest, digest: Digest): Promise<BlobBody | undefined> {
    return this.inner.getInTree!(tree, digest);
  }

  /** The wrapped tier's getManyInTree, for a decorator to override (called only when the tier has one). */
  protected getManyInTreeOf(tree: Digest, digests: readonly Digest[], onBlob: (digest: Digest, bytes: Buffer) => Promise<void>): Promise<void> {
    return this.inner.getManyInTree!(tree, digests, onBlob);
  }

  /** The wrapped tier's warmInTree, for a decorator to override (called only when the tier has one). */
  protected warmInTreeOf(tree: Digest, digests: readonly Digest[], maxBytes: number, blobMax: number): Promise<void> {
    return this.inner.warmInTree!(tree, digests, maxBytes, blobMax);
  }

  /** The wrapped tier's prepareTree, for a decorator to override (called only when the tier has one). */
  protected prepareTreeOf(tree: Digest, opts?: PrepareOptions): Promise<void> {
    return this.inner.prepareTree!(tree, opts);
  }

  /** The wrapped tier's getLazyPart, for a decorator to override (called only when the tier has one). */
  protected getLazyPartOf(head: Digest, part: LazyPart): Promise<Buffer | undefined> {
    return this.inner.getLazyPart!(head, part);
  }

  /** The wrapped tier's getLocated, for a decorator to override (called only when the tier has one). */
  protected getLocatedOf(tree: Digest, digest: Digest, record: Buffer): Promise<BlobBody | undefined> {
    return this.inner.getLocated!(tree, digest, record);
  }

  /** The wrapped tier's getManyLocated, for a decorator to override (called only when the tier has one). */
  protected getManyLocatedOf(tree: Digest, wants: readonly { digest: Digest; record: Buffer }[], onBlob: (digest: Digest, bytes: Buffer) => Promise<void>): Promise<void> {
    return this.inner.getManyLocated!(tree, wants, onBlob);
  }

  /** The wrapped tier's getTreeBlob, for a decorator to override (called only when the tier has one). */
  protected getTreeBlobOf(tree: Digest): Promise<BlobBody | undefined> {
    return this.inner.getTreeBlob!(tree);
  }

  /** The wrapped tier's getOutboard, for a decorator to override (called only when the tier has one). */
  protected getOutboardOf(digest: Digest): Promise<Buffer | undefined> {
    return this.inner.getOutboard!(digest);
  }

  /** The wrapped tier's getRange, for a decorator to override (called only when the tier has one). */
  protected getRangeOf(digest: Digest, offset: number, length: number): Promise<BlobBody | undefined> {
    return this.inner.getRange!(digest, offset, length);
  }

  has(digests: readonly Digest[]): Promise<Set<Digest>> {
    return this.inner.has(digests);
  }

  get(digest: Digest): Promise<BlobBody | undefined> {
    return this.inner.get(digest);
  }

  put(digest: Digest, source: BlobSource): Promise<void> {
    return this.inner.put(digest, source);
  }

  getRef(name: string): Promise<RefTarget | undefined> {
    return this.inner.getRef(name);
  }

  setRef(name: string, target: RefTarget): Promise<void> {
    return this.inner.setRef(name, target);
  }

  listRefs(prefix: string, limit?: number): Promise<RefInfo[]> {
    return this.inner.listRefs(prefix, limit);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
