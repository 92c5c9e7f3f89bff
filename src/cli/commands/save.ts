// vrift save <ref> <dir>: ingest a directory, push what the remote tiers
// lack, and point the ref at the tree in every writable tier (CI: after
// a cache miss, save what the build produced).
import type { Command } from 'commander';
import { VriftError } from '../../lib/errors.js';
import { assertNotInsideHome, ingest } from '../../node/store/ingest.js';
import { assertRefName } from '../../node/store/store.js';
import { describeFailures, findBases, pushTree } from '../../node/ops/push.js';
import { keyedRef, keyOption, withChain } from '../chain.js';
import { subcommand } from '../command.js';
import { fmtBytes } from '../../lib/units.js';

export function register(program: Command): void {
  keyOption(subcommand(program, 'save <ref> <dir>', 'store a directory and push it to every remote tier under a ref'))
    .action(
      withChain(async ({ store, chain, metrics, out, opts, args }) => {
        const { ref, key } = keyedRef(args[0]!, opts);
        assertRefName(ref);
        const dir = args[1]!;
        assertNotInsideHome(store, dir);
        const previous = store.getRef(ref); // the tiers may hold it: its content need not move again
        const bases = previous ? [previous] : [];
        const started = Date.now();
        const found = findBases(chain, { ref, bases }); // while the directory is ingested

        const ibar = out.progress('ingest', { bytes: true });
        const r = await ingest(store, dir, { ref, onProgress: (p) => ibar.update(p.bytes, p.totalBytes), warn: (m) => out.warn(m) });
        ibar.done();
        const ingested = Date.now();

        const ubar = out.progress('upload', { bytes: true });
        const tiers = await pushTree(chain, r.tree, { ref, bases, found, onProgress: (d, t) => ubar.update(d, t) });
        ubar.done();
        const seconds = (Date.now() - started) / 1000;
        const timings = { ingest: (ingested - started) / 1000, push: (Date.now() - ingested) / 1000 };

        const failed = describeFailures(tiers);
        if (tiers.length > 0 && failed.length === tiers.length) {
          throw new VriftError('ERR_VRIFT_SAVE_FAILED', `saved ${ref} locally (${r.tree}) but no remote tier took it: ${failed.join('; ')}`, {
            hint: 'fix the tiers above and run `vrift push` with the ref',
          });
        }
        for (const f of failed) out.warn(`not saved to ${f}`);
        if (tiers.length === 0) out.notice('no remote tier is configured (set VRIFT_S3_BUCKET or VRIFT_REDIS_URL): saved locally only');

        out.result(
          { ref, tree: r.tree, key, summary: r.summary, hashed: r.hashed, newBlobs: r.newBlobs, newBytes: r.newBytes, tiers, seconds, timings, metrics: metrics.snapshot() },
          () => [
            `${ref} -> ${r.tree}`,
            ...tiers.map((t) =>
              t.ok
                ? `  ${t.tier}: ${t.present ? 'already complete' : `${t.blobs} blobs (${fmtBytes(t.bytes)}) uploaded`}${t.oversize ? `, ${t.oversize} over its size limit left out` : ''}`
                : `  ${t.tier}: FAILED`,
            ),
          ],
        );
      }),
    );
}
