// The chain: local → (peers) → Redis → S3, itself a Tier. A read tries the
// tiers in order; bytes from a remote tier enter the local CAS through the
// store's one door (admission: hashed, named only if they match), and a
// mismatch is logged against that tier, counted, and the next tier tried.
// The remote tiers the chain holds are already decorated (index.ts):
// metered (metered.ts) and guarded by a breaker with retries (guarded.ts);
// the chain itself only decides which tier to ask next. Remote writes go
// through one bounded queue.
//
// Operations (src/node/ops/) use the chain through the methods below:
// blobs (by digest, or out of a tier's bulk form of their tree), a tree's
// blob, whatever of a tree is missing (in bulk where a tier has archives
// of it), pushing a tree to every writable tier, refs.
import { Readable } from 'node:stream';
import type { Digest } from '../lib/digest.js';
import { hasCode, isVriftError, VriftError } from '../lib/errors.js';
import { TIER_COUNTERS as M, type Metrics } from '../lib/metrics.js';
import { BoundedQueue, mapLimit } from '../lib/queue.js';
import { readArchive } from '../node/archive/reader.js';
import type { AdmissionWatch, BlobWatch } from '../node/store/admission.js';
import type { BlobSlice } from '../node/store/blob-batch.js';
import type { Store } from '../node/store/store.js';
import type { ChainConfig } from './chain-config.js';
import { GuardedTier, isLocalError } from './guarded.js';
import { fetchHint, publishHint, type HintFetch } from './hints.js';
import type { LocalTier } from './local.js';
import { pushToTier, type PushInput, type TierPushResult } from './push-to-tier.js';
import { MAX_TREE_BYTES, refTargetOf, TierError, type BlobBody, type BlobSource, type LazyPart, type PrepareOptions, type RefInfo, type RefTarget, type Tier, type TierLog } from './tier.js';


export interface ChainContext {
  store: Store;
  metrics: Metrics;
  log: TierLog;
}

/** Called for each blob a fetch brought in: which tier, which blob, its size. */
export type OnFetched = (tier: string, digest: Digest, size: number) => void;

export class Chain implements Tier {
  readonly name = 'chain';
  readonly writable = true;
  readonly parallelism = 64;
  private readonly queue: BoundedQueue;

  constructor(
    private readonly local: LocalTier,
    private readonly remotes: readonly GuardedTier[],
    private readonly cfg: ChainConfig,
    private readonly ctx: ChainContext,
  ) {
    this.queue = new BoundedQueue({
      concurrency: cfg.uploadConcurrency,
      capacity: cfg.queueCapacity,
      onDrop: () => ctx.metrics.inc(M.dropped),
    });
  }

  /** The names of every tier, local first ("local, redis, s3"). */
  tierNames(): string[] {
    return [this.local.name, ...this.remotes.map((t) => t.name)];
  }

  /** Remote tiers a push can write to. */
  writableCount(): number {
    return this.remotes.filter((t) => t.writable).length;
  }

  /**
   * The last failure of each remote tier that failed at or after `since`
   * (ms since the epoch: an operation's start), for its final message.
   */
  failures(since = 0): VriftError[] {
    return this.remotes.flatMap((t) => (t.lastFailure && t.lastFailureAt >= since ? [t.lastFailure] : []));
  }

  // --- fetching ---------------------------------------------------------------

  /**
   * Fetches one blob from the first remote tier that has it, verified into
   * the local CAS. Returns the tier's name, or undefined when none has it.
   */
  async fetch(digest: Digest, size?: number, watch?: BlobWatch, inTree?: { tree: Digest; tried: Set<string> }): Promise<string | undefined> {
    for (const tier of this.remotes) {
      // A small blob of a tree the tier packs is only in its packs: one ranged GET, not a miss first.
      if (inTree && tier.getInTree && size !== undefined && tier.looseBlobBytes !== undefined && size < tier.looseBlobBytes) {
        inTree.tried.add(tier.name);
        if ((await this.fetchFrom(tier, digest, size, { read: () => tier.getInTree!(inTree.tree, digest) })) !== undefined) return tier.name;
      }
      if ((await this.fetchFrom(tier, digest, size, { watch })) !== undefined) return tier.name;
    }
    return undefined;
  }

