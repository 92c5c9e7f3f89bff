// vrift ingest <dir> [--ref NAME]: store a directory, print its tree id.
// ingest() holds a lease while it runs: a `vrift gc` in another process keeps what it stores.
import type { Command } from 'commander';
import { assertNotInsideHome, ingest } from '../../node/store/ingest.js';
import { fmtBytes } from '../../lib/units.js';
import { subcommand, withStore } from '../command.js';

export function register(program: Command): void {
  subcommand(program, 'ingest <dir>', 'store a directory in the CAS and print its tree id')
    .option('--ref <name>', 'also point this ref at the tree (pins it against gc)')
    .option('--no-mtimes', "do not record the files' modification times beside the tree")
    .action(
      withStore(async ({ store, out, opts, args }) => {
        const dir = args[0]!;
        assertNotInsideHome(store, dir);
        const bar = out.progress('ingest', { bytes: true });
        const started = Date.now();
        const r = await ingest(store, dir, {
          ref: opts.ref as string | undefined,
          mtimes: opts.mtimes !== false,
          onProgress: (p) => bar.update(p.bytes, p.totalBytes),
          warn: (m) => out.warn(m),
        });
        bar.done();
        const seconds = (Date.now() - started) / 1000;
        out.result({ ...r, ref: opts.ref ?? null, seconds }, () => r.tree);
        if (!out.json && process.stderr.isTTY) {
          out.notice(
            `${r.summary.files} files, ${fmtBytes(r.summary.bytes)}: ${r.hashed} hashed, ${r.cached} unchanged, ${r.newBlobs} new blobs (${fmtBytes(r.newBytes)}) in ${seconds.toFixed(2)}s`,
          );
        }
      }),
    );
}
