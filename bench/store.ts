// Benchmark for the local store (issue #2). On a real tree of 20 000+
// files (this project's node_modules + /usr/include), in one run:
//   - ingest files/s and MB/s, and re-ingest of the unchanged tree vs first ingest
//   - `vrift materialize` vs `cp -r` and vs `cp -al` (each into a fresh directory)
//   - hashing a 1 GiB file vs reading it
// Run: node dist/bench/store.js [--rounds N]
import { closeSync, mkdtempSync, openSync, readSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hashFile } from '../src/node/store/cas.js';
import { materialize } from '../src/node/store/materialize.js';
import { Store } from '../src/node/store/store.js';
import { flushDisk as settle, median, printTable, ROOT, run, timed, timeSync, VRIFT_BIN } from './lib.js';

const VRIFT = [VRIFT_BIN];
const rounds = Number(process.argv[process.argv.indexOf('--rounds') + 1]) || 3;

const work = mkdtempSync(join(process.env.VRIFT_BENCH_DIR ?? tmpdir(), 'vrift-bench-store-'));
const home = join(work, 'home');
const env = { ...process.env, VRIFT_HOME: home };

/** ms of one command. */
function timeCommand(cmd: string, args: string[], e: NodeJS.ProcessEnv = process.env): number {
  return run(cmd, args, { env: e }) * 1000;
}

function vrift(args: string[]): number {
  return timeCommand(process.execPath, [...VRIFT, ...args], env);
}

function vriftJson(args: string[]): any {
  const r = spawnSync(process.execPath, [...VRIFT, ...args, '--json'], { env, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout);
}

try {
  // The real tree: copied once (not timed) so every method reads the same files.
  const src = join(work, 'src');
  spawnSync('mkdir', ['-p', src]);
  timeCommand('cp', ['-r', realpathSync(join(ROOT, 'node_modules')), join(src, 'node_modules')]);
  timeCommand('cp', ['-r', '/usr/include', join(src, 'include')]);
  settle();
  // Let the copy age past the re-ingest cache's 1 s "racily clean" window.
  await new Promise((r) => setTimeout(r, 1500));

  const startup = median([0, 1, 2].map(() => vrift(['--version'])));
  const t0 = Date.now();
  const first = vriftJson(['ingest', src, '--ref', 'bench']);
  const ingestMs = Date.now() - t0;
  const files = first.summary.files as number;
  const bytes = first.summary.bytes as number;
  if (files < 20_000) throw new Error(`bench tree has only ${files} files; need 20 000`);
  settle();
  const reingestMs = median([0, 1, 2].map(() => vrift(['ingest', src])));

  // materialize vs cp -r vs cp -al, alternating, each into a fresh directory.
  const m: number[] = [];
  const lib: number[] = [];
  const cpr: number[] = [];
  const cpal: number[] = [];
  for (let i = 0; i < rounds; i++) {
    settle();
    m.push(vrift(['materialize', 'bench', join(work, `m${i}`)]));
    settle();
    // The same work in this process: store open, tree read + verify + decode, blob checks, links.
    const t = performance.now();
    const store = Store.open(home);
    await materialize(store, 'bench', join(work, `k${i}`));
    lib.push(performance.now() - t);
    await store.close();
    settle();
    cpr.push(timeCommand('cp', ['-r', src, join(work, `r${i}`)]));
    settle();
    cpal.push(timeCommand('cp', ['-al', src, join(work, `l${i}`)]));
  }
  const mat = median(m);
  const matLib = median(lib);

  // Hashing 1 GiB vs reading it (both from the page cache, best of 3).
  const big = join(work, 'one-gib.bin');
  const chunk = Buffer.alloc(64 << 20);
  for (let i = 0; i < chunk.length; i += 4) chunk.writeUInt32LE(Math.floor(Math.random() * 2 ** 32), i);
  for (let i = 0; i < 16; i++) writeFileSync(big, chunk, { flag: i === 0 ? 'w' : 'a' });
  const readBuf = Buffer.allocUnsafe(4 << 20);
  const readOnce = (): void => {
    const fd = openSync(big, 'r');
    while (readSync(fd, readBuf, 0, readBuf.length, null) > 0);
    closeSync(fd);
  };
  readOnce();
  const readMs = Math.min(...[0, 1, 2].map(() => timeSync(readOnce)));
  const hashTimes: number[] = [];
  for (let i = 0; i < 3; i++) hashTimes.push((await timed(() => hashFile(big))) * 1000);
  const hashMs = Math.min(...hashTimes);

  const results = {
    files,
    bytes,
    ingest_ms: ingestMs,
    ingest_files_per_s: Math.round(files / (ingestMs / 1000)),
    ingest_mb_per_s: +(bytes / 1e6 / (ingestMs / 1000)).toFixed(1),
    reingest_ms: reingestMs,
    reingest_speedup: +(ingestMs / reingestMs).toFixed(2),
    materialize_ms: mat,
    cp_r_ms: median(cpr),
    cp_al_ms: median(cpal),
    materialize_vs_cp_r: +(median(cpr) / mat).toFixed(2),
    materialize_vs_cp_al: +(median(cpal) / mat).toFixed(2),
    materialize_lib_ms: matLib,
    materialize_lib_vs_cp_r: +(median(cpr) / matLib).toFixed(2),
    materialize_lib_vs_cp_al: +(median(cpal) / matLib).toFixed(2),
    read_gib_per_s: +(1000 / readMs).toFixed(2),
    hash_gib_per_s: +(1000 / hashMs).toFixed(2),
    hash_vs_read: +(readMs / hashMs).toFixed(2),
    cli_startup_ms: startup,
  };
  printTable(`vrift store benchmark: ${files} files, ${(bytes / 1e6).toFixed(0)} MB (node_modules + /usr/include), ${rounds} rounds, medians`, [
    ['measure', 'value', 'goal'],
    ['ingest (first)', `${(ingestMs / 1000).toFixed(2)} s, ${results.ingest_files_per_s} files/s, ${results.ingest_mb_per_s} MB/s`, 'report'],
    ['re-ingest unchanged', `${(reingestMs / 1000).toFixed(2)} s = ${results.reingest_speedup}x faster than first`, '>= 5x'],
    ['materialize: CLI end to end', `${(mat / 1000).toFixed(2)} s (incl. Node start-up)`, ''],
    ['materialize: in-process call', `${(matLib / 1000).toFixed(2)} s`, ''],
    ['cp -r', `${(median(cpr) / 1000).toFixed(2)} s -> materialize ${results.materialize_vs_cp_r}x (CLI), ${results.materialize_lib_vs_cp_r}x (call)`, '>= 3x'],
    ['cp -al', `${(median(cpal) / 1000).toFixed(2)} s -> materialize ${results.materialize_vs_cp_al}x (CLI), ${results.materialize_lib_vs_cp_al}x (call)`, '>= 0.8x'],
    ['read 1 GiB (page cache)', `${results.read_gib_per_s} GiB/s`, ''],
    ['hash 1 GiB', `${results.hash_gib_per_s} GiB/s = ${results.hash_vs_read}x the read speed`, '>= 0.7x'],
    ['CLI start-up (vrift --version)', `${startup.toFixed(0)} ms (included in every CLI figure)`, ''],
  ]);
  console.log(`\nJSON ${JSON.stringify(results)}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
