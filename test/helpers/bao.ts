// Shared by the Bao specs (test/node/bao*.spec.ts): deterministic bytes,
// a seeded PRNG, bit flips, and an independent model of the tree's shape.
import { createCipheriv, createHash } from 'node:crypto';
import { baoGroupBytes } from '../../src/lib/bao.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const G = baoGroupBytes(); // 16 KiB

/** Deterministic bytes (AES-128-CTR of zeros, keyed by the seed), so a failure can be replayed. */
export function bytesOf(n: number, seed = 'bao'): Buffer {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(n));
}

/** A small seeded PRNG (mulberry32) for sizes, cut points and orders. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function flip(buf: Uint8Array, byte: number, bit = 0): Buffer {
  const b = Buffer.from(buf);
  b[byte] = b[byte]! ^ (1 << bit);
  return b;
}

/** Whole-group ranges of a blob: [offset, end) of each group. */
export function groups(size: number, g = G): [number, number][] {
  const r: [number, number][] = [];
  for (let o = 0; o < Math.max(size, 1); o += g) r.push([o, Math.min(size, o + g)]);
  return r;
}

/**
 * An independent model of the outboard's pre-order: for each parent, the
 * groups its subtree covers (the left child of m groups holds the largest
 * power of two below m).
 */
export function parentSpans(nGroups: number): [number, number][] {
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

/** Sizes around every edge: empty, one chunk, one group, several groups, large. */
export const SIZES = [0, 1, 1023, 1024, 1025, 2048, 16 * KiB - 1, 16 * KiB, 16 * KiB + 1, 5 * G + 3, MiB + 7];
