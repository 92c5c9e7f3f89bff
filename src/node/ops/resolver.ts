// The resolver: how a node gets what it lacks. One per host when a daemon
// runs (it owns it, keeps the tiers' connections warm and is the only
// long-lived user of the tiers); one per command otherwise. It runs at
// most one fetch per blob and one pull per tree at a time, whoever asks
// (restores, pulls, the shim's FETCH): a second caller waits for the
// first one's fetch instead of moving the same bytes again.
import type { Digest } from '../../lib/digest.js';
import { hasCode, VriftError } from '../../lib/errors.js';
import type { Metrics } from '../../lib/metrics.js';
import { SingleFlight } from '../../lib/single-flight.js';
import type { Chain } from '../../tiers/chain.js';
import type { HintFetch } from '../../tiers/hints.js';
import type { RefInfo } from '../../tiers/tier.js';
import { decodeTraceBlob, loadLocalTrace, MAX_TRACE_BLOB_BYTES, traceRefName } from '../store/trace.js';
import type { BlobWatch } from '../store/admission.js';
import type { Lease } from '../store/leases.js';
import type { Store } from '../store/store.js';
import type { TreeEntry } from '../store/tree.js';
import { missingBlobs, pullCounters, pullTree, pullTreeBlob, resolveTreeish, type PullProgress, type PullResult, type TreePullResult } from './tree-pull.js';
import { fetchRemoteTrace, pushRemoteTrace, type RemoteTrace } from './trace-exchange.js';
import { PartialTree } from './partial-tree.js';
import { decodeOrdinalTrace, loadLocalOrdinals, MAX_ORDINAL_TRACE_BYTES, ordinalTraceRefName } from '../store/ordinal-trace.js';
import { localLazyTree } from '../store/lazy-index.js';
import { findBases, pushTree, type BaseSearch, type PushOptions, type TierPushResult } from './tree-push.js';

/** What the resolver needs of the daemon's swarms (src/node/daemon/swarm-host.ts). */
export interface TreeSwarms {
  /** Whether a pull missing this many bytes should swarm. */
  wants(missingBytes: number): boolean;
  /** Fetches the tree in its swarm; "alone" when no other node fetches it (pull it, then call `done`); undefined when the swarm could not finish (the pull goes on); rejects on a local failure. */
  fetch(tree: Digest, entries: readonly TreeEntry[], onBlob: (from: string, digest: Digest, size: number) => void): Promise<unknown>;
  /** Calls `fn` once another node fetches `tree` (a pull alone hands over to the swarm then); returns the way to stop watching. */
  whenOthersFetch(tree: Digest, fn: () => void): () => void;
  /** The pull of `tree` is over. */
  done(tree: Digest): void;
}

/** A pull in flight, and everyone who wants to hear how it goes. */
interface TreeFlight {
  listeners: Set<(p: PullProgress) => void>;
  last?: PullProgress;
}

/** What a blob's fetch says when it was one of a batch (fetchBatch) that did not bring it: whoever joined it asks again. */
const NOT_IN_BATCH = '\0not in the batch';

/** A trace read with a listing and not taken within this long is dropped (the next mount reads it again). */
const EARLY_TRACE_KEPT_MS = 30_000;

/** How long a fetch of a blob waits for a bulk pull of its tree to bring it before asking a tier itself. */
const BULK_ARRIVAL_WAIT_MS = 300;

/** A lazy mount's start-up batch: at most `bytes` of the trace's first blobs under `blobMax` bytes each (daemon/startup-batch.ts). */
export interface StartupCaps {
  bytes: number;
  blobMax: number;
  /** The trace's large blobs (>= blobMax) among the batch's part of it, fetched alongside, each alone, up to this many bytes. */
  largeBytes: number;
}

/** A start-up set read ahead is looked for among this many of the trace's first entries. */
const WARM_TRACE_ENTRIES = 4096;

