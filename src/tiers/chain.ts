// The chain: local → (peers) → Redis → S3, itself a Tier. A read tries the
// tiers in order; bytes from a remote tier are hashed on their way into
// the local CAS (src/tiers/local.ts `admit`), and a mismatch is logged
// against that tier, counted, and the next tier tried. Every remote call
// goes through `call`: bounded retries, a circuit breaker per tier, and
// metrics. Remote writes go through one bounded queue.
import type { Digest } from '../lib/digest.js';
import { hasCode, isVriftError, type VriftError } from '../lib/errors.js';
import type { Store } from '../node/store/store.js';
import { CircuitBreaker, withRetry } from './breaker.js';
import type { ChainConfig } from './chain-config.js';
import { admit, LocalTier } from './local.js';
import { TIER_COUNTERS as M } from '../lib/metrics.js';
import { BoundedQueue } from '../lib/queue.js';
import { isTierError, TierError, type BlobBody, type BlobSource, type RefInfo, type Tier, type TierContext } from './tier.js';

export class Chain implements Tier {
  readonly name = 'chain';
  readonly writable = true;
  readonly parallelism = 64;
  readonly queue: BoundedQueue;
  /** The last failure of each tier in this run, for the final message of a command. */
  readonly failures = new Map<string, VriftError>();
  private readonly breakers = new Map<string, CircuitBreaker>();

  constructor(
    readonly local: LocalTier,
    readonly remotes: Tier[],
    readonly cfg: ChainConfig,
    readonly ctx: TierContext,
  ) {
    this.queue = new BoundedQueue({
      concurrency: cfg.uploadConcurrency,
      capacity: cfg.queueCapacity,
      onDrop: () => ctx.metrics.inc(M.dropped),
    });
  }

  get store(): Store {
    return this.local.store;
  }

  /** Every tier, local first. */
  get tiers(): Tier[] {
    return [this.local, ...this.remotes];
  }

  /**
   * Calls a remote tier through its breaker, with bounded retries of
   * transient failures. A failure is counted, remembered and rethrown as
   * a VriftError; a call the open breaker refuses throws without trying.
   */
  async call<T>(tier: Tier, op: string, fn: () => Promise<T>): Promise<T> {
    const breaker = this.breaker(tier);
    const labels = { tier: tier.name };
    if (!breaker.allow()) {
      // Skipped: say why with the failure that opened the breaker (same code, same fix).
      this.ctx.metrics.inc(M.skipped, labels);
      throw this.failures.get(tier.name) ?? new TierError(tier.name, 'unavailable', 'skipped for now after repeated failures');
    }
    try {
      const v = await withRetry(fn, {
        retries: this.cfg.retries,
        onRetry: () => this.ctx.metrics.inc(M.retries, labels),
        canRetry: () => breaker.state === 'closed',
      });
      breaker.succeed();
      return v;
    } catch (e) {
      throw this.recordFailure(tier, e, op);
    }
  }

  private recordFailure(tier: Tier, e: unknown, op: string): VriftError {
    // A local problem (disk full, permissions) is not the tier's fault: it ends the command.
    if (isVriftError(e) && /^ERR_VRIFT_(FS|META|CAS)_/.test(e.code)) throw e;
    const err = toTierError(tier.name, e, op);
    const labels = { tier: tier.name };
    this.ctx.metrics.inc(err.code === 'ERR_VRIFT_TIER_CORRUPT' ? M.mismatches : M.errors, labels);
    this.failures.set(tier.name, err);
    const breaker = this.breaker(tier);
    // Calls already in flight when the breaker opened fail too: count them, say it once.
    const quiet = breaker.state === 'open';
    if (breaker.fail(err)) {
      this.ctx.metrics.inc(M.breakerOpened, labels);
      this.ctx.log('warn', `${err.message}; skipping ${tier.name} for ${Math.round(this.cfg.breakerCooldownMs / 1000)}s`);
    } else if (!quiet) this.ctx.log('warn', err.message);
    return err;
  }

  private breaker(tier: Tier): CircuitBreaker {
    let b = this.breakers.get(tier.name);
    if (!b) {
      b = new CircuitBreaker({ failures: this.cfg.breakerFailures, cooldownMs: this.cfg.breakerCooldownMs });
      this.breakers.set(tier.name, b);
    }
    return b;
  }

  /**
   * Fetches one blob from the first remote tier that has it, verified into
   * the local CAS. Returns the tier's name, or undefined when none has it.
   */
  async fetch(digest: Digest, size?: number): Promise<string | undefined> {
    for (const tier of this.remotes) {
      if ((await this.fetchFrom(tier, digest, size)) !== undefined) return tier.name;
    }
    return undefined;
  }

  /**
   * Fetches one blob from one remote tier into the local CAS, verified.
   * Returns its size, or undefined on a miss, a skip or a failure (the
   * failure is recorded; the caller moves on to the next tier).
   */
  async fetchFrom(tier: Tier, digest: Digest, size?: number): Promise<number | undefined> {
    if (size !== undefined && tier.maxBlobBytes !== undefined && size > tier.maxBlobBytes) return undefined;
    const labels = { tier: tier.name };
    let got: number | undefined;
    try {
      got = await this.call(tier, 'get', async () => {
        const body = await tier.get(digest);
        return body ? this.admitFrom(tier, digest, body, size) : undefined;
      });
    } catch {
      return undefined; // recorded by `call`
    }
    if (got === undefined) {
      this.ctx.metrics.inc(M.misses, labels);
      return undefined;
    }
    this.ctx.metrics.inc(M.hits, labels);
    this.ctx.metrics.inc(M.blobsIn, labels);
    this.ctx.metrics.inc(M.bytesIn, labels, got);
    if (this.cfg.writeBack) this.writeBack(digest, got, this.remotes.slice(0, this.remotes.indexOf(tier)));
    return got;
  }

