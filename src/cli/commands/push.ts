// vrift push <tree|ref>: send a local tree to every writable remote tier
// (only what each lacks); for a ref, point it at the tree there too.
import type { Command } from 'commander';
import { isDigest } from '../../lib/digest.js';
import { fmtBytes } from '../../lib/units.js';
import type { PushOpResult } from '../../node/ops/push.js';
import { plain, subcommand } from '../command.js';
import { runOperation } from '../operation-client.js';
import { keyedRef, keyOption } from '../ref-args.js';

export function register(program: Command): void {
  keyOption(subcommand(program, 'push <tree>', 'send a local tree (id or ref) to every remote tier; a ref is set there too')).action(
    plain(async ({ out, opts, args }) => {
      const treeish = isDigest(args[0]!) ? args[0]! : keyedRef(args[0]!, opts).ref;
      const r = await runOperation<PushOpResult>('push', { treeish }, out);
      out.result(r, () => r.tiers.map((t) => (t.ok ? `${t.tier}: ${t.present ? 'already complete' : `${t.blobs} blobs (${fmtBytes(t.bytes)}) uploaded`}` : `${t.tier}: FAILED`)));
    }),
  );
}
