// Verified streaming (src/lib/bao.ts, native/src/bao_*.cc), the outboard
// and ranges: the outboard's tree must be BLAKE3's own (its root is the
// blob's digest), every whole-group range must verify alone and in any
// order, and a flipped bit must fail exactly the ranges that depend on it.
// Streams: bao-stream.spec.ts; the Bao crate's vectors: bao-vectors.spec.ts.
import { truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BAO_GROUP_LOG, baoAlignRange, baoEncode, baoOutboard, baoOutboardFile, baoOutboardSize, baoVerifyRange } from '../../src/lib/bao.js';
import { hashBuffer } from '../../src/lib/digest.js';
import { hasCode } from '../../src/lib/errors.js';
import { bytesOf, flip, G, groups, KiB, MiB, parentSpans, rng, SIZES } from '../helpers/bao.js';
import { tempDir } from '../helpers/tmp.js';

describe('outboard', () => {
  const r = rng(12);
  const large = 3 * MiB + Math.floor(r() * MiB);

  it.each([...SIZES, large])('the root of the outboard tree is the digest of %i bytes', (n) => {
    const data = bytesOf(n);
    for (const groupLog of [0, 1, BAO_GROUP_LOG, 12]) {
      const enc = baoEncode(data, groupLog);
      expect(enc.digest).toBe(hashBuffer(data));
      expect(enc.outboard.length).toBe(baoOutboardSize(n, groupLog));
      expect(baoOutboard(data, groupLog).equals(enc.outboard)).toBe(true);
    }
  });

  it('is 64 bytes per 16 KiB group but one', () => {
    expect(baoOutboardSize(0)).toBe(0);
    expect(baoOutboardSize(16 * KiB)).toBe(0);
    expect(baoOutboardSize(16 * KiB + 1)).toBe(64);
    expect(baoOutboardSize(1 << 30)).toBe(((1 << 30) / G - 1) * 64);
  });

  describe('of a file, on native threads', () => {
    let dir: string;
    beforeAll(() => {
      dir = tempDir('bao-file');
    });

    // 4 MiB is the size of one thread's task: below, at and across it.
    it.each([0, 1, 5 * G + 3, 4 * MiB, 8 * MiB, 12 * MiB + 5])('matches the in-memory outboard for %i bytes', async (n) => {
      const data = bytesOf(n, 'file');
      const path = join(dir, `blob-${n}`);
      writeFileSync(path, data);
      for (const threads of [1, 3]) {
        for (const groupLog of [0, BAO_GROUP_LOG]) {
          const enc = await baoOutboardFile(path, { threads, groupLog });
          expect(enc.size).toBe(n);
          expect(enc.digest).toBe(hashBuffer(data));
          expect(enc.outboard.equals(baoOutboard(data, groupLog))).toBe(true);
        }
      }
    });

    it('survives a file truncated while it is read: an error, or the outboard of what was there', async () => {
      const path = join(dir, 'shrinking');
      const n = 64 * MiB;
      const data = bytesOf(n, 'shrink');
      const seen: string[] = [];
      // Cut at different moments of the read: before it, and (likely) under a mapping.
      for (const delayMs of [0, 2, 5, 10]) {
        writeFileSync(path, data);
        const short = n / 2 + delayMs * 1000;
        const pending = baoOutboardFile(path, { threads: 1 }).then(
          (enc) => enc,
          (e: unknown) => e,
        );
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        truncateSync(path, short);
        const r = await pending;
        if (hasCode(r, 'ERR_VRIFT_BAO_CHANGED')) {
          seen.push('changed');
          continue;
        }
        // Either it read the file after the cut (the outboard of the short file) or all of it before.
        const enc = r as Awaited<ReturnType<typeof baoOutboardFile>>;
        seen.push(enc.size === n ? 'before' : 'after');
        expect(enc.digest).toBe(hashBuffer(data.subarray(0, enc.size)));
        expect([n, short]).toContain(enc.size);
      }
      expect(seen).toHaveLength(4);
    });

    it('reports a missing file with its errno', async () => {
      await expect(baoOutboardFile(join(dir, 'absent'))).rejects.toMatchObject({ code: 'ENOENT' });
    });
  });
});

