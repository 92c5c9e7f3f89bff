// vrift save <ref> <dir>: ingest a directory, push what the remote tiers
// lack, and point the ref at the tree in every writable tier
// (src/node/ops/save.ts, run by the daemon when one runs).
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { fmtBytes } from '../../lib/units.js';
import type { SaveResult } from '../../node/ops/save.js';
import { plain, subcommand } from '../command.js';
import { runOperation } from '../operation-client.js';
import { keyedRef, keyOption } from '../ref-args.js';

export function register(program: Command): void {
  keyOption(subcommand(program, 'save <ref> <dir>', 'store a directory and push it to every remote tier under a ref'))
    .option('--no-mtimes', "do not record the files' modification times (recorded beside the tree by default; restore applies them)")
    .action(
      plain(async ({ out, opts, args }) => {
        const { ref, key } = keyedRef(args[0]!, opts);
        const r = await runOperation<SaveResult>('save', { ref, key, dir: resolve(args[1]!), mtimes: opts.mtimes !== false }, out);
        out.result(r, () => [
          `${ref} -> ${r.tree}`,
          ...r.tiers.map((t) =>
            t.ok
              ? `  ${t.tier}: ${t.present ? 'already complete' : `${t.blobs} blobs (${fmtBytes(t.bytes)}) uploaded`}${t.oversize ? `, ${t.oversize} over its size limit left out` : ''}`
              : `  ${t.tier}: FAILED`,
          ),
        ]);
      }),
    );
}
