// A flash crowd on real daemons (issue 14): six nodes restore one tree at
// once from a cluster whose only copy is in S3 (s3rver on loopback), in a
// swarm, against the same six nodes each pulling it from s3rver alone
// (no cluster), measured in the same run:
//
//   swarm   six `vrift up --detach` daemons joined in one cluster, S3 as
//           their origin; all six `vrift restore` at once
//   s3      six daemons with S3 only (no cluster secret); all six
//           `vrift restore` at once
//
// For each: the wall time from the first start to the last exit, and the
// bytes s3rver sent (the daemons' counter
// vrift_tier_wire_bytes_received_total{tier="s3"}, summed), against the
// tree's bytes in S3 (its packs and loose objects). Goals: the swarm
// faster, with at most 2x the tree's bytes from S3. Every output is
// compared with the source. Rounds alternate which side goes first; fresh
// nodes each time; nothing is deleted until the end (on this ext4 files
// are much slower to create right after a large rm -rf).
//
// With VRIFT_BENCH_ORIGIN_MBPS the nodes reach s3rver through a proxy that
// caps what it sends, all connections together, at that many MB/s
// (bench/origin-proxy.mjs): an origin with a bandwidth of its own, as S3
// behind an uplink is, where s3rver on loopback has none.
//
//   node scripts/build.mjs ts && node dist/bench/swarm-crowd.js
//   VRIFT_BENCH_CROWD_BYTES=500M VRIFT_BENCH_ROUNDS=2 node dist/bench/swarm-crowd.js
//   VRIFT_BENCH_ORIGIN_MBPS=250 node dist/bench/swarm-crowd.js
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSize } from '../src/lib/units.js';
import { cpuSeconds, freePort, median, printTable, ROOT, s3NodeEnv, writeRandomDataset, runOut, startS3rver, VRIFT_BIN, type S3rver } from './lib.js';

const ROUNDS = Number(process.env.VRIFT_BENCH_ROUNDS ?? 2);
const BYTES = parseSize(process.env.VRIFT_BENCH_CROWD_BYTES ?? '500M');
const NODES = Number(process.env.VRIFT_BENCH_CROWD_NODES ?? 6);
const ORIGIN_MBPS = Number(process.env.VRIFT_BENCH_ORIGIN_MBPS ?? 0);
const SECRET = 'vrift-bench-cluster-secret-0123456789';
const BUCKET = 'vrift-bench-crowd';

const log = (s: string) => process.stderr.write(`bench: ${s}\n`);

interface Node {
  home: string;
  env: NodeJS.ProcessEnv;
}

const homes: string[] = [];


const vrift = (n: Node, args: string[]) => runOut(process.execPath, [VRIFT_BIN, ...args], { env: n.env });
const vriftJson = (n: Node, args: string[]) => JSON.parse(vrift(n, [...args, '--json']).stdout);

function up(n: Node): void {
  vrift(n, ['up', '--detach']);
  homes.push(n.home);
}

function down(n: Node): void {
  spawnSync(process.execPath, [VRIFT_BIN, 'down'], { env: n.env, stdio: 'ignore' });
}

/** Restores at once on every node; the wall time until the last one ends. */
function restoreAll(nodes: Node[], ref: string): Promise<number> {
  const t = performance.now();
  return Promise.all(
    nodes.map(
      (n) =>
        new Promise<void>((resolve, reject) => {
          const p = spawn(process.execPath, [VRIFT_BIN, 'restore', ref, join(n.home, 'out')], { env: n.env, stdio: ['ignore', 'ignore', 'pipe'] });
          let err = '';
          p.stderr.on('data', (d) => (err += d));
          p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`restore on ${n.home} exited ${code}: ${err}`))));
        }),
    ),
  ).then(() => (performance.now() - t) / 1000);
}

/** CPU seconds the nodes' daemons and s3rver have used so far. */
function cpuOf(nodes: Node[], s3: S3rver): number {
  return nodes.reduce((sum, n) => sum + cpuSeconds(vriftJson(n, ['status']).pid as number), cpuSeconds(s3.pid));
}

