// The shim against the kernel, in one run, on the same tree mounted (served
// by libvrift.so from the VDir and the CAS) and materialized (hard links
// into the CAS, served by the kernel):
//   - stat() of every file by absolute path, timed by bench/c/stattime.c
//     (the independent timer of issue 11: N passes over the list,
//     clock_gettime around the loop), in `find` order and shuffled;
//     interleaved rounds (mount, kernel, mount, kernel ...), medians, the
//     per-round ratio's spread                                   goal: >= 10x faster
//     (and Node's fs.statSync, best of --reps)
//   - find over the whole tree                                   goal: >= 1.5x faster
//   - reading every file (open + read + close)                    goal: <= 1.1x the time
//   - `vrift run --mount` of a 50 000-file tree to the command's first
//     instruction, against `cp -r` of that tree                 goal: >= 20x faster
//     Every run mounts the same tree at a new directory. The daemon keeps
//     the VDir image of a tree it mounted (src/node/mount/image-cache.ts),
//     so only the first mount builds it: that one is reported on its own
//     line ("first mount"); best and median are of the later, cached ones.
//     Then where one run's time goes: Node start-up, loading `vrift run`'s
//     modules, the MOUNT request (cached image; and the first, uncached,
//     mount of a second tree), and a process start with and without the shim.
// The tree for the first three is the project's node_modules (real
// content); the 50 000-file tree is generated. Everything lives in a fresh
// temp dir (store, daemon, copies), removed at the end. Prints a table and
// one JSON line; numbers are the best of --reps repetitions per side.
//
//   node dist/bench/shim.js [--reps N] [--rounds R] [--stat-rounds S] [--tree DIR] [--files N]
//                           [--skip-run] [--lib PATH]
// (--rounds: passes over the list per stat() run; --stat-rounds: interleaved
// stat() runs per side; --skip-run: without the 50 000-file `vrift run` part;
// --lib: another libvrift.so for the mounted side, e.g. an older build)
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlClient } from '../src/node/control/client.js';
import { F, Msg } from '../src/node/control/protocol.js';
import { packageRoot } from '../src/lib/native.js';
import { loadNow, median, nowMs, printTable } from './lib.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1]! : dflt;
}
const REPS = Number(arg('--reps', '5'));
const ROUNDS = Number(arg('--rounds', '5'));
const STAT_ROUNDS = Number(arg('--stat-rounds', '21'));
const TREE = arg('--tree', join(packageRoot(), 'node_modules'));
const FILES = Number(arg('--files', '50000'));
const SKIP_RUN = process.argv.includes('--skip-run');
const say = (msg: string) => process.stderr.write(`bench/shim: ${msg}\n`);

const ROOT = packageRoot();
const VRIFT = join(ROOT, 'bin', 'vrift.js');
const LIB = arg('--lib', join(ROOT, 'shim', 'build', 'libvrift.so'));
const base = mkdtempSync(join(tmpdir(), 'vrift-bench-shim-'));
const home = join(base, 'home');
const env: NodeJS.ProcessEnv = { ...process.env, VRIFT_HOME: home, LC_ALL: "C" };
delete env.LD_PRELOAD;

