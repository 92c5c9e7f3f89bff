// The scheduler under random sequences of events: whatever peers do, it
// never asks for a piece it holds, never has more requests out than its
// slots allow, never serves or announces a piece it has not verified, and
// finishes once every piece can be had.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { PieceSet } from '../../src/node/swarm/piece-set.js';
import { MemberRing } from '../../src/node/swarm/member-ring.js';
import { DEFAULT_SWARM_OPTIONS, ORIGIN, SwarmScheduler, type SwarmPort } from '../../src/node/swarm/scheduler.js';

const PIECES = 12;
const PEERS = ['a', 'b', 'c', 'd'];
const SLOTS = { downloadSlots: 3, originSlots: 2, uploadSlots: 2, maxPerPeer: 2 };

type Op =
  | { kind: 'join'; peer: number; bits: number }
  | { kind: 'leave'; peer: number }
  | { kind: 'have'; peer: number; piece: number }
  | { kind: 'answer'; pick: number; how: 'accept' | 'refuse' | 'fail' | 'good' | 'bad' }
  | { kind: 'unchoke'; peer: number }
  | { kind: 'upload'; peer: number; piece: number }
  | { kind: 'uploadEnd' }
  | { kind: 'time'; ms: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('join' as const), peer: fc.nat(PEERS.length - 1), bits: fc.nat((1 << PIECES) - 1) }),
  fc.record({ kind: fc.constant('leave' as const), peer: fc.nat(PEERS.length - 1) }),
  fc.record({ kind: fc.constant('have' as const), peer: fc.nat(PEERS.length - 1), piece: fc.nat(PIECES - 1) }),
  fc.record({ kind: fc.constant('answer' as const), pick: fc.nat(), how: fc.constantFrom('accept' as const, 'refuse' as const, 'fail' as const, 'good' as const, 'bad' as const) }),
  fc.record({ kind: fc.constant('unchoke' as const), peer: fc.nat(PEERS.length - 1) }),
  fc.record({ kind: fc.constant('upload' as const), peer: fc.nat(PEERS.length - 1), piece: fc.nat(PIECES - 1) }),
  fc.record({ kind: fc.constant('uploadEnd' as const) }),
  fc.record({ kind: fc.constant('time' as const), ms: fc.integer({ min: 1, max: 400 }) }),
);

describe('SwarmScheduler invariants', () => {
  it('hold under any sequence of peer events', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 120 }), fc.boolean(), (ops, member) => {
        let clock = 0;
        const out: { peer: string; piece: number }[] = [];
        const verified = new Set<number>();
        let uploads = 0;
        const port: SwarmPort = {
          now: () => clock,
          request: (peer, piece) => {
            expect(s.have.has(piece)).toBe(false);
            out.push({ peer, piece });
          },
          cancel: (peer, piece) => {
            const i = out.findIndex((q) => q.peer === peer && q.piece === piece);
            expect(i).toBeGreaterThanOrEqual(0);
            out.splice(i, 1);
          },
          announce: (piece) => expect(verified.has(piece)).toBe(true),
          unchoke: () => {},
          wakeAt: (ms) => expect(ms).toBeGreaterThan(clock),
        };
        const s = new SwarmScheduler(port, { ...DEFAULT_SWARM_OPTIONS, ...SLOTS, pieces: PIECES, self: 'me', treeSeed: 3, random: () => 0.3 }, undefined);
        if (member) s.setMembers(MemberRing.of(['me', 'x', 'y']));
        s.start();
        const drop = (i: number) => out.splice(i, 1)[0]!;
        for (const o of ops) {
          if (o.kind === 'join') {
            const bits = new PieceSet(PIECES);
            for (let p = 0; p < PIECES; p++) if (o.bits & (1 << p)) bits.add(p);
            for (const q of out.filter((q) => q.peer === PEERS[o.peer])) out.splice(out.indexOf(q), 1); // a rejoin drops its requests
            s.addNeighbor(PEERS[o.peer]!, bits);
          } else if (o.kind === 'leave') {
            for (const q of out.filter((q) => q.peer === PEERS[o.peer])) out.splice(out.indexOf(q), 1);
            s.removeNeighbor(PEERS[o.peer]!);
          } else if (o.kind === 'have') s.peerHave(PEERS[o.peer]!, o.piece);
          else if (o.kind === 'answer' && out.length > 0) {
            const i = o.pick % out.length;
            const q = out[i]!;
            if (o.how === 'accept') s.requestAccepted(q.peer, q.piece);
            else if (o.how === 'refuse' && q.peer !== ORIGIN) (drop(i), s.requestRefused(q.peer, q.piece));
            else if (o.how === 'fail') (drop(i), s.requestFailed(q.peer, q.piece));
            else if (o.how === 'good') {
              drop(i);
              verified.add(q.piece);
              s.pieceArrived(q.peer, q.piece, true);
            } else if (o.how === 'bad') {
              drop(i);
              if (q.peer !== ORIGIN) for (const r of out.filter((r) => r.peer === q.peer)) out.splice(out.indexOf(r), 1); // the liar is dropped with its requests
              s.pieceArrived(q.peer, q.piece, false);
            }
          } else if (o.kind === 'unchoke') s.unchoked(PEERS[o.peer]!);
          else if (o.kind === 'upload') {
            const ok = s.uploadRequested(PEERS[o.peer]!, o.piece);
            if (ok) {
              expect(verified.has(o.piece)).toBe(true);
              uploads++;
            }
            expect(uploads).toBeLessThanOrEqual(SLOTS.uploadSlots);
          } else if (o.kind === 'uploadEnd' && uploads > 0) (uploads--, s.uploadEnded());
          else if (o.kind === 'time') {
            clock += o.ms;
            s.tick();
          }
          // Slots: the peers' and the origin's duty slots (hedges and the starvation floor may add one each per piece).
          const toPeers = out.filter((q) => q.peer !== ORIGIN);
          expect(toPeers.length).toBeLessThanOrEqual(SLOTS.downloadSlots);
          for (const p of PEERS) expect(toPeers.filter((q) => q.peer === p).length).toBeLessThanOrEqual(SLOTS.maxPerPeer);
          expect(new Set(out.map((q) => `${q.peer} ${q.piece}`)).size).toBe(out.length);
          for (const q of out) expect(s.have.has(q.piece)).toBe(false);
        }
        // Then the origin answers everything: the node finishes.
        for (let round = 0; round < 4 * PIECES && !s.complete; round++) {
          clock += 1000;
          s.tick();
          while (out.length > 0) {
            const q = out.shift()!; // its duplicates are cancelled (and leave `out`) as it lands
            verified.add(q.piece);
            s.pieceArrived(q.peer, q.piece, true);
          }
        }
        expect(s.complete).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});