  /** Streams a remote body into the CAS; wrong bytes become this tier's 'corrupt' failure. */
  async admitFrom(tier: Tier, digest: Digest, body: BlobBody, size?: number): Promise<number> {
    try {
      return (await admit(this.store, digest, body, size)).size;
    } catch (e) {
      if (hasCode(e, 'ERR_VRIFT_CAS_DIGEST_MISMATCH')) {
        throw new TierError(tier.name, 'corrupt', `blob ${digest} failed verification and was rejected (${(e as Error).message})`, {
          hint: 'the copy in this tier is damaged; the next tier was tried',
        });
      }
      throw e;
    }
  }

  /** Copies a blob into faster remote tiers, if the queue has room (never slows the read). */
  private writeBack(digest: Digest, size: number, faster: Tier[]): void {
    for (const t of faster) {
      if (!t.writable || (t.maxBlobBytes !== undefined && size > t.maxBlobBytes)) continue;
      this.queue.offer(() => this.call(t, 'put', () => t.put(digest, this.local.source(digest, size))).then(() => undefined));
    }
  }

  // --- Tier -------------------------------------------------------------

  async has(digests: readonly Digest[]): Promise<Set<Digest>> {
    const found = await this.local.has(digests);
    for (const tier of this.remotes) {
      const rest = digests.filter((d) => !found.has(d));
      if (rest.length === 0) break;
      try {
        for (const d of await this.call(tier, 'has', () => tier.has(rest))) found.add(d);
      } catch {
        /* recorded; the other tiers still answer */
      }
    }
    return found;
  }

  async get(digest: Digest): Promise<BlobBody | undefined> {
    const local = await this.local.get(digest);
    if (local) return local;
    return (await this.fetch(digest)) ? this.local.get(digest) : undefined;
  }

  /** Stores locally (verified), then queues the writes to every writable remote tier. */
  async put(digest: Digest, source: BlobSource): Promise<void> {
    await this.local.put(digest, source);
    for (const t of this.remotes) {
      if (!t.writable || (t.maxBlobBytes !== undefined && source.size > t.maxBlobBytes)) continue;
      await this.queue.push(() => this.call(t, 'put', () => t.put(digest, this.local.source(digest, source.size))));
    }
  }

  async getRef(name: string): Promise<Digest | undefined> {
    return (await this.resolveRef(name))?.tree;
  }

  /** The tree a ref names in the first tier that has it, and which tier that was. */
  async resolveRef(name: string): Promise<{ tree: Digest; tier: string } | undefined> {
    const local = await this.local.getRef(name);
    if (local) return { tree: local, tier: 'local' };
    for (const tier of this.remotes) {
      let tree: Digest | undefined;
      try {
        tree = await this.call(tier, 'getRef', () => tier.getRef(name));
      } catch {
        continue;
      }
      if (tree) return { tree, tier: tier.name };
    }
    return undefined;
  }

  /** Sets the ref locally and in every writable remote tier; remote failures are logged, not thrown. */
  async setRef(name: string, tree: Digest): Promise<void> {
    await this.local.setRef(name, tree);
    for (const t of this.remotes.filter((r) => r.writable)) {
      await this.call(t, 'setRef', () => t.setRef(name, tree)).catch(() => undefined);
    }
  }

  async listRefs(prefix: string, limit = 100): Promise<RefInfo[]> {
    const byName = new Map<string, RefInfo>();
    for (const tier of this.tiers) {
      let refs: RefInfo[] = [];
      try {
        refs = tier === this.local ? await tier.listRefs(prefix, limit) : await this.call(tier, 'listRefs', () => tier.listRefs(prefix, limit));
      } catch {
        continue;
      }
      for (const r of refs) if (!byName.has(r.name)) byName.set(r.name, r);
    }
    return [...byName.values()].sort((a, b) => b.updatedAt - a.updatedAt).slice(0, limit);
  }

  /** Waits for queued writes, then closes every tier. */
  async close(): Promise<void> {
    await this.queue.drain();
    await Promise.all(this.remotes.map((t) => t.close().catch(() => undefined)));
    await this.local.close();
  }
}

/** Any error from a tier as a TierError: stream resets and other surprises count as "unavailable". */
function toTierError(tier: string, e: unknown, op: string): TierError {
  if (isTierError(e)) return e;
  if (isVriftError(e)) {
    const failure = /ARCHIVE|DIGEST|TREE_MALFORMED|CORRUPT/.test(e.code) ? 'corrupt' : 'io';
    return new TierError(tier, failure, e.message, { hint: e.hint, cause: e });
  }
  const msg = (e as Error | undefined)?.message ?? String(e);
  return new TierError(tier, 'unavailable', `${op} failed: ${msg.split('\n')[0]}`, { cause: e });
}
