// Pushing a local tree to every writable remote tier, then (optionally)
// pointing a ref at it there. Only what a tier lacks moves: a tier with a
// bulk form (S3 packs) gets the tree against a base it already holds;
// others get the blobs they do not have, through the chain's bounded
// queue. The ref is set in a tier only after its content is complete, so
// a ref in a tier never names a tree that tier cannot serve.
import type { Digest } from '../../lib/digest.js';
import type { VriftError } from '../../lib/errors.js';
import { archiveChunks } from '../archive/chunks.js';
import type { TreeEntry } from '../store/tree.js';
import type { Chain } from '../../tiers/chain.js';
import { TIER_COUNTERS as M } from '../../lib/metrics.js';
import type { PushResult, Tier, TreePush } from '../../tiers/tier.js';

export interface TierPushResult extends PushResult {
  tier: string;
  ok: boolean;
  /** Blobs left out because they exceed the tier's size limit (by design, e.g. Redis). */
  oversize: number;
  error: { code: string; message: string } | null;
}

export interface PushOptions {
  /** Set this ref in each tier once the tree is complete there. */
  ref?: string;
  /** Trees the tiers may already hold (the ref's previous value): their content need not move. */
  bases?: Digest[];
  onProgress?: (bytes: number, totalBytes: number) => void;
  /** Base candidates already being looked up (findBases), per tier name. */
  found?: BaseSearch;
}

/** Per tier name: the trees it may already hold, being looked up. */
export type BaseSearch = Map<string, Promise<Digest[]>>;

/**
 * Starts looking up, in every writable tier with a bulk form, the trees it
 * may already hold. They depend only on the ref, not on the tree being
 * pushed, so `save` looks while it ingests (and the tier's SDK loads then).
 */
export function findBases(chain: Chain, opts: Pick<PushOptions, 'ref' | 'bases'>): BaseSearch {
  const found: BaseSearch = new Map();
  for (const tier of chain.remotes) {
    if (!tier.writable || !tier.pushTree) continue;
    // Never rejects: a base is an optimisation.
    found.set(tier.name, baseCandidates(chain, tier, opts).catch(() => [...(opts.bases ?? [])]));
  }
  return found;
}

/** How many base candidates are tried (each costs a request or two per tier). */
const MAX_BASES = 5;

export async function pushTree(chain: Chain, tree: Digest, opts: PushOptions = {}): Promise<TierPushResult[]> {
  const store = chain.store;
  const { entries } = store.getTree(tree);
  const encoded = store.cas.readVerified(tree);
  // A blob missing locally fails the push where it is read, with ERR_VRIFT_CAS_MISSING naming it.
  const blobs = uniqueBlobs(entries);
  const writable = chain.remotes.filter((t) => t.writable);
  // An upper bound: each tier is sent at most every blob (usually far less: only what it lacks).
  const total = [...blobs.values()].reduce((a, b) => a + b, 0) * writable.length;
  let sent = 0;
  const onBytes = (n: number): void => {
    sent += n;
    opts.onProgress?.(sent, total);
  };
  return Promise.all(writable.map((tier) => pushToTier(chain, tier, tree, encoded, entries, blobs, opts, onBytes)));
}

