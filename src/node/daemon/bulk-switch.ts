// When a lazy mount stops fetching file by file and pulls the rest of its
// tree in bulk (the restore path: S3 packs, peer backfill), so a job that
// ends up reading most of the tree is not slower than restore-then-run.
// Two signs, each with its own setting (section "mount"):
//   - volume: the blobs this mount needed from the tiers (opened, or
//     prefetched because earlier runs opened them) pass a share of the
//     tree's distinct blobs or bytes;
//   - a sequential scan: programs open missing blobs one after another in
//     tree order (tar, a hash of every file, a copy), however big the tree.
import type { LazyConfig } from '../mount/lazy-config.js';

/** Fewer blobs than this never count as "most of the tree" (a 3-file tree is a third read after one open). */
export const BULK_MIN_BLOBS = 8;
/** A scan may skip this many blobs between two opens (those already local, or opened before) and still run on. */
export const SCAN_GAP = 8;

export interface Amount {
  blobs: number;
  bytes: number;
}

export class BulkSwitch {
  private last = -1;
  private run = 0;

  constructor(
    private readonly tree: Amount,
    private readonly cfg: Pick<LazyConfig, 'bulkAfterPercent' | 'bulkAfterSequential'>,
  ) {}

  /** Why `needed` (blobs that come, or will come, one by one) is most of the tree; undefined while it is not. */
  byVolume(needed: Amount): string | undefined {
    const pct = this.cfg.bulkAfterPercent;
    if (pct === 0 || needed.blobs < BULK_MIN_BLOBS) return undefined;
    if (needed.blobs * 100 >= pct * this.tree.blobs) return `${needed.blobs} of its ${this.tree.blobs} blobs (${share(needed.blobs, this.tree.blobs)})`;
    if (needed.bytes * 100 >= pct * this.tree.bytes) return `${needed.bytes} of its ${this.tree.bytes} bytes (${share(needed.bytes, this.tree.bytes)})`;
    return undefined;
  }

  /**
   * A program opened the missing blob at `index` (tree order): why this is
   * a scan, or undefined. `skipped(a, b)` counts the blobs strictly between
   * two opens that a scan passed by while they are still missing (by
   * default all of them); blobs that came meanwhile beside another (the
   * rest of an S3 pack's frame) or were local are no gap in a scan.
   */
  opened(index: number, skipped: (from: number, to: number) => number = (a, b) => b - a - 1): string | undefined {
    const n = this.cfg.bulkAfterSequential;
    this.run = index > this.last && (this.last < 0 || skipped(this.last, index) <= SCAN_GAP) ? this.run + 1 : 1;
    this.last = index;
    return n > 0 && this.run >= n ? `programs opened ${this.run} missing blobs in a row in tree order` : undefined;
  }
}

function share(part: number, whole: number): string {
  return `${Math.floor((part * 100) / Math.max(1, whole))}%`;
}
