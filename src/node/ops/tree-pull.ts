// Pulling a tree: resolve the ref, get the tree blob, then only the blobs
// the local CAS lacks, through the chain (in bulk where a tier has an
// archive of the tree, blob by blob otherwise). Nothing is written outside
// the CAS: materializing is the caller's step. The resolver (resolver.ts)
// runs one pull per tree at a time on a host; this is the pull itself.
import { isDigest, type Digest } from '../../lib/digest.js';
import { VriftError } from '../../lib/errors.js';
import type { Chain } from '../../tiers/chain.js';
import { assertRefName, type Store } from '../store/store.js';
import type { TreeEntry } from '../store/tree.js';

export interface PullProgress {
  blobs: number;
  totalBlobs: number;
  bytes: number;
  totalBytes: number;
  /** The blob that has just arrived (each progress report is one arrival). */
  last?: Digest;
}

/** What a pull of one tree did. */
export interface TreePullResult {
  tree: Digest;
  files: number;
  /** Blobs already local, and those fetched (per tier). */
  local: number;
  fetched: number;
  fetchedBytes: number;
  from: Record<string, { blobs: number; bytes: number }>;
}

export interface PullResult extends TreePullResult {
  ref: string | null;
  /** The blob of the tree's files' times the ref names (store/times.ts), when it is in the local store now. */
  times?: Digest;
  /** Tier the ref was found in (null for a tree id). */
  refFrom: string | null;
  /** Another caller on this host was pulling the same tree: this one waited for that pull (the counts are its). */
  joined: boolean;
}

/** Resolves a tree id or ref name, trying local, then each remote tier. A miss exits 1. */
export async function resolveTreeish(chain: Chain, treeish: string): Promise<{ tree: Digest; times?: Digest; lazy?: Digest; record?: string; ref: string | null; from: string | null }> {
  const since = Date.now();
  if (isDigest(treeish)) return { tree: treeish, ref: null, from: null };
  assertRefName(treeish);
  const hit = await chain.resolveRef(treeish);
  if (hit) return { tree: hit.tree, times: hit.times, lazy: hit.lazy, record: hit.record, ref: treeish, from: hit.tier };
  throw new VriftError('ERR_VRIFT_RESTORE_MISS', `no ref ${JSON.stringify(treeish)} in ${chain.tierNames().join(', ')}${failureNote(chain, since)}`, {
    hint: failureHint(chain, since, 'a cache miss: build the directory, then `vrift save` it'),
    exitCode: exitCodeFor(chain, since),
  });
}

/**
 * A tree's listing (its own blob) in the local store, fetched from the
 * remote tiers if this node lacks it; none of its files. Lazy mounts
 * start on this alone.
 */
export async function pullTreeBlob(store: Store, chain: Chain, tree: Digest): Promise<string> {
  if (store.hasTree(tree)) return 'local';
  const since = Date.now();
  let from: string | undefined;
  if (!(await chain.fetchTreeBlob(tree, (tier) => (from = tier)))) {
    throw new VriftError('ERR_VRIFT_TIER_MISSING', `tree ${tree} is in no reachable tier${failureNote(chain, since)}`, {
      hint: failureHint(chain, since, 'push it from a node that has it (`vrift push`)'),
      exitCode: exitCodeFor(chain, since),
    });
  }
  return from ?? 'a remote tier';
}

/**
 * Fetches whatever of `tree` the local store lacks. Throws
 * ERR_VRIFT_TIER_MISSING naming the first blob no tier has. With `signal`
 * aborted meanwhile it stops early and resolves with what it fetched (the
 * caller fetches the rest another way: a swarm that formed meanwhile).
 */
