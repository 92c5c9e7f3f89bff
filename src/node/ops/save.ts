// save <ref> <dir>: ingest a directory, push what the remote tiers lack,
// and point the ref at the tree in every writable tier (CI: after a cache
// miss, save what the build produced).
import { VriftError } from '../../lib/errors.js';
import { assertNotInsideHome, ingest, type IngestResult } from '../store/ingest.js';
import { assertRefName } from '../store/store.js';
import type { OpContext } from './operation.js';
import { describeFailures, type TierPushResult } from './tree-push.js';

export interface SaveArgs {
  /** The ref, with its cache key appended when the CLI computed one. */
  ref: string;
  key: unknown;
  /** Absolute. */
  dir: string;
  /** Record the files' modification times beside the tree (default true). */
  mtimes?: boolean;
}

export interface SaveResult {
  ref: string;
  tree: string;
  /** The blob of the files' modification times, when recorded. */
  times: string | null;
  key: unknown;
  summary: IngestResult['summary'];
  hashed: number;
  newBlobs: number;
  newBytes: number;
  tiers: TierPushResult[];
  seconds: number;
  timings: { ingest: number; push: number };
  metrics: Record<string, number>;
}

export async function save(ctx: OpContext, args: SaveArgs): Promise<SaveResult> {
  const { ref, dir } = args;
  const { store } = ctx;
  assertRefName(ref);
  assertNotInsideHome(store, dir);
  const resolver = await ctx.resolver(); // the config is checked in full before anything is stored
  const previous = store.getRef(ref); // the tiers may hold it: its content need not move again
  const bases = previous ? [previous] : [];
  const started = Date.now();
  const found = resolver.findBases({ ref, bases }); // while the directory is ingested

  // One lease through ingest and push: gc keeps the new tree's blobs until they are uploaded.
  const lease = await store.leases.begin(`save ${ref}`);
  let r: IngestResult;
  let ingested: number;
  let tiers: TierPushResult[];
  try {
    const ibar = ctx.progress('ingest', { bytes: true });
    r = await ingest(store, dir, { ref, lease, mtimes: args.mtimes, onProgress: (p) => ibar.update(p.bytes, p.totalBytes), warn: (m) => ctx.warn(m) });
    ibar.done();
    ingested = Date.now();
    ctx.signal.throwIfAborted();

    const ubar = ctx.progress('upload', { bytes: true });
    tiers = await resolver.push(r.tree, { ref, times: r.times, bases, found, onProgress: (d, t) => ubar.update(d, t) });
    ubar.done();
  } finally {
    lease.release();
  }
  const seconds = (Date.now() - started) / 1000;
  const timings = { ingest: (ingested - started) / 1000, push: (Date.now() - ingested) / 1000 };

  const failed = describeFailures(tiers);
  if (tiers.length > 0 && failed.length === tiers.length) {
    throw new VriftError('ERR_VRIFT_SAVE_FAILED', `saved ${ref} locally (${r.tree}) but no remote tier took it: ${failed.join('; ')}`, {
      hint: 'fix the tiers above and run `vrift push` with the ref',
    });
  }
  for (const f of failed) ctx.warn(`not saved to ${f}`);
  if (tiers.length === 0) ctx.notice('no remote tier is configured (set VRIFT_S3_BUCKET or VRIFT_REDIS_URL): saved locally only');
  return {
    ref,
    tree: r.tree,
    times: r.times ?? null,
    key: args.key,
    summary: r.summary,
    hashed: r.hashed,
    newBlobs: r.newBlobs,
    newBytes: r.newBytes,
    tiers,
    seconds,
    timings,
    metrics: ctx.metrics(),
  };
}