  /**
   * Fetches one blob of `tree` that no tier holds on its own from the
   * first remote tier that can read it out of its bulk form of the tree
   * (`getInTree`: S3, a ranged GET of the pack that holds it), verified
   * into the local CAS. Returns the tier's name, or undefined.
   */
  async fetchInTree(tree: Digest, digest: Digest, size?: number, tried?: ReadonlySet<string>): Promise<string | undefined> {
    for (const tier of this.remotes) {
      if (!tier.getInTree || tried?.has(tier.name)) continue;
      if ((await this.fetchFrom(tier, digest, size, { read: () => tier.getInTree!(tree, digest) })) !== undefined) return tier.name;
    }
    return undefined;
  }

  /**
   * A part of the lazy index with head `head` from the first remote tier
   * that has it, unverified (src/node/ops/partial-tree.ts checks it);
   * a tier that fails is counted by its guard and the next one asked.
   */
  async fetchLazyPart(head: Digest, part: LazyPart): Promise<{ bytes: Buffer; tier: string } | undefined> {
    for (const tier of this.remotes) {
      if (!tier.getLazyPart) continue;
      try {
        const bytes = await tier.getLazyPart(head, part);
        if (bytes) return { bytes, tier: tier.name };
      } catch (e) {
        if (isLocalError(e)) throw e;
      }
    }
    return undefined;
  }

  /**
   * Blob `digest` of `tree` from where a (checked) locator record places it
   * (S3: one ranged GET), verified into the local CAS. Returns the tier's
   * name, or undefined when no tier could read it so.
   */
  async fetchLocated(tree: Digest, digest: Digest, size: number, record: Buffer): Promise<string | undefined> {
    for (const tier of this.remotes) {
      if (!tier.getLocated) continue;
      if ((await this.fetchFrom(tier, digest, size, { read: () => tier.getLocated!(tree, digest, record) })) !== undefined) return tier.name;
    }
    return undefined;
  }

  // --- the origin of a swarm (src/node/swarm/): every remote tier but the peers ---

  private origins(): GuardedTier[] {
    return this.remotes.filter((t) => t.name !== 'peer');
  }

  /** Whether any tier besides the peers is configured (a swarm has an origin to fall back on). */
  hasOrigin(): boolean {
    return this.origins().length > 0;
  }

  /**
   * Small blobs of `tree` from the origin into the local CAS, verified:
   * together where a tier can read them so (S3: few ranged GETs of the
   * pack frames holding them, `fetchManyInTree`), else one by one. Calls
   * `onFetched` for each admitted; returns those no origin tier gave
   * (missing, or failed verification everywhere).
   */
  async originBlobs(tree: Digest, blobs: readonly { digest: Digest; size: number }[], onFetched: OnFetched): Promise<Digest[]> {
    const want = new Map(blobs.filter((b) => !this.ctx.store.cas.has(b.digest)).map((b) => [b.digest, b.size]));
    if (want.size > 1) await this.fetchManyInTree(tree, want, (digest, from) => onFetched(from, digest, want.get(digest)!), this.origins());
    let left = blobs.filter((b) => !this.ctx.store.cas.has(b.digest));
    for (const tier of this.origins()) {
      if (left.length === 0) break;
      const still: typeof left = [];
      await mapLimit(left, 4, async (b) => {
        const inTree = tier.getInTree && tier.looseBlobBytes !== undefined && b.size < tier.looseBlobBytes;
        const size = (inTree ? await this.fetchFrom(tier, b.digest, b.size, { read: () => tier.getInTree!(tree, b.digest) }) : undefined) ?? (await this.fetchFrom(tier, b.digest, b.size));
        if (size === undefined) still.push(b);
        else onFetched(tier.name, b.digest, b.size);
      });
      left = still;
    }
    return left.map((b) => b.digest);
  }

