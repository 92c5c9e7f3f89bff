// vrift restore <ref> <dir>: resolve the ref (local → remote tiers), fetch
// what the local CAS lacks, then write the tree out (src/node/ops/restore.ts,
// run by the daemon when one runs). A miss exits 1 with one line.
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { fmtBytes } from '../../lib/units.js';
import type { RestoreResult } from '../../node/ops/restore.js';
import { plain, subcommand } from '../command.js';
import { runOperation } from '../operation-client.js';
import { describeSources, keyedRef, keyOption } from '../ref-args.js';

export function register(program: Command): void {
  keyOption(subcommand(program, 'restore <ref> <dir>', 'fetch a tree by ref from the tiers and write it out (exit 1 on a miss)'))
    .option('--force', 'replace the contents of a non-empty target')
    .option('--copy', 'copy files instead of hard-linking them from the store')
    .action(
      plain(async ({ out, opts, args }) => {
        const { ref, key } = keyedRef(args[0]!, opts);
        const dir = resolve(args[1]!);
        const r = await runOperation<RestoreResult>('restore', { ref, key, dir, force: Boolean(opts.force), copy: Boolean(opts.copy) }, out);
        out.result(r, () => {
          const shared = r.joined ? ' (shared with a restore already running)' : '';
          return `${ref} -> ${r.tree} -> ${dir}: ${r.materialized.files} files; ${r.local} blobs were local, ${describeSources(r.from, fmtBytes)}${shared} in ${r.seconds.toFixed(2)}s`;
        });
      }),
    );
}
