// Writing inside a mount against writing a real directory, in one run, on
// the scratch filesystem (bench/lib.ts makeScratch: a loop-mounted ext4):
//   - `tar -x` of the project's node_modules (a .tar made once) into a
//     mount of the empty tree (`vrift run --mount <dir>=<empty tree> --
//     tar -xf …`) vs into a real empty directory        goal: <= 1.3x the time
//   - a sqlite loop: --inserts single-row INSERT transactions (the sqlite3
//     CLI, or python3's sqlite3 when there is no CLI) into a new db file in
//     a mount vs in a real directory                   goal: <= 1.2x the time
// Rounds are interleaved, the side that goes first alternating (real,
// mount, mount, real …; every round a fresh directory and mount point;
// before each command, `sync` and an idle daemon). sqlite gets twice the
// rounds less one (--sqlite-rounds): a run is ~1 s, and its 8 000
// fdatasyncs make single runs on this VM swing 2x either way, so a median
// of 5 moves by 0.1x from run to run. The table shows medians, the min-max of each
// side and the range of the per-round ratio. The command's own time (fork to
// exit, bench/c/fsloop.c `spawn`) is the measure; the whole `vrift run`
// (Node start-up, the MOUNT request; bench/shim measures those) is shown
// beside it. Every round is checked after it is timed, through the shim
// (a later `vrift run` of the same mount): the extracted tree's regular
// files, symlinks and bytes (find), and on the first round every file's
// sha256 against the real extraction; the sqlite row count and
// `PRAGMA integrity_check`. A wrong answer is printed as WRONG (with what
// differed) in place of the goal, and the bench exits 1, however fast.
//
//   node dist/bench/write.js [--rounds N] [--sqlite-rounds N] [--inserts N] [--tree DIR] [--json]
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../src/lib/native.js';
import { cpuSeconds, loadNow, makeScratch, median, nowMs, printTable } from './lib.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1]! : dflt;
}
const ROUNDS = Number(arg('--rounds', '5'));
const SQLITE_ROUNDS = Number(arg('--sqlite-rounds', String(2 * ROUNDS - 1)));
const INSERTS = Number(arg('--inserts', '2000'));
const TREE = arg('--tree', join(packageRoot(), 'node_modules'));
const JSON_ONLY = process.argv.includes('--json');
const say = (msg: string) => process.stderr.write(`bench/write: ${msg}\n`);

const ROOT = packageRoot();
const VRIFT = join(ROOT, 'bin', 'vrift.js');

// Two scratch filesystems: on this VM's loop-mounted ext4, creating files in
// space freed by a delete costs ~10x (4-5 s of system time for this tar
// against 0.4 s into fresh space), so the real side gets a filesystem where
// nothing is ever deleted (every round in fresh space: its best case), and
// the mount side (store, upper layers, mount points) its own, where mounts
// are unmounted (their upper layers deleted) only after the last round, so
// both sides write into fresh space.
const scratch = makeScratch('vrift-bench-write-', 4e9);
const scratchReal = makeScratch('vrift-bench-write-real-', 4e9);
const base = scratch.dir;
const realBase = scratchReal.dir;
const home = join(base, 'home');
const env: NodeJS.ProcessEnv = { ...process.env, VRIFT_HOME: home, LC_ALL: 'C' };
delete env.LD_PRELOAD;