  /**
   * Bytes [offset, offset + length) of a large blob from the first origin
   * tier that serves ranges, unverified (the swarm checks them against the
   * blob's outboard); undefined when none does.
   */
  async originRange(digest: Digest, offset: number, length: number, skip: ReadonlySet<string> = new Set()): Promise<{ tier: string; bytes: Buffer } | undefined> {
    for (const tier of this.origins()) {
      if (!tier.getRange || skip.has(tier.name)) continue;
      try {
        const body = await tier.getRange(digest, offset, length);
        if (body) return { tier: tier.name, bytes: await readBody(body, length, tier.name) };
      } catch (e) {
        if (isLocalError(e)) throw e;
        tier.fail(e, 'getRange');
      }
    }
    return undefined;
  }

  /** A large blob's outboard from the origin (unverified: the caller checks it against the digest). */
  async originOutboard(digest: Digest): Promise<{ tier: string; outboard: Buffer } | undefined> {
    for (const tier of this.origins()) {
      if (!tier.getOutboard) continue;
      try {
        const outboard = await tier.getOutboard(digest);
        if (outboard) return { tier: tier.name, outboard };
      } catch (e) {
        if (isLocalError(e)) throw e;
      }
    }
    return undefined;
  }

  /** One blob from the origin, whole, into the local CAS (verified); the tier's name, or undefined. */
  async originBlob(digest: Digest, size: number): Promise<string | undefined> {
    for (const tier of this.origins()) if ((await this.fetchFrom(tier, digest, size)) !== undefined) return tier.name;
    return undefined;
  }

  /**
   * Fetches many blobs of `tree` (digest → the size the tree gives) at
   * once from the tiers that read them out of their bulk form together
   * (`getManyInTree`: S3, few ranged GETs of the packs), each verified
   * into the local CAS as it arrives; `onAdmitted` hears of each one asked
   * for as it is stored. Blobs read beside them are dropped (the batch is a
   * known start-up set; each blob kept costs a file). What no tier brought is left
   * for the caller (one by one); a tier's failure is counted, not thrown.
   */
  async fetchManyInTree(tree: Digest, want: ReadonlyMap<Digest, number>, onAdmitted: (digest: Digest, from: string) => void, tiers: readonly GuardedTier[] = this.remotes): Promise<void> {
    await this.fetchManyVia(tree, want, onAdmitted, tiers, (tier, digests, onBlob) => tier.getManyInTree?.(tree, digests, onBlob));
  }

  /**
   * fetchManyInTree for blobs of `tree` whose (checked) locator records
   * place them (a partial mount's start-up set: `getManyLocated`, S3: one
   * ranged GET per pack frame), each verified into the local CAS.
   */
  async fetchManyLocated(tree: Digest, want: ReadonlyMap<Digest, { size: number; record: Buffer }>, onAdmitted: (digest: Digest, from: string) => void): Promise<void> {
    const sizes = new Map([...want].map(([d, w]) => [d, w.size]));
    await this.fetchManyVia(tree, sizes, onAdmitted, this.remotes, (tier, digests, onBlob) =>
      tier.getManyLocated?.(tree, digests.map((digest) => ({ digest, record: want.get(digest)!.record })), onBlob),
    );
  }

