// vrift materialize <tree|ref> <dir>: the tree as real files (hard links into the CAS).
import type { Command } from 'commander';
import { materialize } from '../../node/store/materialize.js';
import { subcommand, withStore } from '../command.js';

export function register(program: Command): void {
  subcommand(program, 'materialize <tree> <dir>', 'write a tree (id or ref) out as files, hard-linked from the CAS')
    .option('--force', 'replace the contents of a non-empty target')
    .option('--copy', 'copy files (writable, exact modes) instead of hard-linking them')
    .action(
      withStore(({ store, out, opts, args }) => {
        const bar = out.progress('materialize');
        const r = materialize(store, args[0]!, args[1]!, {
          force: Boolean(opts.force),
          copy: Boolean(opts.copy),
          onProgress: (d, t) => bar.update(d, t),
          notice: (m) => out.notice(m),
        });
        bar.done();
        out.result(r, () => `${r.tree} -> ${r.dir}: ${r.files} files, ${r.dirs} dirs, ${r.symlinks} symlinks`);
      }),
    );
}
