// The real scheduler (src/node/swarm/scheduler.ts) in a simulated cluster
// (bench/swarm/swarm-sim.ts): the goals of issue 14, in simulated time, at
// a scale that runs in seconds (bench/p2p-sim.ts prints them at 1 000 and
// 2 600 nodes). Times are simulated milliseconds, not wall-clock.
import { describe, expect, it } from 'vitest';
import { pieceMs, simulate, type SimConfig } from '../../bench/swarm/swarm-sim.js';
import { choosePieceBytes } from '../../src/node/swarm/piece-list.js';

const MB = 1e6;

/** A 200 MB tree, 1 Gbit/s nodes, a 10 Gbit/s origin 20 ms away, one seed holding the tree. */
function crowd(over: Partial<SimConfig> = {}): SimConfig {
  const treeBytes = over.treeBytes ?? 200 * MB;
  const pieceBytes = Math.min(treeBytes, choosePieceBytes(treeBytes));
  return {
    nodes: 150,
    treeBytes,
    pieceBytes,
    nodeMBps: 125,
    originMBps: 1250,
    linkLatencyMs: 1,
    originLatencyMs: 20,
    gossipMs: 20,
    seeds: 1,
    detectMs: 1000,
    seed: 7,
    scheduler: { starveMs: 60 + 4 * pieceMs(pieceBytes, 125, 4) },
    ...over,
  };
}

/** Tree size over one node's bandwidth, plus the latencies on the way (origin first byte, one hop). */
const idealMs = (c: SimConfig) => c.treeBytes / (c.nodeMBps * 1000) + c.originLatencyMs + 2 * c.linkLatencyMs;

describe('swarm simulation (the real scheduler, simulated links)', () => {
  it('a flash crowd finishes within 1.5× the ideal, taking at most 2 copies from the origin', () => {
    const c = crowd();
    const r = simulate(c);
    expect(r.unfinished).toBe(0);
    expect(r.lastMs).toBeLessThanOrEqual(1.5 * idealMs(c));
    expect(r.originCopies).toBeLessThanOrEqual(2);
    // Peers, not the origin, carried the crowd.
    expect(r.peerBytes).toBeGreaterThan(0.9 * (c.nodes - 2) * c.treeBytes);
  });

  it('a CI fleet arriving over time waits at most 2 s at the median', () => {
    const n = 120; // 1 000 nodes over 60 s: the same arrival rate
    const r = simulate(crowd({ nodes: n, arrivalsMs: Array.from({ length: n }, (_, i) => i * 60) }));
    expect(r.unfinished).toBe(0);
    expect(r.medianMs).toBeLessThanOrEqual(2000);
    expect(r.originCopies).toBeLessThanOrEqual(2);
  });

  it('a 10 KB tree reaches 1 000 nodes in under 0.5 s', () => {
    const r = simulate(crowd({ nodes: 1000, treeBytes: 10_000 }));
    expect(r.unfinished).toBe(0);
    expect(r.lastMs).toBeLessThan(500);
  });

  it('with no seed and no peer holding anything, every node still finishes from the origin, about once per piece', () => {
    const r = simulate(crowd({ nodes: 40, seeds: 0 }));
    expect(r.unfinished).toBe(0);
    expect(r.originCopies).toBeGreaterThan(0.999);
    expect(r.originCopies).toBeLessThanOrEqual(2);
  });

  it('a node dying mid-crowd costs only its pieces: the rest finish, the origin budget holds', () => {
    const c = crowd({ kills: [{ node: 0, atMs: 600 }, { node: 1, atMs: 900 }] });
    const r = simulate(c);
    expect(r.unfinished).toBe(0);
    expect(r.waitMs.filter((w) => Number.isNaN(w))).toHaveLength(2);
    expect(r.lastMs).toBeLessThanOrEqual(1.5 * idealMs(c));
    expect(r.originCopies).toBeLessThanOrEqual(2);
  });

  it('pieces that fail verification are not served on: a lying node slows no one to failure', () => {
    const r = simulate(crowd({ nodes: 60, liars: [0, 1, 2] }));
    expect(r.unfinished).toBe(0);
    expect(r.originCopies).toBeLessThanOrEqual(2);
  });

  it('peers that never answer are hedged around: everyone finishes, the origin budget holds', () => {
    const c = crowd({ nodes: 60, silent: [0, 1] });
    const r = simulate(c);
    expect(r.unfinished).toBe(0);
    expect(r.lastMs).toBeLessThanOrEqual(1.5 * idealMs(c));
    expect(r.originCopies).toBeLessThanOrEqual(2);
  });

  it('a lone node with no peers fetches everything from the origin without waiting on coordination for long', () => {
    const c = crowd({ nodes: 1, seeds: 0, treeBytes: 10_000 });
    const r = simulate(c);
    expect(r.unfinished).toBe(0);
    expect(r.originCopies).toBeCloseTo(1, 5);
    expect(r.lastMs).toBeLessThan(100);
  });
});
