// Verified streaming (src/lib/bao.ts, native/src/bao_*.cc): the outboard's
// tree must be BLAKE3's own (its root is the blob's digest; with 1 KiB
// groups it is byte for byte the Bao crate's outboard and combined
// encoding), every whole-group range must verify alone and in any order, a
// flipped bit must fail exactly the ranges that depend on it, and an
// in-order stream must verify as far as its whole groups go.
import { createCipheriv, createHash } from 'node:crypto';
import { truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  BAO_GROUP_LOG,
  BaoDecoder,
  BaoVerifier,
  baoAlignRange,
  baoEncode,
  baoEncodeCombined,
  baoGroupBytes,
  baoOutboard,
  baoOutboardFile,
  baoOutboardSize,
  baoVerifyRange,
} from '../../src/lib/bao.js';
import { hashBuffer } from '../../src/lib/digest.js';
import { hasCode } from '../../src/lib/errors.js';
import { tempDir } from '../helpers/tmp.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const G = baoGroupBytes(); // 16 KiB

/** Deterministic bytes (AES-128-CTR of zeros, keyed by the seed), so a failure can be replayed. */
function bytesOf(n: number, seed = 'bao'): Buffer {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(n));
}

/** A small seeded PRNG (mulberry32) for sizes, cut points and orders. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function flip(buf: Uint8Array, byte: number, bit = 0): Buffer {
  const b = Buffer.from(buf);
  b[byte] = b[byte]! ^ (1 << bit);
  return b;
}

/** Whole-group ranges of a blob: [offset, end) of each group. */
function groups(size: number, g = G): [number, number][] {
  const r: [number, number][] = [];
  for (let o = 0; o < Math.max(size, 1); o += g) r.push([o, Math.min(size, o + g)]);
  return r;
}

/**
 * An independent model of the outboard's pre-order: for each parent, the
 * groups its subtree covers (the left child of m groups holds the largest
 * power of two below m).
 */
function parentSpans(nGroups: number): [number, number][] {
  const spans: [number, number][] = [];
  const walk = (g0: number, m: number): void => {
    if (m === 1) return;
    let l = 1;
    while (l * 2 < m) l *= 2;
    spans.push([g0, g0 + m]);
    walk(g0, l);
    walk(g0 + l, m - l);
  };
  walk(0, nGroups);
  return spans;
}

const SIZES = [0, 1, 1023, 1024, 1025, 2048, 16 * KiB - 1, 16 * KiB, 16 * KiB + 1, 5 * G + 3, MiB + 7];

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

