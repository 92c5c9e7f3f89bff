// The piece scheduler on its own: a recording port and a hand-moved clock.
import { describe, expect, it } from 'vitest';
import { PieceSet } from '../../src/node/swarm/piece-set.js';
import { MemberRing, piecePoint } from '../../src/node/swarm/member-ring.js';
import { DEFAULT_SWARM_OPTIONS, ORIGIN, SwarmScheduler, type SwarmOptions, type SwarmPort } from '../../src/node/swarm/scheduler.js';

class RecordingPort implements SwarmPort {
  clock = 0;
  calls: string[] = [];
  wakes: number[] = [];
  now(): number {
    return this.clock;
  }
  request(peer: string, piece: number): void {
    this.calls.push(`request ${peer} ${piece}`);
  }
  cancel(peer: string, piece: number): void {
    this.calls.push(`cancel ${peer} ${piece}`);
  }
  announce(piece: number): void {
    this.calls.push(`announce ${piece}`);
  }
  unchoke(peer: string): void {
    this.calls.push(`unchoke ${peer}`);
  }
  wakeAt(ms: number): void {
    this.wakes.push(ms);
  }
  /** The calls since the last take. */
  take(): string[] {
    const c = this.calls;
    this.calls = [];
    return c;
  }
}

const holding = (size: number, ...pieces: number[]) => {
  const s = new PieceSet(size);
  for (const p of pieces) s.add(p);
  return s;
};

function node(pieces: number, opts: Partial<SwarmOptions> = {}, have?: PieceSet) {
  const port = new RecordingPort();
  const s = new SwarmScheduler(port, { ...DEFAULT_SWARM_OPTIONS, pieces, self: 'me', treeSeed: 1, random: () => 0, ...opts }, have);
  return { port, s };
}

