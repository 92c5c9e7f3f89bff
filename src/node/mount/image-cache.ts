// The VDir images of recently mounted trees, so that mounting the same tree
// again (another directory, another CI job on this host) is a memory copy
// instead of decoding the tree and inserting every entry (see
// MountManager.publish). Trees are immutable and every image is built for
// this daemon's CAS; what can go stale is the blob ctimes the entries carry
// (a hard link moves one): a mount that finds one stale forgets its tree's
// image, so the next mount builds a fresh one. The cache is bounded by
// bytes and forgets the least recently used tree first.
import type { Digest } from '../../lib/digest.js';

export interface MountImage {
  /** VDir.image() of a fresh mount of the tree (no overlay). */
  image: Buffer;
  /** Digests of the tree's executable files (their `.x` twins are ensured at each mount). */
  execDigests: Digest[];
}

/** Default bound: ~25 mounts of 50 000 files (a 50 000-file image is ~5 MB). */
export const MOUNT_IMAGE_CACHE_BYTES = 128 << 20;

export class MountImageCache {
  // Map iteration order is insertion order: re-inserting on a hit makes the
  // first key the least recently used.
  private readonly byTree = new Map<Digest, MountImage>();
  private bytes = 0;
  hits = 0;
  misses = 0;

  constructor(readonly maxBytes = MOUNT_IMAGE_CACHE_BYTES) {}

  get(tree: Digest): MountImage | undefined {
    const img = this.byTree.get(tree);
    if (!img) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    this.byTree.delete(tree);
    this.byTree.set(tree, img);
    return img;
  }

  /** Keeps `img` unless it alone is larger than the bound; evicts the oldest to make room. */
  set(tree: Digest, img: MountImage): void {
    const size = img.image.byteLength;
    if (size > this.maxBytes) return;
    this.delete(tree);
    for (const [old] of this.byTree) {
      if (this.bytes + size <= this.maxBytes) break;
      this.delete(old);
    }
    this.byTree.set(tree, img);
    this.bytes += size;
  }

  /** Drops the image of `tree` (its blob ctimes went stale). */
  forget(tree: Digest): void {
    this.delete(tree);
  }

  has(tree: Digest): boolean {
    return this.byTree.has(tree);
  }

  stats(): { trees: number; bytes: number; maxBytes: number; hits: number; misses: number } {
    return { trees: this.byTree.size, bytes: this.bytes, maxBytes: this.maxBytes, hits: this.hits, misses: this.misses };
  }

  private delete(tree: Digest): void {
    const img = this.byTree.get(tree);
    if (!img) return;
    this.byTree.delete(tree);
    this.bytes -= img.image.byteLength;
  }
}