export class Resolver {
  private readonly blobFlights = new SingleFlight<Digest, string | undefined>();
  private readonly treeFlights = new SingleFlight<Digest, TreePullResult>();
  private readonly treeListeners = new Map<Digest, TreeFlight>();
  private readonly listingFlights = new SingleFlight<Digest, string>();
  /** Trees mounted from their lazy index, by head (partial-tree.ts). */
  private readonly partials = new Map<Digest, PartialTree>();
  private readonly partialFlights = new SingleFlight<Digest, PartialTree | undefined>();
  /** The daemon's swarms (src/node/daemon/swarm-host.ts), when it is in a cluster: a pull of a large tree fetches it with the other nodes fetching it. */
  swarms: TreeSwarms | undefined;
  /** The trace hint of a tree a cold mount started reading with its listing (treeToMount), for remoteTrace to take. */
  private readonly earlyTraces = new Map<Digest, Promise<HintFetch | undefined>>();

  constructor(
    readonly store: Store,
    readonly chain: Chain,
    readonly metrics: Metrics,
    /** One line per event worth a log (a refused lazy index). */
    private readonly log: (line: string) => void = () => undefined,
  ) {}

  /** Names of the tiers, local first. */
  tierNames(): string[] {
    return this.chain.tierNames();
  }

  /** Remote tiers a push can write to. */
  writableCount(): number {
    return this.chain.writableCount();
  }

  /**
   * Makes sure one blob is in the local store: "local" when it was, the
   * tier it came from, or undefined when no tier has it. One fetch per
   * blob at a time on this host. With `tree` (a mounted file's tree), a
   * blob no tier holds on its own is read out of that tree's bulk form:
   * first by range where a tier indexes it (S3 packs: one ranged GET of
   * the blob's bytes), then from the tree's archives (a peer's backfill,
   * packs without an index), reading no further than the blob.
   */
  async fetchBlob(
    digest: Digest,
    opts: {
      size?: number;
      tree?: Digest;
      exec?: boolean;
      joined?: (yes: boolean) => void;
      watch?: (size: number) => BlobWatch | undefined;
      damaged?: () => void;
      /** The local blob passed the check: the ctime of the file an opener uses (the exec twin's, with `exec`, when it exists). */
      checked?: (ctimeNs: bigint | undefined) => void;
    } = {},
  ): Promise<string | undefined> {
    // The file is the truth for whoever opens it (the index's record of a fresh blob may not be committed yet),
    // once checked: the size and ctime the index recorded (blob-check.ts); a corrupt one is quarantined and fetched again.
    if (this.store.cas.has(digest)) {
      if (this.localIntact(digest, opts)) return 'local';
      opts.damaged?.();
    }
    const flight = this.blobFlights.run(digest, () => this.fetchAlone(digest, opts));
    opts.joined?.(flight.joined);
    const from = await flight.result;
    // Joined a batch that did not bring it: fetched alone now.
    return from === NOT_IN_BATCH ? this.fetchBlob(digest, opts) : from;
  }

  /** fetchBlob's own fetch (one blob at a time per digest: the caller holds the flight). */
  private async fetchAlone(digest: Digest, opts: { size?: number; tree?: Digest; watch?: (size: number) => BlobWatch | undefined }): Promise<string | undefined> {
    // The tree, when it is here, says the blob's size (and whether it is the tree's at all); if not, the tier's index does.
    const sizes = opts.tree === undefined ? undefined : this.blobSizes(opts.tree);
    const size = opts.size ?? sizes?.get(digest);
    // The whole tree is being pulled (a lazy mount switched to bulk): the blob is likely on its way in
    // that stream, in the order programs read it; a request of its own would compete with the pull.
    if (opts.tree !== undefined && this.treeFlights.peek(opts.tree) && (await this.arrivesSoon(digest))) return 'local';
    // A large blob a program waits for may be read while it arrives (verified in order): the caller watches.
    const watch = size === undefined ? undefined : opts.watch?.(size);
    const inTree = sizes?.has(digest) ? { tree: opts.tree!, tried: new Set<string>() } : undefined;
    const from = await this.chain.fetch(digest, size, watch, inTree);
    if (from !== undefined || opts.tree === undefined) return from;
    if (sizes && !sizes.has(digest)) return undefined; // not a blob of that tree
    // One small read, even while a pull of the whole tree runs: whoever opened the file waits for this blob only.
    const ranged = await this.chain.fetchInTree(opts.tree, digest, size, inTree?.tried);
    if (ranged !== undefined) return ranged;
    const pulling = this.treeFlights.peek(opts.tree);
    if (pulling) {
      // The whole tree is on its way: wait for that pull rather than read its archives twice.
      await pulling.catch(() => undefined);
      if (this.store.cas.has(digest)) return 'local';
    }
    return this.fromTreeArchives(digest, opts.tree, size);
  }

