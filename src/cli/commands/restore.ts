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

/** `restore --lazy`: the daemon mounts the tree at `dir` (its listing fetched alone; files on first open). */
async function lazyRestore(ref: string, dir: string, json: boolean): Promise<{ ref: string; tree: string; dir: string; lazy: true; vdir: string }> {
  const [{ checkMountPoint, connectOrStart }, { socketPathOf }, { homeLayout, resolveHome }, { F, Msg }] = await Promise.all([
    import('./run.js'),
    import('../../node/control/paths.js'),
    import('../../node/store/home.js'),
    import('../../node/control/protocol.js'),
  ]);
  checkMountPoint(dir);
  const c = await connectOrStart(socketPathOf(homeLayout(resolveHome()).run), { start: true, json });
  try {
    const f = await c.request(Msg.MOUNT, [
      [F.TREE, ref],
      [F.PATH, dir],
    ]);
    return { ref, tree: f.str(F.TREE)!, dir, lazy: true, vdir: f.str(F.SHM_NAME)! };
  } finally {
    c.close();
  }
}

export function register(program: Command): void {
  keyOption(subcommand(program, 'restore <ref> <dir>', 'fetch a tree by ref from the tiers and write it out (exit 1 on a miss)'))
    .option('--force', 'replace the contents of a non-empty target')
    .option('--copy', 'copy files instead of hard-linking them from the store')
    .option('--lazy', 'mount the tree at <dir> instead: only its listing is fetched now, each file when a program (under `vrift run`) first opens it')
    .action(
      plain(async ({ out, opts, args }) => {
        const { ref, key } = keyedRef(args[0]!, opts);
        const dir = resolve(args[1]!);
        if (opts.lazy) {
          const r = await lazyRestore(ref, dir, Boolean(opts.json));
          out.result(r, () => `${ref} -> ${r.tree} -> ${dir}: mounted lazily (files arrive when opened); run programs with \`vrift run --mount ${dir}=${ref} -- …\``);
          return;
        }
        const r = await runOperation<RestoreResult>('restore', { ref, key, dir, force: Boolean(opts.force), copy: Boolean(opts.copy) }, out);
        out.result(r, () => {
          const shared = r.joined ? ' (shared with a restore already running)' : '';
          return `${ref} -> ${r.tree} -> ${dir}: ${r.materialized.files} files; ${r.local} blobs were local, ${describeSources(r.from, fmtBytes)}${shared} in ${r.seconds.toFixed(2)}s`;
        });
      }),
    );
}
