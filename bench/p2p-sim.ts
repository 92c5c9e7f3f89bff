// Distributing one tree to 10 … 1 000 nodes, simulated (no network): how
// long until every node has it, when all pull from the origin (S3) and
// when they pull from each other — the figure P2P distributors (Dragonfly,
// Kraken) publish. A fluid model: every node uploads and downloads at most
// NODE_MBPS, the origin serves at most ORIGIN_MBPS in total; a sender's
// upload is shared equally by its streams, a receiver's download by its.
//
// Three ways to distribute:
//   origin    every node downloads the whole tree from the origin.
//   vrift     what src/tiers/peer/peer.ts does: one node holds the tree at t=0; a
//             node fetches from peers that announced the tree IN FULL, split
//             over up to `spread` of them (chosen when it starts, at random),
//             each peer serving at most `serveStreams` streams; a part no peer
//             can take goes to the origin (the next tier). A node announces the
//             tree an announce interval after it completed it.
//   swarm     piece-level swarming (BitTorrent-like): nodes serve the pieces
//             they already have while still downloading. vrift announces a
//             Bloom filter of its blobs, but its backfill does not use partial
//             holders yet: this column is what that would buy.
//
// Two arrival patterns: all nodes at once (a flash crowd), and nodes
// arriving evenly over ARRIVAL_S seconds (a CI fleet picking up jobs).
//
//   node dist/bench/p2p-sim.js
//   VRIFT_SIM_TREE_MB=1000 VRIFT_SIM_NODE_MBPS=1250 node dist/bench/p2p-sim.js
import { rng } from './lib.js';

const env = (k: string, d: number) => Number(process.env[k] ?? d);
const TREE_MB = env('VRIFT_SIM_TREE_MB', 200);
const NODE = env('VRIFT_SIM_NODE_MBPS', 125); // 1 Gbit/s
const ORIGIN = env('VRIFT_SIM_ORIGIN_MBPS', 1250); // 10 Gbit/s
const PIECE_MB = env('VRIFT_SIM_PIECE_MB', 1);
const SPREAD = env('VRIFT_SIM_SPREAD', 4);
const SERVE_STREAMS = env('VRIFT_SIM_SERVE_STREAMS', 32);
const ANNOUNCE_S = env('VRIFT_SIM_ANNOUNCE_S', 5);
const ARRIVAL_S = env('VRIFT_SIM_ARRIVAL_S', 60);
const SIZES = (process.env.VRIFT_SIM_NODES ?? '10,30,100,300,1000').split(',').map(Number);
const DT = 0.01;

interface Result {
  /** Seconds until the last node has the tree. */
  last: number;
  /** Median completion time (from each node's arrival). */
  median: number;
  /** MB the origin served. */
  originMB: number;
}

const ORIGIN_ID = -1;

/** A stream from `src` (a node, or the origin) to `dst` of `mb` megabytes. */
interface Flow {
  src: number;
  dst: number;
  left: number;
  piece?: number;
}

/** One step of the fluid model: shares bandwidth and moves bytes; returns finished flows. */
function step(flows: Flow[], dt: number): Flow[] {
  const up = new Map<number, number>();
  const down = new Map<number, number>();
  for (const f of flows) {
    up.set(f.src, (up.get(f.src) ?? 0) + 1);
    down.set(f.dst, (down.get(f.dst) ?? 0) + 1);
  }
  const done: Flow[] = [];
  for (const f of flows) {
    const upRate = f.src === ORIGIN_ID ? Math.min(NODE, ORIGIN / up.get(f.src)!) : NODE / up.get(f.src)!;
    const rate = Math.min(upRate, NODE / down.get(f.dst)!);
    f.left -= rate * dt;
    if (f.left <= 1e-9) done.push(f);
  }
  return done;
}

