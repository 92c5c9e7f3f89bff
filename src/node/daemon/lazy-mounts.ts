// Lazy mounts, as the daemon runs them (docs/lazy.md): per mount, what its
// programs' opens fetched (FETCH, fetch.ts), what was already local when it
// was mounted, what prefetch brought in the order of the tree's trace
// (prefetcher.ts, trace-book.ts), and whether it switched to pulling the
// rest of its tree in bulk (bulk-switch.ts). `vrift status --json` shows
// all of it per mount, so lazy versus eager is never silent.
import { resolve } from 'node:path';
import type { Digest } from '../../lib/digest.js';
import type { Metrics } from '../../lib/metrics.js';
import type { LazyConfig } from '../mount/lazy-config.js';
import type { BlobCtime, MountManager, MountRecord } from '../mount/mounts.js';
import type { Resolver, StartupCaps } from '../ops/resolver.js';
import type { Store } from '../store/store.js';
import { BulkSwitch, type Amount } from './bulk-switch.js';
import { Prefetcher, type FetchOutcome, type PrefetchItem, type PrefetchJob } from './prefetcher.js';
import { StartupBatches, type StartupBatch } from './startup-batch.js';
import { TraceBook } from './trace-book.js';
import { PartialCounts } from './partial-counts.js';
import type { TreeBlobs } from '../store/tree-blobs.js';

/** Blobs checked between two turns of the event loop when counting what a new mount has locally. */
const COUNT_BATCH = 4096;
/** How often what a bulk pull brought is named local in the mount's VDir (one batch each time). */
const PUBLISH_ARRIVED_MS = 200;
/** A scan's gap is looked up blob by blob (a stat each) only up to this far. */
const MAX_GAP_LOOKUPS = 512;

export const LAZY_COUNTERS = {
  prefetchedBlobs: 'vrift_mount_prefetched_blobs_total',
  prefetchedBytes: 'vrift_mount_prefetched_bytes_total',
  bulkSwitches: 'vrift_mount_bulk_switches_total',
} as const;

type PrefetchState = 'starting' | 'off' | 'nothing missing' | 'no trace' | 'running' | 'done' | 'stopped' | 'bulk';

export interface BulkStatus {
  /** What made the mount switch (one line, also logged). */
  reason: string;
  state: 'running' | 'done' | 'failed';
  /** Blobs and bytes the bulk pull brought. */
  blobs: number;
  bytes: number;
  error?: string;
}

/** What `vrift status --json` shows of a mount, beside its record. */
export interface LazyMountStatus {
  /** A partial mount (its tree known by names only): every count below is by file, not distinct blob (partial-counts.ts). */
  partial?: true;
  /** The tree's distinct file blobs. */
  treeBlobs: Amount;
  /** Of those, already local when it was mounted (counted just after, in the background). */
  local: Amount;
  /** Fetched because a program opened them (FETCH), since the daemon started. */
  fetchedOnOpen: Amount;
  /** Fetched ahead of any open, in trace order. */
  prefetched: Amount;
  prefetch: { state: PrefetchState; trace: number; traceFrom: string | null; queued: number; failed: number };
  /** Set once the mount switched to pulling the rest of its tree in bulk. */
  bulk: BulkStatus | null;
}

interface LazyMount {
  rec: MountRecord;
  blobs: TreeBlobs;
  status: LazyMountStatus;
  /** Blobs this mount brought (opened or prefetched): not "local at mount" if the count reaches them later. */
  brought: Set<Digest>;
  /** Per blob (tree order): 1 if it was local at mount (set by countLocal). */
  localAtMount: Uint8Array;
  switch: BulkSwitch;
  job?: PrefetchJob;
  gone: boolean;
}

export interface LazyMountsOptions {
  store: Store;
  mounts: MountManager;
  resolver: () => Resolver;
  config: LazyConfig;
  metrics: Metrics;
  log: (line: string) => void;
}