  /**
   * Many blobs of `tree` at once (a lazy mount's start-up set, from its
   * trace): read together where a tier can (S3: few ranged GETs of the
   * packs' frames), each verified. Each blob is one of this host's blob
   * fetches meanwhile, so an open that asks for it waits for the batch to
   * bring it (and only as long as that takes); one the batch did not
   * bring is then fetched alone by whoever waits for it. Blobs being
   * fetched already are left to that fetch. Resolves with where each blob
   * came from (as fetchBlob), for those the batch brought, found local,
   * or joined; the others are the caller's to fetch one by one.
   */
  async fetchBatch(tree: Digest, items: readonly { digest: Digest; size: number }[]): Promise<Map<Digest, { from: string | undefined; joined: boolean }>> {
    const arrived = new Map<Digest, (from: string) => void>();
    const flights = new Map<Digest, { result: Promise<string | undefined>; joined: boolean }>();
    const want = new Map<Digest, number>();
    for (const { digest, size } of items) {
      if (flights.has(digest)) continue;
      if (this.store.cas.has(digest)) {
        flights.set(digest, { result: Promise.resolve('local'), joined: false });
        continue;
      }
      const f = this.blobFlights.run(digest, () => new Promise<string>((r) => arrived.set(digest, r)));
      if (!f.joined) want.set(digest, size);
      flights.set(digest, f);
    }
    try {
      if (want.size > 0) await this.chain.fetchManyInTree(tree, want, (digest, from) => arrived.get(digest)?.(from));
    } finally {
      for (const r of arrived.values()) r(NOT_IN_BATCH); // (a resolved promise ignores this)
    }
    const out = new Map<Digest, { from: string | undefined; joined: boolean }>();
    for (const [digest, f] of flights) {
      const from = await f.result.catch(() => NOT_IN_BATCH);
      if (from !== NOT_IN_BATCH) out.set(digest, { from, joined: f.joined });
    }
    return out;
  }

  /** A local blob (and its exec twin, when asked for) passes the store's check; false when it was quarantined. */
  private localIntact(digest: Digest, opts: { size?: number; tree?: Digest; exec?: boolean; checked?: (ctimeNs: bigint | undefined) => void }): boolean {
    const size = opts.size ?? (opts.tree === undefined ? undefined : this.blobSizes(opts.tree)?.get(digest)) ?? this.store.meta.getBlob(digest)?.size;
    if (size === undefined) return true; // nothing to compare with: neither the tree nor the index knows it yet
    try {
      let ctimeNs = this.store.checkBlob(digest, size);
      if (opts.exec) ctimeNs = this.store.cas.has(digest, true) ? this.store.checkBlob(digest, size, true) : undefined;
      opts.checked?.(ctimeNs);
      return true;
    } catch (e) {
      if (hasCode(e, 'ERR_VRIFT_CAS_CORRUPT') || hasCode(e, 'ERR_VRIFT_CAS_MISSING')) return false;
      throw e;
    }
  }

  /** Whether `digest` is admitted within BULK_ARRIVAL_WAIT_MS (by a pull running meanwhile). */
  private async arrivesSoon(digest: Digest): Promise<boolean> {
    if (this.store.cas.has(digest)) return true;
    return this.store.admission.arrival(digest, AbortSignal.timeout(BULK_ARRIVAL_WAIT_MS));
  }