  private async fetchManyVia(
    tree: Digest,
    want: ReadonlyMap<Digest, number>,
    onAdmitted: (digest: Digest, from: string) => void,
    tiers: readonly GuardedTier[],
    read: (tier: GuardedTier, digests: Digest[], onBlob: (digest: Digest, bytes: Buffer) => Promise<void>) => Promise<void> | undefined,
  ): Promise<void> {
    const left = new Map(want);
    for (const tier of tiers) {
      if (left.size === 0) continue;
      // The blobs a turn of the event loop brought (a range's frames) are stored together, hashed and
      // written on the addon's threads (admission.batch): the daemon's thread stays free for the opens
      // that wait for them, instead of a hash, a temp file and a rename of each in turn.
      const held: { digest: Digest; bytes: Buffer }[] = [];
      const taken = new Set<Digest>();
      let stored: Promise<void> = Promise.resolve();
      let failure: unknown;
      let scheduled = false;
      const store = async (): Promise<void> => {
        const batch = held.splice(0);
        if (batch.length === 0 || failure !== undefined) return;
        const slices: BlobSlice[] = [];
        let offset = 0;
        for (const b of batch) {
          slices.push({ digest: b.digest, offset, size: b.bytes.length });
          offset += b.bytes.length;
        }
        try {
          // hashed: each stored only under the name it hashes to
          const r = await this.ctx.store.admission.batch(Buffer.concat(batch.map((b) => b.bytes), offset), slices, tier.name);
          for (const w of r.written) if (left.delete(w.digest)) onAdmitted(w.digest, tier.name);
          for (const d of r.mismatched) tier.fail(new TierError(tier.name, 'corrupt', `blob ${d} read in a batch of tree ${tree} failed verification and was dropped`), 'getManyInTree');
        } catch (e) {
          failure = e; // (the disk: thrown once the tier is done)
        }
      };
      const storeNow = () => (stored = stored.then(store));
      try {
        const reading = read(tier, [...left.keys()], async (digest, bytes) => {
          // Only what was asked for: a batch is a known start-up set, and each blob stored costs a file and an index write.
          if (!left.has(digest) || taken.has(digest)) return;
          taken.add(digest);
          held.push({ digest, bytes });
          if (!scheduled) {
            scheduled = true;
            setImmediate(() => {
              scheduled = false;
              storeNow();
            });
          }
        });
        if (!reading) continue; // (the tier cannot read them so)
        await reading;
      } catch (e) {
        if (isLocalError(e)) throw e;
        // (counted by the guard; what is left comes one by one)
      } finally {
        await storeNow();
      }
      if (failure !== undefined) throw failure;
    }
  }

  /**
   * Fetches one blob from one remote tier into the local CAS, verified.
   * Returns its size, or undefined on a miss, a skip or a failure of the
   * tier (counted and remembered by its guard; the caller moves on). A
   * local failure (a full disk) is thrown: no other tier can help.
   */
  private async fetchFrom(
    tier: GuardedTier,
    digest: Digest,
    size?: number,
    { read = () => tier.get(digest), watch, signal }: { read?: () => Promise<BlobBody | undefined>; watch?: BlobWatch; signal?: AbortSignal } = {},
  ): Promise<number | undefined> {
    if (size !== undefined && tier.maxBlobBytes !== undefined && size > tier.maxBlobBytes) return undefined;
    const watched = watch && size !== undefined ? await this.watchThrough(tier, digest, watch) : undefined;
    // One more try when the body breaks midway (a reset connection): the request itself is retried by the guard.
    for (let attempt = 0; ; attempt++) {
      let body: BlobBody | undefined;
      try {
        body = await read();
      } catch (e) {
        if (isLocalError(e)) throw e;
        return undefined;
      }
      if (!body) return undefined;
      // Aborted (the pull was handed to a swarm): the body is dropped unread, and that is no failure of the tier.
      const drop = () => body.stream.destroy(new Error('the pull was handed over'));
      signal?.addEventListener('abort', drop, { once: true });
      try {
        if (signal?.aborted) drop();
        const got = (await this.ctx.store.admission.stream(digest, body, tier.name, size, watched)).size;
        if (this.cfg.writeBack) this.writeBack(digest, got, this.remotes.slice(0, this.remotes.indexOf(tier)));
        if (body.neighbors) await this.admitNeighbors(tier, body.neighbors());
        return got;
      } catch (e) {
        if (isLocalError(e)) throw e;
        if (signal?.aborted) return undefined;
        if (hasCode(e, 'ERR_VRIFT_CAS_DIGEST_MISMATCH')) {
          tier.fail(new TierError(tier.name, 'corrupt', `blob ${digest} failed verification and was rejected (${(e as Error).message})`, {
            hint: 'the copy in this tier is damaged; the next tier was tried',
          }), 'get');
          return undefined;
        }
        const failure = tier.fail(e, 'get');
        if (attempt >= 1 || !tier.available || failure.code === 'ERR_VRIFT_TIER_CORRUPT') return undefined;
      } finally {
        signal?.removeEventListener('abort', drop);
      }
    }
  }

