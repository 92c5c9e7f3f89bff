// vrift push <tree|ref>: send a local tree to every writable remote tier
// (only what each lacks); for a ref, point it at the tree there too.
import type { Command } from 'commander';
import { isDigest } from '../../lib/digest.js';
import { VriftError } from '../../lib/errors.js';
import { describeFailures, pushTree } from '../../node/ops/push.js';
import { keyedRef, keyOption, withChain } from '../chain.js';
import { subcommand } from '../command.js';
import { fmtBytes } from '../../lib/units.js';

export function register(program: Command): void {
  keyOption(subcommand(program, 'push <tree>', 'send a local tree (id or ref) to every remote tier; a ref is set there too'))
    .action(
      withChain(async ({ store, chain, metrics, out, opts, args }) => {
        const name = isDigest(args[0]!) ? args[0]! : keyedRef(args[0]!, opts).ref;
        const tree = store.resolve(name);
        const ref = isDigest(name) ? undefined : name;
        if (chain.remotes.length === 0) {
          throw new VriftError('ERR_VRIFT_TIER_NONE', 'no remote tier is configured', {
            hint: 'set VRIFT_S3_BUCKET (and VRIFT_S3_ENDPOINT) or VRIFT_REDIS_URL, or write them in $VRIFT_HOME/config.json',
          });
        }
        const bar = out.progress('upload', { bytes: true });
        const tiers = await pushTree(chain, tree, { ref, onProgress: (d, t) => bar.update(d, t) });
        bar.done();
        const failed = describeFailures(tiers);
        if (failed.length === tiers.length) {
          throw new VriftError('ERR_VRIFT_PUSH_FAILED', `no remote tier took ${name}: ${failed.join('; ')}`, { hint: 'fix the tiers above and push again' });
        }
        for (const f of failed) out.warn(`not pushed to ${f}`);
        out.result({ tree, ref: ref ?? null, tiers, metrics: metrics.snapshot() }, () =>
          tiers.map((t) => (t.ok ? `${t.tier}: ${t.present ? 'already complete' : `${t.blobs} blobs (${fmtBytes(t.bytes)}) uploaded`}` : `${t.tier}: FAILED`)),
        );
      }),
    );
}