function summarize(arrive: number[], finish: number[], originMB: number): Result {
  const took = finish.map((t, i) => t - arrive[i]!).sort((a, b) => a - b);
  return { last: Math.max(...finish), median: took[took.length >> 1]!, originMB };
}

function arrivals(n: number, spreadS: number): number[] {
  return Array.from({ length: n }, (_, i) => (n === 1 ? 0 : (spreadS * i) / (n - 1)));
}

/** Every node from the origin. */
function simOrigin(n: number, spreadS: number): Result {
  const arrive = arrivals(n, spreadS);
  const finish = new Array<number>(n).fill(NaN);
  let flows: Flow[] = [];
  let next = 0;
  let t = 0;
  while (next < n || flows.length > 0) {
    while (next < n && arrive[next]! <= t) flows.push({ src: ORIGIN_ID, dst: next++, left: TREE_MB });
    const done = new Set(step(flows, DT));
    t += DT;
    for (const f of done) finish[f.dst] = t;
    flows = flows.filter((f) => !done.has(f));
  }
  return summarize(arrive, finish, n * TREE_MB);
}

/** vrift's backfill as built: parts fixed at start over complete holders; overflow to the origin. */
function simVrift(n: number, spreadS: number, seed: number): Result {
  const rand = rng(seed);
  const arrive = arrivals(n, spreadS);
  const finish = new Array<number>(n).fill(NaN);
  // Node n is the seed: it holds the tree (announced) from the start.
  const announcedAt = new Map<number, number>([[n, 0]]);
  const partsLeft = new Array<number>(n).fill(0);
  let flows: Flow[] = [];
  let originMB = 0;
  let next = 0;
  let t = 0;
  while (next < n || flows.length > 0) {
    while (next < n && arrive[next]! <= t) {
      const me = next++;
      const holders = [...announcedAt].filter(([, at]) => at <= t).map(([id]) => id);
      // Shuffled, as the peer tier starts each part on a random holder.
      for (let i = holders.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [holders[i], holders[j]] = [holders[j]!, holders[i]!];
      }
      const k = Math.max(1, Math.min(SPREAD, holders.length));
      const streams = new Map<number, number>();
      for (const f of flows) streams.set(f.src, (streams.get(f.src) ?? 0) + 1);
      for (let p = 0; p < k; p++) {
        // The first holder of this part's order with a free stream, else the origin.
        const src = [...holders.slice(p), ...holders.slice(0, p)].find((h) => (streams.get(h) ?? 0) < SERVE_STREAMS) ?? ORIGIN_ID;
        streams.set(src, (streams.get(src) ?? 0) + 1);
        if (src === ORIGIN_ID) originMB += TREE_MB / k;
        flows.push({ src, dst: me, left: TREE_MB / k });
      }
      partsLeft[me] = k;
    }
    const done = new Set(step(flows, DT));
    t += DT;
    for (const f of done) {
      if (--partsLeft[f.dst]! === 0) {
        finish[f.dst] = t;
        announcedAt.set(f.dst, t + ANNOUNCE_S * rand()); // the next announcement, within an interval
      }
    }
    flows = flows.filter((f) => !done.has(f));
  }
  return summarize(arrive, finish, originMB);
}