describe('SwarmScheduler', () => {
  it('asks for the rarest piece first, from a neighbour that holds it', () => {
    const { port, s } = node(3, { downloadSlots: 1 });
    s.addNeighbor('a', holding(3, 0, 1, 2));
    s.addNeighbor('b', holding(3, 1, 2));
    s.addNeighbor('c', holding(3, 2));
    s.start();
    expect(port.take()).toEqual(['request a 0']);
    s.requestAccepted('a', 0);
    s.pieceArrived('a', 0, true);
    expect(port.take()).toEqual(['announce 0', 'request a 1']);
  });

  it('keeps at most downloadSlots requests in flight and maxPerPeer per peer', () => {
    const { port, s } = node(10, { downloadSlots: 3, maxPerPeer: 2 });
    s.addNeighbor('a', PieceSet.full(10));
    s.start();
    expect(port.take()).toHaveLength(2);
    s.addNeighbor('b', PieceSet.full(10));
    expect(port.take().map((c) => c.split(' ')[1])).toEqual(['b']);
  });

  it('serves at most uploadSlots at once and unchokes a refused peer when a slot frees', () => {
    const { port, s } = node(2, { uploadSlots: 2 }, holding(2, 0));
    expect([s.uploadRequested('x', 0), s.uploadRequested('y', 0), s.uploadRequested('z', 0)]).toEqual([true, true, false]);
    expect(s.uploadRequested('w', 1)).toBe(false); // not held: refused, and not put on the wait list
    s.uploadEnded();
    expect(port.take()).toEqual(['unchoke z']);
    s.uploadEnded();
    expect(port.take()).toEqual([]);
    expect(() => s.uploadEnded()).toThrow('uploadEnded without an upload in progress');
  });

  it('in the endgame asks a second holder and cancels the slower one', () => {
    const { port, s } = node(2, { downloadSlots: 4, maxPerPeer: 2 });
    s.addNeighbor('a', PieceSet.full(2));
    s.addNeighbor('b', PieceSet.full(2));
    s.start();
    const asked = port.take();
    expect(asked).toHaveLength(4);
    expect(new Set(asked)).toEqual(new Set(['request a 0', 'request a 1', 'request b 0', 'request b 1']));
    s.pieceArrived('b', 1, true);
    expect(port.take()).toEqual(['cancel a 1', 'announce 1']);
  });

  it('never announces a piece that failed verification, drops its sender and asks another', () => {
    const { port, s } = node(1, { downloadSlots: 1 });
    s.addNeighbor('liar', PieceSet.full(1));
    s.start();
    expect(port.take()).toEqual(['request liar 0']);
    s.addNeighbor('honest', PieceSet.full(1));
    s.pieceArrived('liar', 0, false);
    expect(port.take()).toEqual(['request honest 0']);
    expect([s.have.count, s.isNeighbor('liar')]).toEqual([0, false]);
  });

  it('hedges a request no peer answered within hedgeMs to the origin', () => {
    const { port, s } = node(1, { hedgeMs: 30 });
    s.addNeighbor('mute', PieceSet.full(1));
    s.start();
    expect(port.take()).toEqual(['request mute 0']);
    expect(port.wakes).toContain(30);
    port.clock = 30;
    s.tick();
    // The silent peer's request is withdrawn, the origin asked, and the silent peer left alone for a while.
    expect(port.take()).toEqual(['cancel mute 0', `request ${ORIGIN} 0`]);
    s.pieceArrived('mute', 0, true); // too late: no longer asked of it, ignored
    expect(s.have.count).toBe(0);
    s.pieceArrived(ORIGIN, 0, true);
    expect(port.take()).toEqual(['announce 0']);
    expect([s.complete, s.originPieces]).toEqual([true, 1]);
  });

  it('backs off from a peer that refused, until it unchokes or the backoff ends', () => {
    const { port, s } = node(1, { busyBackoffMs: 50 });
    s.addNeighbor('busy', PieceSet.full(1));
    s.start();
    port.take();
    s.requestRefused('busy', 0);
    expect(port.take()).toEqual([]);
    port.clock = 49;
    s.tick();
    expect(port.take()).toEqual([]);
    port.clock = 50;
    s.tick();
    expect(port.take()).toEqual(['request busy 0']);
    s.requestRefused('busy', 0);
    s.unchoked('busy');
    expect(port.take()).toEqual(['request busy 0']);
  });

  it('fetches its ring duty from the origin once views settle, and nothing before', () => {
    const { port, s } = node(4, { settleMs: 40 });
    s.setMembers(MemberRing.of(['me']));
    s.start();
    expect(port.take()).toEqual([]);
    port.clock = 40;
    s.tick();
    expect(port.take().sort()).toEqual([0, 1, 2, 3].map((p) => `request ${ORIGIN} ${p}`));
  });

  it('takes duty pieces on the origin’s own slots, so peers are asked at the same time', () => {
    const { port, s } = node(8, { settleMs: 0, originSlots: 2, downloadSlots: 2 });
    s.setMembers(MemberRing.of(['me']));
    s.addNeighbor('seed', PieceSet.full(8)); // one holder: below the duty threshold, so the origin helps
    s.start();
    const asked = port.take();
    expect(asked.filter((c) => c.startsWith(`request ${ORIGIN}`))).toHaveLength(2);
    expect(asked.filter((c) => c.startsWith('request seed'))).toHaveLength(2);
  });

  it('leaves a piece to its primary, and its secondary takes it after secondaryMs if no neighbour has it', () => {
    const members = ['me', 'other'];
    const ring = MemberRing.of(members);
    // Find a piece whose primary is the other member (so "me" is its secondary).
    const piece = [...Array(64).keys()].find((p) => ring.rank('other', piecePoint(1, p)) === 0)!;
    const { port, s } = node(64, { settleMs: 40, secondaryMs: 500, starveMs: 10_000, originSlots: 64 });
    s.setMembers(ring);
    s.start();
    port.clock = 40;
    s.tick();
    expect(port.take()).not.toContain(`request ${ORIGIN} ${piece}`);
    port.clock = 500;
    s.tick();
    expect(port.take()).toContain(`request ${ORIGIN} ${piece}`);
  });

  it('with nothing coming for starveMs takes one piece from the origin, then waits again', () => {
    const { port, s } = node(5, { starveMs: 200 });
    s.setMembers(MemberRing.of(['someone-else'])); // not a member: no duty
    s.start();
    port.clock = 199;
    s.tick();
    expect(port.take()).toEqual([]);
    port.clock = 200;
    s.tick();
    expect(port.take()).toHaveLength(1);
    port.clock = 300;
    s.tick();
    expect(port.take()).toEqual([]);
  });

  it('loses only a departed neighbour’s pieces and requests: it asks the others', () => {
    const { port, s } = node(2, { downloadSlots: 1 });
    s.addNeighbor('dies', holding(2, 0, 1));
    s.addNeighbor('stays', holding(2, 1));
    s.start();
    expect(port.take()).toEqual(['request dies 0']);
    s.removeNeighbor('dies');
    expect(port.take()).toEqual(['request stays 1']);
    s.pieceArrived('dies', 0, true); // a late arrival from a peer no longer asked is ignored
    expect(s.have.count).toBe(0);
  });

  it('says what is wrong with bad input', () => {
    expect(() => node(2, { uploadSlots: 0 })).toThrow('swarm uploadSlots must be a whole number ≥ 1, not 0');
    const { s } = node(2);
    expect(() => s.addNeighbor('p', new PieceSet(3))).toThrow('peer p sent a bitfield of 3 pieces for a tree of 2');
    expect(() => node(2, {}, new PieceSet(5))).toThrow('held set has 5 pieces, the tree 2');
  });
});
