// Verified streaming in order (src/lib/bao.ts BaoVerifier, BaoDecoder;
// native/src/bao_stream.cc): content with its outboard, or the combined
// encoding, verifies as far as its whole groups go after every push, stops
// at the first bad group keeping the good prefix, and hands out nothing
// unverified.
import { describe, expect, it } from 'vitest';
import { BaoDecoder, BaoVerifier, baoEncode, baoEncodeCombined, baoOutboardSize } from '../../src/lib/bao.js';
import { hashBuffer } from '../../src/lib/digest.js';
import { hasCode } from '../../src/lib/errors.js';
import { bytesOf, flip, G, KiB, MiB, parentSpans, rng, SIZES } from '../helpers/bao.js';

describe('streams', () => {
  /** Pushes `data` in pieces of random sizes up to `max`, checking the verified prefix after each. */
  function pushAll(v: BaoVerifier, data: Buffer, max: number, seed: number): void {
    const r = rng(seed);
    for (let at = 0; at < data.length; ) {
      const end = Math.min(data.length, at + 1 + Math.floor(r() * max));
      const verified = v.push(data.subarray(at, end));
      at = end;
      // Every whole group that has arrived is verified, and nothing else.
      expect(verified).toBe(at === data.length ? data.length : Math.floor(at / G) * G);
    }
  }

  it.each([...SIZES, 40 * G + 9])('an in-order stream of %i bytes verifies group by group', (n) => {
    const data = bytesOf(n);
    const { outboard, digest } = baoEncode(data);
    for (const [seed, max] of [
      [1, 100],
      [2, 5000],
      [3, 3 * G],
      [4, 1 * MiB],
    ] as const) {
      const v = new BaoVerifier(digest, n, outboard);
      pushAll(v, data, max, seed);
      expect(v.complete).toBe(true);
      expect(v.verified).toBe(n);
    }
  });

  it('verifies the empty blob at once', () => {
    const empty = Buffer.alloc(0);
    const v = new BaoVerifier(hashBuffer(empty), 0, empty);
    expect(v.complete).toBe(true);
    expect(() => new BaoVerifier(hashBuffer(Buffer.from('x')), 0, empty)).toThrow(/does not match/);
    expect(() => new BaoDecoder(hashBuffer(Buffer.from('x')), 0)).toThrow(/does not match/);
  });

  it('stops at the group holding a flipped bit, keeping the prefix before it', () => {
    const n = 30 * G + 3;
    const data = bytesOf(n);
    const { outboard, digest } = baoEncode(data);
    for (const at of [5, 9 * G + 1, n - 1]) {
      const v = new BaoVerifier(digest, n, outboard);
      const bad = flip(data, at);
      let err: unknown;
      try {
        for (let o = 0; o < n; o += 4000) v.push(bad.subarray(o, Math.min(n, o + 4000)));
      } catch (e) {
        err = e;
      }
      expect(hasCode(err, 'ERR_VRIFT_BAO_MISMATCH')).toBe(true);
      expect(v.verified).toBe(Math.floor(at / G) * G);
      expect(v.complete).toBe(false);
      expect(() => v.push(Buffer.alloc(1))).toThrow(/does not match/);
    }
  });

  it('a corrupt outboard parent stops the stream before the groups under it', () => {
    const n = 21 * G + 5;
    const data = bytesOf(n);
    const { outboard, digest } = baoEncode(data);
    const spans = parentSpans(22);
    for (const [k, [g0]] of spans.entries()) {
      const bad = flip(outboard, k * 64 + 1);
      let v: BaoVerifier | undefined;
      try {
        v = new BaoVerifier(digest, n, bad);
        for (let o = 0; o < n; o += G) v.push(data.subarray(o, Math.min(n, o + G)));
        expect.unreachable();
      } catch (e) {
        expect(hasCode(e, 'ERR_VRIFT_BAO_MISMATCH')).toBe(true);
        // The left edge is checked at construction; elsewhere the stream stops where the parent's subtree starts.
        if (v) expect(v.verified).toBe(g0 * G);
        else expect(g0).toBe(0);
      }
    }
  });

  it('refuses bytes past the end of the blob', () => {
    const data = bytesOf(2 * G);
    const { outboard, digest } = baoEncode(data);
    const v = new BaoVerifier(digest, data.length, outboard);
    expect(() => v.push(Buffer.concat([data, Buffer.alloc(1)]))).toThrow(RangeError);
  });

  describe('combined encoding', () => {
    it.each([...SIZES, 40 * G + 9])('%i bytes decode from pushes of any size, released as they verify', (n) => {
      const data = bytesOf(n);
      const digest = hashBuffer(data);
      const enc = baoEncodeCombined(data);
      expect(enc.length).toBe(n + baoOutboardSize(n));
      const r = rng(n);
      for (const max of [1, 77, 5000, 3 * G]) {
        if (max === 1 && n > 20 * KiB) continue; // a byte at a time is slow to drive from JS, not to decode
        const d = new BaoDecoder(digest, n);
        const out: Buffer[] = [];
        let released = 0;
        for (let at = 0; at < enc.length; ) {
          const end = Math.min(enc.length, at + 1 + Math.floor(r() * max));
          for (const piece of d.push(enc.subarray(at, end))) {
            out.push(piece);
            released += piece.length;
          }
          at = end;
          if (d.verified !== released) expect(d.verified).toBe(released);
        }
        expect(d.complete).toBe(true);
        expect(Buffer.concat(out).equals(data)).toBe(true);
      }
    });

    it('hands out content as views of the pushed bytes, copying only groups split between pushes', () => {
      const n = 6 * G + 9;
      const data = bytesOf(n);
      const enc = baoEncodeCombined(data);
      const whole = new BaoDecoder(hashBuffer(data), n).push(enc);
      expect(whole.every((p) => p.buffer === enc.buffer)).toBe(true);
      // Groups 0 and 1 sit side by side after the parents above them: one piece.
      expect(whole[0]!.length).toBe(2 * G);
      const d = new BaoDecoder(hashBuffer(data), n);
      const first = enc.subarray(0, 3 * 64 + G + 100);
      expect(Buffer.concat(d.push(first)).equals(data.subarray(0, G))).toBe(true);
      const rest = d.push(enc.subarray(first.length));
      expect(rest[0]!.buffer).not.toBe(enc.buffer); // the group split between the pushes
      expect(Buffer.concat(rest).equals(data.subarray(G))).toBe(true);
    });

    it('a flipped bit anywhere in the encoding is caught before its content is released', () => {
      const n = 9 * G + 7;
      const data = bytesOf(n);
      const digest = hashBuffer(data);
      const enc = baoEncodeCombined(data);
      const r = rng(3);
      for (let k = 0; k < 40; k++) {
        const at = Math.floor(r() * enc.length);
        const d = new BaoDecoder(digest, n);
        const out: Buffer[] = [];
        const bad = flip(enc, at, k % 8);
        expect(() => {
          for (let o = 0; o < bad.length; o += 1000) out.push(...d.push(bad.subarray(o, Math.min(bad.length, o + 1000))));
        }).toThrow(/does not match/);
        // What was released is a true prefix of the content.
        const got = Buffer.concat(out);
        expect(got.equals(data.subarray(0, got.length))).toBe(true);
      }
    });
  });
});