export async function pullTree(store: Store, chain: Chain, tree: Digest, onProgress?: (p: PullProgress) => void, signal?: AbortSignal): Promise<TreePullResult> {
  const since = Date.now();
  const complete = store.hasTree(tree) ? store.meta.treeComplete(tree) : undefined;
  if (complete) {
    // Everything was here last time and nothing has left the index since (a warm restore).
    return { tree, files: complete.files, local: complete.blobs, fetched: 0, fetchedBytes: 0, from: {} };
  }
  if (!store.hasTree(tree) && !(await chain.fetchTreeBlob(tree))) {
    throw new VriftError('ERR_VRIFT_TIER_MISSING', `tree ${tree} is in no reachable tier${failureNote(chain, since)}`, {
      hint: failureHint(chain, since, 'push it from a node that has it (`vrift push`)'),
      exitCode: exitCodeFor(chain, since),
    });
  }

  const { files, unique, missing, pathOf } = missingBlobs(store, store.getTree(tree).entries);
  const { res, progress, counted } = pullCounters(tree, files, unique, missing, onProgress);
  onProgress?.(progress);
  await chain.fetchMissing(tree, missing, counted, signal);

  if (missing.size === 0) store.meta.markTreeComplete(tree, { files, blobs: unique });
  await store.meta.flush();
  if (missing.size > 0 && !signal?.aborted) {
    const [first] = missing.keys();
    throw new VriftError(
      'ERR_VRIFT_TIER_MISSING',
      `${missing.size} of ${unique} blobs of tree ${tree} are in no reachable tier (first: ${pathOf.get(first!)} ${first})${failureNote(chain, since)}`,
      { hint: failureHint(chain, since, 'push the tree from a node that has it; nothing was written to the target'), exitCode: exitCodeFor(chain, since) },
    );
  }
  return res;
}

/**
 * What of a tree the local store lacks: each missing blob with the size
 * the tree promises and a path to name it by, and the tree's file and
 * distinct-blob counts. The index alone (no stat per blob: a cold node
 * asks this for every blob); materialize checks every file it links, and
 * a blob the index wrongly lists is dropped from it there and fetched on
 * the retry.
 */
export function missingBlobs(store: Store, entries: readonly TreeEntry[]): { files: number; unique: number; missing: Map<Digest, number>; pathOf: Map<Digest, string> } {
  const missing = new Map<Digest, number>();
  const pathOf = new Map<Digest, string>();
  const seen = new Set<Digest>();
  let files = 0;
  for (const e of entries) {
    if (e.kind !== 'file') continue;
    files++;
    if (seen.has(e.digest!)) continue;
    seen.add(e.digest!);
    if (!store.meta.hasBlob(e.digest!)) {
      missing.set(e.digest!, e.size);
      pathOf.set(e.digest!, e.path);
    }
  }
  return { files, unique: seen.size, missing, pathOf };
}

/** A pull's result and progress, and the callback that counts each fetched blob into both (and reports the progress). */
export function pullCounters(
  tree: Digest,
  files: number,
  unique: number,
  missing: ReadonlyMap<Digest, number>,
  onProgress?: (p: PullProgress) => void,
): { res: TreePullResult; progress: PullProgress; counted: (from: string, digest: Digest, size: number) => void } {
  const res: TreePullResult = { tree, files, local: unique - missing.size, fetched: 0, fetchedBytes: 0, from: {} };
  let totalBytes = 0;
  for (const size of missing.values()) totalBytes += size;
  const progress: PullProgress = { blobs: 0, totalBlobs: missing.size, bytes: 0, totalBytes };
  const counted = (from: string, digest: Digest, size: number) => {
    const f = (res.from[from] ??= { blobs: 0, bytes: 0 });
    f.blobs++;
    f.bytes += size;
    res.fetched++;
    res.fetchedBytes += size;
    progress.blobs++;
    progress.bytes += size;
    progress.last = digest;
    onProgress?.(progress);
  };
  return { res, progress, counted };
}

/** "; redis: unreachable (…)" for each tier that failed during this operation (since `since`). */
function failureNote(chain: Chain, since: number): string {
  return chain
    .failures(since)
    .map((e) => `; ${e.message}`)
    .join('');
}

/** The failing tiers' own hints (how to fix them) first, then what to do about the content. */
function failureHint(chain: Chain, since: number, otherwise: string): string {
  const hints = [...new Set(chain.failures(since).map((e) => e.hint).filter((h): h is string => Boolean(h)))];
  return [...hints, otherwise].join('; ');
}

/** 1 (a miss a CI script may branch on) unless a tier is misconfigured, which needs a human (2). */
function exitCodeFor(chain: Chain, since: number): number {
  return chain.failures(since).some((e) => e.code === 'ERR_VRIFT_TIER_AUTH' || e.code === 'ERR_VRIFT_TIER_CONFIG') ? 2 : 1;
}
