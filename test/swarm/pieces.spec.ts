// The swarm's small data structures: the bitfield, the rarity order and the member ring.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { PieceSet } from '../../src/node/swarm/piece-set.js';
import { RarityOrder } from '../../src/node/swarm/rarity.js';
import { MemberRing, piecePoint } from '../../src/node/swarm/member-ring.js';

describe('PieceSet', () => {
  it('round-trips through its bytes and counts what it holds', () => {
    const s = new PieceSet(11);
    expect([s.add(0), s.add(10), s.add(10)]).toEqual([true, true, false]);
    const back = PieceSet.decode(11, s.encode());
    expect([...back]).toEqual([0, 10]);
    expect([back.count, back.complete, PieceSet.full(11).complete]).toEqual([2, false, true]);
  });

  it('refuses bytes of the wrong length, bits past the end and pieces out of range', () => {
    expect(() => PieceSet.decode(11, new Uint8Array(1))).toThrow('piece set of 11 pieces needs 2 bytes, got 1');
    expect(() => PieceSet.decode(11, Uint8Array.of(0, 1))).toThrow('past its last piece');
    expect(() => new PieceSet(3).add(3)).toThrow('piece 3 is outside 0..2');
  });
});

describe('RarityOrder', () => {
  it('keeps wanted pieces sorted by availability through any mix of changes', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.array(fc.tuple(fc.constantFrom('inc', 'dec', 'remove'), fc.nat()), { maxLength: 200 }), (n, ops) => {
        const r = new RarityOrder(n, () => 0.5);
        const avail = new Array<number>(n).fill(0);
        const wanted = new Set(Array.from({ length: n }, (_, i) => i));
        for (const [op, x] of ops) {
          const p = x % n;
          if (op === 'inc') (r.increment(p), avail[p]!++);
          else if (op === 'dec' && avail[p]! > 0) (r.decrement(p), avail[p]!--);
          else if (op === 'remove') (r.remove(p), wanted.delete(p));
        }
        expect(r.length).toBe(wanted.size);
        const seen = Array.from({ length: r.length }, (_, i) => r.at(i));
        expect(new Set(seen)).toEqual(wanted);
        for (let i = 1; i < seen.length; i++) expect(avail[seen[i - 1]!]!).toBeLessThanOrEqual(avail[seen[i]!]!);
        for (const p of seen) expect(r.availability(p)).toBe(avail[p]);
        const firstHeld = seen.findIndex((p) => avail[p]! >= 1);
        expect(r.firstWithAvailability(1)).toBe(firstHeld < 0 ? seen.length : firstHeld);
      }),
    );
  });

  it('says when a piece loses a holder it never had', () => {
    expect(() => new RarityOrder(2).decrement(1)).toThrow('piece 1 has no holder to lose');
  });
});

describe('MemberRing', () => {
  const members = Array.from({ length: 50 }, (_, i) => `node-${i}`);

  it('gives every piece exactly one primary and one other secondary, the same however built', () => {
    const ring = MemberRing.of(members);
    const grown = members.reduce((r, m) => r.with(m), MemberRing.of([]));
    for (let p = 0; p < 200; p++) {
      const at = piecePoint(7, p);
      const ranks = members.map((m) => ring.rank(m, at));
      expect(ranks.filter((r) => r === 0)).toHaveLength(1);
      expect(ranks.filter((r) => r === 1)).toHaveLength(1);
      expect(members.map((m) => grown.rank(m, at))).toEqual(ranks);
    }
    expect(ring.rank('stranger', piecePoint(7, 0))).toBe(-1);
  });

  it('moves only the departed member’s pieces when one leaves', () => {
    const ring = MemberRing.of(members);
    const less = ring.without('node-3');
    let moved = 0;
    for (let p = 0; p < 1000; p++) {
      const at = piecePoint(7, p);
      const before = members.find((m) => ring.rank(m, at) === 0)!;
      const after = members.find((m) => less.rank(m, at) === 0)!;
      if (before !== after) {
        expect(before).toBe('node-3');
        moved++;
      }
    }
    expect(moved).toBeGreaterThan(0);
    expect(less.size).toBe(49);
  });

  it('spreads pieces over members within a few times of even', () => {
    const ring = MemberRing.of(members.slice(0, 10));
    const counts = new Map<string, number>();
    for (let p = 0; p < 2000; p++) {
      const at = piecePoint(99, p);
      const m = members.slice(0, 10).find((x) => ring.rank(x, at) === 0)!;
      counts.set(m, (counts.get(m) ?? 0) + 1);
    }
    expect(counts.size).toBe(10);
    expect(Math.max(...counts.values())).toBeLessThan(3 * 200);
  });
});
