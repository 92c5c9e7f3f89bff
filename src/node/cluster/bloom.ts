// A Bloom filter over digests: the compact summary of its blobs a node
// announces to its peers ("may hold" / "surely lacks"). Digests are
// already uniform random bits, so the k bit positions are simply k
// 32-bit words of the digest, modulo the filter's size: no hashing.
import type { Digest } from '../../lib/digest.js';

/** Most bits a filter may have (256 KiB): an announcement must fit a gossip message. */
export const MAX_BLOOM_BITS = 1 << 21;
const MIN_BITS = 1 << 10;

export class Bloom {
  constructor(
    readonly bits: Buffer,
    readonly k: number,
  ) {
    if (bits.byteLength === 0 || (bits.byteLength & (bits.byteLength - 1)) !== 0) throw new Error('bloom: size must be a power of two bytes');
    if (!Number.isInteger(k) || k < 1 || k > 8) throw new Error('bloom: k must be 1..8');
  }

  /** A filter sized for `n` digests: ~10 bits each (1% false positives) up to MAX_BLOOM_BITS, then fewer. */
  static sized(n: number): Bloom {
    let m = MIN_BITS;
    while (m < n * 10 && m < MAX_BLOOM_BITS) m *= 2;
    const k = Math.max(1, Math.min(7, Math.round((m / Math.max(1, n)) * Math.LN2)));
    return new Bloom(Buffer.alloc(m / 8), k);
  }

  private positions(d: Digest, f: (bit: number) => boolean): boolean {
    const mask = this.bits.byteLength * 8 - 1;
    for (let i = 0; i < this.k; i++) {
      const word = parseInt(d.slice(i * 8, i * 8 + 8), 16);
      if (!f((word >>> 0) & mask)) return false;
    }
    return true;
  }

  add(d: Digest): void {
    this.positions(d, (b) => {
      this.bits[b >> 3]! |= 1 << (b & 7);
      return true;
    });
  }

  mayHave(d: Digest): boolean {
    return this.positions(d, (b) => ((this.bits[b >> 3]! >> (b & 7)) & 1) === 1);
  }
}