  /** A watch of a blob streamed from `tier`, when the tier has the blob's outboard (else the reader waits for the whole blob). */
  private async watchThrough(tier: GuardedTier, digest: Digest, watch: BlobWatch): Promise<AdmissionWatch | undefined> {
    if (!tier.getOutboard) return undefined;
    try {
      const outboard = await tier.getOutboard(digest);
      return outboard && { ...watch, outboard };
    } catch (e) {
      if (isLocalError(e)) throw e;
      return undefined;
    }
  }

  /**
   * Blobs a tier read beside the one asked for (BlobBody.neighbors): kept
   * when they hash to their names, skipped otherwise (a wrong one counts
   * against the tier like any mismatch); never worth failing the fetch.
   */
  private async admitNeighbors(tier: GuardedTier, blobs: { digest: Digest; bytes: Buffer }[]): Promise<void> {
    for (const n of blobs) {
      if (this.ctx.store.cas.has(n.digest)) continue;
      try {
        await this.ctx.store.admission.stream(n.digest, { stream: Readable.from([n.bytes]), size: n.bytes.length }, tier.name, n.bytes.length);
      } catch (e) {
        if (isLocalError(e)) return; // (a full disk: the blob asked for is in; these can wait)
        if (hasCode(e, 'ERR_VRIFT_CAS_DIGEST_MISMATCH')) tier.fail(new TierError(tier.name, 'corrupt', `blob ${n.digest} beside another in a pack failed verification and was dropped`), 'get');
      }
    }
  }

  /**
   * Brings the listing of `tree` into the local store (checked, verified;
   * Store.admitTree) from the first remote tier that has its blob; false
   * when none has. A tier with a
   * smaller form of the listing (`getTreeBlob`: S3's `trees/<tree>.zst`)
   * is read in that form first; the plain blob from the same tier is the
   * fallback when it has none, or when what it decompresses to is rejected.
   */
  async fetchTreeBlob(tree: Digest, onFrom?: (tier: string) => void): Promise<boolean> {
    for (const tier of this.remotes) {
      const forms: [string, () => Promise<BlobBody | undefined>][] = [['get tree', () => tier.get(tree)]];
      if (tier.getTreeBlob) forms.unshift(['get compressed tree', () => tier.getTreeBlob!(tree)]);
      for (const [what, read] of forms) {
        let buf: Buffer | undefined;
        try {
          const body = await read();
          if (body) buf = await readBounded(tier.name, tree, body);
        } catch (e) {
          if (isLocalError(e)) throw e;
          tier.fail(isVriftError(e) && e.code.startsWith('ERR_VRIFT_ZSTD') ? new TierError(tier.name, 'corrupt', `tree ${tree}: ${e.message}`) : e, what);
          continue;
        }
        if (!buf) continue;
        try {
          this.ctx.store.admitTree(tree, buf, tier.name); // checks, then hashes, before storing anything
          onFrom?.(tier.name);
          return true;
        } catch (e) {
          if (!hasCode(e, 'ERR_VRIFT_CAS_DIGEST_MISMATCH') && !hasCode(e, 'ERR_VRIFT_TREE_MALFORMED')) throw e;
          tier.fail(new TierError(tier.name, 'corrupt', `tree ${tree} was rejected: ${(e as Error).message}`), what);
        }
      }
    }
    return false;
  }

  /**
   * Fetches the blobs of `tree` listed in `missing` (digest → size the
   * tree promises) into the local CAS, trying the remote tiers in order
   * until nothing is missing: in bulk where a tier has archives of the
   * tree (S3 packs, a peer's backfill), with the blobs its archives never
   * hold alongside, then blob by blob. `missing` shrinks as blobs arrive;
   * what is left at the end is in no reachable tier, unless `signal` was
   * aborted: then the fetch stopped early (every blob that arrived whole
   * was kept) and the caller fetches the rest another way.
   */
  async fetchMissing(tree: Digest, missing: Map<Digest, number>, onFetched: OnFetched, signal?: AbortSignal): Promise<void> {
    const got = (tier: Tier, digest: Digest, size: number): void => {
      if (missing.delete(digest)) onFetched(tier.name, digest, size);
    };
    for (const tier of this.remotes) {
      if (missing.size === 0 || signal?.aborted) break;
      const fits = (size: number) => tier.maxBlobBytes === undefined || size <= tier.maxBlobBytes;
      const oneByOne = (list: [Digest, number][]) =>
        mapLimit(list, tier.parallelism, async ([digest, size]) => {
          if (!missing.has(digest) || signal?.aborted) return;
          if ((await this.fetchFrom(tier, digest, size, { signal })) !== undefined) got(tier, digest, size);
        });
      if (tier.fetchTree) {
        // Blobs the archives never hold download on their own connections while the archives stream.
        const loose = tier.looseBlobBytes;
        const alone = loose === undefined ? [] : [...missing].filter(([, size]) => size >= loose && fits(size));
        await Promise.all([this.readArchives(tier, tree, missing, got, signal), oneByOne(alone)]);
      }
      // Whatever is still missing (an archive cut short, a blob no archive held): blob by blob.
      if (!signal?.aborted) await oneByOne([...missing].filter(([, size]) => fits(size)));
    }
  }

