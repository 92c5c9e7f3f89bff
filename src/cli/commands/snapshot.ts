// vrift snapshot <dir> [--ref name]: the current state of a mount (its
// tree plus everything programs changed in it) as a new tree id.
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { F, Msg } from '../../node/control/protocol.js';
import { subcommand, withStore } from '../command.js';
import { withDaemon } from '../daemon-client.js';

export function register(program: Command): void {
  subcommand(program, 'snapshot <dir>', "save a mount's current state (e.g. a build's outputs) as a tree")
    .option('--ref <name>', 'also point this ref at the new tree')
    .action(
      withStore(async ({ store, out, opts, args }) => {
        const path = resolve(args[0]!);
        const f = await withDaemon((c) => c.request(Msg.SNAPSHOT, [[F.PATH, path]]));
        const tree = f.str(F.TREE)!;
        if (opts.ref) store.setRef(String(opts.ref), tree);
        out.result({ path, tree, ref: opts.ref ?? null }, () => (opts.ref ? `${tree} (ref ${String(opts.ref)})` : tree));
      }),
    );
}