export class LazyMounts {
  private readonly byPath = new Map<string, LazyMount>();
  /** Partial mounts' counts, by path, until their full listing makes them mounts of byPath. */
  private readonly partialByPath = new Map<string, PartialCounts>();
  /** Partial mounts' prefetch of their traced files past the start-up set, by path. */
  private readonly partialJobs = new Map<string, PrefetchJob>();
  private readonly prefetcher: Prefetcher;
  private readonly traces: TraceBook;
  private readonly startup: StartupBatches;
  private stopped = false;

  constructor(private readonly opts: LazyMountsOptions) {
    const { config } = opts;
    this.prefetcher = new Prefetcher({
      bytesPerSec: config.prefetchBytesPerSec,
      concurrency: config.prefetchConcurrency,
      fetch: async (digest, size, tree) => {
        let joined = false;
        const from = await this.opts.resolver().fetchBlob(digest, { size, tree, joined: (j) => (joined = j) });
        return { from, joined };
      },
    });
    this.traces = new TraceBook({ store: opts.store, resolver: opts.resolver, log: opts.log, isBlobOf: (tree) => this.isBlobOf(tree) });
    this.startup = new StartupBatches({
      store: opts.store,
      resolver: opts.resolver,
      prefetcher: this.prefetcher,
      traces: this.traces,
      blobsOf: (tree) => this.blobsOf(tree),
      bytesPerSec: config.prefetchBytesPerSec,
      log: opts.log,
    });
  }

  /** Whether mounts prefetch (mount.prefetch): a cold mount then reads its tree's trace along with its listing. */
  get prefetching(): boolean {
    return this.opts.config.prefetch;
  }

  /** What a cold mount's start-up batch takes (its blobs are read ahead with the listing: Resolver.treeToMount). */
  get startupCaps(): StartupCaps {
    return this.startup.caps;
  }

  /** Daemon start: takes on every mount restored from LMDB (a restart resumes their prefetch). */
  start(): void {
    for (const rec of this.opts.mounts.records()) if (this.opts.mounts.recordOf(rec.path)) this.attach(rec);
  }

  /** Daemon stop: prefetch stops, traces are saved and pushed. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.prefetcher.stop();
    await this.traces.stop();
  }

  /**
   * A tree this node just fetched the listing of was mounted (MOUNT on a
   * cold node): its trace is read and checked, and its start-up batch run,
   * once `after` settles (the MOUNT's answer is out); its bytes were read
   * ahead with the listing (Resolver.treeToMount). The mount's prefetch
   * (attach) takes what the batch brought.
   */
  early(tree: Digest, after: Promise<unknown> = Promise.resolve()): void {
    if (!this.opts.config.prefetch || this.stopped) return;
    this.startup.begin(tree, after);
  }

  /**
   * A tree was just mounted (or restored): count what is local, then
   * prefetch by its trace. Taken on once `after` settles (the MOUNT's
   * answer is out: its blob list costs ~20 ms for 100 000 entries), or at
   * once when a program's open or a status asks for the mount first.
   */
  attach(rec: MountRecord, after: Promise<unknown> = Promise.resolve()): void {
    if (this.stopped) return;
    this.pending.set(rec.path, rec);
    const go = () => void setImmediate(() => this.attachPending(rec.path));
    void after.then(go, go);
  }

  /** Mounts attach() was told of and has not taken on yet, by path. */
  private readonly pending = new Map<string, MountRecord>();

  /** The mount at `path` (absolute), taken on now if attach() left it pending. */
  private mountAt(path: string): LazyMount | undefined {
    this.attachPending(path);
    return this.byPath.get(path);
  }

  private attachPending(path: string): void {
    const rec = this.pending.get(path);
    if (!rec) return;
    this.pending.delete(path);
    if (!this.stopped) this.attachNow(rec);
  }