  /** Blob → size of a local tree (the store's blob list of it, kept for the last few trees: a lazy mount asks once per file). */
  private blobSizes(tree: Digest): { get(d: Digest): number | undefined; has(d: Digest): boolean } | undefined {
    if (!this.store.hasTree(tree)) return undefined;
    const blobs = this.store.blobsOf(tree);
    return {
      get: (d) => {
        const at = blobs.indexOf(d);
        return at === undefined ? undefined : blobs.size(at);
      },
      has: (d) => blobs.has(d),
    };
  }

  private async fromTreeArchives(digest: Digest, tree: Digest, size?: number): Promise<string | undefined> {
    if (!this.store.hasTree(tree) || size === undefined) return undefined;
    let from: string | undefined;
    await this.chain.fetchMissing(tree, new Map([[digest, size]]), (tier) => (from = tier));
    return from;
  }

  /**
   * A tree (id or ref) ready to mount: its listing in the local store, its
   * files wherever they are (a lazy mount fetches each on first open).
   * A ref or tree this node lacks is asked of the remote tiers; a ref
   * found there is recorded here. One fetch per tree at a time.
   */
  async treeToMount(
    treeish: string,
    opts: { prefetch?: boolean; startup?: StartupCaps; partial?: boolean; onNames?: (names: Buffer) => void } = {},
  ): Promise<{ tree: Digest; from: string; partial?: PartialTree; startup?: number[] }> {
    let tree: Digest;
    let ref: string | null = null;
    let times: Digest | undefined;
    let lazy: Digest | undefined;
    let record: string | undefined;
    try {
      tree = this.store.resolve(treeish);
      // (a tree this node knows only from its lazy index, mounted before: mounted from it again)
      if (opts.partial && !this.store.hasTree(tree)) lazy = localLazyTree(this.store.meta, tree)?.lazy;
    } catch (e) {
      if (!hasCode(e, 'ERR_VRIFT_REF_NOT_FOUND')) throw e;
      const remotes = this.chain.tierNames().filter((t) => t !== 'local');
      if (remotes.length === 0) throw e;
      try {
        ({ tree, ref, times, lazy, record } = await resolveTreeish(this.chain, treeish));
      } catch (miss) {
        if (!hasCode(miss, 'ERR_VRIFT_RESTORE_MISS')) throw miss;
        throw new VriftError('ERR_VRIFT_REF_NOT_FOUND', `no tree or ref named ${JSON.stringify(treeish)} here or in ${remotes.join(', ')}`, {
          hint: 'list refs with `vrift ref list`; save or push it from a node that has it',
          exitCode: 1,
        });
      }
    }
    if (!this.store.hasTree(tree) && opts.partial && lazy !== undefined && loadLocalTrace(this.store.meta, tree).length === 0) {
      // A cold mount from the tree's lazy index (names now, each file's digest when opened), unless a trace
      // says what to prefetch: that still takes the full listing (docs/lazy.md "Partial metadata"). With
      // prefetch off, no trace is asked for: nothing would be prefetched by it.
      const trace = opts.prefetch ? this.chain.fetchHint(traceRefName(tree), MAX_TRACE_BLOB_BYTES).catch(() => undefined) : undefined;
      // (a partial mount's trace, as file ordinals: what a traced partial mount fetches first, partial-starts.ts)
      const local = loadLocalOrdinals(this.store.meta, tree);
      const ordinals = opts.prefetch && local.length === 0 ? this.chain.fetchHint(ordinalTraceRefName(tree), MAX_ORDINAL_TRACE_BYTES).catch(() => undefined) : undefined;
      // The tiers' ordinal trace, checked once (the early reads and the mount's start-up set both take it).
      let decoded: ReturnType<typeof decodeOrdinalTrace> | undefined;
      const decodeTheirs = (bytes: Buffer, files: number) => (decoded ??= decodeOrdinalTrace(bytes, tree, files));
      // Once the head is checked, a traced start reads its first files' pieces while the names arrive, then their blobs.
      const early = (pt: PartialTree) => {
        if (!opts.startup) return;
        const caps = opts.startup;
        const first = local.length > 0 ? Promise.resolve(local) : (ordinals ?? Promise.resolve(undefined)).then((h) => (h && 'bytes' in h ? decodeTheirs(h.bytes, pt.head.files) : undefined));
        void first.then((o) => (Array.isArray(o) && o.length > 0 ? pt.prefetchEarly(o, caps, (digest, size) => this.fetchBlob(digest, { size, tree })) : undefined)).catch(() => undefined);
      };
      // (what reads by locator record need, S3's manifest of the tree, loads meanwhile: a first open or the start-up set's blobs would wait for it)
      void this.chain.prepareTree(tree, { indexes: false });
      const partial = PartialTree.open(this.store, this.chain, tree, lazy, this.log, early, opts.onNames);
      const [hint, got, theirs] = await Promise.all([trace, partial, ordinals]);
      let startup: number[] | undefined = opts.prefetch && local.length > 0 ? local : undefined;
      if (got && theirs && 'bytes' in theirs) {
        const checked = decodeTheirs(theirs.bytes, got.head.files);
        if (Array.isArray(checked)) startup = checked;
        else this.log(`trace: tree ${tree.slice(0, 12)}…: the ordinal trace in ${theirs.tier} was ignored: ${checked.problem}`);
      }
      if (got && (startup?.length || !(hint && !('problem' in hint)))) {
        this.partials.set(lazy, got);
        // (recorded as a full mount records it: a `vrift run` of the ref finds its mount; the tree itself comes when needed)
        if (ref !== null) this.store.setRef(ref, tree, { times, record });
        return { tree, from: 'the lazy index', partial: got, ...(startup?.length ? { startup } : {}) };
      }
      if (hint && !('problem' in hint)) {
        this.earlyTraces.set(tree, Promise.resolve(hint));
        setTimeout(() => this.earlyTraces.get(tree) && this.earlyTraces.delete(tree), EARLY_TRACE_KEPT_MS).unref();
      }
    }
    if (!this.store.hasTree(tree)) {
      // A cold mount: what its first opens (and its prefetch) need next loads while the listing does.
      void this.chain.prepareTree(tree);
      if (opts.prefetch && !this.earlyTraces.has(tree)) {
        const early = this.chain.fetchHint(traceRefName(tree), MAX_TRACE_BLOB_BYTES);
        early.catch(() => undefined);
        this.earlyTraces.set(tree, early);
        setTimeout(() => this.earlyTraces.get(tree) === early && this.earlyTraces.delete(tree), EARLY_TRACE_KEPT_MS).unref();
        if (opts.startup) void this.warmStartup(tree, early, opts.startup).catch(() => undefined);
      }
    }
    const from = await this.listingFlights.run(tree, () => pullTreeBlob(this.store, this.chain, tree)).result;
    if (ref !== null) this.store.setRef(ref, tree, { times, record });
    return { tree, from };
  }

