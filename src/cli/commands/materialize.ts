// vrift materialize <tree|ref> <dir>: the tree as real files (hard links into the CAS).
import { Option, type Command } from 'commander';
import { resolve } from 'node:path';
import type { MaterializeResult } from '../../node/store/materialize.js';
import { plain, subcommand } from '../command.js';
import { runOperation } from '../operation-client.js';

export function register(program: Command): void {
  subcommand(program, 'materialize <tree> <dir>', 'write a tree (id or ref) out as files, hard-linked from the CAS')
    .option('--force', 'replace the contents of a non-empty target')
    .option('--copy', 'copy files (writable, exact modes, the recorded modification times) instead of hard-linking them')
    .addOption(new Option('--mtimes <mode>', "files' modification times: kept (as saved), now (in recorded order, just before now), none; default: kept with --copy, none for hard links").choices(['kept', 'now', 'none']))
    .action(
      plain(async ({ out, opts, args }) => {
        const r = await runOperation<MaterializeResult>('materialize', { treeish: args[0]!, dir: resolve(args[1]!), force: Boolean(opts.force), copy: Boolean(opts.copy), mtimes: opts.mtimes as string | undefined }, out);
        out.result(r, () => `${r.tree} -> ${r.dir}: ${r.files} files, ${r.dirs} dirs, ${r.symlinks} symlinks`);
      }),
    );
}