function s3Bytes(nodes: Node[]): number {
  return nodes.reduce((sum, n) => sum + ((vriftJson(n, ['status']).metrics['vrift_tier_wire_bytes_received_total{tier="s3"}'] as number | undefined) ?? 0), 0);
}

/** The bytes of the objects in the bucket (s3rver keeps each in `<key>._S3rver_object`). */
function bucketBytes(dir: string): number {
  let n = 0;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    if (st.isDirectory()) n += bucketBytes(p);
    else if (name.endsWith('._S3rver_object')) n += st.size;
  }
  return n;
}

function sameAsSource(src: string, out: string): void {
  const r = spawnSync('diff', ['-r', '-q', src, out], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${out} differs from the source: ${r.stdout}${r.stderr}`);
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'vrift-bench-crowd-'));
  let s3: S3rver | undefined;
  let proxy: ReturnType<typeof spawn> | undefined;
  const res = { swarm: [] as number[], s3: [] as number[], swarmS3: [] as number[], s3S3: [] as number[], swarmCpu: [] as number[], s3Cpu: [] as number[] };
  /** All nodes restore the tree at once: the wall time, the CPU of the daemons and s3rver meanwhile, and the bytes S3 sent. */
  const measure = async (nodes: Node[], wall: number[], cpu: number[], bytes: number[]): Promise<void> => {
    spawnSync('sync');
    const cpu0 = cpuOf(nodes, s3!);
    wall.push(await restoreAll(nodes, 'bench/crowd'));
    cpu.push(cpuOf(nodes, s3!) - cpu0);
    log(`  cpu: s3rver ${cpuSeconds(s3!.pid).toFixed(1)} s so far`);
    bytes.push(s3Bytes(nodes));
  };
  try {
    const src = join(work, 'src');
    // Log-uniform sizes from 16 KiB to 32 MiB: many small files, most bytes in large ones (cut into chunk pieces).
    const data = writeRandomDataset(src, BYTES, 16 << 10, 32 << 20, 7);
    log(`dataset: ${data.files} files, ${(data.bytes / 1e6).toFixed(0)} MB`);
    s3 = await startS3rver(join(work, 's3'), BUCKET);
    // Every node's environment, S3 included (the proxy's address replaces s3rver's below when the origin is capped).
    const s3env = s3NodeEnv(s3, BUCKET, { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' });
    const saver: Node = { home: join(work, 'saver'), env: { ...s3env, VRIFT_HOME: join(work, 'saver'), VRIFT_TIERS: 'local,s3' } };
    vriftJson(saver, ['save', 'bench/crowd', src]);
    if (ORIGIN_MBPS > 0) {
      const port = await freePort();
      proxy = spawn(process.execPath, [join(ROOT, 'bench', 'origin-proxy.mjs'), String(port), new URL(s3.endpoint).port, String(ORIGIN_MBPS * 1e6)], { stdio: 'ignore' });
      await new Promise((r) => setTimeout(r, 300));
      s3env.VRIFT_S3_ENDPOINT = `http://127.0.0.1:${port}`;
      log(`origin capped at ${ORIGIN_MBPS} MB/s (all connections together)`);
    }
    const packed = bucketBytes(join(work, 's3'));
    log(`saved: ${(packed / 1e6).toFixed(0)} MB in S3`);

    const swarm = async (r: number) => {
      const nodes: Node[] = [];
      for (let i = 0; i < NODES; i++) {
        const home = join(work, `w${r}-${i}`);
        nodes.push({
          home,
          env: {
            ...s3env,
            VRIFT_HOME: home,
            VRIFT_TIERS: 'local,peer,s3',
            VRIFT_CLUSTER_SECRET: SECRET,
            VRIFT_CLUSTER_HOST: '127.0.0.1',
            VRIFT_P2P_PORT: String(await freePort()),
            VRIFT_GRPC_PORT: String(await freePort()),
          },
        });
      }
      for (const n of nodes) up(n);
      const first = vriftJson(nodes[0]!, ['status']).addresses.p2p[0] as string;
      for (const n of nodes.slice(1)) vrift(n, ['node', 'join', first]);
      for (let i = 0; i < 100; i++) {
        if (nodes.every((n) => (vriftJson(n, ['node', 'peers']).peers as unknown[]).length >= NODES - 1)) break;
        await new Promise((res) => setTimeout(res, 100));
      }
      await measure(nodes, res.swarm, res.swarmCpu, res.swarmS3);
      log(`  origin requests by reason: ${nodes.map((n) => JSON.stringify(vriftJson(n, ['status']).swarms.map((w: { originAsks: unknown }) => w.originAsks)[0])).join(' ')}`);
      for (const n of nodes) {
        const lines = readFileSync(join(n.home, 'run', 'vriftd.log'), 'utf8').split('\n');
        log(`  ${n.home.split('/').at(-1)}: ${lines.filter((l) => / swarm .*done in|pull: done|restore: done|TRACE/.test(l)).map((l) => l.replace(/^\S+ vriftd: /, '')).join(' | ')}`);
      }
      for (const n of nodes) sameAsSource(src, join(n.home, 'out'));
      for (const n of nodes) down(n);
    };
    const fromS3 = async (r: number) => {
      const nodes: Node[] = Array.from({ length: NODES }, (_, i) => ({
        home: join(work, `s${r}-${i}`),
        env: { ...s3env, VRIFT_HOME: join(work, `s${r}-${i}`), VRIFT_TIERS: 'local,s3', VRIFT_CLUSTER_SECRET: '' },
      }));
      for (const n of nodes) up(n);
      await measure(nodes, res.s3, res.s3Cpu, res.s3S3);
      for (const n of nodes) sameAsSource(src, join(n.home, 'out'));
      for (const n of nodes) down(n);
    };
    for (let r = 0; r < ROUNDS; r++) {
      log(`round ${r + 1}/${ROUNDS}`);
      if (r % 2 === 0) {
        await swarm(r);
        await fromS3(r);
      } else {
        await fromS3(r);
        await swarm(r);
      }
    }
    const m = median;
    const spread = (xs: number[]) => `${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)}`;
    printTable(`flash crowd${ORIGIN_MBPS > 0 ? ` (origin capped at ${ORIGIN_MBPS} MB/s)` : ''}: ${NODES} nodes restore one ${(data.bytes / 1e6).toFixed(0)} MB tree (${data.files} files; ${(packed / 1e6).toFixed(0)} MB in S3) at once, ${ROUNDS} rounds, medians (spread)`, [
      ['', 'swarm (cluster + S3)', `each from s3rver alone`, 'ratio', 'goal'],
      ['wall time, all nodes', `${m(res.swarm).toFixed(2)} s (${spread(res.swarm)})`, `${m(res.s3).toFixed(2)} s (${spread(res.s3)})`, `${(m(res.s3) / m(res.swarm)).toFixed(2)}x faster`, 'faster'],
      ['CPU of the daemons and s3rver', `${m(res.swarmCpu).toFixed(1)} s`, `${m(res.s3Cpu).toFixed(1)} s`, `${(m(res.swarmCpu) / m(res.s3Cpu)).toFixed(2)}x`, ''],
      ['bytes from S3', `${(m(res.swarmS3) / 1e6).toFixed(0)} MB = ${(m(res.swarmS3) / packed).toFixed(2)} copies`, `${(m(res.s3S3) / 1e6).toFixed(0)} MB = ${(m(res.s3S3) / packed).toFixed(2)} copies`, '', '<= 2 copies'],
    ]);
  } finally {
    for (const h of homes) spawnSync(process.execPath, [VRIFT_BIN, 'down'], { env: { ...process.env, VRIFT_HOME: h }, stdio: 'ignore' });
    proxy?.kill();
    await s3?.stop();
    log(`removing ${work}`);
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
