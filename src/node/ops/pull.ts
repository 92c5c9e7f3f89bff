// pull <tree|ref>: fetch a tree and the blobs the local CAS lacks from the
// remote tiers (verified), without writing it out anywhere.
import type { OpContext } from './operation.js';
import type { PullResult } from './tree-pull.js';

export interface PullArgs {
  /** A tree id, or a ref (with its cache key appended when the CLI computed one). */
  treeish: string;
}

export async function pull(ctx: OpContext, args: PullArgs): Promise<PullResult & { metrics: Record<string, number> }> {
  const resolver = await ctx.resolver();
  const bar = ctx.progress('download', { bytes: true });
  const lease = await ctx.store.leases.begin(`pull ${args.treeish}`);
  try {
    const r = await resolver.pull(args.treeish, { lease, onProgress: (p) => bar.update(p.bytes, p.totalBytes) });
    return { ...r, metrics: ctx.metrics() };
  } finally {
    lease.release();
    bar.done();
  }
}