// The Bao crate's tests/test_vectors.json (github.com/oconnor663/bao,
// generated by its generate_vectors.py): input length, the hash, the
// BLAKE3 of the outboard encoding, the BLAKE3 of the combined encoding.
// Bao's encodings are ours with 1 KiB groups (groupLog 0) behind an
// 8-byte little-endian length.
const BAO_VECTORS: [number, string, string, string][] = [
  [0, 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262', '71e0a99173564931c0b8acc52d2685a8e39c64dc52e3d02390fdac2a12b155cb', '71e0a99173564931c0b8acc52d2685a8e39c64dc52e3d02390fdac2a12b155cb'],
  [1, '48fc721fbbc172e0925fa27af1671de225ba927134802998b10a1568a188652b', '1a0d12016999e47689dae5744d2b8c1903faf7ca2886a658150083100ef2c8ee', 'fa1fd2786e8860a7aa94276683579b3ed999ebdc2257a924811c4bcdbe5ee9f4'],
  [1023, '15f8c1ae1049fe7e837186612c8ce732e66835841a4569b71e4ac3e3d3411b90', '044eb61340254eec36c5e66bf8fed9275fef9ad1894f8ae55221a98d5e25e255', '94c16da9b8aab7077c49f73658b3d522c55f5cf94f9a22e1c91f7e2e75953803'],
  [1024, 'f749c19181983b839cd97fe121cebaf076bc951e8c8e6d64accfedad5951ec22', 'd27e778a2b838caf6be23c7528e6f1f7beb6bff048f9cf9a8fdb2767c74215b3', '62881f0fbd8b62d69f23b75abe62f4c56874a58699ff6741686f40dfcc20f05e'],
  [1025, '3613596275c4ea790774dedf20835b2daf86cacc892feef6ce720c121572f1f9', '025f630e00fbdcc023b970c9f1f21016c56c0a34e384e712c66428bf1c7999b9', '04a7fc9414f25fbb4529968d4eb32e569691ad3517f45fa736cfddaed99d66f5'],
  [2047, '89cc9b9cf2a83f03b22983c8bd7f2df392f5c1966f0e221db9ab396f7043c4d7', 'f281b8a95b6c5eaea8e86732d24c88aa407df10295709e419772d615028b40a0', '7b74fc273e48f75185f87e9574edcf286eb267be463c056c93c39728b18d250d'],
  [2048, 'fed8b40d6095dc7c5061f9cd832fd192337473bd392bf6f6bbaf1261ea78f8fa', '55546b68936932ac03d2a01de41517c287ddd68b79715ef892a636dc38292a90', 'd1c5ba94d24e1e3005685e53521b6110c1b16cb675f8c1a6ba95d3cca111fb15'],
  [2049, '64770fa15a4bbe7770654c4ac68ed4f0e975ad6c85b5edb4d3db3b4b604e084e', 'f2afc0716690e8513d8697e3e75f5c3532d51e0c704416e7fb0bbf7c0abfb57e', 'd9ea16809c9a8a86481b09799c8a71e58a1f48a9eec2f85a17a61005229c0de8'],
  [3071, '3bf36194161a10a32843a84568d0ce0a524b3bc6182abc492ddaaa3dae785279', '2dba3a5aa0e356e279760280e147245429d6360581b0eb5c7e0b9c265d915b2c', 'd5e69f5c15b39fd840f3e18cf732d5682d0327391178c7fc9f04ec6dcb83be52'],
  [3072, '9748169f2aa70258d18cef6dc6b4b4511265e268e85f73dcbea6e34ab0341da1', '4dd51a45418589b1d12a183f80e3e3ba39b200094287c6e07f489def70a42e48', '954bd49159ed95edb871fc9d7bc5388ed3dc31e68e1347e999ecea8c0a9d7737'],
  [3073, '5ba075072daba2470558a171e3769fba057dc3f12375c60892bdbe73348d9fd1', 'fa89135a2c00ff1a073321ed79fd17b9fdd53c2d2549236cd8d796232a89dc83', 'a49213d8e20de518bc871dd2d6e51569279b9f7639dc5f7fa6510c86fb7b8eba'],
  [11264, '69fa39c8ab837dbb9e419c66a3ab7014ce9f86dba55935936b4c38cfcbc4d5f6', '651f08a23902499142f6a28fadb99a8cba2bc32fbefe5237fd3a9cb5edec70da', '1bffa084b6811992e88fd0d57f0091de2fe883c4a54348149b741afeb266f874'],
  [13312, '3e88d1dd20f426640077dcf82d6d4e18ee0062aa72f8ae547a0e65fcd36a0f06', 'ad01dbb6b7d0fefd1f8e52783d6212856546f382b815a7c370377bc79e0bd41a', 'e5ca844ba6ac49fad8f888b63b437d7d25ee15d80a7bc01edac16f78e2a65271'],
];

/** The vectors' input: a 4-byte little-endian counter from 1. */
function baoInput(n: number): Buffer {
  const b = Buffer.alloc(n + 4);
  for (let i = 0; i * 4 < n; i++) b.writeUInt32LE(i + 1, i * 4);
  return b.subarray(0, n);
}

function lengthHeader(n: number): Buffer {
  const h = Buffer.alloc(8);
  h.writeBigUInt64LE(BigInt(n));
  return h;
}

describe('the Bao test vectors (1 KiB groups)', () => {
  it.each(BAO_VECTORS)('input of %i bytes: hash, outboard and combined encoding', (n, hash, outboardHash, combinedHash) => {
    const data = baoInput(n);
    const enc = baoEncode(data, 0);
    expect(enc.digest).toBe(hash);
    expect(hashBuffer(Buffer.concat([lengthHeader(n), enc.outboard]))).toBe(outboardHash);
    const combined = baoEncodeCombined(data, 0);
    expect(hashBuffer(Buffer.concat([lengthHeader(n), combined]))).toBe(combinedHash);
    expect(Buffer.concat(new BaoDecoder(hash, n, 0).push(combined)).equals(data)).toBe(true);
  });

  // The vectors' corruption points: the first byte of every parent and of
  // every chunk. Each must make the whole blob fail.
  it.each(BAO_VECTORS.filter(([n]) => n > 0))('input of %i bytes: every corruption point is caught', (n, hash) => {
    const data = baoInput(n);
    const outboard = baoOutboard(data, 0);
    const chunks = groups(n, 1024);
    for (let p = 0; p < outboard.length; p += 64) {
      const bad = flip(outboard, p);
      // A parent vouches for the chunks under it: some chunk fails alone, and a stream of chunks stops.
      expect(chunks.some(([s, e]) => !baoVerifyRange(hash, n, bad, s, data.subarray(s, e), 0))).toBe(true);
      expect(() => {
        const v = new BaoVerifier(hash, n, bad, 0);
        for (const [s, e] of chunks) v.push(data.subarray(s, e));
      }).toThrow(/does not match/);
    }
    for (let c = 0; c < n; c += 1024) {
      expect(baoVerifyRange(hash, n, outboard, 0, flip(data, c), 0)).toBe(false);
      expect(() => new BaoVerifier(hash, n, outboard, 0).push(flip(data, c))).toThrow(/does not match/);
    }
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
