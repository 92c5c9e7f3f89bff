// vrift pull <tree|ref>: fetch a tree and the blobs the local CAS lacks
// from the remote tiers (verified), without writing it out anywhere.
import type { Command } from 'commander';
import { isDigest } from '../../lib/digest.js';
import { pullTree } from '../../node/ops/pull.js';
import { describeSources, keyedRef, keyOption, withChain } from '../chain.js';
import { subcommand } from '../command.js';
import { fmtBytes } from '../../lib/units.js';

export function register(program: Command): void {
  keyOption(subcommand(program, 'pull <tree>', 'fetch a tree (id or ref) and its missing blobs from the remote tiers (exit 1 on a miss)'))
    .action(
      withChain(async ({ chain, metrics, out, opts, args }) => {
        const name = isDigest(args[0]!) ? args[0]! : keyedRef(args[0]!, opts).ref;
        const bar = out.progress('download', { bytes: true });
        const r = await pullTree(chain, name, { onProgress: (p) => bar.update(p.bytes, p.totalBytes) });
        bar.done();
        out.result({ ...r, metrics: metrics.snapshot() }, () => `${r.tree}: ${r.local} blobs were local, ${describeSources(r.from, fmtBytes)}`);
      }),
    );
}
