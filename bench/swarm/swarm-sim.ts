// A cluster of nodes in simulated time, each running the real piece
// scheduler (src/node/swarm/scheduler.ts): this file is only the network.
// Links: every node uploads and downloads at most `nodeMBps`; a transfer
// gets an equal share of its sender's upload and of its receiver's download
// (the smaller), recomputed whenever a transfer starts or ends at either
// end. The origin serves `originMBps` in total, after a first-byte latency.
// Messages (requests, haves, bitfields) take `linkLatencyMs`; a node's
// swarm join reaches every other node's view after `gossipMs`.
import { PieceSet } from '../../src/node/swarm/piece-set.js';
import { MemberRing } from '../../src/node/swarm/member-ring.js';
import { DEFAULT_SWARM_OPTIONS, ORIGIN, SwarmScheduler, type SwarmOptions, type SwarmPort } from '../../src/node/swarm/scheduler.js';
import { EventQueue } from './event-queue.js';
import { rng } from '../lib.js';

export interface SimConfig {
  /** Nodes that fetch the tree. */
  nodes: number;
  treeBytes: number;
  pieceBytes: number;
  nodeMBps: number;
  originMBps: number;
  linkLatencyMs: number;
  originLatencyMs: number;
  gossipMs: number;
  /** When each fetching node starts (ms); all at 0 when absent. */
  arrivalsMs?: number[];
  /** Nodes that hold the whole tree from the start (and are known to all). */
  seeds: number;
  /** Fetching nodes that die, and when. */
  kills?: { node: number; atMs: number }[];
  /** Fetching nodes whose uploads fail verification. */
  liars?: number[];
  /** Fetching nodes that never answer a piece request (hung, but connected). */
  silent?: number[];
  /** A dead member leaves the others' rings this long after it died. */
  detectMs: number;
  scheduler?: Partial<SwarmOptions>;
  seed: number;
  /** Give up (a bug, or every source dead) after this much simulated time. */
  limitMs?: number;
}

export interface SimResult {
  /** Per fetching node: ms from its start until it held every piece (NaN: died or never). */
  waitMs: number[];
  /** Simulated time when the last live node finished. */
  lastMs: number;
  medianMs: number;
  p99Ms: number;
  originBytes: number;
  /** originBytes over the tree's size. */
  originCopies: number;
  /** Live fetching nodes that did not finish within limitMs. */
  unfinished: number;
  /** Bytes moved between nodes. */
  peerBytes: number;
  /** Piece requests to peers, and how many were refused (no free upload slot). */
  peerRequests: number;
  refused: number;
  events: number;
}

const ORIGIN_IDX = -1;

interface Flow {
  src: number;
  dst: number;
  piece: number;
  left: number;
  rate: number;
  since: number;
  version: number;
}

interface SimNode {
  idx: number;
  id: string;
  arrive: number;
  sched: SwarmScheduler;
  alive: boolean;
  fetching: boolean;
  up: Set<Flow>;
  down: Set<Flow>;
  nbrs: Set<number>;
  connecting: number;
  doneAt: number;
  nextWake: number;
}

/** How long a transfer of `bytes` takes at a per-transfer share of a node link, in ms: a yardstick for deadlines. */
export function pieceMs(pieceBytes: number, nodeMBps: number, slots: number): number {
  return pieceBytes / ((nodeMBps * 1000) / slots);
}