async function pushToTier(
  chain: Chain,
  tier: Tier,
  tree: Digest,
  encoded: Buffer,
  entries: TreeEntry[],
  blobs: Map<Digest, number>,
  opts: PushOptions,
  onBytes: (n: number) => void,
): Promise<TierPushResult> {
  const res: TierPushResult = { tier: tier.name, ok: false, blobs: 0, bytes: 0, oversize: 0, error: null };
  const labels = { tier: tier.name };
  try {
    if (tier.pushTree) {
      const bases = await (opts.found?.get(tier.name) ?? baseCandidates(chain, tier, opts));
      const push: TreePush = {
        tree,
        encoded,
        entries,
        bases,
        source: (d, size) => chain.local.source(d, size),
        archive: (list, onBlob) => archiveChunks(chain.store, list, { onBlob }),
        baseEntries: (b) => (chain.store.hasTree(b) ? chain.store.getTree(b).entries : undefined),
        onBytes,
      };
      Object.assign(res, await chain.call(tier, 'pushTree', () => tier.pushTree!(push)));
    } else {
      await putMissing(chain, tier, tree, encoded.byteLength, blobs, res, onBytes);
    }
    chain.ctx.metrics.inc(M.blobsOut, labels, res.blobs);
    chain.ctx.metrics.inc(M.bytesOut, labels, res.bytes);
    if (opts.ref !== undefined) await chain.call(tier, 'setRef', () => tier.setRef(opts.ref!, tree));
    res.ok = true;
  } catch (e) {
    const err = e as VriftError;
    res.error = { code: err.code ?? 'ERR_VRIFT_TIER_IO', message: err.message };
  }
  return res;
}

/** Blob by blob: ask the tier what it has, queue the rest (the queue bounds memory and concurrency). */
async function putMissing(
  chain: Chain,
  tier: Tier,
  tree: Digest,
  treeSize: number,
  blobs: Map<Digest, number>,
  res: TierPushResult,
  onBytes: (n: number) => void,
): Promise<void> {
  const all = new Map(blobs).set(tree, treeSize);
  const fits = [...all].filter(([, size]) => tier.maxBlobBytes === undefined || size <= tier.maxBlobBytes);
  res.oversize = all.size - fits.length;
  const present = await chain.call(tier, 'has', () => tier.has(fits.map(([d]) => d)));
  let failure: unknown;
  const done: Promise<void>[] = [];
  for (const [d, size] of fits) {
    if (present.has(d)) continue;
    if (failure) break; // the tier is failing: stop feeding it
    let settle!: () => void;
    done.push(new Promise<void>((r) => (settle = r)));
    await chain.queue.push(async () => {
      try {
        await chain.call(tier, 'put', () => tier.put(d, chain.local.source(d, size)));
        res.blobs++;
        res.bytes += size;
        onBytes(size);
      } catch (e) {
        failure ??= e;
      } finally {
        settle();
      }
    });
  }
  await Promise.all(done);
  if (failure) throw failure;
}

/** Trees the tier may hold already: the ref's value there, the local one, and the newest refs beside it. */
async function baseCandidates(chain: Chain, tier: Tier, opts: Pick<PushOptions, 'ref' | 'bases'>): Promise<Digest[]> {
  const out: Digest[] = [...(opts.bases ?? [])];
  if (opts.ref !== undefined) {
    // Refs keyed by a lockfile digest change name when the lockfile changes; their siblings share most content.
    const slash = opts.ref.lastIndexOf('/');
    const prefix = slash > 0 ? opts.ref.slice(0, slash + 1) : undefined;
    const [remote, siblings] = await Promise.all([
      chain.call(tier, 'getRef', () => tier.getRef(opts.ref!)).catch(() => undefined),
      // Best effort, outside the breaker: a policy without s3:ListBucket must not stop the push.
      prefix === undefined ? [] : tier.listRefs(prefix, MAX_BASES).catch(() => []),
    ]);
    if (remote) out.push(remote);
    out.push(...siblings.slice(0, MAX_BASES).map((r) => r.tree));
    if (prefix !== undefined) out.push(...(await chain.local.listRefs(prefix, MAX_BASES)).map((r) => r.tree));
  }
  return [...new Set(out)].slice(0, MAX_BASES);
}

function uniqueBlobs(entries: TreeEntry[]): Map<Digest, number> {
  const m = new Map<Digest, number>();
  for (const e of entries) if (e.kind === 'file') m.set(e.digest!, e.size);
  return m;
}

/** One line per failed tier, for a command's error or warnings. */
export function describeFailures(results: TierPushResult[]): string[] {
  return results.filter((r) => !r.ok).map((r) => r.error?.message ?? `${r.tier}: failed`);
}