  /** The listing of `tree` in the local store (fetched, verified, when it is not): what a partial mount's snapshot needs. */
  ensureListing(tree: Digest): Promise<string> {
    return this.listingFlights.run(tree, () => pullTreeBlob(this.store, this.chain, tree)).result;
  }

  /** The partial tree a lazy mount of `tree` was made from (lazy: the head its record names): kept, else reopened from the local CAS. */
  async partialTree(tree: Digest, lazy: Digest): Promise<PartialTree | undefined> {
    const known = this.partials.get(lazy);
    if (known) return known;
    return this.partialFlights.run(lazy, async () => {
      const got = await PartialTree.open(this.store, this.chain, tree, lazy, this.log);
      if (got) this.partials.set(lazy, got);
      return got;
    }).result;
  }

  /**
   * A cold mount's start-up set, read ahead while its listing downloads:
   * the first blobs of the tree's trace (this node's, else the tiers') are
   * read out of the tiers' bulk form into memory (Chain.warmInTree), not
   * stored. The trace is checked against the tree only once the listing
   * is here (TraceBook); the start-up batch then asks for the checked
   * blobs and finds them read already (docs/lazy.md, "The start-up batch").
   */
  private async warmStartup(tree: Digest, early: Promise<HintFetch | undefined>, caps: StartupCaps): Promise<void> {
    let order = loadLocalTrace(this.store.meta, tree);
    if (order.length === 0) {
      const hint = await early;
      if (!hint || 'problem' in hint) return;
      const decoded = decodeTraceBlob(hint.bytes, tree, () => true);
      if ('problem' in decoded) return;
      order = decoded.blobs;
    }
    const head = order.slice(0, WARM_TRACE_ENTRIES).filter((d) => !this.store.cas.has(d));
    if (head.length > 1) await this.chain.warmInTree(tree, head, caps.bytes, caps.blobMax);
  }