  private attachNow(rec: MountRecord): void {
    if (rec.lazy !== undefined && !this.opts.store.hasTree(rec.tree)) return; // a partial mount: no listing to count by
    let blobs: TreeBlobs;
    try {
      blobs = this.blobsOf(rec.tree);
    } catch (e) {
      // The mount itself is fine; only its accounting and prefetch are lost.
      return this.opts.log(`prefetch: ${rec.path}: cannot read tree ${rec.tree}: ${(e as Error).message}`);
    }
    const zero = (): Amount => ({ blobs: 0, bytes: 0 });
    const m: LazyMount = {
      rec,
      blobs,
      brought: new Set(),
      localAtMount: new Uint8Array(blobs.count),
      switch: new BulkSwitch({ blobs: blobs.count, bytes: blobs.bytes }, this.opts.config),
      gone: false,
      status: {
        treeBlobs: { blobs: blobs.count, bytes: blobs.bytes },
        local: zero(),
        fetchedOnOpen: zero(),
        prefetched: zero(),
        prefetch: { state: 'starting', trace: 0, traceFrom: null, queued: 0, failed: 0 },
        bulk: null,
      },
    };
    if (this.byPath.has(rec.path)) this.detach(rec.path);
    // (a partial mount that read its full listing: what its programs fetched so far still counts, and its
    // prefetch from now on works on the listing)
    this.cancelPartialJob(rec.path);
    const before = this.partialByPath.get(rec.path)?.status;
    if (before) {
      m.status.fetchedOnOpen = { ...before.fetchedOnOpen };
      m.status.prefetched = { ...before.prefetched };
      this.partialByPath.delete(rec.path);
    }
    this.byPath.set(rec.path, m);
    void this.begin(m).catch((e: unknown) => this.opts.log(`prefetch: ${rec.path}: ${(e as Error).message}`));
  }

  /** The mount at `path` went: its prefetch stops, its tree's trace is saved and pushed if no other mount has it. */
  detach(path: string): void {
    this.pending.delete(resolve(path));
    this.partialByPath.delete(resolve(path));
    this.cancelPartialJob(resolve(path));
    const m = this.byPath.get(resolve(path));
    if (!m) return;
    m.gone = true;
    this.byPath.delete(m.rec.path);
    if (m.job) this.prefetcher.cancel(m.job);
    if (![...this.byPath.values()].some((o) => o.rec.tree === m.rec.tree)) this.traces.release(m.rec.tree);
  }

  /** Counts `bytes` of a fetch of the caller's own against the host's prefetch rate (resolves when it may start). */
  reservePrefetch(bytes: number): Promise<void> {
    return this.prefetcher.reserve(bytes);
  }

  /** A program waits for a fetch of `digest`: prefetch narrows (or catches up) until the returned function is called. */
  demandBegins(digest?: Digest): () => void {
    return this.prefetcher.demandBegins(digest);
  }

  /**
   * A program in a partial mount of `tree` opened a file whose blob is
   * `digest` (checked against the tree's lazy index): the tree's trace
   * records it, as for any mount. A trace pushed from such a mount merges
   * only the tiers' entries this node has checked (`partial`).
   */
  tracePartial(tree: Digest, digest: Digest, partial: { knows(d: Digest): boolean }): void {
    this.partials.set(tree, partial);
    this.traces.note(tree, digest);
  }

  /** Trees mounted partially: which digests are known to be theirs. */
  private readonly partials = new Map<Digest, { knows(d: Digest): boolean }>();

  /** A program in mount `path` opened `digest` through FETCH; `fetched`: this FETCH brought it (it was neither local nor being fetched). */
  served(path: string, digest: Digest, fetched: boolean): void {
    const m = this.mountAt(resolve(path));
    const at = m?.blobs.indexOf(digest);
    if (!m || at === undefined) return; // not a blob of the mounted tree (a file written in the mount)
    this.traces.note(m.rec.tree, digest);
    if (!fetched) return;
    m.brought.add(digest);
    add(m.status.fetchedOnOpen, m.blobs.size(at));
    const why = m.switch.opened(at, (a, b) => this.stillMissing(m, a, b)) ?? this.byVolume(m);
    if (why) this.toBulk(m, why);
  }

