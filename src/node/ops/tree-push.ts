// Pushing a local tree to every writable remote tier, then (optionally)
// pointing a ref at it there. The chain does the per-tier work
// (src/tiers/push-to-tier.ts: only what a tier lacks moves, the ref is set
// only once the tree is complete there); this gives it the tree's local
// bytes.
import type { Digest } from '../../lib/digest.js';
import type { Chain } from '../../tiers/chain.js';
import type { PushInput, TierPushResult } from '../../tiers/push-to-tier.js';
import { casSource } from '../../tiers/local.js';
import { archiveChunks } from '../archive/chunks.js';
import type { Store } from '../store/store.js';
import { loadLocalTrace, mergeTraces } from '../store/trace.js';
import type { TreeEntry } from '../store/tree.js';

export type { TierPushResult };

/** Per tier name: the trees it may already hold, being looked up. */
export type BaseSearch = Map<string, Promise<Digest[]>>;

export interface PushOptions {
  /** Set this ref in each tier once the tree is complete there. */
  ref?: string;
  /** The blob of the tree's files' times, stored beside it and named by the ref. */
  times?: Digest;
  /** Trees the tiers may already hold (the ref's previous value): their content need not move. */
  bases?: Digest[];
  onProgress?: (bytes: number, totalBytes: number) => void;
  /** Base candidates already being looked up (findBases), per tier name. */
  found?: BaseSearch;
}

/**
 * Starts looking up, in every writable tier with a bulk form, the trees it
 * may already hold. They depend only on the ref, not on the tree being
 * pushed, so `save` looks while it ingests (and the tier's SDK loads then).
 */
export function findBases(store: Store, chain: Chain, opts: Pick<PushOptions, 'ref' | 'bases'>): BaseSearch {
  const localRefs = async (prefix: string) =>
    store
      .listRefs()
      .filter((r) => r.name.startsWith(prefix))
      .sort((a, b) => b.updatedAt - a.updatedAt);
  return chain.findBases(opts.ref, [...(opts.bases ?? [])], localRefs);
}

export async function pushTree(store: Store, chain: Chain, tree: Digest, opts: PushOptions = {}): Promise<TierPushResult[]> {
  const { entries } = store.getTree(tree);
  const encoded = store.cas.readVerified(tree);
  // A blob missing locally fails the push where it is read, with ERR_VRIFT_CAS_MISSING naming it.
  const blobs = uniqueBlobs(entries);
  // An upper bound: each tier is sent at most every blob (usually far less: only what it lacks).
  const total = [...blobs.values()].reduce((a, b) => a + b, 0) * chain.writableCount();
  let sent = 0;
  return chain.pushEverywhere({
    tree,
    encoded,
    entries,
    blobs,
    ref: opts.ref,
    times: timesToPush(store, opts.times),
    bases: opts.found ?? findBases(store, chain, opts),
    source: (d, size) => casSource(store, d, size),
    archive: (list, onBlob) => archiveChunks(store, list, { onBlob }),
    baseEntries: (b) => (store.hasTree(b) ? store.getTree(b).entries : undefined),
    startup: startupSet(store, tree, opts),
    onBytes: (n) => {
      sent += n;
      opts.onProgress?.(sent, total);
    },
  });
}

/**
 * What programs opened first in lazy mounts of this tree, else of the trees
 * it replaces (the bases, the ref's value here): local traces, merged.
 */
function startupSet(store: Store, tree: Digest, opts: PushOptions): Digest[] {
  const earlier = [...(opts.bases ?? []), ...store.listRefs().filter((r) => r.name === opts.ref).map((r) => r.tree)];
  let set: Digest[] = [];
  for (const t of [tree, ...earlier]) set = mergeTraces(set, loadLocalTrace(store.meta, t));
  return set;
}

/** The times blob to store beside the tree, if it is here (gc may have taken it: the ref then goes without). */
function timesToPush(store: Store, times: Digest | undefined): PushInput['times'] {
  const st = times === undefined ? undefined : store.cas.statOf(times);
  return st && { digest: times!, size: st.size };
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