  /**
   * Reads a tier's archives of the tree until nothing it could hold is
   * missing: in order (S3 packs, newest first), or several at once where
   * the tier says so (a peer backfill spread over peers). A part that can
   * resume is opened again after a failure, and then streams only what is
   * still missing.
   */
  private async readArchives(tier: GuardedTier, tree: Digest, missing: Map<Digest, number>, got: (t: Tier, d: Digest, s: number) => void, signal?: AbortSignal): Promise<void> {
    let parts;
    try {
      parts = await tier.fetchTree!(tree, new Set(missing.keys()));
    } catch (e) {
      if (isLocalError(e)) throw e;
      return; // counted by the guard; blob by blob and the next tiers remain
    }
    const labels = { tier: tier.name };
    await mapLimit(parts ?? [], tier.archiveParallelism ?? 1, async (part) => {
      for (let opened = 0; missing.size > 0 && !signal?.aborted; opened++) {
        try {
          const stream = await part.open();
          await readArchive(this.ctx.store.admission, stream, {
            from: tier.name,
            want: (d) => missing.has(d),
            stop: () => signal?.aborted === true,
            // Once all that is missing has been read, the rest of the archive is not needed (one blob of a pack).
            stopAfter: missing.size,
            expectedSize: (d) => missing.get(d),
            onAdmit: (d, size) => {
              part.onAdmit?.(d, size);
              got(tier, d, size);
            },
            onReject: (d, reason) => {
              this.ctx.metrics.inc(M.mismatches, labels);
              this.ctx.log('warn', `${tier.name}: blob ${d} in ${part.name} rejected: ${reason}`);
              part.onReject?.(d, reason);
            },
          });
          return;
        } catch (e) {
          if (isLocalError(e)) throw e;
          // What arrived whole is kept; the part is opened again for the rest (a peer's on another peer),
          // a few times, and the failure counted once, when giving up. A part that lied (a blob larger than
          // the tree says, a pack inflating past its size) would only lie again: given up on at once.
          const lied = hasCode(e, 'ERR_VRIFT_ARCHIVE_MALFORMED') || hasCode(e, 'ERR_VRIFT_ZSTD_BOMB');
          if (opened >= (part.reopen ?? 0) + this.cfg.retries || (lied && !part.reopen)) {
            tier.fail(named(part.name, e), 'archive');
            return;
          }
        }
      }
    });
  }

  /** Copies a blob into faster remote tiers, if the queue has room (never slows the read). */
  private writeBack(digest: Digest, size: number, faster: GuardedTier[]): void {
    for (const t of faster) {
      if (!t.writable || (t.maxBlobBytes !== undefined && size > t.maxBlobBytes)) continue;
      this.queue.offer(() => t.put(digest, this.local.source(digest, size)).catch(() => undefined));
    }
  }

  // --- pushing ---------------------------------------------------------------

  /** Pushes a local tree to every writable remote tier at once (each gets only what it lacks); one result per tier. */
  pushEverywhere(input: PushInput): Promise<TierPushResult[]> {
    const writable = this.remotes.filter((t) => t.writable);
    return Promise.all(writable.map((tier) => pushToTier(tier, input, this.queue)));
  }