  /**
   * A traced partial mount's files past its start-up set (large ones, or
   * past its byte cap: `places`, in trace order), prefetched as any
   * mount's are (paced, at most prefetchConcurrency at once, a program's
   * open first); `arrived` is told of each file once its blob is here.
   */
  prefetchPartial(
    rec: MountRecord,
    places: readonly { digest: Digest; file: { size: number } }[],
    arrived: (digest: Digest, wasLocal: boolean) => void,
  ): Promise<void> {
    const items: PrefetchItem[] = [];
    const seen = new Set<Digest>();
    for (const p of places) {
      if (p.file.size === 0 || seen.has(p.digest)) continue;
      seen.add(p.digest);
      if (this.opts.store.cas.has(p.digest)) arrived(p.digest, true);
      else items.push({ digest: p.digest, size: p.file.size });
    }
    if (items.length === 0 || this.stopped) return Promise.resolve();
    return new Promise((done) => {
      const job: PrefetchJob = {
        name: rec.path,
        tree: rec.tree,
        items,
        isLocal: (d) => this.opts.store.cas.has(d),
        onFetched: (item, outcome) => outcome.from !== undefined && arrived(item.digest, false),
        onFailed: (item, e) => this.opts.log(`prefetch: ${rec.path}: blob ${item.digest}: ${e.message}`),
        onEnd: () => {
          if (this.partialJobs.get(rec.path) === job) this.partialJobs.delete(rec.path);
          done();
        },
      };
      this.cancelPartialJob(rec.path);
      this.partialJobs.set(rec.path, job);
      this.prefetcher.add(job);
    });
  }

  private cancelPartialJob(path: string): void {
    const job = this.partialJobs.get(path);
    if (job) this.prefetcher.cancel(job);
  }

  /** The counts of the partial mount at `path` (made with `make` the first time: at MOUNT, or at a first open after a restart). */
  partialCounts(path: string, make: () => PartialCounts): PartialCounts {
    const abs = resolve(path);
    let c = this.partialByPath.get(abs);
    if (!c) this.partialByPath.set(abs, (c = make()));
    return c;
  }

  statusOf(path: string): LazyMountStatus | undefined {
    const m = this.mountAt(resolve(path));
    if (!m) return this.partialByPath.get(resolve(path))?.status;
    const s = m.status;
    return { ...s, prefetch: { ...s.prefetch, queued: m.job ? this.prefetcher.queued(m.job) : 0 } };
  }

