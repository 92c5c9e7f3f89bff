// Background prefetch: the host's one scheduler of the blobs lazy mounts
// are expected to open (their trees' traces, in trace order). It never
// competes with programs for more than it must:
//   - bytes are paced to `mount.prefetchBytesPerSec` for the whole host;
//   - at most `mount.prefetchConcurrency` fetches run, and only one while
//     a program waits for a demand fetch (FETCH) of a blob off the trace:
//     demand goes straight to the resolver and so jumps the queue. A
//     program that opens a blob further on in a trace shows the prefetch
//     is behind it: the prefetch goes on from there, at full width (the
//     program follows the trace, so what comes next is what it needs), and
//     comes back for the blobs it passed once the trace's end is reached;
//   - a demand for a blob being prefetched joins that fetch (the
//     resolver's single flight), and a queued blob a program opened first
//     is skipped once it is local.
// Mounts take turns, one blob each. A job stops when its mount goes, when
// the mount switches to a bulk pull, or when the daemon stops.
import type { Digest } from '../../lib/digest.js';
import { Pacer } from '../../lib/pacer.js';

export interface PrefetchItem {
  digest: Digest;
  size: number;
}

/** What fetching one blob did: the tier it came from ("local" if it was already here, undefined if no tier had it), and whether it joined a fetch already running. */
export interface FetchOutcome {
  from: string | undefined;
  joined: boolean;
}

export interface PrefetchJob {
  /** For messages (the mount's path). */
  readonly name: string;
  readonly tree: Digest;
  /** Blobs left, in the order to fetch them. */
  readonly items: readonly PrefetchItem[];
  /** Already local (skipped without a fetch or a share of the rate). */
  isLocal(digest: Digest): boolean;
  onFetched(item: PrefetchItem, outcome: FetchOutcome): void;
  onFailed(item: PrefetchItem, error: Error): void;
  /** Called once: every item was tried (`done`) or the job was cancelled. */
  onEnd(how: 'done' | 'cancelled'): void;
}

export interface PrefetcherOptions {
  bytesPerSec: number;
  concurrency: number;
  fetch(digest: Digest, size: number, tree: Digest): Promise<FetchOutcome>;
}

interface Running {
  job: PrefetchJob;
  /** Each blob's place in the job's items. */
  position: Map<Digest, number>;
  next: number;
  /** Items passed when a program got ahead (ranges [from, to) of `items`), fetched after the end. */
  passed: [number, number][];
  inFlight: number;
  ended: boolean;
  /** Ends the job's pacing waits (its mount went, or the daemon stops). */
  cancelled: AbortController;
}

export class Prefetcher {
  private readonly jobs: Running[] = [];
  private readonly pacer: Pacer;
  private stopped = false;
  private running = 0;
  private demand = 0;
  private turn = 0;

  constructor(private readonly opts: PrefetcherOptions) {
    this.pacer = new Pacer(opts.bytesPerSec);
  }

  add(job: PrefetchJob): void {
    if (this.stopped) return job.onEnd('cancelled');
    const position = new Map<Digest, number>();
    job.items.forEach((item, i) => position.has(item.digest) || position.set(item.digest, i));
    this.jobs.push({ job, position, next: 0, passed: [], inFlight: 0, ended: false, cancelled: new AbortController() });
    this.pump();
  }

  /** Reserves `bytes` of the host's prefetch rate for a transfer of the caller's own (a batch); resolves when it may start. */
  reserve(bytes: number, signal?: AbortSignal): Promise<void> {
    return this.pacer.take(bytes, signal);
  }

  /** Stops a job: nothing more starts for it (fetches already running finish). */
  cancel(job: PrefetchJob): void {
    const r = this.jobs.find((x) => x.job === job);
    if (r) this.end(r, 'cancelled');
  }

  /** Blobs not yet started for `job`. */
  queued(job: PrefetchJob): number {
    const r = this.jobs.find((x) => x.job === job);
    return r ? r.job.items.length - r.next + r.passed.reduce((n, [a, b]) => n + b - a, 0) : 0;
  }

  /**
   * A program waits for blob `digest`: off every trace, prefetch narrows to
   * one fetch until the returned function is called; on a trace past the
   * prefetch, that job goes on from there.
   */
  demandBegins(digest?: Digest): () => void {
    let onTrace = false;
    for (const r of this.jobs) {
      const at = digest === undefined ? undefined : r.position.get(digest);
      if (at === undefined) continue;
      onTrace = true;
      if (at >= r.next) {
        if (at > r.next) r.passed.push([r.next, at]);
        r.next = at + 1;
      }
    }
    if (onTrace) return () => undefined;
    this.demand++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.demand--;
      this.pump();
    };
  }

  /** Cancels every job (daemon stop); a pacing wait ends at once. */
  stop(): void {
    this.stopped = true;
    for (const r of [...this.jobs]) this.end(r, 'cancelled');
  }

  private limit(): number {
    return this.demand > 0 ? 1 : this.opts.concurrency;
  }

  private pump(): void {
    while (this.running < this.limit()) {
      const pick = this.nextItem();
      if (!pick) return;
      const [r, item] = pick;
      this.running++;
      r.inFlight++;
      void this.fetchOne(r, item).finally(() => {
        this.running--;
        r.inFlight--;
        if (!r.ended && r.next >= r.job.items.length && r.passed.length === 0 && r.inFlight === 0) this.end(r, 'done');
        this.pump();
      });
    }
  }

  /** The next blob to start, mounts taking turns; jobs with nothing left to start and nothing running end here. */
  private nextItem(): [Running, PrefetchItem] | undefined {
    for (let tries = 0; tries < this.jobs.length; tries++) {
      const r = this.jobs[this.turn++ % this.jobs.length]!;
      const item = this.takeFrom(r);
      if (item) return [r, item];
      if (r.inFlight === 0) {
        this.end(r, 'done');
        tries--; // the list shrank
      }
    }
    return undefined;
  }

  /** The job's next item not yet local: on from where it is, then those a program made it pass. */
  private takeFrom(r: Running): PrefetchItem | undefined {
    while (r.next < r.job.items.length) {
      const item = r.job.items[r.next++]!;
      if (!r.job.isLocal(item.digest)) return item;
    }
    while (r.passed.length > 0) {
      const range = r.passed[0]!;
      const item = r.job.items[range[0]++]!;
      if (range[0] >= range[1]) r.passed.shift();
      if (!r.job.isLocal(item.digest)) return item;
    }
    return undefined;
  }

  private async fetchOne(r: Running, item: PrefetchItem): Promise<void> {
    try {
      await this.pacer.take(item.size, r.cancelled.signal);
    } catch {
      return; // cancelled
    }
    if (r.ended || r.job.isLocal(item.digest)) return; // a program opened it meanwhile
    try {
      r.job.onFetched(item, await this.opts.fetch(item.digest, item.size, r.job.tree));
    } catch (e) {
      r.job.onFailed(item, e as Error);
    }
  }

  private end(r: Running, how: 'done' | 'cancelled'): void {
    if (r.ended) return;
    r.ended = true;
    r.cancelled.abort();
    const i = this.jobs.indexOf(r);
    if (i >= 0) this.jobs.splice(i, 1);
    r.job.onEnd(how);
  }
}