  /**
   * Starts looking up, in every writable tier with a bulk form, the trees
   * it may already hold (for `pushTree`'s bases). They depend only on the
   * ref, so `save` looks while it ingests (and the tier's SDK loads then).
   */
  findBases(ref: string | undefined, known: Digest[], localRefs: (prefix: string) => Promise<RefInfo[]>): Map<string, Promise<Digest[]>> {
    const found = new Map<string, Promise<Digest[]>>();
    for (const tier of this.remotes) {
      if (!tier.writable || !tier.pushTree) continue;
      // Never rejects: a base is an optimisation.
      found.set(tier.name, baseCandidates(tier, ref, known, localRefs).catch(() => [...known]));
    }
    return found;
  }

  // --- hints ------------------------------------------------------------------

  /** Stores a hint blob, then a ref naming it, in every writable remote tier (hints.ts); one result per tier tried. */
  publishHint(name: string, digest: Digest, bytes: Buffer): Promise<{ tier: string; error?: string }[]> {
    return publishHint(this.remotes, name, digest, bytes);
  }

  /** Remote tiers that read blobs of a tree together start reading these (their warmInTree); failures are only counted. */
  async warmInTree(tree: Digest, digests: readonly Digest[], maxBytes: number, blobMax: number): Promise<void> {
    await Promise.all(this.remotes.map((tier) => tier.warmInTree?.(tree, digests, maxBytes, blobMax).catch(() => undefined)));
  }

  /** Remote tiers that read blobs of a tree by range get ready to (their prepareTree, at once); failures are only counted. */
  async prepareTree(tree: Digest, opts?: PrepareOptions): Promise<void> {
    await Promise.all(this.remotes.map((tier) => tier.prepareTree?.(tree, opts).catch(() => undefined)));
  }

  /** The hint blob ref `name` names in the first remote tier that has the ref, bounded and verified (hints.ts). */
  fetchHint(name: string, maxBytes: number): Promise<HintFetch | undefined> {
    return fetchHint(this.remotes, name, maxBytes);
  }

  // --- Tier -------------------------------------------------------------------

  async has(digests: readonly Digest[]): Promise<Set<Digest>> {
    const found = await this.local.has(digests);
    for (const tier of this.remotes) {
      const rest = digests.filter((d) => !found.has(d));
      if (rest.length === 0) break;
      try {
        for (const d of await tier.has(rest)) found.add(d);
      } catch {
        /* counted by the guard; the other tiers still answer */
      }
    }
    return found;
  }

  async get(digest: Digest): Promise<BlobBody | undefined> {
    const local = await this.local.get(digest);
    if (local) return local;
    return (await this.fetch(digest)) ? this.local.get(digest) : undefined;
  }

  /** A blob of `tree`: local, else by digest from a remote tier, else out of a remote tier's bulk form of the tree. */
  async getInTree(tree: Digest, digest: Digest): Promise<BlobBody | undefined> {
    const local = await this.local.get(digest);
    if (local) return local;
    return (await this.fetch(digest)) || (await this.fetchInTree(tree, digest)) ? this.local.get(digest) : undefined;
  }

  /** Stores locally (verified), then queues the writes to every writable remote tier. */
  async put(digest: Digest, source: BlobSource): Promise<void> {
    await this.local.put(digest, source);
    for (const t of this.remotes) {
      if (!t.writable || (t.maxBlobBytes !== undefined && source.size > t.maxBlobBytes)) continue;
      await this.queue.push(() => t.put(digest, this.local.source(digest, source.size)));
    }
  }

  async getRef(name: string): Promise<RefTarget | undefined> {
    const hit = await this.resolveRef(name);
    return hit && refTargetOf(hit);
  }

  /** What a ref names in the first tier that has it, and which tier that was. */
  async resolveRef(name: string): Promise<(RefTarget & { tier: string }) | undefined> {
    const local = await this.local.getRef(name);
    if (local) return { ...local, tier: 'local' };
    for (const tier of this.remotes) {
      let target: RefTarget | undefined;
      try {
        target = await tier.getRef(name);
      } catch {
        continue;
      }
      if (target) return { ...target, tier: tier.name };
    }
    return undefined;
  }