  private async begin(m: LazyMount): Promise<void> {
    const p = m.status.prefetch;
    const earlyRun = this.startup.take(m.rec.tree);
    // (A cold mount read its trace with its listing: early. Otherwise it is read once the count shows blobs missing: no network for a local tree.)
    const early = earlyRun && (await earlyRun);
    const earlyBatch = early?.batch;
    const earlyOutcomes: [PrefetchItem, FetchOutcome][] = [];
    if (earlyBatch) {
      // What the batch brought is this mount's prefetch, not "local at mount" (counted below).
      for (const item of earlyBatch.head) {
        const o = earlyBatch.outcomes.get(item.digest);
        if (!o || o.from === undefined || o.from === 'local' || o.joined) continue;
        m.brought.add(item.digest);
        earlyOutcomes.push([item, o]);
        this.publishLocal(m, [item.digest]);
      }
    }
    await this.countLocal(m);
    if (m.gone || this.stopped) return;
    if (!this.opts.config.prefetch) return void (p.state = 'off');
    if (m.status.local.blobs === m.blobs.count && earlyOutcomes.length === 0) return void (p.state = 'nothing missing');
    const trace = early ? early.trace : await this.traces.load(m.rec.tree);
    if (m.gone || this.stopped || m.status.bulk) return;
    if (!trace) return void (p.state = 'no trace');
    p.trace = trace.blobs.length;
    p.traceFrom = trace.from;
    // (What has arrived since is skipped by the prefetcher as it goes: a stat per blob then, not all at once now.)
    const items = trace.blobs.flatMap((digest) => {
      const at = m.blobs.indexOf(digest);
      return at === undefined || m.localAtMount[at] || m.brought.has(digest) ? [] : [{ digest, size: m.blobs.size(at) }];
    });
    if (items.length === 0 && earlyOutcomes.length === 0) return void (p.state = 'done');
    // Earlier runs read most of the tree: one bulk pull beats fetching it file by file.
    const planned = items.reduce((a, i) => ({ blobs: a.blobs + 1, bytes: a.bytes + i.size }), { ...m.status.fetchedOnOpen });
    const most = m.switch.byVolume(planned);
    if (most) return this.toBulk(m, `its trace (from ${trace.from}) and the opens so far need ${most} that are not local`);
    p.state = 'running';
    const started = Date.now();
    const bytes = items.reduce((a, i) => a + i.size, 0) + earlyOutcomes.reduce((a, [i]) => a + i.size, 0);
    this.opts.log(`prefetch: ${m.rec.path}: ${items.length + earlyOutcomes.length} blobs (${bytes} bytes) in the order of the tree's trace (from ${trace.from}), at most ${this.opts.config.prefetchBytesPerSec} bytes/s`);
    const fetched = (item: PrefetchItem, { from, joined }: FetchOutcome) => {
      if (from === undefined) return void p.failed++;
      if (from === 'local' || joined) return;
      if (m.blobs.exec(m.blobs.indexOf(item.digest)!)) this.opts.store.ensureExecTwin(item.digest); // opened through its exec twin
      if (!m.brought.has(item.digest)) this.publishLocal(m, [item.digest]); // (the start-up batch's: published as they were taken)
      m.brought.add(item.digest);
      add(m.status.prefetched, item.size);
      this.opts.metrics.inc(LAZY_COUNTERS.prefetchedBlobs);
      this.opts.metrics.inc(LAZY_COUNTERS.prefetchedBytes, undefined, item.size);
      const why = this.byVolume(m);
      if (why) this.toBulk(m, why);
    };
    if (earlyBatch) {
      for (const [item, o] of earlyOutcomes) fetched(item, o);
      this.opts.log(`prefetch: ${m.rec.path}: start-up batch (begun with the listing): ${earlyOutcomes.length} ${batchLine(earlyBatch)}`);
    } else await this.startupBatch(m, items, fetched);
    if (m.gone || this.stopped || p.state !== 'running') return;
    m.job = {
      name: m.rec.path,
      tree: m.rec.tree,
      items,
      isLocal: (d) => this.opts.store.cas.has(d),
      onFetched: fetched,
      onFailed: (item, e) => {
        p.failed++;
        if (!this.stopped) this.opts.log(`prefetch: ${m.rec.path}: blob ${item.digest} failed: ${e.message}`);
      },
      onEnd: (how) => {
        if (p.state !== 'running') return; // switched to bulk
        p.state = how === 'done' ? 'done' : 'stopped';
        const { blobs: n, bytes: b } = m.status.prefetched;
        this.opts.log(`prefetch: ${m.rec.path}: ${how === 'done' ? 'done' : 'stopped'}: ${n} blobs (${b} bytes) in ${Date.now() - started} ms${p.failed ? `, ${p.failed} failed` : ''}`);
      },
    };
    this.prefetcher.add(m.job);
  }