/** Piece-level swarming: 4 downloads and 4 uploads per node at a time, rarest piece first; the seed node holds all. */
function simSwarm(n: number, spreadS: number, seed: number): Result {
  const rand = rng(seed);
  const P = Math.ceil(TREE_MB / PIECE_MB);
  const SLOTS = 4;
  const arrive = arrivals(n, spreadS);
  const finish = new Array<number>(n).fill(NaN);
  const seedId = n;
  const have: Uint8Array[] = Array.from({ length: n + 1 }, (_, i) => new Uint8Array(P).fill(i === seedId ? 1 : 0));
  const count = new Array<number>(n).fill(0);
  const holders: number[][] = Array.from({ length: P }, () => [seedId]);
  const pending: Set<number>[] = Array.from({ length: n }, () => new Set());
  const ups = new Map<number, number>();
  let flows: Flow[] = [];
  let active: number[] = [];
  let next = 0;
  let t = 0;
  while (next < n || active.length > 0) {
    while (next < n && arrive[next]! <= t) active.push(next++);
    // Fill free download slots: rarest pieces first (among a random sample), from a holder with a free upload slot.
    for (const me of active) {
      let tries = 0;
      while (pending[me]!.size < SLOTS && tries++ < 12) {
        let best = -1;
        for (let s = 0; s < 8; s++) {
          const p = Math.floor(rand() * P);
          if (have[me]![p] || pending[me]!.has(p)) continue;
          if (best < 0 || holders[p]!.length < holders[best]!.length) best = p;
        }
        if (best < 0) continue;
        const hs = holders[best]!;
        let src = -2;
        for (let s = 0; s < 6 && src === -2; s++) {
          const h = hs[Math.floor(rand() * hs.length)]!;
          if ((ups.get(h) ?? 0) < SLOTS) src = h;
        }
        if (src === -2) continue;
        ups.set(src, (ups.get(src) ?? 0) + 1);
        pending[me]!.add(best);
        flows.push({ src, dst: me, left: PIECE_MB, piece: best });
      }
    }
    const done = new Set(step(flows, DT));
    t += DT;
    for (const f of done) {
      ups.set(f.src, ups.get(f.src)! - 1);
      pending[f.dst]!.delete(f.piece!);
      have[f.dst]![f.piece!] = 1;
      holders[f.piece!]!.push(f.dst);
      if (++count[f.dst]! === P) finish[f.dst] = t;
    }
    flows = flows.filter((f) => !done.has(f));
    active = active.filter((me) => count[me]! < P);
  }
  return summarize(arrive, finish, 0);
}

function table(title: string, spreadS: number): Record<string, unknown>[] {
  console.log(`\n${title}`);
  const head = (s: string) => s.padStart(22);
  console.log(`${'nodes'.padStart(6)}  ${head('origin only')}  ${head('vrift (as built)')}  ${head('swarm')}   origin GB (only / vrift)`);
  console.log(`${''.padStart(6)}  ${head('last / median')}  ${head('last / median')}  ${head('last / median')}`);
  const out: Record<string, unknown>[] = [];
  for (const n of SIZES) {
    const o = simOrigin(n, spreadS);
    const v = simVrift(n, spreadS, 7);
    const s = simSwarm(n, spreadS, 7);
    const cell = (r: Result) => head(`${r.last.toFixed(1)} s / ${r.median.toFixed(1)} s`);
    console.log(`${String(n).padStart(6)}  ${cell(o)}  ${cell(v)}  ${cell(s)}   ${(o.originMB / 1000).toFixed(1)} / ${(v.originMB / 1000).toFixed(1)}`);
    out.push({ nodes: n, origin: o, vrift: v, swarm: s });
  }
  return out;
}

console.log(
  `tree ${TREE_MB} MB; each node ${NODE} MB/s up and down; origin ${ORIGIN} MB/s in total; vrift: spread ${SPREAD}, ${SERVE_STREAMS} streams per server, announce interval ${ANNOUNCE_S} s; swarm: ${PIECE_MB} MB pieces`,
);
console.log("last: until the last node has the whole tree; median: a node's own wait from its arrival. One node holds the tree at t=0; so does the origin.");
const flash = table('all nodes start at once (flash crowd)', 0);
const fleet = table(`nodes arrive evenly over ${ARRIVAL_S} s (a CI fleet)`, ARRIVAL_S);
console.log(JSON.stringify({ bench: 'p2p-sim', treeMB: TREE_MB, nodeMBps: NODE, originMBps: ORIGIN, spread: SPREAD, serveStreams: SERVE_STREAMS, announceS: ANNOUNCE_S, arrivalS: ARRIVAL_S, flash, fleet }));
