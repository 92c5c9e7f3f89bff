// vrift mount <tree|ref> <dir> / vrift unmount <dir>: publish a tree through the daemon.
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { F, Msg } from '../../node/control/protocol.js';
import { plain, subcommand } from '../command.js';
import { withDaemon } from '../daemon-client.js';

export function register(program: Command): void {
  subcommand(program, 'mount <tree> <dir>', 'mount a tree (id or ref) at a directory for programs run with `vrift run`')
    .option('--project <name>', 'group name for the mount (default: the directory)')
    .action(
      plain(async ({ out, opts, args }) => {
        const path = resolve(args[1]!);
        const f = await withDaemon((c) =>
          c.request(Msg.MOUNT, [
            [F.TREE, args[0]!],
            [F.PATH, path],
            ...(opts.project ? ([[F.PROJECT, String(opts.project)]] as [number, string][]) : []),
          ]),
        );
        out.result({ path, tree: f.str(F.TREE), vdir: f.str(F.SHM_NAME) }, () => `${path} <- ${f.str(F.TREE)}`);
      }),
    );

  subcommand(program, 'unmount <dir>', 'remove a mount')
    .action(
      plain(async ({ out, args }) => {
        const path = resolve(args[0]!);
        await withDaemon((c) => c.request(Msg.UNMOUNT, [[F.PATH, path]]));
        out.result({ unmounted: path }, () => []);
      }),
    );
}