function run(cmd: string, args: string[], e: NodeJS.ProcessEnv = env): { ms: number; out: string } {
  const t = nowMs();
  const r = spawnSync(cmd, args, { env: e, encoding: 'utf8', maxBuffer: 256 << 20 });
  const ms = nowMs() - t;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr}`);
  if (r.stderr.includes('vrift:')) throw new Error(`${cmd}: the shim complained: ${r.stderr}`);
  return { ms, out: r.stdout };
}
const vrift = (args: string[]) => run(process.execPath, [VRIFT, ...args]).out.trim();
/** `cmd` under `vrift run` with `dir` mounted (a new mount of `tree`, or the same one again). */
const inMount = (dir: string, tree: string, cmd: string[]) => run(process.execPath, [VRIFT, 'run', '--mount', `${dir}=${tree}`, '--', ...cmd]);

const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

const daemonPid = () => Number(readFileSync(join(home, 'run', 'vriftd.pid'), 'utf8').trim());
/**
 * Before each timed command: dirty pages written out, and the daemon idle
 * (under 10 ms of CPU in 300 ms; at most 60 s): work left from the previous
 * command (commits, an unmount) must not land in the next one's time.
 */
function settle(): void {
  spawnSync('sync');
  const pid = daemonPid();
  const until = nowMs() + 60_000;
  for (let c0 = cpuSeconds(pid); nowMs() < until; ) {
    spawnSync('sleep', ['0.3']);
    const c1 = cpuSeconds(pid);
    if (c1 - c0 < 0.01) return;
    c0 = c1;
  }
  say('the daemon is still busy after 60 s; timing anyway');
}

interface Pair {
  mount: number[]; // ms, the command inside the mount
  real: number[]; // ms, the same command in a real directory
  whole: number[]; // ms, the whole `vrift run` of the mount side
  daemonCpu: number[]; // ms of the daemon's CPU during the mount side's `vrift run`
  problems: string[]; // what the checks found wrong (each distinct message once)
}
const newPair = (): Pair => ({ mount: [], real: [], whole: [], daemonCpu: [], problems: [] });
/** The mount side: `cmd` under `vrift run`, its own time, the whole run's and the daemon's CPU. */
function timeInMount(p: Pair, fsloop: string, dir: string, tree: string, cmd: string[]): void {
  settle();
  const c0 = cpuSeconds(daemonPid());
  const whole = inMount(dir, tree, [fsloop, 'spawn', '1', ...cmd]);
  p.daemonCpu.push((cpuSeconds(daemonPid()) - c0) * 1000);
  p.mount.push(spawnMs(whole.out));
  p.whole.push(whole.ms);
}
const wrong = (p: Pair, msg: string) => {
  if (!p.problems.includes(msg)) p.problems.push(msg);
  say(`WRONG: ${msg}`);
};

/** Files, symlinks and bytes of regular files under dir, as find (shimmed or not) sees them. */
function census(dir: string, tree?: string): { files: number; links: number; bytes: number } {
  const script = `find "$1" -type f -printf '%s\\n' | awk '{n++; s+=$1} END {printf "%d %d ", n, s}'; find "$1" -type l | wc -l`;
  const out = tree ? inMount(dir, tree, ['sh', '-c', script, 'sh', dir]).out : run('sh', ['-c', script, 'sh', dir]).out;
  const [files, bytes, links] = out.trim().split(/\s+/).map(Number);
  return { files: files!, links: links!, bytes: bytes! };
}

/** sha256 of every regular file, by path relative to dir, as one digest. */
function contentDigest(dir: string, tree?: string): string {
  const script = `cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum`;
  const out = tree ? inMount(dir, tree, ['sh', '-c', script, 'sh', dir]).out : run('sh', ['-c', script, 'sh', dir]).out;
  return out.trim().split(/\s+/)[0]!;
}

/** Round r's two sides, the real one first in even rounds, the mount first in odd ones; the mount side's result. */
function inOrder<T>(r: number, realSide: () => void, mountSide: () => T): T {
  if (r % 2 === 0) {
    realSide();
    return mountSide();
  }
  const m = mountSide();
  realSide();
  return m;
}

/** fsloop `spawn 1 cmd…`: fork-to-exit ns of one run of cmd, printed by fsloop. */
const spawnMs = (out: string) => Number(out.trim().split(' ')[2]) / 1e6;

const results: Record<string, unknown> = {};
try {
  // ---- set-up (not timed) ------------------------------------------------
  mkdirSync(home, { recursive: true });
  const fsloop = join(base, 'fsloop');
  execFileSync('gcc', ['-O2', '-o', fsloop, join(ROOT, 'bench', 'c', 'fsloop.c')]);
  const empty = join(base, 'empty');
  mkdirSync(empty);
  const emptyTree = JSON.parse(vrift(['ingest', empty, '--json'])).tree as string;
  vrift(['up', '--detach']);

  const tarFile = join(realBase, 'tree.tar');
  say(`making ${tarFile} from ${TREE}`);
  run('tar', ['-cf', tarFile, '-C', TREE, '.']);
  const want = census(TREE);
  say(`${want.files} files, ${want.links} symlinks, ${(want.bytes / 1e6).toFixed(0)} MB`);

  const sqlite = has('sqlite3') ? 'sqlite3' : has('python3') ? 'python3' : undefined;
  if (!sqlite) throw new Error('neither the sqlite3 CLI nor python3 is installed');
  const sqlFile = join(base, 'inserts.sql');
  const pyFile = join(base, 'inserts.py');
  const row = 'x'.repeat(100);
  writeFileSync(sqlFile, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);\n${`BEGIN; INSERT INTO t(v) VALUES ('${row}'); COMMIT;\n`.repeat(INSERTS)}`);
  writeFileSync(
    pyFile,
    [
      'import sqlite3, sys',
      'con = sqlite3.connect(sys.argv[1], isolation_level=None)',
      "con.execute('CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)')",
      `for i in range(${INSERTS}):`,
      "    con.execute('BEGIN'); con.execute('INSERT INTO t(v) VALUES (?)', ('" + row + "',)); con.execute('COMMIT')",
      'con.close()',
    ].join('\n') + '\n',
  );
  const insertCmd = (db: string) => (sqlite === 'sqlite3' ? ['sqlite3', db, `.read ${sqlFile}`] : ['python3', pyFile, db]);
  const checkCmd = (db: string) =>
    sqlite === 'sqlite3'
      ? ['sqlite3', db, 'SELECT count(*) FROM t; PRAGMA integrity_check;']
      : ['python3', '-c', "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); print(c.execute('SELECT count(*) FROM t').fetchone()[0]); print(c.execute('PRAGMA integrity_check').fetchone()[0])", db];
  const checkDb = (p: Pair, out: string, where: string) => {
    const [count, integrity] = out.trim().split('\n');
    if (Number(count) !== INSERTS || integrity !== 'ok') wrong(p, `sqlite ${where}: ${count} rows (want ${INSERTS}), integrity ${integrity}`);
  };

  // ---- tar -x -------------------------------------------------------------
  const mounted: string[] = [];
  const tar = newPair();
  let realDigest = '';
  for (let r = 0; r < ROUNDS; r++) {
    say(`tar -x, round ${r + 1}/${ROUNDS}`);
    const realSide = () => {
      const real = join(realBase, `tar-real-${r}`); // kept until the end: no deletes on this filesystem
      mkdirSync(real);
      settle();
      tar.real.push(spawnMs(run(fsloop, ['spawn', '1', 'tar', '-xf', tarFile, '-C', real]).out));
      const gotReal = census(real);
      // the baseline must be right, or nothing here means anything
      if (JSON.stringify(gotReal) !== JSON.stringify(want)) throw new Error(`tar into a real dir: ${JSON.stringify(gotReal)}, want ${JSON.stringify(want)}`);
      if (r === 0) realDigest = contentDigest(real);
    };
    const mountSide = () => {
      const mnt = join(base, `tar-mnt-${r}`);
      timeInMount(tar, fsloop, mnt, emptyTree, ['tar', '-xf', tarFile, '-C', mnt]);
      const gotMnt = census(mnt, emptyTree);
      if (JSON.stringify(gotMnt) !== JSON.stringify(want)) wrong(tar, `tar into a mount: ${JSON.stringify(gotMnt)}, want ${JSON.stringify(want)}`);
      mounted.push(mnt);
      return mnt;
    };
    // (round 0: the real side first, its digest is what the mount's is checked against)
    const mnt = inOrder(r, realSide, mountSide);
    if (r === 0 && contentDigest(mnt, emptyTree) !== realDigest) wrong(tar, 'tar into a mount: file contents differ from the real extraction');
  }

  // ---- sqlite ---------------------------------------------------------------
  const sql = newPair();
  for (let r = 0; r < SQLITE_ROUNDS; r++) {
    say(`sqlite (${sqlite}), ${INSERTS} transactions, round ${r + 1}/${SQLITE_ROUNDS}`);
    const realSide = () => {
      const real = join(realBase, `sql-real-${r}`);
      mkdirSync(real);
      settle();
      sql.real.push(spawnMs(run(fsloop, ['spawn', '1', ...insertCmd(join(real, 'db.sqlite'))]).out));
      const realCheck = newPair();
      checkDb(realCheck, run(checkCmd(join(real, 'db.sqlite'))[0]!, checkCmd(join(real, 'db.sqlite')).slice(1)).out, 'in a real dir');
      if (realCheck.problems.length > 0) throw new Error(realCheck.problems[0]); // the baseline must be right
    };
    const mountSide = () => {
      const mnt = join(base, `sql-mnt-${r}`);
      timeInMount(sql, fsloop, mnt, emptyTree, insertCmd(join(mnt, 'db.sqlite')));
      checkDb(sql, inMount(mnt, emptyTree, checkCmd(join(mnt, 'db.sqlite'))).out, 'in a mount');
      mounted.push(mnt);
      return mnt;
    };
    inOrder(r, realSide, mountSide);
  }
  for (const m of mounted) vrift(['unmount', m]); // deletes (their upper layers) only now

  // ---- report -----------------------------------------------------------------
  const r2 = (x: number) => Math.round(x * 100) / 100;
  const summary = (p: Pair, goal: number) => {
    const perRound = p.mount.map((x, i) => x / p.real[i]!);
    const ratio = median(p.mount) / median(p.real);
    return {
      mount_ms: r2(median(p.mount)),
      real_ms: r2(median(p.real)),
      ratio: r2(ratio),
      goal,
      met: ratio <= goal && p.problems.length === 0,
      correct: p.problems.length === 0,
      problems: p.problems,
      whole_run_ms: r2(median(p.whole)),
      daemon_cpu_ms: r2(median(p.daemonCpu)),
      whole_ratio: r2(median(p.whole) / median(p.real)),
      spread: {
        mount_ms: [r2(Math.min(...p.mount)), r2(Math.max(...p.mount))],
        real_ms: [r2(Math.min(...p.real)), r2(Math.max(...p.real))],
        ratio: [r2(Math.min(...perRound)), r2(Math.max(...perRound))],
      },
    };
  };
  results.rounds = ROUNDS;
  results.sqlite_rounds = SQLITE_ROUNDS;
  results.scratch = { mount: scratch.what, real: scratchReal.what };
  results.load = loadNow();
  results.tar_x = { files: want.files, symlinks: want.links, bytes: want.bytes, ...summary(tar, 1.3) };
  results.sqlite = { runner: sqlite, transactions: INSERTS, ...summary(sql, 1.2) };
  const s = results as any;
  if (!JSON_ONLY) {
    const line = (name: string, x: any) => [
      name,
      `${x.mount_ms} (${x.spread.mount_ms.join('-')})`,
      `${x.real_ms} (${x.spread.real_ms.join('-')})`,
      `${x.ratio}x (${x.spread.ratio.join('-')})`,
      x.correct ? `<= ${x.goal}x ${x.met ? 'met' : 'MISSED'}` : 'WRONG',
    ];
    printTable(`writes inside a mount vs a real directory (medians of ${ROUNDS} interleaved rounds, sqlite ${SQLITE_ROUNDS}; min-max; ms)`, [
      ['measure', 'mount', 'real', 'ratio (per round)', 'goal'],
      line(`tar -x, ${want.files} files + ${want.links} symlinks, ${(want.bytes / 1e6).toFixed(0)} MB`, s.tar_x),
      [`  whole vrift run (+ Node, MOUNT); daemon CPU`, `${s.tar_x.whole_run_ms}; ${s.tar_x.daemon_cpu_ms}`, '', `${s.tar_x.whole_ratio}x`, '-'],
      line(`sqlite, ${INSERTS} 1-row transactions (${sqlite})`, s.sqlite),
      [`  whole vrift run (+ Node, MOUNT); daemon CPU`, `${s.sqlite.whole_run_ms}; ${s.sqlite.daemon_cpu_ms}`, '', `${s.sqlite.whole_ratio}x`, '-'],
    ]);
    console.log(`\n(scratch: mount side ${scratch.what}; real side ${scratchReal.what}; load ${results.load}; checked through the shim: file and symlink count, bytes, contents (round 1); rows and integrity_check)`);
    for (const x of [s.tar_x, s.sqlite]) for (const msg of x.problems) console.log(`WRONG: ${msg}`);
  }
  console.log(JSON.stringify({ bench: 'write', ...results }));
  if (tar.problems.length > 0 || sql.problems.length > 0) process.exitCode = 1;
} finally {
  try {
    if (existsSync(join(home, 'run'))) spawnSync(process.execPath, [VRIFT, 'down'], { env });
  } finally {
    scratch.remove();
    scratchReal.remove();
  }
}
