// vrift restore <ref> <dir>: resolve the ref (local → remote tiers), fetch
// what the local CAS lacks, then write the tree out (src/node/ops/restore.ts,
// run by the daemon when one runs). A miss exits 1 with one line.
import { Option, type Command } from 'commander';
import { resolve } from 'node:path';
import { hasCode, type VriftError } from '../../lib/errors.js';
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
    .option('--copy', 'copy files instead of hard-linking them from the store (they then get the times saved with the tree: see --mtimes)')
    .addOption(new Option('--mtimes <mode>', "files' modification times: kept (as saved), now (in saved order, just before the restore: make finds a restored build up to date), none; default with --copy: now on an exact hit, kept on a partial one").choices(['kept', 'now', 'none']))
    .option('--lazy', 'mount the tree at <dir> instead: only its listing is fetched now, each file when a program (under `vrift run`) first opens it')
    .option('--restore-keys <prefixes...>', 'when <ref> misses, restore the newest ref under the first of these prefixes that has one (a partial hit; exit 0)')
    .action(
      plain(async ({ out, opts, args }) => {
        const { ref, key } = keyedRef(args[0]!, opts);
        const dir = resolve(args[1]!);
        if (opts.lazy) {
          const r = await lazyRestore(ref, dir, Boolean(opts.json));
          out.result(r, () => `${ref} -> ${r.tree} -> ${dir}: mounted lazily (files arrive when opened); run programs with \`vrift run --mount ${dir}=${ref} -- …\``);
          return;
        }
        const restoreKeys = opts.restoreKeys as string[] | undefined;
        let r: RestoreResult;
        try {
          r = await runOperation<RestoreResult>('restore', { ref, key, dir, force: Boolean(opts.force), copy: Boolean(opts.copy), mtimes: opts.mtimes as string | undefined, restoreKeys }, out);
        } catch (e) {
          // A script branches on exact / partial / miss: with --json, a miss is one object on stdout too.
          if (!restoreKeys || !opts.json || !hasCode(e, 'ERR_VRIFT_RESTORE_MISS')) throw e;
          const err = e as VriftError;
          process.stderr.write(`vrift: ${err.message}${err.hint ? ` (${err.hint})` : ''}\n`);
          process.stdout.write(`${JSON.stringify({ hit: 'miss', ref, restoreKeys, error: { code: err.code, message: err.message, hint: err.hint ?? null } })}\n`);
          process.exitCode = err.exitCode;
          return;
        }
        out.result(r, () => {
          const shared = r.joined ? ' (shared with a restore already running)' : '';
          const hit = r.hit === 'partial' ? `partial hit: ${r.restored} (newest under the restore keys) for ${ref}` : restoreKeys ? `exact hit: ${ref}` : ref;
          return `${hit} -> ${r.tree} -> ${dir}: ${r.materialized.files} files; ${r.local} blobs were local, ${describeSources(r.from, fmtBytes)}${shared} in ${r.seconds.toFixed(2)}s`;
        });
      }),
    );
}