  /** Sets the ref locally and in every writable remote tier; remote failures are logged, not thrown. */
  async setRef(name: string, target: RefTarget): Promise<void> {
    await this.local.setRef(name, target);
    for (const t of this.remotes.filter((r) => r.writable)) await t.setRef(name, target).catch(() => undefined);
  }

  async listRefs(prefix: string, limit = 100): Promise<RefInfo[]> {
    const byName = new Map<string, RefInfo>();
    for (const tier of [this.local, ...this.remotes]) {
      let refs: RefInfo[] = [];
      try {
        refs = await tier.listRefs(prefix, limit);
      } catch {
        continue;
      }
      for (const r of refs) if (!byName.has(r.name)) byName.set(r.name, r);
    }
    return [...byName.values()].sort((a, b) => b.updatedAt - a.updatedAt).slice(0, limit);
  }

  /** Readies every remote tier for its first request (a daemon at start); never throws. */
  async warm(): Promise<void> {
    await Promise.all(this.remotes.map((t) => t.warm?.().catch(() => undefined)));
  }

  /** Waits for queued writes, then closes every tier. */
  async close(): Promise<void> {
    await this.queue.drain();
    await Promise.all(this.remotes.map((t) => t.close().catch(() => undefined)));
    await this.local.close();
  }
}

/** How many base candidates are tried (each costs a request or two per tier). */
const MAX_BASES = 5;

/** Trees the tier may hold already: the ref's value there, the local one, and the newest refs beside it. */
async function baseCandidates(tier: GuardedTier, ref: string | undefined, known: Digest[], localRefs: (prefix: string) => Promise<RefInfo[]>): Promise<Digest[]> {
  const out: Digest[] = [...known];
  if (ref !== undefined) {
    // Refs keyed by a lockfile digest change name when the lockfile changes; their siblings share most content.
    const slash = ref.lastIndexOf('/');
    const prefix = slash > 0 ? ref.slice(0, slash + 1) : undefined;
    const [remote, siblings] = await Promise.all([
      tier.getRef(ref).catch(() => undefined),
      // Best effort, outside the breaker: a policy without s3:ListBucket must not stop the push.
      prefix === undefined ? [] : tier.inner.listRefs(prefix, MAX_BASES).catch(() => []),
    ]);
    if (remote) out.push(remote.tree);
    out.push(...siblings.slice(0, MAX_BASES).map((r) => r.tree));
    if (prefix !== undefined) out.push(...(await localRefs(prefix)).slice(0, MAX_BASES).map((r) => r.tree));
  }
  return [...new Set(out)].slice(0, MAX_BASES);
}

/** A failure of an archive part, its message naming the part ("s3 pack packs/…: …"). */
function named(part: string, e: unknown): unknown {
  if (!isVriftError(e) || e.message.includes(part)) return e;
  return new VriftError(e.code, `${part}: ${e.message}`, { hint: e.hint, cause: e, exitCode: e.exitCode });
}

/** A body read whole, refusing one larger than a tree may be. */
async function readBounded(tier: string, tree: Digest, body: BlobBody): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of body.stream as AsyncIterable<Buffer>) {
    n += c.byteLength;
    if (n > MAX_TREE_BYTES) {
      body.stream.destroy();
      throw new TierError(tier, 'corrupt', `tree ${tree} is larger than ${MAX_TREE_BYTES} bytes`);
    }
    chunks.push(c);
  }
  return Buffer.concat(chunks, n);
}

/** A body read whole, exactly `bytes` long (a tier that sends more or less is corrupt), into one buffer as it arrives (no list of chunks to concatenate: ranges run to tens of megabytes). */
async function readBody(body: BlobBody, bytes: number, tier: string): Promise<Buffer> {
  const out = Buffer.allocUnsafe(bytes);
  let n = 0;
  for await (const c of body.stream as AsyncIterable<Buffer>) {
    if (n + c.byteLength > bytes) {
      body.stream.destroy();
      throw new TierError(tier, 'corrupt', `sent more than the ${bytes} bytes asked for`);
    }
    c.copy(out, n);
    n += c.byteLength;
  }
  if (n !== bytes) throw new TierError(tier, 'corrupt', `sent ${n} of the ${bytes} bytes asked for`);
  return out;
}
