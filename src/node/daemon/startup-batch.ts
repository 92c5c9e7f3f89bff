// The start-up batch of a lazy mount (docs/lazy.md, "The start-up
// batch"): the first blobs of a tree's trace fetched together, by few
// ranged GETs of the packs (resolver.fetchBatch), instead of one fetch per
// blob, and the large blobs among them alongside, each on its own. On a
// cold node its small blobs' frames are read ahead while the listing
// downloads (Resolver.treeToMount, S3's warmInTree: into memory, unchecked,
// nothing stored), and the batch runs (`begin`, from MOUNT) once the
// MOUNT has answered: the trace checked against the tree, what it asks for
// taken from memory and stored; the mount's prefetch takes what it brought
// (`take`). Otherwise the prefetch runs one itself (`run`) before going on
// blob by blob.
import type { Digest } from '../../lib/digest.js';
import type { Resolver, StartupCaps } from '../ops/resolver.js';
import { chooseStartup } from '../ops/startup-choice.js';
import type { Store } from '../store/store.js';
import type { FetchOutcome, Prefetcher, PrefetchItem } from './prefetcher.js';
import type { TraceBook } from './trace-book.js';
import type { TreeBlobs } from '../store/tree-blobs.js';

/** A batch takes the trace's first blobs up to this many bytes, and at most a quarter second of the host's prefetch rate. */
const STARTUP_BATCH_BYTES = 8 << 20;
/** Blobs this large are not in the batch (a batch holds its blobs in memory)… */
const BATCH_BLOB_MAX = 1 << 20;
/** …those among the batch's part of the trace are fetched alongside it, each alone, up to this many bytes. */
const STARTUP_LARGE_BYTES = 64 << 20;
/** A batch begun before a mount is dropped if no mount of its tree takes it within this long. */
const EARLY_KEPT_MS = 60_000;

/** What a start-up batch did. `head`: every blob it fetched (the batch's, then the large ones); `bytes`: the batch's; `large`: how many were fetched alone. */
export interface StartupBatch {
  head: PrefetchItem[];
  bytes: number;
  large: number;
  /** Per blob that arrived, was local, or joined another fetch; blobs absent here are the prefetch's to fetch one by one. */
  outcomes: Map<Digest, FetchOutcome>;
  ms: number;
}

/** A tree's trace read, and its batch run, before its mount was published. */
export interface EarlyStart {
  /** The trace (undefined: none, or none worth using; the trace book logged why). */
  trace?: { blobs: Digest[]; from: string };
  batch?: StartupBatch;
}

export interface StartupBatchesOptions {
  store: Store;
  resolver: () => Resolver;
  prefetcher: Prefetcher;
  traces: TraceBook;
  blobsOf(tree: Digest): TreeBlobs;
  bytesPerSec: number;
  log: (line: string) => void;
}

export class StartupBatches {
  private readonly early = new Map<Digest, Promise<EarlyStart | undefined>>();

  constructor(private readonly opts: StartupBatchesOptions) {}

  /**
   * A tree whose listing just arrived was mounted: reads and checks its
   * trace and runs its batch once `after` settles (the batch's bytes were
   * read ahead with the listing: Resolver.treeToMount). Registered at once,
   * so the mount's prefetch takes it however early it asks.
   */
  begin(tree: Digest, after: Promise<unknown> = Promise.resolve()): void {
    if (this.early.has(tree)) return;
    const started = (async (): Promise<EarlyStart> => {
      await after.catch(() => undefined);
      const trace = await this.opts.traces.load(tree);
      if (!trace) return { trace };
      const blobs = this.opts.blobsOf(tree);
      const items = trace.blobs.flatMap((digest) => {
        const at = blobs.indexOf(digest);
        return at === undefined || this.opts.store.cas.has(digest) ? [] : [{ digest, size: blobs.size(at) }];
      });
      return { trace, batch: await this.run(tree, items) };
    })().catch((e: unknown) => {
      this.opts.log(`prefetch: tree ${tree}: the start-up batch failed (its blobs come one by one): ${(e as Error).message}`);
      return undefined;
    });
    this.early.set(tree, started);
    // Not taken by a mount (its MOUNT failed): dropped.
    setTimeout(() => this.early.get(tree) === started && this.early.delete(tree), EARLY_KEPT_MS).unref();
  }

  /** What `begin` did for `tree`, for its mount's prefetch (once); undefined when it did not run. */
  take(tree: Digest): Promise<EarlyStart | undefined> | undefined {
    const started = this.early.get(tree);
    this.early.delete(tree);
    return started;
  }

  /**
   * The batch of the first `items` (blobs of `tree` missing here, in trace
   * order): undefined when fewer than two fit (a tiny rate).
   */
  async run(tree: Digest, items: readonly PrefetchItem[]): Promise<StartupBatch | undefined> {
    const { head, bytes, large } = this.head(items);
    if (head.length < 2) return undefined;
    const t = Date.now();
    // All these bytes count against the rate; the batch starts at once when the prefetch is idle, and so do the large ones (the job opens them next: a paced fetch would only make it fetch them itself).
    await this.opts.prefetcher.reserve(bytes);
    void this.opts.prefetcher.reserve(large.reduce((a, i) => a + i.size, 0)).catch(() => undefined);
    const resolver = this.opts.resolver();
    const alone = large.map(async (item): Promise<[Digest, FetchOutcome]> => {
      let joined = false;
      const from = await resolver.fetchBlob(item.digest, { size: item.size, tree, joined: (j) => (joined = j) }).catch(() => undefined);
      return [item.digest, { from, joined }];
    });
    const batch = resolver.fetchBatch(tree, head);
    const outcomes = await batch;
    for (const [d, o] of await Promise.all(alone)) outcomes.set(d, o);
    return { head: [...head, ...large], bytes, large: large.length, outcomes, ms: Date.now() - t };
  }

  /** What a batch takes: the bytes of the trace's first small blobs, and how large a blob it leaves to be fetched alone. */
  get caps(): StartupCaps {
    return { bytes: Math.min(STARTUP_BATCH_BYTES, this.opts.bytesPerSec / 4), blobMax: BATCH_BLOB_MAX, largeBytes: STARTUP_LARGE_BYTES };
  }

  /** The trace's first small blobs a batch takes, and the large ones among them. */
  private head(items: readonly PrefetchItem[]): { head: PrefetchItem[]; bytes: number; large: PrefetchItem[] } {
    const { small, bytes, large } = chooseStartup(items, (i) => i.size, this.caps);
    return { head: small, bytes, large };
  }
}
