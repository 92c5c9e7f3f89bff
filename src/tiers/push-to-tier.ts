// Pushing a local tree into one remote tier (the chain pushes to every
// writable tier at once with this). Only what the tier lacks moves: a tier
// with a bulk form (S3 packs) gets the tree against a base it already
// holds; others get the blobs they do not have, through the chain's
// bounded queue. The ref is set in a tier only after its content is
// complete, so a ref in a tier never names a tree that tier cannot serve.
import type { Digest } from '../lib/digest.js';
import type { VriftError } from '../lib/errors.js';
import type { BoundedQueue } from '../lib/queue.js';
import type { TreeEntry } from '../node/store/tree.js';
import type { GuardedTier } from './guarded.js';
import type { BlobSource, PushResult, TreePush } from './tier.js';

/** A tree to push, with its local bytes. */
export interface PushInput {
  tree: Digest;
  /** The tree blob (docs/tree-format.md). */
  encoded: Buffer;
  entries: TreeEntry[];
  /** Its file blobs and their sizes. */
  blobs: Map<Digest, number>;
  /** Set this ref in each tier once the tree is complete there. */
  ref?: string;
  /** The blob of the tree's files' times (store/times.ts): stored beside the tree, named by the ref. */
  times?: { digest: Digest; size: number };
  /** Per tier name: trees it may already hold (their content need not move), being looked up (Chain.findBases). */
  bases: Map<string, Promise<Digest[]>>;
  source(digest: Digest, size: number): BlobSource;
  archive: TreePush['archive'];
  baseEntries: TreePush['baseEntries'];
  onBytes(n: number): void;
  startup?: TreePush['startup'];
}

export interface TierPushResult extends PushResult {
  tier: string;
  ok: boolean;
  /** Blobs left out because they exceed the tier's size limit (by design, e.g. Redis). */
  oversize: number;
  error: { code: string; message: string } | null;
}

export async function pushToTier(tier: GuardedTier, input: PushInput, queue: BoundedQueue): Promise<TierPushResult> {
  const res: TierPushResult = { tier: tier.name, ok: false, blobs: 0, bytes: 0, oversize: 0, error: null };
  try {
    if (tier.pushTree) {
      const bases = (await input.bases.get(tier.name)) ?? [];
      const { tree, encoded, entries, source, archive, baseEntries, onBytes, startup } = input;
      Object.assign(res, await tier.pushTree({ tree, encoded, entries, bases, source, archive, baseEntries, onBytes, startup }));
    } else {
      await putMissing(tier, input, res, queue);
    }
    if (input.ref !== undefined) {
      const times = input.times;
      if (times && (tier.maxBlobBytes === undefined || times.size <= tier.maxBlobBytes) && !(await tier.has([times.digest])).has(times.digest)) {
        await tier.put(times.digest, input.source(times.digest, times.size));
      }
      // A tier too small for the times blob gets the ref without it: the tree is whole there, the times are not.
      const keep = times && (tier.maxBlobBytes === undefined || times.size <= tier.maxBlobBytes);
      // The lazy index is the tier's own (S3: beside its packs), so only this tier's record names it.
      await tier.setRef(input.ref, { tree: input.tree, ...(keep ? { times: times.digest } : {}), ...(res.lazy ? { lazy: res.lazy } : {}) });
    }
    res.ok = true;
  } catch (e) {
    const err = e as VriftError;
    res.error = { code: err.code ?? 'ERR_VRIFT_TIER_IO', message: err.message };
  }
  return res;
}

/** Blob by blob: ask the tier what it has, queue the rest (the queue bounds memory and concurrency). */
async function putMissing(tier: GuardedTier, input: PushInput, res: TierPushResult, queue: BoundedQueue): Promise<void> {
  const all = new Map(input.blobs).set(input.tree, input.encoded.byteLength);
  const fits = [...all].filter(([, size]) => tier.maxBlobBytes === undefined || size <= tier.maxBlobBytes);
  res.oversize = all.size - fits.length;
  const present = await tier.has(fits.map(([d]) => d));
  let failure: unknown;
  const done: Promise<void>[] = [];
  for (const [d, size] of fits) {
    if (present.has(d)) continue;
    if (failure) break; // the tier is failing: stop feeding it
    let settle!: () => void;
    done.push(new Promise<void>((r) => (settle = r)));
    await queue.push(async () => {
      try {
        await tier.put(d, input.source(d, size));
        res.blobs++;
        res.bytes += size;
        input.onBytes(size);
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
