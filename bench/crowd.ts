// Many restores of one ref on one host (issue 10), and a restore through
// the daemon against the same restore in the CLI's own process; every
// baseline measured in the same run:
//
//   crowd    8 `vrift restore` of one ref at once, each into its own fresh
//            directory, on a fresh home with a running daemon (`vrift up
//            --detach`, started with exactly the env the commands use)
//            vs ONE cold restore of the same ref on another fresh home with
//            a daemon. Goals: bytes the 8 fetched from S3 (the daemon's
//            counter vrift_tier_wire_bytes_received_total{tier="s3"}) at
//            most 1.1× one restore's; wall time of the 8 (first start to
//            last exit) at most 1.5× one restore's.
//            For the record: the same 8 at once on a fresh home with NO
//            daemon (each CLI runs the restore in its own process).
//   daemon   one restore through a daemon vs the same restore in-process:
//            cold (fresh home, everything from S3) and warm (the same home
//            again, every blob local), into fresh directories.
//
// Dataset: a generated project tree of ~200 MB in ~4 000 files
// (writeProjectTree in lib.ts): mostly small source-like files (zstd
// shrinks them ~3.7×), medium bundles and images, and ~20 large
// incompressible binaries (8 of them ≥ 8 MiB: stored loose in S3, the
// rest in packs), as a toolchain or a dependency tree with native
// binaries. saved once to s3rver on loopback.
//
// Each round (VRIFT_BENCH_ROUNDS, default 3) runs the four set-ups (one
// restore with a daemon, one in-process, 8 with a daemon, 8 in-process) on
// fresh homes, in an order that rotates with the round, after a `sync`.
// Nothing is deleted until the end (on this ext4, creating files right
// after a large rm -rf is much slower). Tables show medians and the
// spread (min–max over rounds). It works in a scratch filesystem
// (makeScratch in lib.ts) of at most ~5 GB with the defaults.
//
//   node scripts/build.mjs ts && node dist/bench/crowd.js
//   VRIFT_BENCH_ROUNDS=5 VRIFT_BENCH_CROWD=8 VRIFT_BENCH_CROWD_BYTES=200M node dist/bench/crowd.js
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { parseSize } from '../src/lib/units.js';
import { cpuSeconds, flushDisk, loadNow, makeScratch, median, ownAndChildCpuSeconds, runOut, startS3rver, VRIFT_BIN, writeProjectTree, type S3rver } from './lib.js';

const ROUNDS = Number(process.env.VRIFT_BENCH_ROUNDS ?? 3);
const CROWD = Number(process.env.VRIFT_BENCH_CROWD ?? 8);
const BYTES = parseSize(process.env.VRIFT_BENCH_CROWD_BYTES ?? '200M');
const FILES = Math.round((4000 * BYTES) / 200e6);
const BUCKET = 'vrift-bench-crowd';
const WIRE = 'vrift_tier_wire_bytes_received_total{tier="s3"}';

const log = (s: string) => process.stderr.write(`bench: ${s}\n`);
const mb = (n: number) => `${(n / 1e6).toFixed(0)} MB`;

interface RestoreResult {
  files: number;
  local: number;
  fetched: number;
  joined?: boolean;
  seconds: number;
  timings: { fetch: number; materialize: number };
  metrics?: Record<string, number>;
}

/** One `vrift restore --json` as a child process: its wall time (start to exit) and result. */
interface Ran {
  wall: number;
  result: RestoreResult;
}

