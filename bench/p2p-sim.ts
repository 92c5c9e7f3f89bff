// Distributing one tree to 10 … 1 000 nodes, simulated: how long until
// every node has it when all pull from the origin (S3), and when they swarm
// with the real piece scheduler (src/node/swarm/scheduler.ts) — the same
// code a daemon runs, here driven by simulated links (bench/swarm/swarm-sim.ts).
// Then Kraken's published figure: 3 GB to 2 600 hosts at 300 MB/s each.
//
//   origin  every node downloads the whole tree from the origin; the origin
//           serves ORIGIN_MBPS in total, a node downloads at most NODE_MBPS.
//   swarm   nodes fetch pieces from each other while fetching (rarest first,
//           endgame, bounded slots), the origin only for its ring duty and
//           hedges. One node holds the tree at t=0; so does the origin.
//
// Two arrival patterns: all nodes at once (a flash crowd), and nodes
// arriving evenly over ARRIVAL_S seconds (a CI fleet picking up jobs).
//
//   node dist/bench/p2p-sim.js                         (about a minute on 2 cores)
//   VRIFT_SIM_NODES=10,100 node dist/bench/p2p-sim.js   (seconds)
//   VRIFT_SIM_KRAKEN=1 node dist/bench/p2p-sim.js       (adds Kraken's case: 29 M events, 5–7 minutes)
import { pieceMs, simulate, type SimConfig, type SimResult } from './swarm/swarm-sim.js';
import { choosePieceBytes } from '../src/node/swarm/piece-list.js';
import { printTable } from './lib.js';

function env(k: string, d: number): number {
  const v = Number(process.env[k] ?? d);
  if (!(v >= 0)) throw new Error(`${k} must be a number ≥ 0, not ${JSON.stringify(process.env[k])}`);
  return v;
}
const TREE_MB = env('VRIFT_SIM_TREE_MB', 200);
const NODE = env('VRIFT_SIM_NODE_MBPS', 125); // 1 Gbit/s
const ORIGIN = env('VRIFT_SIM_ORIGIN_MBPS', 1250); // 10 Gbit/s
const ARRIVAL_S = env('VRIFT_SIM_ARRIVAL_S', 60);
const LINK_MS = env('VRIFT_SIM_LINK_MS', 1);
const ORIGIN_MS = env('VRIFT_SIM_ORIGIN_MS', 20);
const GOSSIP_MS = env('VRIFT_SIM_GOSSIP_MS', 20);
const SIZES = (process.env.VRIFT_SIM_NODES ?? '10,100,1000').split(',').map(Number);
const KRAKEN = env('VRIFT_SIM_KRAKEN', 0) > 0;
const MB = 1e6;

function config(nodes: number, treeBytes: number, nodeMBps: number, originMBps: number, over: Partial<SimConfig> = {}): SimConfig {
  const pieceBytes = Math.min(treeBytes, choosePieceBytes(treeBytes));
  return {
    nodes,
    treeBytes,
    pieceBytes,
    nodeMBps,
    originMBps,
    linkLatencyMs: LINK_MS,
    originLatencyMs: ORIGIN_MS,
    gossipMs: GOSSIP_MS,
    seeds: 1,
    detectMs: 1000,
    seed: 7,
    // Starving means no piece for the time a few pieces take after the origin duty could have started.
    scheduler: { starveMs: 40 + ORIGIN_MS + 4 * pieceMs(pieceBytes, nodeMBps, 4) },
    ...over,
  };
}

/** Every node from the origin, processor-sharing: exact event times, no step. Returns [median wait, last] in ms. */
function originOnly(c: SimConfig): { medianMs: number; lastMs: number } {
  const arrive = c.arrivalsMs ?? new Array<number>(c.nodes).fill(0);
  const order = [...arrive.keys()].sort((a, b) => arrive[a]! - arrive[b]!);
  const left = new Map<number, number>();
  const waits: number[] = [];
  let t = 0;
  let next = 0;
  let last = 0;
  while (next < order.length || left.size > 0) {
    const rate = left.size ? Math.min(c.nodeMBps, c.originMBps / left.size) * 1000 : 0; // bytes/ms each
    const soonest = Math.min(...left.values());
    const tDone = left.size ? t + soonest / rate : Infinity;
    const tArrive = next < order.length ? arrive[order[next]!]! + c.originLatencyMs : Infinity;
    const t2 = Math.min(tDone, tArrive);
    const moved = t2 === tDone ? soonest : rate * (t2 - t);
    t = t2;
    for (const [n, b] of left) {
      // Within a byte of done is done: sums of floating-point steps never land on zero exactly.
      if (b - moved < 1) {
        left.delete(n);
        waits.push(t - arrive[n]!);
        last = t;
      } else left.set(n, b - moved);
    }
    while (next < order.length && arrive[order[next]!]! + c.originLatencyMs <= t) left.set(order[next++]!, c.treeBytes);
  }
  waits.sort((a, b) => a - b);
  return { medianMs: waits[(waits.length - 1) >> 1]!, lastMs: last };
}

