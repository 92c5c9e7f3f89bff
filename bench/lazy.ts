// Lazy start against restore-then-run, in one run (issue 12). The tree is
// only in S3 (s3rver), or with VRIFT_BENCH_SOURCE=peer only on one peer
// node (a daemon that saved it; every node joins it, no S3): this
// project's node_modules, pip's numpy (with its
// bundled libraries) as a site-packages directory, and generated
// project-like files (writeProjectTree) up to VRIFT_BENCH_FILES entries /
// VRIFT_BENCH_BYTES (default 100 000 / 1 GB). Every round is a new, empty
// node (its own home and daemon, started before the clock runs):
//
//   start       `vrift run --mount m=<ref> -- true`
//               vs `vrift restore <ref> out` then `true`          goal >= 10x faster
//   node job    require() of three packages from node_modules     goal cold >= 3x faster
//   numpy job   python3 -c 'import numpy' (PYTHONPATH in the tree) goal cold >= 3x faster
//   read all    every file read (tar -c of the tree to /dev/null) goal <= 1.1x the time
//   traced      the node and numpy jobs on another empty node, after the first
//               one's trace reached S3 (it prefetches in that order)
//               vs the first cold lazy run                        goal >= 2x faster
//               (first round only: later rounds' traces include "read all")
//   warm        the node and numpy jobs again on the same node (blobs local)
//               vs the same job in a restored directory          goal <= 1.1x
//               (the job's own time, fork to exit, best of 5 runs per side:
//               bench/c/fsloop.c spawn)
//
// Bytes: what the lazy side moved from S3 (the daemon's wire counter)
// against the bytes of the tree's files the job opened.
// Rounds alternate (eager, lazy, eager, lazy …); medians and the min-max.
// The first cold runs have prefetch off (VRIFT_PREFETCH=false: no trace
// from an earlier round helps them); the bulk switch stays on.
//
//   node dist/bench/lazy.js [--rounds N] [--jobs start,node,numpy,all] [--json]
//
// --jobs runs only those jobs (to iterate on one; the full run is all four).
// VRIFT_BENCH_LOGS=<dir> keeps every node's daemon log there.
// From a peer there is no "traced" row: traces travel through the remote
// tiers (S3, Redis), which that set-up has none of.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { parseSize } from '../src/lib/units.js';
import { flushDisk, freePort, loadNow, makeScratch, median, nowMs, printTable, ROOT, s3NodeEnv, startS3rver, VRIFT_BIN, vriftAs, waitForHolder, writeProjectTree } from './lib.js';

const arg = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1]! : dflt;
};
const ROUNDS = Number(arg('--rounds', '3'));
const JSON_ONLY = process.argv.includes('--json');
const ONLY = arg('--jobs', 'start,node,numpy,all').split(',');
const FILES = Number(process.env.VRIFT_BENCH_FILES ?? 100_000);
const BYTES = process.env.VRIFT_BENCH_BYTES ? parseSize(process.env.VRIFT_BENCH_BYTES) : 1e9;
const BUCKET = 'vrift-bench';
/** Where the tree lives: only in s3rver, or only on one peer node. */
/** Runs of a warm job per side, the best of them kept: one run of a ~100-300 ms job moves by +-20 ms. */
const WARM_REPS = '5';
const SOURCE: 's3' | 'peer' = process.env.VRIFT_BENCH_SOURCE === 'peer' ? 'peer' : 's3';
const CLUSTER_SECRET = 'vrift-bench-lazy-cluster';
const REF = 'bench/lazy';
const say = (m: string) => process.stderr.write(`bench/lazy: ${m}\n`);