describe('ranges', () => {
  const cases = [...SIZES, 37 * G + 100, 64 * G];

  it.each(cases)('every group of %i bytes verifies alone', (n) => {
    const data = bytesOf(n);
    const { outboard, digest } = baoEncode(data);
    for (const [s, e] of groups(n)) expect(baoVerifyRange(digest, n, outboard, s, data.subarray(s, e))).toBe(true);
  });

  it('every run of whole groups verifies, and the blob whole', () => {
    const n = 13 * G + 77;
    const data = bytesOf(n);
    const { outboard, digest } = baoEncode(data);
    const gs = groups(n);
    for (let i = 0; i < gs.length; i++) {
      for (let j = i; j < gs.length; j++) {
        const s = gs[i]![0], e = gs[j]![1];
        expect(baoVerifyRange(digest, n, outboard, s, data.subarray(s, e))).toBe(true);
      }
    }
  });

  it('verify in any order, each on its own', () => {
    const r = rng(7);
    const n = 200 * G + 1234;
    const data = bytesOf(n);
    const { outboard, digest } = baoEncode(data);
    const gs = groups(n);
    for (let i = gs.length - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [gs[i], gs[j]] = [gs[j]!, gs[i]!];
    }
    for (const [s, e] of gs) expect(baoVerifyRange(digest, n, outboard, s, data.subarray(s, e))).toBe(true);
  });

  it('a flipped content bit fails exactly the ranges holding it', () => {
    const n = 21 * G + 5;
    const data = bytesOf(n);
    const { outboard, digest } = baoEncode(data);
    for (const at of [0, G - 1, 7 * G + 300, n - 1]) {
      const bad = flip(data, at, 3);
      for (const [s, e] of groups(n)) expect(baoVerifyRange(digest, n, outboard, s, bad.subarray(s, e))).toBe(!(s <= at && at < e));
      expect(baoVerifyRange(digest, n, outboard, 0, bad)).toBe(false);
    }
  });

  it('a flipped outboard bit fails exactly the groups under that parent', () => {
    const n = 21 * G + 5;
    const nGroups = 22;
    const data = bytesOf(n);
    const { outboard, digest } = baoEncode(data);
    const spans = parentSpans(nGroups);
    expect(spans.length * 64).toBe(outboard.length);
    for (const [k, [g0, g1]] of spans.entries()) {
      for (const byte of [k * 64, k * 64 + 40]) {
        const bad = flip(outboard, byte, 5);
        for (const [i, [s, e]] of groups(n).entries()) expect(baoVerifyRange(digest, n, bad, s, data.subarray(s, e))).toBe(!(g0 <= i && i < g1));
      }
    }
    // A range covering a parent's whole subtree needs none of the parents
    // inside it (it is hashed whole), so only parents above it matter.
    expect(baoVerifyRange(digest, n, flip(outboard, 64), 0, data)).toBe(true);
    expect(baoVerifyRange(digest, n, flip(outboard, 0), 0, data)).toBe(true);
  });

  it('a wrong digest fails every range', () => {
    const n = 3 * G;
    const data = bytesOf(n);
    const { outboard } = baoEncode(data);
    const other = hashBuffer(Buffer.from('other'));
    for (const [s, e] of groups(n)) expect(baoVerifyRange(other, n, outboard, s, data.subarray(s, e))).toBe(false);
    expect(baoVerifyRange(other, 0, Buffer.alloc(0), 0, Buffer.alloc(0))).toBe(false);
    expect(baoVerifyRange(hashBuffer(Buffer.alloc(0)), 0, Buffer.alloc(0), 0, Buffer.alloc(0))).toBe(true);
  });

  it('refuses ranges that are not whole groups, and outboards of the wrong size', () => {
    const n = 3 * G + 10;
    const data = bytesOf(n);
    const { outboard, digest } = baoEncode(data);
    expect(() => baoVerifyRange(digest, n, outboard, 1, data.subarray(1, G))).toThrow(RangeError);
    expect(() => baoVerifyRange(digest, n, outboard, 0, data.subarray(0, G + 1))).toThrow(RangeError);
    expect(() => baoVerifyRange(digest, n, outboard, 3 * G, data.subarray(3 * G, n - 1))).toThrow(RangeError);
    expect(() => baoVerifyRange(digest, n, outboard, G, Buffer.alloc(0))).toThrow(RangeError);
    expect(() => baoVerifyRange(digest, n, outboard.subarray(64), 0, data)).toThrow(RangeError);
  });

  it('baoAlignRange rounds a read out to groups, within the blob', () => {
    const n = 3 * G + 10;
    expect(baoAlignRange(0, 1, n)).toEqual({ offset: 0, length: G });
    expect(baoAlignRange(G - 1, 2, n)).toEqual({ offset: 0, length: 2 * G });
    expect(baoAlignRange(3 * G + 5, 100, n)).toEqual({ offset: 3 * G, length: 10 });
    expect(baoAlignRange(n + 100, 1, n)).toEqual({ offset: 3 * G, length: 10 });
    expect(baoAlignRange(0, 0, 0)).toEqual({ offset: 0, length: 0 });
    const data = bytesOf(n);
    const { outboard, digest } = baoEncode(data);
    const a = baoAlignRange(G + 17, 2 * G, n);
    expect(baoVerifyRange(digest, n, outboard, a.offset, data.subarray(a.offset, a.offset + a.length))).toBe(true);
  });
});