  /** The start-up batch (startup-batch.ts) run by the mount's prefetch itself (no MOUNT began one: a restored mount). */
  private async startupBatch(m: LazyMount, items: readonly PrefetchItem[], fetched: (item: PrefetchItem, o: FetchOutcome) => void): Promise<void> {
    let batch;
    try {
      batch = await this.startup.run(m.rec.tree, items);
    } catch (e) {
      return this.opts.log(`prefetch: ${m.rec.path}: the start-up batch failed (its blobs come one by one): ${(e as Error).message}`);
    }
    if (!batch || m.gone) return;
    const before = m.status.prefetched.blobs;
    for (const item of batch.head) {
      const o = batch.outcomes.get(item.digest);
      if (o) fetched(item, o); // (the others: one by one, with the rest of the trace)
    }
    this.opts.log(`prefetch: ${m.rec.path}: start-up batch: ${m.status.prefetched.blobs - before} ${batchLine(batch)}`);
  }

  /**
   * Blobs prefetch or a bulk pull brought: the mount's entries of them
   * carry their ctimes from now on and are no longer marked remote (one
   * VDir batch), so the shim opens them from the CAS without asking the
   * daemon (the start-up set of a traced job: 89 opens of the bench's node
   * job that needed no FETCH). Returns the files named local.
   */
  private publishLocal(m: LazyMount, digests: readonly Digest[]): number {
    if (m.gone) return 0;
    const blobs: BlobCtime[] = [];
    for (const digest of digests) {
      const at = m.blobs.indexOf(digest);
      if (at === undefined) continue;
      try {
        const ctimeNs = this.opts.store.checkBlob(digest, m.blobs.size(at));
        if (ctimeNs !== undefined) blobs.push({ digest, rels: m.blobs.paths(at), ctimeNs });
      } catch {
        /* gone or bad since: the first open asks, as before */
      }
    }
    return blobs.length > 0 ? this.opts.mounts.renewBlobCtimes(m.rec.path, blobs) : 0;
  }

  /**
   * Counts the tree's blobs that were local when it was mounted, from the
   * smaller side: the tree's blobs looked up in the index, or the index's
   * blobs looked up in the tree (a new node holds a handful, against
   * 100 000 lookups). A few thousand per turn of the event loop.
   */
  private async countLocal(m: LazyMount): Promise<void> {
    const { blobs } = m;
    const meta = this.opts.store.meta;
    const mark = (at: number | undefined, digest: Digest) => {
      if (at === undefined || m.localAtMount[at] || m.brought.has(digest)) return;
      m.localAtMount[at] = 1;
      add(m.status.local, blobs.size(at));
    };
    if (meta.blobCount() < blobs.count) {
      let after: Digest | undefined;
      for (;;) {
        const keys = meta.blobDigestsAfter(after, COUNT_BATCH);
        for (const d of keys) mark(blobs.indexOf(d), d);
        if (keys.length < COUNT_BATCH) return;
        after = keys[keys.length - 1];
        await new Promise((r) => setImmediate(r));
        if (m.gone) return;
      }
    }
    for (let i = 0; i < blobs.count; i++) {
      if (i > 0 && i % COUNT_BATCH === 0) {
        await new Promise((r) => setImmediate(r));
        if (m.gone) return;
      }
      const digest = blobs.digest(i);
      if (meta.hasBlob(digest)) mark(i, digest);
    }
  }

  /** How many of the blobs strictly between tree positions `a` and `b` are still not local (a scan that passed them left a gap). */
  private stillMissing(m: LazyMount, a: number, b: number): number {
    if (b - a - 1 > MAX_GAP_LOOKUPS) return b - a - 1; // far apart: no scan, whatever lies between
    let n = 0;
    for (let i = a + 1; i < b; i++) if (!m.localAtMount[i] && !this.opts.store.cas.has(m.blobs.digest(i))) n++;
    return n;
  }

  /** Why what this mount needed one by one is most of its tree, if it is. */
  private byVolume(m: LazyMount): string | undefined {
    const { fetchedOnOpen: o, prefetched: p } = m.status;
    const why = m.switch.byVolume({ blobs: o.blobs + p.blobs, bytes: o.bytes + p.bytes });
    return why && `programs and prefetch needed ${why} one by one`;
  }