  /**
   * Pulls a tree (id or ref) into the local store. One pull per tree at a
   * time on this host: a caller that finds one running waits for it (and
   * hears its progress), then sees the tree as that pull left it. The
   * caller's lease names the tree before anything is looked up, so gc
   * keeps what the pull finds or brings.
   */
  async pull(treeish: string, opts: { lease: Lease; onProgress?: (p: PullProgress) => void }): Promise<PullResult> {
    const { onProgress } = opts;
    const { tree, ref, from, times: named, record } = await resolveTreeish(this.chain, treeish);
    await opts.lease.addTree(tree);
    // The times blob beside the tree (small): verified like any blob; without it the tree still restores.
    const times = named !== undefined && (await this.fetchBlob(named).catch(() => undefined)) !== undefined ? named : undefined;
    let joined = false;
    let core: TreePullResult;
    try {
      const flight = this.treeFlights.run(tree, () => this.runPull(tree));
      joined = flight.joined;
      core = await this.listen(tree, flight.result, onProgress);
    } finally {
      // Pins it (and the next restore is local), once the tree itself is here.
      if (ref !== null && from !== 'local' && this.store.hasTree(tree)) this.store.setRef(ref, tree, { times, record });
    }
    return { ...core, ref, ...(times === undefined ? {} : { times }), refFrom: from, joined };
  }

  private async runPull(tree: Digest): Promise<TreePullResult> {
    const flight: TreeFlight = { listeners: new Set() };
    this.treeListeners.set(tree, flight);
    const tell = (p: PullProgress) => {
      flight.last = p;
      for (const l of flight.listeners) l(p);
    };
    try {
      let done: TreePullResult | undefined;
      let swarmed = await this.swarm(tree, tell);
      if (swarmed === 'alone') {
        // No other node fetches it: pull it alone at once, and hand what is left to a swarm if one
        // starts meanwhile (a crowd whose members start a moment apart must not each pull it all).
        const handOver = new AbortController();
        const unwatch = this.swarms!.whenOthersFetch(tree, () => handOver.abort());
        try {
          done = await pullTree(this.store, this.chain, tree, tell, handOver.signal);
        } catch (e) {
          this.swarms?.done(tree);
          throw e;
        } finally {
          unwatch();
        }
        if (!handOver.signal.aborted) {
          this.swarms?.done(tree);
          return done;
        }
        const rest = await this.swarm(tree, tell);
        swarmed = rest === 'alone' ? undefined : rest;
      }
      if (swarmed) done = done ? afterward(done, swarmed) : swarmed;
      const pulled = await pullTree(this.store, this.chain, tree, tell).finally(() => this.swarms?.done(tree));
      return done ? afterward(done, pulled) : pulled;
    } finally {
      this.treeListeners.delete(tree);
    }
  }

