// vrift restore <ref> <dir>: resolve the ref (local → remote tiers), fetch
// what the local CAS lacks, then materialize. A miss exits 1 with one
// line, so a CI script can branch on it; the target is not touched unless
// everything needed is here and verified.
import type { Command } from 'commander';
import { readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { errnoOf, hasCode, VriftError } from '../../lib/errors.js';
import { materialize, type MaterializeResult } from '../../node/store/materialize.js';
import { pullTree, type PullResult } from '../../node/ops/pull.js';
import { describeSources, keyedRef, keyOption, withChain, type ChainContext } from '../chain.js';
import { subcommand } from '../command.js';
import { fmtBytes } from '../../lib/units.js';

export function register(program: Command): void {
  keyOption(subcommand(program, 'restore <ref> <dir>', 'fetch a tree by ref from the tiers and write it out (exit 1 on a miss)'))
    .option('--force', 'replace the contents of a non-empty target')
    .option('--copy', 'copy files instead of hard-linking them from the store')
    .action(
      withChain(async (ctx) => {
        const { out, opts, args, metrics } = ctx;
        const { ref, key } = keyedRef(args[0]!, opts);
        const dir = resolve(args[1]!);
        assertTargetFree(dir, Boolean(opts.force)); // before any download
        const started = Date.now();
        let pulled = await pull(ctx, ref);
        const fetched = Date.now();
        let made: MaterializeResult;
        try {
          made = write(ctx, pulled.tree, dir);
        } catch (e) {
          // A local blob found corrupt (quarantined) or gone behind the index's back
          // (dropped from it): fetch it again, once.
          if (!hasCode(e, 'ERR_VRIFT_CAS_CORRUPT') && !hasCode(e, 'ERR_VRIFT_CAS_MISSING')) throw e;
          out.warn(`${(e as Error).message}; fetching it again`);
          await ctx.store.meta.flush(); // the index has forgotten those blobs: the pull must see that
          pulled = await pull(ctx, pulled.tree);
          made = write(ctx, pulled.tree, dir);
        }
        const seconds = (Date.now() - started) / 1000;
        const timings = { fetch: (fetched - started) / 1000, materialize: (Date.now() - fetched) / 1000 };
        out.result({ ...pulled, ref, key, dir, materialized: made, seconds, timings, metrics: metrics.snapshot() }, () =>
          `${ref} -> ${pulled.tree} -> ${dir}: ${made.files} files; ${pulled.local} blobs were local, ${describeSources(pulled.from, fmtBytes)} in ${seconds.toFixed(2)}s`,
        );
      }),
    );
}

async function pull(ctx: ChainContext, treeish: string): Promise<PullResult> {
  const bar = ctx.out.progress('download', { bytes: true });
  try {
    return await pullTree(ctx.chain, treeish, { onProgress: (p) => bar.update(p.bytes, p.totalBytes) });
  } finally {
    bar.done();
  }
}

function write(ctx: ChainContext, tree: string, dir: string): MaterializeResult {
  const bar = ctx.out.progress('restore');
  try {
    return materialize(ctx.store, tree, dir, {
      force: Boolean(ctx.opts.force),
      copy: Boolean(ctx.opts.copy),
      onProgress: (d, t) => bar.update(d, t),
      notice: (m) => ctx.out.notice(m),
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
