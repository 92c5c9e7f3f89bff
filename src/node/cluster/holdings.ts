// What a node tells its peers it holds: the trees it has in full (the
// tree blob and every file blob), newest first, and a Bloom filter of
// all its blobs. Recomputed a little at a time, so a node with a large
// store never stalls its event loop to announce.
import type { Digest } from '../../lib/digest.js';
import { Bloom } from './bloom.js';
import type { Store } from '../store/store.js';
import { decodeTree } from '../store/tree.js';

/** Trees one announcement lists at most (the newest). */
export const MAX_ANNOUNCED_TREES = 1000;
/** Above this many blobs the filter is rebuilt at most every REBUILD_MS (it walks the whole index). */
const CHEAP_REBUILD = 200_000;
const REBUILD_MS = 30_000;

export interface Holdings {
  trees: Digest[];
  treeCount: number;
  blobs: number;
  bloom: Bloom;
}

export class HoldingsSummary {
  private complete = new Set<Digest>();
  /** Incomplete trees, with the blob count when they were checked (rechecked when it grows). */
  private incomplete = new Map<Digest, number>();
  private bloom: Bloom | undefined;
  private bloomCount = -1;
  private bloomAt = 0;
  private lastCount = -1;

  constructor(private readonly store: Store) {}

  /** The current summary, doing at most ~`budgetMs` of tree checks now. */
  refresh(budgetMs = 50): Holdings {
    const meta = this.store.meta;
    const count = meta.blobCount();
    if (count < this.lastCount) {
      // Blobs went away (gc, quarantine): any complete tree may not be any more.
      this.complete.clear();
      this.incomplete.clear();
    }
    this.lastCount = count;
    const deadline = Date.now() + budgetMs;
    const live: { id: Digest; at: number }[] = [];
    for (const { key, value } of meta.trees.getRange()) {
      const at = value.lastUse ?? value.createdAt;
      if (this.complete.has(key)) {
        live.push({ id: key, at });
        continue;
      }
      const checkedAt = this.incomplete.get(key);
      if (checkedAt !== undefined && checkedAt >= count) continue;
      if (Date.now() > deadline) continue; // next time
      if (this.isComplete(key)) {
        this.complete.add(key);
        this.incomplete.delete(key);
        live.push({ id: key, at });
      } else this.incomplete.set(key, count);
    }
    live.sort((a, b) => b.at - a.at);
    if (this.bloom === undefined || (count !== this.bloomCount && (count < CHEAP_REBUILD || Date.now() - this.bloomAt > REBUILD_MS))) {
      const bloom = Bloom.sized(count);
      for (const d of meta.blobDigests()) bloom.add(d);
      this.bloom = bloom;
      this.bloomCount = count;
      this.bloomAt = Date.now();
    }
    return { trees: live.slice(0, MAX_ANNOUNCED_TREES).map((t) => t.id), treeCount: live.length, blobs: count, bloom: this.bloom };
  }

  private isComplete(tree: Digest): boolean {
    const { store } = this;
    if (!store.cas.has(tree)) return false;
    try {
      for (const e of decodeTree(store.cas.readVerified(tree))) {
        if (e.kind === 'file' && !store.meta.hasBlob(e.digest!)) return false;
      }
      return true;
    } catch {
      return false; // unreadable here: not announced
    }
  }
}
