// vrift pull <tree|ref>: fetch a tree and the blobs the local CAS lacks
// from the remote tiers (verified), without writing it out anywhere.
import type { Command } from 'commander';
import { isDigest } from '../../lib/digest.js';
import { fmtBytes } from '../../lib/units.js';
import type { PullResult } from '../../node/ops/tree-pull.js';
import { plain, subcommand } from '../command.js';
import { runOperation } from '../operation-client.js';
import { describeSources, keyedRef, keyOption } from '../ref-args.js';

export function register(program: Command): void {
  keyOption(subcommand(program, 'pull <tree>', 'fetch a tree (id or ref) and its missing blobs from the remote tiers (exit 1 on a miss)')).action(
    plain(async ({ out, opts, args }) => {
      const treeish = isDigest(args[0]!) ? args[0]! : keyedRef(args[0]!, opts).ref;
      const r = await runOperation<PullResult & { metrics: Record<string, number> }>('pull', { treeish }, out);
      out.result(r, () => `${r.tree}: ${r.local} blobs were local, ${describeSources(r.from, fmtBytes)}`);
    }),
  );
}