  /**
   * The tree in its swarm, when that is worth it (a cluster, enough bytes
   * missing): its listing first (it names the pieces), then pieces from
   * the other nodes fetching or holding it and from the origin. What came
   * from where, or undefined when the swarm was not used or could not
   * finish (the pull then fetches what is still missing); "alone" when
   * no other node fetches it (the caller pulls it, still a member).
   */
  private async swarm(tree: Digest, onProgress: (p: PullProgress) => void): Promise<TreePullResult | 'alone' | undefined> {
    const swarms = this.swarms;
    if (!swarms || (this.store.hasTree(tree) && this.store.meta.treeComplete(tree))) return undefined;
    await this.listingFlights.run(tree, () => pullTreeBlob(this.store, this.chain, tree)).result;
    const entries = this.store.getTree(tree).entries;
    const { files, unique, missing } = missingBlobs(this.store, entries);
    const { res, progress, counted } = pullCounters(tree, files, unique, missing, onProgress);
    if (!swarms.wants(progress.totalBytes)) return undefined;
    onProgress(progress);
    const outcome = await swarms.fetch(tree, entries, counted);
    if (outcome === 'alone') return 'alone';
    // The pull after this reads the index: the records of what the swarm admitted must be in it.
    await this.store.meta.flush();
    return res;
  }

  /** Waits for a pull, passing its progress on. */
  private async listen(tree: Digest, result: Promise<TreePullResult>, onProgress?: (p: PullProgress) => void): Promise<TreePullResult> {
    const flight = this.treeListeners.get(tree);
    if (!onProgress || !flight) return result;
    flight.listeners.add(onProgress);
    if (flight.last) onProgress(flight.last);
    try {
      return await result;
    } finally {
      flight.listeners.delete(onProgress);
    }
  }

  /** Starts looking up the trees the remote tiers may already hold for `ref` (bases of a push). */
  findBases(opts: Pick<PushOptions, 'ref' | 'bases'>): BaseSearch {
    return findBases(this.store, this.chain, opts);
  }

  /** Pushes a local tree to every writable remote tier. */
  push(tree: Digest, opts: PushOptions = {}): Promise<TierPushResult[]> {
    return pushTree(this.store, this.chain, tree, opts);
  }

  /** The trace of `tree` the remote tiers hold (untrusted: only blobs of the tree are kept), or undefined when none does. */
  remoteTrace(tree: Digest, isBlobOfTree: (d: Digest) => boolean): Promise<RemoteTrace | undefined> {
    const early = this.earlyTraces.get(tree);
    this.earlyTraces.delete(tree);
    return fetchRemoteTrace(this.chain, tree, isBlobOfTree, early);
  }

  /** Stores the trace of `tree` in every writable remote tier; one result per tier. */
  pushTrace(tree: Digest, blobs: readonly Digest[]): Promise<{ tier: string; error?: string }[]> {
    return pushRemoteTrace(this.chain, tree, blobs);
  }

  /** Fetches in flight right now (blobs, trees), for status. */
  inFlight(): { blobs: number; trees: number } {
    return { blobs: this.blobFlights.size, trees: this.treeFlights.size };
  }

  /** Refs under `prefix`, here and in the remote tiers (each checked as it is read), newest first. */
  listRefs(prefix: string, limit = 100): Promise<RefInfo[]> {
    return this.chain.listRefs(prefix, limit);
  }

  /** Readies the remote tiers for their first request, in the background (a daemon at start). */
  warm(): void {
    void this.chain.warm();
  }

  /** Waits for queued writes, then closes the tiers. */
  close(): Promise<void> {
    return this.chain.close();
  }
}

/** Two fetches of one tree, `later` after `earlier`, as one result (`later` counted what `earlier` brought as local). */
function afterward(earlier: TreePullResult, later: TreePullResult): TreePullResult {
  const from = { ...earlier.from };
  for (const [tier, f] of Object.entries(later.from)) {
    const t = (from[tier] = { ...(from[tier] ?? { blobs: 0, bytes: 0 }) });
    t.blobs += f.blobs;
    t.bytes += f.bytes;
  }
  return { ...later, local: later.local - earlier.fetched, fetched: earlier.fetched + later.fetched, fetchedBytes: earlier.fetchedBytes + later.fetchedBytes, from };
}
