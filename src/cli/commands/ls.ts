// vrift ls <tree|ref> [prefix]: the entries of a tree.
import type { Command } from 'commander';
import { subcommand, withStore } from '../command.js';

export function register(program: Command): void {
  subcommand(program, 'ls <tree> [prefix]', 'list the entries of a tree (id or ref), optionally under a path')
    .action(
      withStore(({ store, out, args }) => {
        const id = store.resolve(args[0]!);
        const prefix = args[1]?.replace(/\/+$/, '');
        const entries = store
          .getTree(id)
          .entries.filter((e) => !prefix || e.path === prefix || e.path.startsWith(`${prefix}/`));
        out.result({ tree: id, entries }, () =>
          entries.map((e) => {
            const ref = e.kind === 'file' ? e.digest : '-'.padEnd(64);
            const tail = e.kind === 'symlink' ? ` -> ${e.target}` : '';
            return `${e.mode.toString(8).padStart(4, '0')} ${e.kind.padEnd(7)} ${String(e.size).padStart(10)} ${ref} ${e.path}${tail}`;
          }),
        );
      }),
    );
}