function vrift(args: string[]): string {
  const r = spawnSync(process.execPath, [VRIFT, ...args], { env, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`vrift ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

/** The VDir name of the mount at `mount` (random: the daemon says which). */
function vdirName(mount: string): string {
  const status = JSON.parse(vrift(['status', '--json'])) as { mounts: { path: string; name: string }[] };
  const m = status.mounts.find((x) => x.path === mount);
  if (!m) throw new Error(`nothing is mounted at ${mount}`);
  return m.name;
}

/** The environment `vrift run` gives its command, to run programs under the shim without the CLI in the timing. */
function shimEnv(mount: string): NodeJS.ProcessEnv {
  return { ...env, LD_PRELOAD: LIB, VRIFT_VDIRS: vdirName(mount), VRIFT_SOCKET: join(home, 'run', 'vriftd.sock') };
}

function run(cmd: string, args: string[], e: NodeJS.ProcessEnv): { ms: number; out: string } {
  const t = nowMs();
  const r = spawnSync(cmd, args, { env: e, encoding: 'utf8', maxBuffer: 256 << 20 });
  const ms = nowMs() - t;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  if (r.stderr.includes('vrift:')) throw new Error(`${cmd}: the shim complained: ${r.stderr}`);
  return { ms, out: r.stdout };
}

/** Runs `fn(side)` alternately for both sides, `REPS` times; the best of each. */
function bestOf<T extends number>(fn: (side: 'mnt' | 'mat') => T): { mnt: number; mat: number } {
  const res = { mnt: [] as number[], mat: [] as number[] };
  for (let i = 0; i < REPS; i++) for (const side of ['mat', 'mnt'] as const) res[side].push(fn(side));
  return { mnt: Math.min(...res.mnt), mat: Math.min(...res.mat) };
}

/** A 50 000-file tree shaped like a node_modules: 100 packages of 500 small files. */
function generate(dir: string, files: number): void {
  const perPkg = 500;
  for (let p = 0; p * perPkg < files; p++) {
    const pkg = join(dir, `pkg-${String(p).padStart(3, '0')}`);
    mkdirSync(join(pkg, 'lib', 'sub'), { recursive: true });
    writeFileSync(join(pkg, 'package.json'), `{"name":"pkg-${p}","version":"1.0.${p}"}\n`);
    for (let f = 1; f < perPkg && p * perPkg + f < files; f++) {
      writeFileSync(join(pkg, 'lib', f % 2 ? 'sub' : '', `file-${f}.js`), `module.exports = ${p * 1000 + f};\n`.repeat(1 + (f % 7)));
    }
  }
}

const results: Record<string, unknown> = {};
try {
  // ---- set-up (not timed) ------------------------------------------------
  say(`ingesting ${TREE}`);
  const tree = JSON.parse(vrift(['ingest', TREE, '--json'])).tree as string;
  vrift(['up', '--detach']);
  const mnt = join(base, 'mnt');
  const mat = join(base, 'mat');
  vrift(['materialize', tree, mat]);
  vrift(['run', '--mount', `${mnt}=${tree}`, '--', 'true']);
  const fsloop = join(base, 'fsloop');
  execFileSync('gcc', ['-O2', '-o', fsloop, join(ROOT, 'bench', 'c', 'fsloop.c')]);
  const stattime = join(base, 'stattime');
  execFileSync('gcc', ['-O2', '-o', stattime, join(ROOT, 'bench', 'c', 'stattime.c')]);
  const listMat = join(base, 'list-mat');
  const listMnt = join(base, 'list-mnt');
  // `find` order (directory order, as a build walks a tree) for stat(); sorted for the rest
  const found = run('find', [mat, '-type', 'f'], env).out.trim().split('\n');
  const files = [...found].sort();
  writeFileSync(listMat, `${files.join('\n')}\n`);
  writeFileSync(listMnt, `${files.map((f) => mnt + f.slice(mat.length)).join('\n')}\n`);
  const statListMat = join(base, 'stat-list-mat');
  const statListMnt = join(base, 'stat-list-mnt');
  writeFileSync(statListMat, `${found.join('\n')}\n`);
  writeFileSync(statListMnt, `${found.map((f) => mnt + f.slice(mat.length)).join('\n')}\n`);
  const sideEnv = (side: 'mnt' | 'mat') => (side === 'mnt' ? shimEnv(mnt) : env);
  const list = (side: 'mnt' | 'mat') => (side === 'mnt' ? listMnt : listMat);
  const dir = (side: 'mnt' | 'mat') => (side === 'mnt' ? mnt : mat);
  // same answers on both sides before timing anything
  const findMat = run('find', [mat], env).out.replaceAll(mat, '@').split('\n').sort().join('\n');
  const findMnt = run('find', [mnt], shimEnv(mnt)).out.replaceAll(mnt, '@').split('\n').sort().join('\n');
  if (findMat !== findMnt) throw new Error('find lists differ between the mount and the materialized copy');

  // ---- stat() --------------------------------------------------------------
  say(`stat(): ${files.length} files x ${ROUNDS} passes, ${STAT_ROUNDS} interleaved rounds per side, find order and shuffled`);
  const statList = (side: 'mnt' | 'mat') => (side === 'mnt' ? statListMnt : statListMat);
  /** stattime's ns per call over the whole loop (its third number). */
  const statRun = (side: 'mnt' | 'mat', shuffle: boolean) =>
    Number(run(stattime, [statList(side), String(ROUNDS), ...(shuffle ? ['shuffle'] : [])], sideEnv(side)).out.trim().split(' ')[3]);
  const statPairs = (shuffle: boolean) => {
    const res = { mnt: [] as number[], mat: [] as number[] };
    for (let i = 0; i < STAT_ROUNDS; i++) for (const side of ['mnt', 'mat'] as const) res[side].push(statRun(side, shuffle));
    return res;
  };
  const statFind = statPairs(false);
  const statShuf = statPairs(true);
  const nodeStat = `const fs = require("fs"); const l = fs.readFileSync(process.argv[1], "utf8").trim().split("\\n"); for (const p of l) fs.statSync(p); const t = process.hrtime.bigint(); for (let r = 0; r < ${ROUNDS}; r++) for (const p of l) fs.statSync(p); console.log(Number(process.hrtime.bigint() - t) / (l.length * ${ROUNDS}));`;
  const statNode = bestOf((side) => Number(run(process.execPath, ['-e', nodeStat, list(side)], sideEnv(side)).out));

  // ---- find ------------------------------------------------------------------
  say('find over the whole tree');
  // timed from fork to exit by fsloop (Node's spawnSync costs more than find itself)
  const find = bestOf((side) => Number(run(fsloop, ['spawn', '5', 'find', dir(side)], sideEnv(side)).out.split(' ')[2]) / 1e6);

  // ---- read every file -----------------------------------------------------------
  say('reading every file');
  run(fsloop, ['read', listMat], env); // warm the page cache (both sides read the same CAS inodes)
  const readNs = bestOf((side) => Number(run(fsloop, ['read', list(side)], sideEnv(side)).out.split(' ')[2]) / 1e6);

  // ---- vrift run of a 50 000-file tree vs cp -r -------------------------------------
  const r2 = (x: number) => Math.round(x * 100) / 100;
  if (!SKIP_RUN) {
    say(`generating a ${FILES}-file tree`);
    const big = join(base, 'big');
    generate(big, FILES);
    const bigTree = JSON.parse(vrift(['ingest', big, '--json'])).tree as string;
    const bigCount = run('find', [big, '-type', 'f'], env).out.trim().split('\n').length;
    say('vrift run --mount (a new mount point each time) vs cp -r');
    const runAt = (m: string) => run(process.execPath, [VRIFT, 'run', '--mount', `${m}=${bigTree}`, '--', fsloop, 'first'], env).ms;
    // the first mount of the tree builds its VDir (and the daemon caches the image) ...
    spawnSync('sync');
    const firstRunMs = runAt(join(base, 'run-first'));
    vrift(['unmount', join(base, 'run-first')]);
    // ... every later one copies the cached image
    const runMs: number[] = [];
    const cpMs: number[] = [];
    for (let i = 0; i < REPS; i++) {
      spawnSync('sync');
      const dest = join(base, `cp-${i}`);
      cpMs.push(run('cp', ['-r', big, dest], env).ms);
      rmSync(dest, { recursive: true, force: true });
      spawnSync('sync');
      const m = join(base, `run-${i}`);
      runMs.push(runAt(m));
      vrift(['unmount', m]);
    }
    // where the time of one `vrift run` goes
    const nodeStart = Math.min(...Array.from({ length: REPS }, () => run(process.execPath, ['-e', ''], env).ms));
    const importRun = `const t = performance.now(); await import(${JSON.stringify(join(ROOT, 'dist', 'src', 'cli', 'commands', 'run.js'))}); console.log(performance.now() - t);`;
    const runImport = Math.min(...Array.from({ length: REPS }, () => Number(run(process.execPath, ['--input-type=module', '-e', importRun], env).out)));
    const socket = join(home, 'run', 'vriftd.sock');
    const mountRequest = async (tree: string, m: string): Promise<number> => {
      const c = await ControlClient.connect(socket);
      try {
        const t = nowMs();
        await c.request(Msg.MOUNT, [[F.TREE, tree], [F.PATH, m]]);
        const ms = nowMs() - t;
        await c.request(Msg.UNMOUNT, [[F.PATH, m]]);
        return ms;
      } finally {
        c.close();
      }
    };
    const mountCached: number[] = [];
    for (let i = 0; i < REPS; i++) mountCached.push(await mountRequest(bigTree, join(base, `req-${i}`)));
    // a tree the daemon never mounted: one more file makes another tree
    writeFileSync(join(big, 'one-more.txt'), 'x\n');
    const bigTree2 = JSON.parse(vrift(['ingest', big, '--json'])).tree as string;
    const mountUncached = await mountRequest(bigTree2, join(base, 'req-uncached'));
    const startOf = (e: NodeJS.ProcessEnv) => Number(run(fsloop, ['spawn', '20', fsloop, 'first'], e).out.split(' ')[2]) / 1e6;
    const shimStart = startOf(shimEnv(mnt));
    const plainStart = startOf(env);
    results.run_vs_cp = {
      files: bigCount,
      first_run_ms: r2(firstRunMs),
      speedup_first_vs_cp_median: r2(median(cpMs) / firstRunMs),
      run_ms_best: r2(Math.min(...runMs)),
      run_ms_median: r2(median(runMs)),
      cp_ms_best: r2(Math.min(...cpMs)),
      cp_ms_median: r2(median(cpMs)),
      speedup_best: r2(Math.min(...cpMs) / Math.min(...runMs)),
      speedup_median: r2(median(cpMs) / median(runMs)),
      node_startup_ms: r2(nodeStart),
      run_modules_ms: r2(runImport),
      mount_request_ms: { cached_best: r2(Math.min(...mountCached)), cached_median: r2(median(mountCached)), uncached: r2(mountUncached) },
      process_start_ms: { shim: r2(shimStart), plain: r2(plainStart) },
    };
  }

  results.files = files.length;
  const statSummary = (p: { mnt: number[]; mat: number[] }) => {
    const perRound = p.mnt.map((x, i) => p.mat[i]! / x);
    return {
      mnt: r2(median(p.mnt)),
      mat: r2(median(p.mat)),
      speedup: r2(median(p.mat) / median(p.mnt)),
      spread: { mnt: [r2(Math.min(...p.mnt)), r2(Math.max(...p.mnt))], mat: [r2(Math.min(...p.mat)), r2(Math.max(...p.mat))], speedup: [r2(Math.min(...perRound)), r2(Math.max(...perRound))] },
    };
  };
  results.stat_c_ns = { order: 'find', rounds: STAT_ROUNDS, passes: ROUNDS, ...statSummary(statFind) };
  results.stat_c_shuffled_ns = { order: 'shuffled', rounds: STAT_ROUNDS, passes: ROUNDS, ...statSummary(statShuf) };
  results.load = loadNow();
  results.stat_node_ns = { mnt: r2(statNode.mnt), mat: r2(statNode.mat), speedup: r2(statNode.mat / statNode.mnt) };
  results.find_ms = { mnt: r2(find.mnt), mat: r2(find.mat), speedup: r2(find.mat / find.mnt) };
  results.read_all_ms = { mnt: r2(readNs.mnt), mat: r2(readNs.mat), ratio: r2(readNs.mnt / readNs.mat) };
  const s = results as any;
  printTable('vrift shim vs kernel (same tree, mounted vs materialized)', [
    ['measure', 'mount (shim)', 'materialized (kernel)', 'result', 'goal'],
    ['stat() per call, C, find order (ns, median)', s.stat_c_ns.mnt, s.stat_c_ns.mat, `${s.stat_c_ns.speedup}x faster (${s.stat_c_ns.spread.speedup.join('-')})`, '>= 10x'],
    ['  shuffled (ns, median)', s.stat_c_shuffled_ns.mnt, s.stat_c_shuffled_ns.mat, `${s.stat_c_shuffled_ns.speedup}x faster (${s.stat_c_shuffled_ns.spread.speedup.join('-')})`, '>= 10x'],
    ['fs.statSync per call, Node (ns)', s.stat_node_ns.mnt, s.stat_node_ns.mat, `${s.stat_node_ns.speedup}x faster`, '-'],
    [`find, ${files.length} files (ms)`, s.find_ms.mnt, s.find_ms.mat, `${s.find_ms.speedup}x faster`, '>= 1.5x'],
    ['read every file (ms)', s.read_all_ms.mnt, s.read_all_ms.mat, `${s.read_all_ms.ratio}x the time`, '<= 1.1x'],
    ...(s.run_vs_cp
      ? [
          [`run --mount vs cp -r, ${s.run_vs_cp.files} files (ms, best)`, s.run_vs_cp.run_ms_best, s.run_vs_cp.cp_ms_best, `${s.run_vs_cp.speedup_best}x faster`, '>= 20x'],
          [`  (median)`, s.run_vs_cp.run_ms_median, s.run_vs_cp.cp_ms_median, `${s.run_vs_cp.speedup_median}x faster`, ''],
          [`  (first mount: VDir built, 1 run; vs cp median)`, s.run_vs_cp.first_run_ms, s.run_vs_cp.cp_ms_median, `${s.run_vs_cp.speedup_first_vs_cp_median}x faster`, ''],
        ]
      : []),
  ]);
  console.log(
    `\n(stat(): ${STAT_ROUNDS} interleaved runs per side of bench/c/stattime (${ROUNDS} passes over the ${files.length} absolute paths, clock_gettime around the loop);` +
      ` medians, the per-round ratio's range in parentheses; mount at ${mnt}; load ${results.load} on this machine)`,
  );
  if (s.run_vs_cp) {
    const rv = s.run_vs_cp;
    const mr = rv.mount_request_ms;
    console.log(
      `\n(run --mount rows after the first: the daemon copies the VDir image it cached at the first mount of the tree.` +
        `\n vrift run = node start-up ${rv.node_startup_ms} ms + run's modules ${rv.run_modules_ms} ms + MOUNT request ${mr.cached_best} ms best, ${mr.cached_median} median` +
        ` (uncached: ${mr.uncached} ms) + spawn; a process start costs ${rv.process_start_ms.shim} ms with the shim, ${rv.process_start_ms.plain} ms without)`,
    );
  }
  console.log(JSON.stringify({ bench: 'shim', ...results }));
} finally {
  try {
    for (const name of readdirSync(base)) if (name === 'mnt' || name.startsWith('run-')) spawnSync(process.execPath, [VRIFT, 'unmount', join(base, name)], { env });
    spawnSync(process.execPath, [VRIFT, 'down'], { env });
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
}