/** Runs `vrift <args> --json` in child processes, all at once; resolves when the last one ends. */
function concurrently(env: NodeJS.ProcessEnv, argsList: string[][]): Promise<{ wall: number; runs: Ran[] }> {
  const t0 = performance.now();
  const one = (args: string[]) =>
    new Promise<Ran>((resolve, reject) => {
      const p = spawn(process.execPath, [VRIFT_BIN, ...args, '--json'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (err += d));
      p.on('exit', (code) => {
        const wall = (performance.now() - t0) / 1000;
        if (code !== 0) return reject(new Error(`vrift ${args.join(' ')} exited ${code}: ${err}`));
        // Through a daemon, a configuration mismatch would silently run in-process: refuse to measure that.
        if (/running \w+ in this process/.test(err)) return reject(new Error(`vrift ${args.join(' ')} did not go through the daemon: ${err}`));
        resolve({ wall, result: JSON.parse(out) as RestoreResult });
      });
    });
  return Promise.all(argsList.map(one)).then((runs) => ({ wall: (performance.now() - t0) / 1000, runs }));
}

/** What each set-up measured per round. */
interface Rounds {
  wall: number[];
  /** Bytes that crossed the network from S3 during the measurement. */
  wire: number[];
  /** CPU seconds of the daemon (when one ran), of the CLI processes, and of s3rver during the measurement. */
  daemonCpu: number[];
  cliCpu: number[];
  s3Cpu: number[];
  /** The results' own timings (for a crowd: the slowest run's), seconds. */
  fetch: number[];
  materialize: number[];
  /** Per command, median over the commands: its wall time minus the operation's own `seconds` (process start-up, connecting, waiting, exit). */
  outside: number[];
  /** Last command's exit minus the first's. */
  exitSpread: number[];
  /** Crowd only: how many results said they joined another's pull, and how many found everything local. */
  joined: number[];
  local: number[];
}
const rounds = (): Rounds => ({ wall: [], wire: [], daemonCpu: [], cliCpu: [], s3Cpu: [], fetch: [], materialize: [], outside: [], exitSpread: [], joined: [], local: [] });
const res = {
  oneDaemon: rounds(),
  oneInproc: rounds(),
  warmDaemon: rounds(),
  warmInproc: rounds(),
  crowdDaemon: rounds(),
  crowdInproc: rounds(),
};

async function main(): Promise<void> {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  // Per round: four homes with the tree's blobs, 11 restored copies (hard links), plus the source and S3.
  const scratch = makeScratch('vrift-bench-crowd-', BYTES * (3 + 5 * ROUNDS) + 1e9);
  const work = scratch.dir;
  log(`working in ${scratch.what}`);
  let s3: S3rver | undefined;
  const daemons: string[] = [];
  try {
    const src = join(work, 'data');
    const t = performance.now();
    const size = writeProjectTree(src, { files: FILES, bytes: BYTES, medium: Math.round(FILES / 10), large: Math.max(2, Math.round(FILES / 200)), seed: 10 });
    log(`dataset: ${size.files} files + ${size.symlinks} symlinks in ${size.dirs} directories, ${mb(size.bytes)} (written in ${((performance.now() - t) / 1000).toFixed(1)} s)`);

    s3 = await startS3rver(join(work, 's3'), BUCKET);
    // Only the variables this bench sets: the daemon serves a CLI only if their VRIFT_* env is the same.
    const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VRIFT_')));
    const env = (home: string): NodeJS.ProcessEnv => ({
      ...base,
      VRIFT_HOME: home,
      VRIFT_S3_BUCKET: BUCKET,
      VRIFT_S3_ENDPOINT: s3!.endpoint,
      VRIFT_S3_ACCESS_KEY_ID: 'S3RVER',
      VRIFT_S3_SECRET_ACCESS_KEY: 'S3RVER',
      VRIFT_TIERS: 'local,s3',
    });
    const vriftJson = (home: string, ...args: string[]) => JSON.parse(runOut(process.execPath, [VRIFT_BIN, ...args, '--json'], { env: env(home) }).stdout);
    const saved = vriftJson(join(work, 'home-src'), 'save', 'bench/crowd', src);
    log(`saved tree ${saved.tree}`);

    const up = (home: string): number => {
      daemons.push(home);
      return vriftJson(home, 'up', '--detach').pid as number;
    };
    const down = (home: string) => runOut(process.execPath, [VRIFT_BIN, 'down'], { env: env(home) });
    const wireOf = (home: string) => (vriftJson(home, 'status').metrics?.[WIRE] as number | undefined) ?? 0;
    const daemonLog = (home: string) => readFileSync(join(home, 'run', 'vriftd.log'), 'utf8');
    const dirs = (tag: string, n: number) => Array.from({ length: n }, (_, i) => join(work, 'out', `${tag}-${i}`));
    mkdirSync(join(work, 'out'));

    /** Runs restores into `outs` at once on `home`, recording wall, bytes, CPU and timings into `into`. */
    const measure = async (into: Rounds, home: string, outs: string[], daemonPid?: number) => {
      flushDisk();
      const wireBefore = daemonPid ? wireOf(home) : 0;
      const cpu0 = { d: daemonPid ? cpuSeconds(daemonPid) : 0, s: cpuSeconds(s3!.pid), c: ownAndChildCpuSeconds() };
      const { wall, runs } = await concurrently(env(home), outs.map((o) => ['restore', 'bench/crowd', o]));
      into.wall.push(wall);
      into.daemonCpu.push(daemonPid ? cpuSeconds(daemonPid) - cpu0.d : 0);
      into.cliCpu.push(ownAndChildCpuSeconds() - cpu0.c); // the CLIs (waited for), and this process's little share
      into.s3Cpu.push(cpuSeconds(s3!.pid) - cpu0.s);
      // With a daemon, its counter (the results' deltas overlap when restores run at once); in-process, each CLI's own.
      into.wire.push(daemonPid ? wireOf(home) - wireBefore : runs.reduce((a, r) => a + (r.result.metrics?.[WIRE] ?? 0), 0));
      into.fetch.push(Math.max(...runs.map((r) => r.result.timings.fetch)));
      into.materialize.push(Math.max(...runs.map((r) => r.result.timings.materialize)));
      into.outside.push(median(runs.map((r) => r.wall - r.result.seconds)));
      into.exitSpread.push(Math.max(...runs.map((r) => r.wall)) - Math.min(...runs.map((r) => r.wall)));
      into.joined.push(runs.filter((r) => r.result.joined).length);
      into.local.push(runs.filter((r) => r.result.fetched === 0 && !r.result.joined).length);
      for (const r of runs) if (r.result.files !== size.files) throw new Error(`a restore wrote ${r.result.files} files of ${size.files}`);
      return runs;
    };

    const setups: Record<string, (r: number) => Promise<void>> = {
      'one, daemon': async (r) => {
        const home = join(work, `home-one-d${r}`);
        const pid = up(home);
        await measure(res.oneDaemon, home, dirs(`one-d${r}`, 1), pid);
        await measure(res.warmDaemon, home, dirs(`warm-d${r}`, 1), pid);
        if (!/restore: done/.test(daemonLog(home))) throw new Error('the daemon did not run the restores');
        down(home);
      },
      'one, in-process': async (r) => {
        const home = join(work, `home-one-p${r}`);
        await measure(res.oneInproc, home, dirs(`one-p${r}`, 1));
        await measure(res.warmInproc, home, dirs(`warm-p${r}`, 1));
      },
      [`${CROWD}, daemon`]: async (r) => {
        const home = join(work, `home-crowd-d${r}`);
        const pid = up(home);
        await measure(res.crowdDaemon, home, dirs(`crowd-d${r}`, CROWD), pid);
        down(home);
      },
      [`${CROWD}, in-process`]: async (r) => {
        const home = join(work, `home-crowd-p${r}`);
        await measure(res.crowdInproc, home, dirs(`crowd-p${r}`, CROWD));
      },
    };
    const names = Object.keys(setups);
    for (let r = 0; r < ROUNDS; r++) {
      const order = names.map((_, i) => names[(i + r) % names.length]!);
      loads.push(loadNow());
      log(`round ${r + 1}/${ROUNDS} (load ${loads.at(-1)}): ${order.join(' → ')}`);
      for (const name of order) await setups[name]!(r);
    }
    report(size);
  } finally {
    for (const h of daemons) {
      try {
        runOut(process.execPath, [VRIFT_BIN, 'down'], { env: { ...process.env, VRIFT_HOME: h } });
      } catch {
        /* already down */
      }
    }
    await s3?.stop();
    scratch.remove();
  }
}

function report(size: { files: number; bytes: number; symlinks: number }): void {
  const m = median;
  const spread = (xs: number[], f: (x: number) => string) => `${f(m(xs))} (${f(Math.min(...xs))}–${f(Math.max(...xs))})`;
  const s = (x: number) => `${x.toFixed(2)} s`;
  const MB = (x: number) => `${(x / 1e6).toFixed(1)} MB`;
  const rows: (string | number)[][] = [
    ['set-up', 'wall: median (min–max)', 'from S3', 'CPU: daemon', 'CLIs', 's3rver', 'fetch / materialize (slowest)', 'outside op', 'exits spread', 'joined / local'],
  ];
  const line = (name: string, x: Rounds, daemon: boolean, crowd: boolean) =>
    rows.push([
      name,
      spread(x.wall, s),
      spread(x.wire, MB),
      daemon ? s(m(x.daemonCpu)) : '-',
      s(m(x.cliCpu)),
      s(m(x.s3Cpu)),
      `${s(m(x.fetch))} / ${s(m(x.materialize))}`,
      s(m(x.outside)),
      crowd ? s(m(x.exitSpread)) : '-',
      crowd ? `${m(x.joined)} / ${m(x.local)}` : '-',
    ]);
  line('1 cold restore, daemon (baseline)', res.oneDaemon, true, false);
  line(`${CROWD} cold restores at once, daemon`, res.crowdDaemon, true, true);
  line(`${CROWD} cold restores at once, no daemon`, res.crowdInproc, false, true);
  line('1 cold restore, in-process', res.oneInproc, false, false);
  line('1 warm restore, daemon', res.warmDaemon, true, false);
  line('1 warm restore, in-process', res.warmInproc, false, false);
  console.log(`\n${size.files} files + ${size.symlinks} symlinks, ${mb(size.bytes)}; ${ROUNDS} rounds, spread = min–max over rounds; wall = first start to last exit of the commands`);
  console.log(loadText());
  printRows(rows);

  // Ratios per round (same round, same conditions), then their median.
  const per = (a: number[], b: number[]) => a.map((x, i) => x / b[i]!);
  const ratios = {
    crowdBytes: per(res.crowdDaemon.wire, res.oneDaemon.wire),
    crowdWall: per(res.crowdDaemon.wall, res.oneDaemon.wall),
    crowdInprocBytes: per(res.crowdInproc.wire, res.oneDaemon.wire),
    crowdInprocWall: per(res.crowdInproc.wall, res.oneDaemon.wall),
    coldDaemonVsInproc: per(res.oneDaemon.wall, res.oneInproc.wall),
    warmDaemonVsInproc: per(res.warmDaemon.wall, res.warmInproc.wall),
  };
  const goal = (xs: number[], max: number) => `${m(xs).toFixed(2)}× (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})  ≤ ${max}×  ${m(xs) <= max ? 'met' : 'MISSED'}`;
  const info = (xs: number[]) => `${m(xs).toFixed(2)}× (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})`;
  console.log(`\nratios per round, median (min–max); lower is better`);
  console.log(`  ${CROWD} with a daemon vs 1, bytes from S3   ${goal(ratios.crowdBytes, 1.1)}`);
  console.log(`  ${CROWD} with a daemon vs 1, wall time       ${goal(ratios.crowdWall, 1.5)}`);
  console.log(`  ${CROWD} with no daemon vs 1, bytes from S3  ${info(ratios.crowdInprocBytes)}`);
  console.log(`  ${CROWD} with no daemon vs 1, wall time      ${info(ratios.crowdInprocWall)}`);
  console.log(`  cold restore, daemon vs in-process       ${info(ratios.coldDaemonVsInproc)}`);
  console.log(`  warm restore, daemon vs in-process       ${info(ratios.warmDaemonVsInproc)}`);
  const med = (x: Rounds) => ({
    wall: round(m(x.wall)),
    wire: m(x.wire),
    daemonCpu: round(m(x.daemonCpu)),
    cliCpu: round(m(x.cliCpu)),
    s3Cpu: round(m(x.s3Cpu)),
    fetch: round(m(x.fetch)),
    materialize: round(m(x.materialize)),
    outside: round(m(x.outside)),
    exitSpread: round(m(x.exitSpread)),
  });
  console.log(
    JSON.stringify({
      bench: 'crowd',
      files: size.files,
      bytes: size.bytes,
      rounds: ROUNDS,
      load: loads,
      crowd: CROWD,
      results: {
        crowdBytes: { ratio: round(m(ratios.crowdBytes)), goal: 1.1, met: m(ratios.crowdBytes) <= 1.1 },
        crowdWall: { ratio: round(m(ratios.crowdWall)), goal: 1.5, met: m(ratios.crowdWall) <= 1.5 },
        crowdInprocBytes: { ratio: round(m(ratios.crowdInprocBytes)) },
        crowdInprocWall: { ratio: round(m(ratios.crowdInprocWall)) },
        coldDaemonVsInproc: { ratio: round(m(ratios.coldDaemonVsInproc)) },
        warmDaemonVsInproc: { ratio: round(m(ratios.warmDaemonVsInproc)) },
      },
      medians: Object.fromEntries(Object.entries(res).map(([k, v]) => [k, med(v)])),
      raw: res,
    }),
  );
}

function printRows(rows: (string | number)[][]): void {
  const cells = rows.map((r) => r.map(String));
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  for (const [i, r] of cells.entries()) {
    console.log(r.map((c, j) => (j === 0 ? c.padEnd(widths[j]!) : c.padStart(widths[j]!))).join('  '));
    if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
}

const round = (x: number) => Math.round(x * 1000) / 1000;
/** The 1-minute load average at the start of each round (other work on this shared machine). */
const loads: number[] = [];
const loadText = () => `load average (1 min) at each round's start: ${loads.join(', ')} on ${availableParallelism()} CPUs`;

await main();