/** Where pip's numpy lives here (the python3 on PATH must be the one it was built for). */
function numpyDir(): string | undefined {
  const r = spawnSync('python3', ['-c', 'import numpy, os; print(os.path.dirname(os.path.dirname(numpy.__file__)))'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** Three packages of node_modules a job loads (they exist in this project's tree). */
const NODE_PACKAGES = ['@grpc/grpc-js', 'msgpackr', 'commander'];

interface Job {
  name: string;
  /** The command, for a tree at `dir`. */
  cmd: (dir: string) => string[];
  env?: (dir: string) => NodeJS.ProcessEnv;
}

const JOBS: Job[] = [
  { name: 'start (true)', cmd: () => ['true'] },
  {
    name: `node: require ${NODE_PACKAGES.join(', ')}`,
    cmd: (dir) => [process.execPath, '-e', `for (const p of ${JSON.stringify(NODE_PACKAGES)}) require(require.resolve(p, { paths: [${JSON.stringify(dir)}] }))`],
  },
  { name: 'python3: import numpy', cmd: () => ['python3', '-c', 'import numpy; numpy.zeros(3).sum()'], env: (dir) => ({ PYTHONPATH: join(dir, 'site-packages') }) },
  // (tar skips reading files when it writes to /dev/null itself)
  { name: 'read every file (tar -c)', cmd: (dir) => ['sh', '-c', 'tar -cf - -C "$1" . | cat > /dev/null', 'sh', dir] },
];

/** The names --jobs takes, one per job above. */
const JOB_KEYS = ['start', 'node', 'numpy', 'all'];

/**
 * The bytes of the files under `dir` that `cmd` opened (each once), read
 * off strace: what a lazy mount must at least fetch for the job.
 */
function openedBytes(cmd: string[], env: NodeJS.ProcessEnv, dir: string): number {
  const log = `${dir}.strace`;
  const r = spawnSync('strace', ['-f', '-qq', '-e', 'trace=open,openat,openat2', '-o', log, ...cmd], { env, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error) return 0; // no strace here: the column stays empty
  const seen = new Set<string>();
  let bytes = 0;
  for (const line of readFileSync(log, 'utf8').split('\n')) {
    const m = /open(?:at2?)?\((?:[^,]+, )?"([^"]+)".*\) = \d+/.exec(line);
    if (!m) continue;
    const path = resolve(m[1]!); // (relative: to this process's directory, the job's too)
    if (!path.startsWith(`${dir}/`) || seen.has(path)) continue;
    seen.add(path);
    try {
      const st = statSync(path);
      if (st.isFile()) bytes += st.size;
    } catch {
      /* gone */
    }
  }
  rmSync(log, { force: true });
  return bytes;
}

async function main(): Promise<void> {
  const scratch = makeScratch('vrift-bench-lazy-', Math.max(8e9, BYTES * (6 + ROUNDS * 8)), { bytesPerInode: 4096 });
  const base = scratch.dir;
  const s3 = SOURCE === 's3' ? await startS3rver(join(base, 's3'), BUCKET) : undefined;
  const env = s3 ? s3NodeEnv(s3, BUCKET, { LC_ALL: 'C' }) : peerNodeEnv();
  const vrift = (home: string, args: string[], extra: NodeJS.ProcessEnv = {}) => vriftAs(env, home, args, extra);
  const homes: string[] = [];
  try {
    // ---- the tree, saved to S3 from its own node (not timed) ----
    const src = join(base, 'src');
    mkdirSync(src);
    say('copying node_modules and numpy, generating the rest …');
    cpSync(join(ROOT, 'node_modules'), join(src, 'node_modules'), { recursive: true, verbatimSymlinks: true });
    const np = numpyDir();
    if (np) for (const d of ['numpy', 'numpy.libs']) if (existsSync(join(np, d))) cpSync(join(np, d), join(src, 'site-packages', d), { recursive: true });
    const have = Number(execFileSync('sh', ['-c', `find '${src}' | wc -l`], { encoding: 'utf8' }));
    const haveBytes = Number(execFileSync('du', ['-sb', src], { encoding: 'utf8' }).split('\t')[0]);
    const rest = Math.max(0, FILES - have);
    if (rest > 0) writeProjectTree(join(src, 'project'), { files: rest, bytes: Math.max(1e6, BYTES - haveBytes), medium: Math.round(rest * 0.04), large: 60, seed: 7 });
    // From a peer: the node that saves the tree keeps running, holding it, and every node joins it.
    const origin = join(base, 'origin');
    if (SOURCE === 'peer') (vrift(origin, ['up', '--detach'], await clusterPorts()), homes.push(origin));
    const tree = JSON.parse(vrift(origin, ['save', REF, src, '--json'])).tree as string;
    const originStatus = SOURCE === 'peer' ? JSON.parse(vrift(origin, ['status', '--json'])) : undefined;
    const shape = execFileSync('sh', ['-c', `find '${src}' | wc -l; du -sb '${src}' | cut -f1`], { encoding: 'utf8' }).trim().split('\n').map(Number);
    say(`tree ${tree}: ${shape[0]} entries, ${(shape[1]! / 1e9).toFixed(2)} GB, saved ${SOURCE === 's3' ? 'to S3' : 'on one peer'}`);

    type Side = 'eager' | 'lazy' | 'warm-eager' | 'warm-lazy' | 'traced';
    const times = new Map<string, number[]>();
    const note = (job: string, side: Side, ms: number) => {
      const k = `${job}\t${side}`;
      times.set(k, [...(times.get(k) ?? []), ms]);
    };
    const fetched = new Map<string, number[]>();
    /** Per job: the bytes of the tree's files it opened (strace, in a restored copy, not timed). */
    const opened = new Map<string, number>();
    let n = 0;
    const freshNode = async (extra: NodeJS.ProcessEnv = {}) => {
      const home = join(base, `node${n++}`);
      homes.push(home);
      if (SOURCE === 's3') {
        vrift(home, ['up', '--detach'], extra);
        return home;
      }
      vrift(home, ['up', '--detach'], { ...extra, ...(await clusterPorts()) });
      vrift(home, ['node', 'join', originStatus.addresses.p2p[0]]);
      await waitForHolder(env, home, originStatus.cluster.peerId, tree);
      return home;
    };
    /** The bytes the node's remote tier brought in (S3: off the wire). */
    const wire = (home: string): number => {
      const m = JSON.parse(vrift(home, ['status', '--json'])).metrics as Record<string, number>;
      if (SOURCE === 's3') return m['vrift_tier_wire_bytes_received_total{tier="s3"}'] ?? 0;
      return m['vrift_tier_bytes_received_total{tier="peer"}'] ?? 0; // (what the peer tier brought: the listing and blobs)
    };
    const timedRun = (cmd: string[], extra: NodeJS.ProcessEnv = {}, home?: string) => {
      flushDisk();
      const t = nowMs();
      const r = spawnSync(cmd[0]!, cmd.slice(1), { env: { ...env, ...extra, ...(home ? { VRIFT_HOME: home } : {}) }, encoding: 'utf8', maxBuffer: 64 << 20 });
      const ms = nowMs() - t;
      if (r.status !== 0) throw new Error(`${cmd.join(' ')}: exit ${r.status}: ${r.stderr.trim().slice(0, 400)}`);
      return ms;
    };
    /** A command's own time (fork to exit), as fsloop spawn prints it. */
    const ownMs = (cmd: string[], extra: NodeJS.ProcessEnv = {}, home?: string) => {
      const r = spawnSync(cmd[0]!, cmd.slice(1), { env: { ...env, ...extra, ...(home ? { VRIFT_HOME: home } : {}) }, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`${cmd.join(' ')}: exit ${r.status}: ${r.stderr.trim().slice(0, 400)}`);
      return Number(r.stdout.trim().split(' ')[2]) / 1e6;
    };
    const fsloop = join(base, 'fsloop');
    execFileSync('gcc', ['-O2', '-o', fsloop, join(ROOT, 'bench', 'c', 'fsloop.c')]);
    for (let round = 0; round < ROUNDS; round++) {
      for (const job of JOBS) {
        if (!ONLY.includes(JOB_KEYS[JOBS.indexOf(job)]!)) continue;
        const order: ('eager' | 'lazy')[] = round % 2 === 0 ? ['eager', 'lazy'] : ['lazy', 'eager'];
        for (const side of order) {
          say(`round ${round + 1}/${ROUNDS}: ${job.name}, ${side}`);
          const home = await freshNode(side === 'lazy' ? { VRIFT_PREFETCH: 'false' } : {});
          if (side === 'eager') {
            const out = join(base, `out${n}`);
            const t = nowMs();
            vrift(home, ['restore', REF, out]);
            const restoreMs = nowMs() - t;
            note(job.name, 'eager', restoreMs + timedRun(job.cmd(out), job.env?.(out)));
            if (!opened.has(job.name)) opened.set(job.name, openedBytes(job.cmd(out), { ...env, ...job.env?.(out) }, out));
            if (job.name !== JOBS[0]!.name && job.name !== JOBS[3]!.name) note(job.name, 'warm-eager', ownMs([fsloop, 'spawn', WARM_REPS, ...job.cmd(out)], job.env?.(out)));
          } else {
            const mnt = join(base, `mnt${n}`);
            mkdirSync(mnt);
            const lazyCmd = (c: string[]) => [process.execPath, VRIFT_BIN, 'run', '--mount', `${mnt}=${REF}`, '--', ...c];
            note(job.name, 'lazy', timedRun(lazyCmd(job.cmd(mnt)), job.env?.(mnt), home));
            fetched.set(job.name, [...(fetched.get(job.name) ?? []), wire(home)]);
            if (job.name !== JOBS[0]!.name && job.name !== JOBS[3]!.name) note(job.name, 'warm-lazy', ownMs(lazyCmd([fsloop, 'spawn', WARM_REPS, ...job.cmd(mnt)]), job.env?.(mnt), home));
            vrift(home, ['unmount', mnt]); // (a mount's VDir outlives its daemon in /dev/shm, by design)
          }
          vrift(home, ['down']); // (pushes the tree's trace: what this job opened)
          if (SOURCE === 's3' && side === 'lazy' && round === 0 && (job === JOBS[1] || job === JOBS[2])) {
            say(`round 1: ${job.name}, another cold node with that trace`);
            const other = await freshNode();
            const mnt = join(base, `mnt${n}`);
            mkdirSync(mnt);
            note(job.name, 'traced', timedRun([process.execPath, VRIFT_BIN, 'run', '--mount', `${mnt}=${REF}`, '--', ...job.cmd(mnt)], job.env?.(mnt), other));
            vrift(other, ['unmount', mnt]);
            vrift(other, ['down']);
          }
        }
      }
    }

    // ---- report ----
    const goals: Record<string, [string, number, 'faster' | 'slower']> = {
      [JOBS[0]!.name]: ['>= 10x faster', 10, 'faster'],
      [JOBS[1]!.name]: ['>= 3x faster', 3, 'faster'],
      [JOBS[2]!.name]: ['>= 3x faster', 3, 'faster'],
      [JOBS[3]!.name]: ['<= 1.1x the time', 1.1, 'slower'],
    };
    const rows: (string | number)[][] = [['measure', 'restore then run (ms)', 'lazy (ms)', 'ratio', `${SOURCE === 's3' ? 'S3' : 'peer'} bytes (lazy)`, 'goal']];
    const result: Record<string, unknown> = {};
    const fmt = (xs: number[]) => `${median(xs).toFixed(0)} (${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)})`;
    for (const job of JOBS) {
      if (!times.has(`${job.name}\teager`)) continue;
      const e = times.get(`${job.name}\teager`)!;
      const l = times.get(`${job.name}\tlazy`)!;
      const [goal, target, dir] = goals[job.name]!;
      const ratio = dir === 'faster' ? median(e) / median(l) : median(l) / median(e);
      const met = dir === 'faster' ? ratio >= target : ratio <= target;
      const bytes = median(fetched.get(job.name) ?? [0]);
      const read = opened.get(job.name) ?? 0;
      const per = read > 0 ? ` = ${(bytes / read).toFixed(2)}x the ${(read / 1e6).toFixed(1)} MB it opened` : '';
      rows.push([`cold: ${job.name}`, fmt(e), fmt(l), `${ratio.toFixed(2)}x ${dir}`, `${(bytes / 1e6).toFixed(1)} MB${per}`, `${goal} ${met ? 'met' : 'MISSED'}`]);
      result[job.name] = { eager_ms: median(e), lazy_ms: median(l), ratio, met, s3_bytes: bytes, opened_bytes: read };
      const tr = times.get(`${job.name}\ttraced`);
      if (tr) {
        const r = median(l) / median(tr);
        rows.push([`traced: ${job.name}`, `(first cold) ${fmt(l)}`, fmt(tr), `${r.toFixed(2)}x faster`, '-', `>= 2x ${r >= 2 ? 'met' : 'MISSED'}`]);
        result[`traced ${job.name}`] = { first_cold_ms: median(l), traced_ms: median(tr), ratio: r, met: r >= 2 };
      }
      const we = times.get(`${job.name}\twarm-eager`);
      const wl = times.get(`${job.name}\twarm-lazy`);
      if (we && wl) {
        const r = median(wl) / median(we);
        rows.push([`warm: ${job.name}`, fmt(we), fmt(wl), `${r.toFixed(2)}x the time`, '-', `<= 1.1x ${r <= 1.1 ? 'met' : 'MISSED'}`]);
        result[`warm ${job.name}`] = { local_ms: median(we), lazy_ms: median(wl), ratio: r, met: r <= 1.1 };
      }
    }
    if (!JSON_ONLY) {
      printTable(`lazy start vs restore-then-run, tree only ${SOURCE === 's3' ? 'in S3' : 'on one peer'} (${shape[0]} entries, ${(shape[1]! / 1e9).toFixed(2)} GB; medians of ${ROUNDS} rounds, min-max)`, rows);
      console.log(`\n(scratch: ${scratch.what}; load ${loadNow()})`);
    }
    console.log(JSON.stringify({ bench: 'lazy', source: SOURCE, rounds: ROUNDS, entries: shape[0], bytes: shape[1], load: loadNow(), results: result }));
  } finally {
    // (a round that failed midway leaves its node's daemon up)
    for (const h of homes) spawnSync(process.execPath, [VRIFT_BIN, 'down'], { env: { ...env, VRIFT_HOME: h }, stdio: 'ignore' });
    // VRIFT_BENCH_LOGS=<dir>: each node's daemon log is kept there (node0.log …), to see what a round did.
    const keep = process.env.VRIFT_BENCH_LOGS;
    if (keep) {
      mkdirSync(keep, { recursive: true });
      for (const h of homes) if (existsSync(join(h, 'run', 'vriftd.log'))) cpSync(join(h, 'run', 'vriftd.log'), join(keep, `${basename(h)}.log`));
    }
    await s3?.stop();
    scratch.remove();
  }
}

/** The environment of a node whose one remote tier is its peers (the bench's cluster), without the caller's LD_PRELOAD or tiers. */
function peerNodeEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C', VRIFT_TIERS: 'local,peer', VRIFT_CLUSTER_SECRET: CLUSTER_SECRET, VRIFT_CLUSTER_HOST: '127.0.0.1', VRIFT_CLUSTER_ANNOUNCE_MS: '500' };
  for (const k of Object.keys(env)) if (k === 'LD_PRELOAD' || k.startsWith('VRIFT_S3_') || k.startsWith('VRIFT_REDIS')) delete env[k];
  return env;
}

/** Free loopback ports for a node's mesh and gRPC listeners. */
async function clusterPorts(): Promise<NodeJS.ProcessEnv> {
  return { VRIFT_P2P_PORT: String(await freePort()), VRIFT_GRPC_PORT: String(await freePort()) };
}

main().catch((e) => {
  process.stderr.write(`bench/lazy: ${(e as Error).message}\n`);
  process.exit(1);
});
