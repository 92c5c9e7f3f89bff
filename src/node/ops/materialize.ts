// materialize <tree|ref> <dir>: the tree as real files (hard links into
// the CAS). A tree, or blobs of it, that the local store lacks are fetched
// through the resolver first (a ref must be known here: `restore` looks
// refs up in the remote tiers).
import { hasCode } from '../../lib/errors.js';
import type { Lease } from '../store/leases.js';
import { isDigest, type Digest } from '../../lib/digest.js';
import { materialize as writeTree, type MaterializeOptions, type MaterializeResult } from '../store/materialize.js';
import { localTimes, planTimes, type MtimeMode } from '../store/times.js';
import type { OpContext } from './operation.js';

export interface MaterializeArgs {
  treeish: string;
  /** Absolute. */
  dir: string;
  force: boolean;
  copy: boolean;
  /** --mtimes (undefined: copies keep the recorded times, links the store's). */
  mtimes?: MtimeMode;
}

export async function materialize(ctx: OpContext, args: MaterializeArgs): Promise<MaterializeResult> {
  const tree = ctx.store.resolve(args.treeish);
  const lease = await ctx.store.leases.begin(`materialize ${args.treeish}`, [tree]);
  try {
    return await materializeLeased(ctx, args, tree, lease);
  } finally {
    lease.release();
  }
}

/** The times the tree's ref (or else the last ingest of the tree here) recorded, as --mtimes says. */
function timesFor(ctx: OpContext, args: MaterializeArgs, tree: Digest): MaterializeOptions['mtimes'] {
  const named = isDigest(args.treeish) ? undefined : ctx.store.getRefTarget(args.treeish)?.times;
  const plan = planTimes(ctx.store, tree, named ?? localTimes(ctx.store.meta, tree), { asked: args.mtimes, copy: args.copy, copyDefault: 'kept' });
  if (plan.note) ctx.notice(plan.note);
  return plan.apply;
}

async function materializeLeased(ctx: OpContext, args: MaterializeArgs, tree: string, lease: Lease): Promise<MaterializeResult> {
  const write = async (): Promise<MaterializeResult> => {
    const bar = ctx.progress('materialize');
    try {
      return await writeTree(ctx.store, tree, args.dir, { force: args.force, copy: args.copy, mtimes: timesFor(ctx, args, tree), onProgress: (d, t) => bar.update(d, t), notice: (m) => ctx.notice(m) });
    } finally {
      bar.done();
    }
  };
  try {
    return await write();
  } catch (e) {
    if (!hasCode(e, 'ERR_VRIFT_CAS_MISSING') && !hasCode(e, 'ERR_VRIFT_TREE_NOT_FOUND')) throw e;
    const resolver = await ctx.resolver();
    if (resolver.tierNames().length === 1) throw e; // no remote tier: nowhere to fetch it from
    await ctx.store.meta.flush(); // the index has forgotten the missing blobs: the pull must see that
    const bar = ctx.progress('download', { bytes: true });
    try {
      await resolver.pull(tree, { lease, onProgress: (p) => bar.update(p.bytes, p.totalBytes) });
    } finally {
      bar.done();
    }
    return write();
  }
}
