// Pulling a tree through the chain: resolve the ref, fetch the tree blob,
// then only the blobs the local CAS lacks — in bulk where a tier has an
// archive of the tree (S3 packs, a peer's backfill), blob by blob
// otherwise — trying the tiers in order until nothing is missing.
// Nothing is written outside the CAS: materializing is the caller's step.
import { isDigest, type Digest } from '../../lib/digest.js';
import { hasCode, VriftError } from '../../lib/errors.js';
import { readArchive } from '../archive/reader.js';
import { assertRefName } from '../store/store.js';
import type { TreeEntry } from '../store/tree.js';
import type { Chain } from '../../tiers/chain.js';
import { TIER_COUNTERS as M } from '../../lib/metrics.js';
import { mapLimit } from '../../lib/queue.js';
import { TierError, type Tier } from '../../tiers/tier.js';

export interface PullProgress {
  blobs: number;
  totalBlobs: number;
  bytes: number;
  totalBytes: number;
}

export interface PullResult {
  tree: Digest;
  ref: string | null;
  /** Tier the ref was found in (null for a tree id). */
  refFrom: string | null;
  files: number;
  /** Blobs already local, and those fetched (per tier). */
  local: number;
  fetched: number;
  fetchedBytes: number;
  from: Record<string, { blobs: number; bytes: number }>;
}

/** Tree blobs are held in memory to be validated; this bounds what a tier may send. */
const MAX_TREE_BYTES = 1 << 30;

/** Resolves a tree id or ref name, trying local, then each remote tier. A miss exits 1. */
export async function resolveTreeish(chain: Chain, treeish: string): Promise<{ tree: Digest; ref: string | null; from: string | null }> {
  if (isDigest(treeish)) return { tree: treeish, ref: null, from: null };
  assertRefName(treeish);
  const hit = await chain.resolveRef(treeish);
  if (hit) return { tree: hit.tree, ref: treeish, from: hit.tier };
  const tried = chain.tiers.map((t) => t.name).join(', ');
  throw new VriftError('ERR_VRIFT_RESTORE_MISS', `no ref ${JSON.stringify(treeish)} in ${tried}${failureNote(chain)}`, {
    hint: failureHint(chain, 'a cache miss: build the directory, then `vrift save` it'),
    exitCode: exitCodeFor(chain),
  });
}

export async function pullTree(chain: Chain, treeish: string, opts: { onProgress?: (p: PullProgress) => void } = {}): Promise<PullResult> {
  const { tree, ref, from: refFrom } = await resolveTreeish(chain, treeish);
  const store = chain.store;
  const complete = store.hasTree(tree) ? store.meta.treeComplete(tree) : undefined;
  if (complete) {
    // Everything was here last time and nothing has left the index since (a warm restore).
    if (ref !== null && refFrom !== 'local') store.setRef(ref, tree);
    return { tree, ref, refFrom, files: complete.files, local: complete.blobs, fetched: 0, fetchedBytes: 0, from: {} };
  }
  const entries = await ensureTree(chain, tree);

  // What is missing, with the size the tree promises and a path to name it by.
  const missing = new Map<Digest, number>();
  const pathOf = new Map<Digest, string>();
  let files = 0;
  const unique = new Set<Digest>();
  for (const e of entries) {
    if (e.kind !== 'file') continue;
    files++;
    if (unique.has(e.digest!)) continue;
    unique.add(e.digest!);
    // The index answers "absent" without a stat (a cold node asks this for every blob);
    // "present" is confirmed on disk. An unindexed file is simply fetched again.
    // The index alone (no stat per blob): materialize checks every file it links,
    // and a blob the index wrongly lists is dropped from it there and fetched on the retry.
    if (!store.meta.hasBlob(e.digest!)) {
      missing.set(e.digest!, e.size);
      pathOf.set(e.digest!, e.path);
    }
  }
  const res: PullResult = { tree, ref, refFrom, files, local: unique.size - missing.size, fetched: 0, fetchedBytes: 0, from: {} };
  const progress: PullProgress = { blobs: 0, totalBlobs: missing.size, bytes: 0, totalBytes: [...missing.values()].reduce((a, b) => a + b, 0) };
  const got = (tier: Tier, digest: Digest, size: number): void => {
    if (!missing.delete(digest)) return;
    const f = (res.from[tier.name] ??= { blobs: 0, bytes: 0 });
    f.blobs++;
    f.bytes += size;
    res.fetched++;
    res.fetchedBytes += size;
    progress.blobs++;
    progress.bytes += size;
    opts.onProgress?.(progress);
  };

  for (const tier of chain.remotes) {
    if (missing.size === 0) break;
    const fits = (size: number) => tier.maxBlobBytes === undefined || size <= tier.maxBlobBytes;
    const oneByOne = (list: [Digest, number][]) =>
      mapLimit(list, tier.parallelism, async ([digest, size]) => {
        if ((await chain.fetchFrom(tier, digest, size)) !== undefined) got(tier, digest, size);
      });
    if (tier.fetchTree) {
      // Blobs the archives never hold download on their own connections while the archives stream.
      const loose = tier.looseBlobBytes;
      const alone = loose === undefined ? [] : [...missing].filter(([, size]) => size >= loose && fits(size));
      await Promise.all([pullArchives(chain, tier, tree, missing, got), oneByOne(alone)]);
    }
    // Whatever is still missing (an archive cut short, a blob no archive held): blob by blob.
    await oneByOne([...missing].filter(([, size]) => fits(size)));
  }

  if (ref !== null && refFrom !== 'local') store.setRef(ref, tree); // pins it, and the next restore is local
  if (missing.size === 0) store.meta.markTreeComplete(tree, { files, blobs: unique.size });
  await store.meta.flush();
  if (missing.size > 0) {
    const [first] = missing.keys();
    throw new VriftError(
      'ERR_VRIFT_TIER_MISSING',
      `${missing.size} of ${unique.size} blobs of tree ${tree} are in no reachable tier (first: ${pathOf.get(first!)} ${first})${failureNote(chain)}`,
      { hint: failureHint(chain, 'push the tree from a node that has it; nothing was written to the target'), exitCode: exitCodeFor(chain) },
    );
  }
  return res;
}

