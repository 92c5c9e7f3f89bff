// restore <ref> <dir>: resolve the ref (local → remote tiers), fetch what
// the local CAS lacks, then write the tree out. A miss exits 1 with one
// line, so a CI script can branch on it; the target is not touched unless
// everything needed is here and verified.
import { readdirSync } from 'node:fs';
import { errnoOf, hasCode, VriftError } from '../../lib/errors.js';
import type { Lease } from '../store/leases.js';
import { materialize, type MaterializeOptions, type MaterializeResult } from '../store/materialize.js';
import { localTimes, planTimes, type MtimeMode } from '../store/times.js';
import type { OpContext } from './operation.js';
import type { Resolver } from './resolver.js';
import type { PullResult } from './tree-pull.js';

export interface RestoreArgs {
  /** The ref, with its cache key appended when the CLI computed one. */
  ref: string;
  /** The cache key (--key-from), passed through to the result. */
  key: unknown;
  /** Absolute. */
  dir: string;
  force: boolean;
  copy: boolean;
  /** --mtimes: how files get the modification times saved with the tree (undefined: the default, see planTimes). */
  mtimes?: MtimeMode;
  /**
   * Prefixes to fall back on when `ref` misses (actions/cache's
   * restore-keys): the newest ref under the first prefix that has one is
   * restored instead (a partial hit beats a cold build).
   */
  restoreKeys?: string[];
}

export interface RestoreResult extends PullResult {
  /** "exact": `ref` itself; "partial": a ref found under one of the restore keys (`restored`). */
  hit: 'exact' | 'partial';
  /** The ref that was restored. */
  restored: string;
  key: unknown;
  dir: string;
  materialized: MaterializeResult;
  seconds: number;
  timings: { fetch: number; materialize: number };
  metrics: Record<string, number>;
}

export async function restore(ctx: OpContext, args: RestoreArgs): Promise<RestoreResult> {
  assertTargetFree(args.dir, args.force); // before any download
  const resolver = await ctx.resolver();
  const started = Date.now();
  const lease = await ctx.store.leases.begin(`restore ${args.ref}`); // gc keeps what this restore relies on
  let pulled: PullResult;
  let made: MaterializeResult;
  let fetched: number;
  let hit: RestoreResult['hit'] = 'exact';
  let restored = args.ref;
  try {
    try {
      pulled = await pull(ctx, resolver, args.ref, lease);
    } catch (e) {
      if (!hasCode(e, 'ERR_VRIFT_RESTORE_MISS') || !args.restoreKeys?.length) throw e;
      const fallback = await newestUnder(resolver, args.restoreKeys);
      if (!fallback) {
        throw new VriftError('ERR_VRIFT_RESTORE_MISS', `${(e as Error).message.split(' (')[0]}, and no ref under ${args.restoreKeys.map((k) => JSON.stringify(k)).join(', ')}`, {
          hint: 'a cache miss: build the directory, then `vrift save` it',
          exitCode: 1,
        });
      }
      hit = 'partial';
      restored = fallback;
      pulled = await pull(ctx, resolver, fallback, lease);
    }
    fetched = Date.now();
    ctx.signal.throwIfAborted();
    const times = timesFor(ctx, pulled, hit, args);
    try {
      made = await write(ctx, pulled.tree, args, times);
    } catch (e) {
      // A local blob found corrupt (quarantined) or gone behind the index's back
      // (dropped from it): fetch it again, once.
      if (!hasCode(e, 'ERR_VRIFT_CAS_CORRUPT') && !hasCode(e, 'ERR_VRIFT_CAS_MISSING')) throw e;
      ctx.warn(`${(e as Error).message}; fetching it again`);
      await ctx.store.meta.flush(); // the index has forgotten those blobs: the pull must see that
      pulled = { ...(await pull(ctx, resolver, pulled.tree, lease)), ref: pulled.ref, refFrom: pulled.refFrom };
      made = await write(ctx, pulled.tree, args, times);
    }
  } finally {
    lease.release();
  }
  const seconds = (Date.now() - started) / 1000;
  const timings = { fetch: (fetched - started) / 1000, materialize: (Date.now() - fetched) / 1000 };
  return { ...pulled, hit, restored, ref: args.ref, key: args.key, dir: args.dir, materialized: made, seconds, timings, metrics: ctx.metrics() };
}

/** The newest ref under the first of `prefixes` that has one (local refs and the remote tiers'), or undefined. */
async function newestUnder(resolver: Resolver, prefixes: string[]): Promise<string | undefined> {
  for (const prefix of prefixes) {
    const [newest] = await resolver.listRefs(prefix, 1);
    if (newest) return newest.name;
  }
  return undefined;
}

async function pull(ctx: OpContext, resolver: Resolver, treeish: string, lease: Lease): Promise<PullResult> {
  const bar = ctx.progress('download', { bytes: true });
  try {
    return await resolver.pull(treeish, { lease, onProgress: (p) => bar.update(p.bytes, p.totalBytes) });
  } finally {
    bar.done();
  }
}

/**
 * The times files get: those the ref names, as --mtimes says; by default
 * copies are "now" on an exact hit (a build directory restored into a fresh
 * checkout is then newer than its sources: make finds it up to date) and
 * "kept" on a partial hit (outputs of older sources must not look newer
 * than the checkout's changes).
 */
function timesFor(ctx: OpContext, pulled: PullResult, hit: RestoreResult['hit'], args: RestoreArgs): MaterializeOptions['mtimes'] {
  // A tree id names no times: those of its last ingest here, if any.
  const recorded = pulled.times ?? (pulled.ref === null ? localTimes(ctx.store.meta, pulled.tree) : undefined);
  const plan = planTimes(ctx.store, pulled.tree, recorded, { asked: args.mtimes, copy: args.copy, copyDefault: hit === 'exact' ? 'now' : 'kept' });
  if (plan.note) ctx.notice(plan.note);
  if (plan.mode === 'now' && hit === 'partial') ctx.warn('--mtimes now on a partial hit: files built from other sources will look newer than this checkout (make will not rebuild them)');
  return plan.apply;
}

async function write(ctx: OpContext, tree: string, args: RestoreArgs, mtimes: MaterializeOptions['mtimes']): Promise<MaterializeResult> {
  const bar = ctx.progress('restore');
  try {
    return await materialize(ctx.store, tree, args.dir, {
      force: args.force,
      copy: args.copy,
      mtimes,
      onProgress: (d, t) => bar.update(d, t),
      notice: (m) => ctx.notice(m),
    });
  } finally {
    bar.done();
  }
}

/** Fails early (before downloading) when the target is in the way. */
function assertTargetFree(dir: string, force: boolean): void {
  if (force) return;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return;
    if (errnoOf(e) === 'ENOTDIR') names = ['(a file)'];
    else return; // materialize reports anything else precisely
  }
  if (names.length > 0) {
    throw new VriftError('ERR_VRIFT_MATERIALIZE_NOT_EMPTY', `${dir} is not empty`, {
      hint: 'choose an empty directory or pass --force to replace its contents',
    });
  }
}
