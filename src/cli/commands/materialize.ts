// vrift materialize <tree|ref> <dir>: the tree as real files (hard links into the CAS).
import type { Command } from 'commander';
import { resolve } from 'node:path';
import type { MaterializeResult } from '../../node/store/materialize.js';
import { plain, subcommand } from '../command.js';
import { runOperation } from '../operation-client.js';

export function register(program: Command): void {
  subcommand(program, 'materialize <tree> <dir>', 'write a tree (id or ref) out as files, hard-linked from the CAS')
    .option('--force', 'replace the contents of a non-empty target')
    .option('--copy', 'copy files (writable, exact modes) instead of hard-linking them')
    .action(
      plain(async ({ out, opts, args }) => {
        const r = await runOperation<MaterializeResult>('materialize', { treeish: args[0]!, dir: resolve(args[1]!), force: Boolean(opts.force), copy: Boolean(opts.copy) }, out);
        out.result(r, () => `${r.tree} -> ${r.dir}: ${r.files} files, ${r.dirs} dirs, ${r.symlinks} symlinks`);
      }),
    );
}