/**
 * Reads a tier's archives of the tree until nothing it could hold is
 * missing: in order (S3 packs, newest first), or several at once where
 * the tier says so (a peer backfill spread over peers). A part that can
 * resume is opened again after a failure, and then streams only what is
 * still missing.
 */
async function pullArchives(chain: Chain, tier: Tier, tree: Digest, missing: Map<Digest, number>, got: (t: Tier, d: Digest, s: number) => void): Promise<void> {
  const labels = { tier: tier.name };
  let parts;
  try {
    parts = await chain.call(tier, 'fetchTree', () => tier.fetchTree!(tree, new Set(missing.keys())));
  } catch {
    return; // recorded; blob-by-blob and the next tiers remain
  }
  await mapLimit(parts ?? [], tier.archiveParallelism ?? 1, async (part) => {
    if (missing.size === 0) return;
    // Counted per archive, not per blob: tens of thousands of blobs stream through here.
    let blobs = 0;
    let bytes = 0;
    try {
      // A retry re-opens the archive and admits only what is still missing: resume after a cut.
      await chain.call(tier, 'archive', async () => {
        for (let opened = 0; ; opened++) {
          try {
            const stream = await part.open();
            await readArchive(chain.store, stream, {
              want: (d) => missing.has(d),
              expectedSize: (d) => missing.get(d),
              onAdmit: (d, size) => {
                blobs++;
                bytes += size;
                got(tier, d, size);
              },
              onReject: (d, reason) => {
                chain.ctx.metrics.inc(M.mismatches, labels);
                chain.ctx.log('warn', `${tier.name}: blob ${d} in ${part.name} rejected: ${reason}`);
                part.onReject?.(d, reason);
              },
            });
            return;
          } catch (e) {
            if (opened >= (part.reopen ?? 0) || missing.size === 0) throw e;
          }
        }
      });
    } catch {
      /* recorded by `call`; what arrived whole is kept, the rest is fetched below */
    } finally {
      chain.ctx.metrics.inc(M.hits, labels, blobs);
      chain.ctx.metrics.inc(M.blobsIn, labels, blobs);
      chain.ctx.metrics.inc(M.bytesIn, labels, bytes);
    }
  });
}

/** The tree's entries: from the local store, or fetched (verified, validated) from the first tier that has it. */
async function ensureTree(chain: Chain, tree: Digest): Promise<TreeEntry[]> {
  const store = chain.store;
  if (store.hasTree(tree)) return store.getTree(tree).entries;
  for (const tier of chain.remotes) {
    let buf: Buffer | undefined;
    try {
      buf = await chain.call(tier, 'get tree', async () => {
        const body = await tier.get(tree);
        if (!body) return undefined;
        const chunks: Buffer[] = [];
        let n = 0;
        for await (const c of body.stream as AsyncIterable<Buffer>) {
          n += c.byteLength;
          if (n > MAX_TREE_BYTES) throw new TierError(tier.name, 'corrupt', `tree ${tree} is larger than ${MAX_TREE_BYTES} bytes`);
          chunks.push(c);
        }
        const all = Buffer.concat(chunks);
        try {
          store.admitTree(tree, all); // decodes and validates, then hashes, before storing anything
        } catch (e) {
          if (!hasCode(e, 'ERR_VRIFT_CAS_DIGEST_MISMATCH') && !hasCode(e, 'ERR_VRIFT_TREE_MALFORMED')) throw e;
          throw new TierError(tier.name, 'corrupt', `tree ${tree} was rejected: ${(e as Error).message}`);
        }
        return all;
      });
    } catch {
      continue;
    }
    if (buf) return store.getTree(tree).entries;
  }
  throw new VriftError('ERR_VRIFT_TIER_MISSING', `tree ${tree} is in no reachable tier${failureNote(chain)}`, {
    hint: failureHint(chain, 'push it from a node that has it (`vrift push`)'),
    exitCode: exitCodeFor(chain),
  });
}

/** "; redis: unreachable (…)" for each tier that failed during this run. */
function failureNote(chain: Chain): string {
  return [...chain.failures.values()].map((e) => `; ${e.message}`).join('');
}

/** The failing tiers' own hints (how to fix them) first, then what to do about the content. */
function failureHint(chain: Chain, otherwise: string): string {
  const hints = [...new Set([...chain.failures.values()].map((e) => e.hint).filter((h): h is string => Boolean(h)))];
  return [...hints, otherwise].join('; ');
}

/** 1 (a miss a CI script may branch on) unless a tier is misconfigured, which needs a human (2). */
function exitCodeFor(chain: Chain): number {
  return [...chain.failures.values()].some((e) => e.code === 'ERR_VRIFT_TIER_AUTH' || e.code === 'ERR_VRIFT_TIER_CONFIG') ? 2 : 1;
}