export function simulate(cfg: SimConfig): SimResult {
  for (const k of ['nodes', 'treeBytes', 'pieceBytes', 'nodeMBps', 'originMBps'] as const) {
    if (!(cfg[k] > 0)) throw new RangeError(`simulation ${k} must be > 0, not ${cfg[k]}`);
  }
  const q = new EventQueue();
  const random = rng(cfg.seed);
  const P = Math.ceil(cfg.treeBytes / cfg.pieceBytes);
  const bytesOf = (p: number) => Math.min(cfg.pieceBytes, cfg.treeBytes - p * cfg.pieceBytes);
  const nodeRate = cfg.nodeMBps * 1000; // bytes per ms
  const originRate = cfg.originMBps * 1000;
  const LAT = cfg.linkLatencyMs;
  const opts: Omit<SwarmOptions, 'self' | 'random'> = { ...DEFAULT_SWARM_OPTIONS, pieces: P, treeSeed: 0x5eed, ...cfg.scheduler };
  const liars = new Set(cfg.liars ?? []);
  const silent = new Set(cfg.silent ?? []);
  const nodes: SimNode[] = [];
  const byId = new Map<string, number>();
  const originFlows = new Set<Flow>();
  /** Origin requests not started yet (node × pieces + piece), so a cancel can stop them. */
  const originAsked = new Set<number>();
  let originBytes = 0;
  let peerRequests = 0;
  let refused = 0;
  let peerBytes = 0;
  let done = 0;
  let dead = 0;

  const make = (idx: number, id: string, arrive: number, full: boolean): SimNode => {
    const n = { idx, id, arrive, alive: true, fetching: !full, up: new Set(), down: new Set(), nbrs: new Set(), connecting: 0, doneAt: NaN, nextWake: Infinity } as unknown as SimNode;
    const port: SwarmPort = {
      now: () => q.now,
      request: (peer, piece) => request(n, peer, piece),
      cancel: (peer, piece) => cancel(n, peer, piece),
      announce: (piece) =>
        q.at(q.now + LAT, () => {
          if (!n.alive) return;
          for (const b of n.nbrs) nodes[b]!.alive && nodes[b]!.sched.peerHave(n.id, piece);
        }),
      unchoke: (peer) => {
        const b = nodes[byId.get(peer)!]!;
        q.at(q.now + LAT, () => b.alive && n.alive && b.sched.unchoked(n.id));
      },
      wakeAt: (ms) => {
        // One pending wake per node: the scheduler asks again for later ones on each tick.
        if (ms >= n.nextWake && n.nextWake > q.now) return;
        n.nextWake = ms;
        q.at(ms, () => {
          if (n.nextWake !== ms) return;
          n.nextWake = Infinity;
          if (n.alive) n.sched.tick();
        });
      },
    };
    n.sched = new SwarmScheduler(port, { ...opts, self: id, random }, full ? PieceSet.full(P) : undefined);
    return n;
  };

  const arrivals = cfg.arrivalsMs ?? new Array<number>(cfg.nodes).fill(0);
  if (arrivals.length !== cfg.nodes) throw new RangeError(`${arrivals.length} arrival times for ${cfg.nodes} nodes`);
  for (let i = 0; i < cfg.nodes; i++) nodes.push(make(i, `n${i}`, arrivals[i]!, false));
  for (let s = 0; s < cfg.seeds; s++) nodes.push(make(cfg.nodes + s, `s${s}`, 0, true));
  nodes.forEach((n) => byId.set(n.id, n.idx));
  const seeds = nodes.slice(cfg.nodes).map((n) => n.idx);

  // ---- links ----
  const settle = (f: Flow) => {
    const moved = Math.min(f.left, f.rate * (q.now - f.since));
    f.left -= moved;
    f.since = q.now;
    if (f.src === ORIGIN_IDX) originBytes += moved;
    else peerBytes += moved;
  };
  const rateOf = (f: Flow) => {
    const up = f.src === ORIGIN_IDX ? originRate / originFlows.size : nodeRate / nodes[f.src]!.up.size;
    return Math.min(up, nodeRate / nodes[f.dst]!.down.size);
  };
  const reschedule = (f: Flow) => {
    settle(f);
    const rate = rateOf(f);
    if (rate === f.rate && f.version > 0) return;
    f.rate = rate;
    const v = ++f.version;
    q.at(q.now + f.left / rate, () => f.version === v && finish(f));
  };
  const rerate = (src: number, dst: number) => {
    for (const f of src === ORIGIN_IDX ? originFlows : nodes[src]!.up) reschedule(f);
    for (const f of nodes[dst]!.down) reschedule(f);
  };
  const startFlow = (src: number, dst: number, piece: number) => {
    const f: Flow = { src, dst, piece, left: bytesOf(piece), rate: 0, since: q.now, version: 0 };
    (src === ORIGIN_IDX ? originFlows : nodes[src]!.up).add(f);
    nodes[dst]!.down.add(f);
    rerate(src, dst);
  };
  /** Ends a transfer early or on time; returns whether it was running. */
  const stopFlow = (f: Flow): boolean => {
    const ups = f.src === ORIGIN_IDX ? originFlows : nodes[f.src]!.up;
    if (!ups.has(f)) return false;
    settle(f);
    f.version++;
    ups.delete(f);
    nodes[f.dst]!.down.delete(f);
    if (f.src !== ORIGIN_IDX && nodes[f.src]!.alive) nodes[f.src]!.sched.uploadEnded();
    if (f.src === ORIGIN_IDX || nodes[f.src]!.alive) rerate(f.src, f.dst);
    else for (const g of nodes[f.dst]!.down) reschedule(g);
    return true;
  };
  const finish = (f: Flow) => {
    stopFlow(f);
    const dst = nodes[f.dst]!;
    const from = f.src === ORIGIN_IDX ? ORIGIN : nodes[f.src]!.id;
    q.at(q.now + LAT, () => {
      if (!dst.alive) return;
      dst.sched.pieceArrived(from, f.piece, !liars.has(f.src));
      if (dst.fetching && Number.isNaN(dst.doneAt) && dst.sched.complete) {
        dst.doneAt = q.now;
        if (++done + dead === cfg.nodes) q.halt();
      }
    });
  };

  // ---- messages ----
  const request = (n: SimNode, peer: string, piece: number) => {
    if (peer === ORIGIN) {
      const key = n.idx * P + piece;
      originAsked.add(key);
      q.at(q.now + cfg.originLatencyMs, () => {
        if (!n.alive || !originAsked.delete(key)) return; // cancelled before its first byte
        n.sched.requestAccepted(ORIGIN, piece);
        startFlow(ORIGIN_IDX, n.idx, piece);
      });
      return;
    }
    const s = nodes[byId.get(peer)!]!;
    q.at(q.now + LAT, () => {
      if (!n.alive) return;
      if (!s.alive) return void q.at(q.now + LAT, () => n.alive && n.sched.requestFailed(peer, piece));
      if (silent.has(s.idx)) return;
      const ok = s.sched.uploadRequested(n.id, piece);
      peerRequests++;
      if (!ok) refused++;
      if (ok) startFlow(s.idx, n.idx, piece);
      q.at(q.now + LAT, () => n.alive && (ok ? n.sched.requestAccepted(peer, piece) : n.sched.requestRefused(peer, piece)));
    });
  };
  const cancel = (n: SimNode, peer: string, piece: number) => {
    const src = peer === ORIGIN ? ORIGIN_IDX : byId.get(peer)!;
    if (src === ORIGIN_IDX && originAsked.delete(n.idx * P + piece)) return;
    q.at(q.now + (peer === ORIGIN ? 0 : LAT), () => {
      for (const f of n.down) if (f.src === src && f.piece === piece) return void stopFlow(f);
    });
  };

  // ---- membership: neighbours and rings ----
  const joined: number[] = []; // fetching nodes visible to all, in join order
  let ring = MemberRing.of([]);
  const target = Math.max(1, opts.maxNeighbors >> 1);
  const connect = (a: SimNode, b: SimNode) => {
    a.connecting++;
    q.at(q.now + LAT, () => {
      if (!b.alive || !a.alive || !b.sched.wantsNeighbor || b.nbrs.has(a.idx)) return void a.connecting--;
      b.nbrs.add(a.idx);
      b.sched.addNeighbor(a.id, PieceSet.decode(P, a.sched.have.encode()));
      q.at(q.now + LAT, () => {
        a.connecting--;
        if (!a.alive || !b.alive) return;
        a.nbrs.add(b.idx);
        a.sched.addNeighbor(b.id, PieceSet.decode(P, b.sched.have.encode()));
      });
    });
  };
  const topUp = (a: SimNode) => {
    const pool = [...seeds, ...joined];
    if (pool.length === 0) return;
    for (let tries = 0; tries < 3 * target && a.nbrs.size + a.connecting < target && a.sched.wantsNeighbor; tries++) {
      const b = nodes[pool[Math.floor(random() * pool.length)]!]!;
      if (b !== a && b.alive && !a.nbrs.has(b.idx)) connect(a, b);
    }
  };
  const active = () => nodes.filter((n) => n.alive && n.fetching && q.now >= n.arrive && !n.sched.complete);

  const byArrival = [...arrivals.keys()].sort((a, b) => arrivals[a]! - arrivals[b]! || a - b);
  for (let i = 0; i < byArrival.length; ) {
    const t = arrivals[byArrival[i]!]!;
    const batch: SimNode[] = [];
    while (i < byArrival.length && arrivals[byArrival[i]!] === t) batch.push(nodes[byArrival[i++]!]!);
    q.at(t, () => {
      for (const n of batch) {
        n.sched.setMembers(ring.with(n.id));
        n.sched.start();
        topUp(n);
      }
    });
    q.at(t + cfg.gossipMs, () => {
      for (const n of batch) {
        if (!n.alive) continue;
        joined.push(n.idx);
        ring = ring.with(n.id);
      }
      for (const n of active()) {
        n.sched.setMembers(ring);
        topUp(n);
      }
    });
  }

  for (const k of cfg.kills ?? []) {
    q.at(k.atMs, () => {
      const n = nodes[k.node]!;
      if (!n.alive) return;
      n.alive = false;
      if (Number.isNaN(n.doneAt) && ++dead + done === cfg.nodes) q.halt();
      for (const f of [...n.up]) {
        stopFlow(f);
        const d = nodes[f.dst]!;
        q.at(q.now + LAT, () => d.alive && d.sched.requestFailed(n.id, f.piece));
      }
      for (const f of [...n.down]) stopFlow(f);
      for (const b of n.nbrs) {
        const m = nodes[b]!;
        q.at(q.now + LAT, () => {
          m.nbrs.delete(n.idx);
          if (m.alive) m.sched.removeNeighbor(n.id);
          if (m.alive && !m.sched.complete) topUp(m);
        });
      }
      q.at(q.now + cfg.detectMs, () => {
        const at = joined.indexOf(n.idx);
        if (at >= 0) joined.splice(at, 1);
        ring = ring.without(n.id);
        for (const m of active()) m.sched.setMembers(ring);
      });
    });
  }

  const events = q.run(cfg.limitMs ?? 600_000);
  const waitMs = nodes.slice(0, cfg.nodes).map((n) => n.doneAt - n.arrive);
  const finished = waitMs.filter((w) => !Number.isNaN(w)).sort((a, b) => a - b);
  const unfinished = nodes.slice(0, cfg.nodes).filter((n) => n.alive && Number.isNaN(n.doneAt)).length;
  return {
    waitMs,
    lastMs: Math.max(0, ...nodes.slice(0, cfg.nodes).filter((n) => !Number.isNaN(n.doneAt)).map((n) => n.doneAt)),
    medianMs: finished[Math.floor((finished.length - 1) / 2)] ?? NaN,
    p99Ms: finished[Math.min(finished.length - 1, Math.ceil(finished.length * 0.99) - 1)] ?? NaN,
    originBytes,
    originCopies: originBytes / cfg.treeBytes,
    unfinished,
    peerBytes,
    peerRequests,
    refused,
    events,
  };
}
