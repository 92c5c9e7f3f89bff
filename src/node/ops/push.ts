// push <tree|ref>: send a local tree to every writable remote tier (only
// what each lacks); for a ref, point it at the tree there too.
import { isDigest } from '../../lib/digest.js';
import { VriftError } from '../../lib/errors.js';
import type { OpContext } from './operation.js';
import { describeFailures, type TierPushResult } from './tree-push.js';

export interface PushArgs {
  /** A tree id, or a ref (with its cache key appended when the CLI computed one). */
  treeish: string;
}

export interface PushOpResult {
  tree: string;
  ref: string | null;
  tiers: TierPushResult[];
  metrics: Record<string, number>;
}

export async function push(ctx: OpContext, args: PushArgs): Promise<PushOpResult> {
  const name = args.treeish;
  const tree = ctx.store.resolve(name);
  const ref = isDigest(name) ? undefined : name;
  const resolver = await ctx.resolver();
  if (resolver.writableCount() === 0) {
    throw new VriftError('ERR_VRIFT_TIER_NONE', 'no remote tier is configured', {
      hint: 'set VRIFT_S3_BUCKET (and VRIFT_S3_ENDPOINT) or VRIFT_REDIS_URL, or write them in $VRIFT_HOME/config.json',
    });
  }
  const bar = ctx.progress('upload', { bytes: true });
  const lease = await ctx.store.leases.begin(`push ${name}`, [tree]); // its blobs stay while they are read
  let tiers: TierPushResult[];
  try {
    const times = ref === undefined ? undefined : ctx.store.getRefTarget(ref)?.times;
    tiers = await resolver.push(tree, { ref, times, onProgress: (d, t) => bar.update(d, t) });
  } finally {
    lease.release();
    bar.done();
  }
  const failed = describeFailures(tiers);
  if (failed.length === tiers.length) {
    throw new VriftError('ERR_VRIFT_PUSH_FAILED', `no remote tier took ${name}: ${failed.join('; ')}`, { hint: 'fix the tiers above and push again' });
  }
  for (const f of failed) ctx.warn(`not pushed to ${f}`);
  return { tree, ref: ref ?? null, tiers, metrics: ctx.metrics() };
}