const s = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
const gb = (bytes: number) => (bytes / 1e9).toFixed(bytes < 1e9 ? 2 : 1);
const ideal = (c: SimConfig) => c.treeBytes / (c.nodeMBps * 1000) + c.originLatencyMs + 2 * c.linkLatencyMs;

console.log(
  `tree ${TREE_MB} MB; each node ${NODE} MB/s up and down; origin ${ORIGIN} MB/s in total, first byte after ${ORIGIN_MS} ms; links ${LINK_MS} ms; gossip ${GOSSIP_MS} ms; pieces ${choosePieceBytes(TREE_MB * MB) / 1024} KiB`,
);
console.log("last: until the last node has the whole tree; median: a node's own wait from its arrival; ideal: tree / node bandwidth + latency.");
const json: Record<string, unknown>[] = [];

const flashRows: (string | number)[][] = [['nodes', 'origin only (last)', 'swarm (last / median)', 'swarm ÷ ideal', 'origin GB (only / swarm)', 'origin copies', 'sim wall']];
const fleetRows: (string | number)[][] = [['nodes', 'origin only (median)', 'swarm (median / p99)', 'origin GB (only / swarm)', 'sim wall']];
for (const n of SIZES) {
  const c = config(n, TREE_MB * MB, NODE, ORIGIN);
  const o = originOnly(c);
  let t0 = Date.now();
  const r = simulate(c);
  flashRows.push([n, s(o.lastMs), `${s(r.lastMs)} / ${s(r.medianMs)}`, `${(r.lastMs / ideal(c)).toFixed(2)}×`, `${gb(n * c.treeBytes)} / ${gb(r.originBytes)}`, r.originCopies.toFixed(2), s(Date.now() - t0)]);
  json.push({ pattern: 'flash', nodes: n, originOnly: o, swarm: summary(r) });

  const arrivalsMs = Array.from({ length: n }, (_, i) => (n === 1 ? 0 : (ARRIVAL_S * 1000 * i) / (n - 1)));
  const cf = config(n, TREE_MB * MB, NODE, ORIGIN, { arrivalsMs });
  const of = originOnly(cf);
  t0 = Date.now();
  const rf = simulate(cf);
  fleetRows.push([n, s(of.medianMs), `${s(rf.medianMs)} / ${s(rf.p99Ms)}`, `${gb(n * c.treeBytes)} / ${gb(rf.originBytes)}`, s(Date.now() - t0)]);
  json.push({ pattern: 'fleet', nodes: n, originOnly: of, swarm: summary(rf) });
}
printTable('all nodes start at once (flash crowd)', flashRows);
printTable(`nodes arrive evenly over ${ARRIVAL_S} s (a CI fleet)`, fleetRows);

const big = Math.max(...SIZES);
const extra: (string | number)[][] = [['case', 'swarm', 'origin copies', 'unfinished']];
{
  const c = config(1000, 10_000, NODE, ORIGIN);
  const r = simulate(c);
  extra.push([`10 KB tree to 1000 nodes (last)`, s(r.lastMs), r.originCopies.toFixed(2), r.unfinished]);
  const k = config(big, TREE_MB * MB, NODE, ORIGIN, { kills: [{ node: 0, atMs: 800 }] });
  const rk = simulate(k);
  extra.push([`flash crowd of ${big}, one node dies at 0.8 s (last / median)`, `${s(rk.lastMs)} / ${s(rk.medianMs)}`, rk.originCopies.toFixed(2), rk.unfinished]);
  json.push({ pattern: 'small', nodes: 1000, swarm: summary(r) }, { pattern: 'flash-kill', nodes: big, swarm: summary(rk) });
}
printTable('small trees and failures', extra);

if (KRAKEN) {
  // Kraken: 3 GB to 2 600 hosts, 300 MB/s each, 4 MB pieces: p50 10 s, p99 18 s. Origin: 10× a host.
  const c = config(2600, 3e9, 300, 3000);
  const t0 = Date.now();
  const r = simulate(c);
  printTable('3 GB to 2 600 nodes at 300 MB/s each (Kraken: p50 10 s, p99 18 s)', [
    ['', 'p50', 'p99', 'last', 'ideal', 'origin copies', 'sim wall'],
    ['swarm', s(r.medianMs), s(r.p99Ms), s(r.lastMs), s(ideal(c)), r.originCopies.toFixed(2), s(Date.now() - t0)],
  ]);
  json.push({ pattern: 'kraken', nodes: 2600, swarm: summary(r) });
}
console.log(JSON.stringify({ bench: 'p2p-sim', treeMB: TREE_MB, nodeMBps: NODE, originMBps: ORIGIN, arrivalS: ARRIVAL_S, results: json }));

function summary(r: SimResult) {
  return { lastMs: r.lastMs, medianMs: r.medianMs, p99Ms: r.p99Ms, originBytes: r.originBytes, originCopies: r.originCopies, unfinished: r.unfinished, events: r.events };
}