  /** The mount at `path` pulls the rest of its tree in bulk now (a partial mount whose programs scan it: partial-mounts.ts). */
  switchToBulk(path: string, why: string): void {
    const m = this.mountAt(resolve(path));
    if (m) this.toBulk(m, why);
  }

  /** Pulls the rest of the tree in the background, the way a restore does (one pull per tree per host); demand fetches go on meanwhile. */
  private toBulk(m: LazyMount, why: string): void {
    if (m.status.bulk || this.stopped) return;
    const bulk: BulkStatus = { reason: why, state: 'running', blobs: 0, bytes: 0 };
    m.status.bulk = bulk;
    if (m.job) this.prefetcher.cancel(m.job);
    m.status.prefetch.state = 'bulk';
    this.opts.metrics.inc(LAZY_COUNTERS.bulkSwitches);
    this.opts.log(`bulk: ${m.rec.path}: ${why}: pulling the rest of tree ${m.rec.tree} in bulk`);
    void (async () => {
      const lease = await this.opts.store.leases.begin(`bulk pull for the mount at ${m.rec.path}`, [m.rec.tree]);
      try {
        // What arrives is named local in the VDir every PUBLISH_ARRIVED_MS (one batch), so a program reading
        // behind the pull opens it without asking the daemon.
        let arrived: Digest[] = [];
        let named = 0;
        const publish = () => {
          const batch = arrived;
          arrived = [];
          if (batch.length > 0) named += this.publishLocal(m, batch);
        };
        const timer = setInterval(publish, PUBLISH_ARRIVED_MS);
        const r = await this.opts.resolver()
          .pull(m.rec.tree, {
            lease,
            onProgress: (pr) => {
              bulk.blobs = pr.blobs;
              bulk.bytes = pr.bytes;
              if (pr.last !== undefined) arrived.push(pr.last);
            },
          })
          .finally(() => {
            clearInterval(timer);
            publish();
          });
        if (!r.joined) [bulk.blobs, bulk.bytes] = [r.fetched, r.fetchedBytes];
        bulk.state = 'done';
        if (!m.gone) {
          // (and what arrived before this mount joined a pull already running, or beside the reports)
          named += this.opts.mounts.publishArrived(m.rec.path);
          this.opts.log(`bulk: ${m.rec.path}: done, ${bulk.blobs} blobs (${bulk.bytes} bytes); ${named} files named local as they arrived (they open without asking the daemon)`);
        }
      } finally {
        lease.release();
      }
    })().catch((e: unknown) => {
      bulk.state = 'failed';
      bulk.error = (e as Error).message;
      if (!this.stopped) this.opts.log(`bulk: ${m.rec.path}: the bulk pull failed (files still come on first open): ${bulk.error}`);
    });
  }

  /** The blobs of `tree` (the store keeps them: an early batch, its trace's check, the mount and the resolver each need them, for 100 000 entries). */
  private blobsOf(tree: Digest): TreeBlobs {
    return this.opts.store.blobsOf(tree);
  }

  /** Whether a digest is a blob of `tree` (a mounted one's index, else the tree itself). */
  private isBlobOf(tree: Digest): (d: Digest) => boolean {
    for (const m of this.byPath.values()) if (m.rec.tree === tree) return (d) => m.blobs.has(d);
    const partial = this.partials.get(tree);
    if (partial && !this.opts.store.hasTree(tree)) return (d) => partial.knows(d);
    const blobs = this.blobsOf(tree);
    return (d) => blobs.has(d);
  }
}

/** "of the first n blobs (b bytes …) in t ms", for the log. */
function batchLine(b: StartupBatch): string {
  return `of the first ${b.head.length} blobs (${b.bytes} bytes${b.large ? ` and ${b.large} large ones alongside` : ''}) in ${b.ms} ms`;
}

function add(a: Amount, bytes: number): void {
  a.blobs++;
  a.bytes += bytes;
}
