// Which pieces of one tree's pack a node holds: one bit per piece, so the
// whole set of a 3 GB tree in 4 MiB pieces is 94 bytes on the gossip mesh
// (what BitTorrent calls a bitfield).

export class PieceSet {
  private readonly bits: Uint8Array;
  private held = 0;

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 0) throw new RangeError(`piece count must be a whole number ≥ 0, not ${size}`);
    this.bits = new Uint8Array((size + 7) >> 3);
  }

  /** A set holding every piece (a node with the whole tree). */
  static full(size: number): PieceSet {
    const s = new PieceSet(size);
    for (let i = 0; i < size; i++) s.add(i);
    return s;
  }

  /** Decodes `encode()`'s bytes; throws on a length that does not fit `size` or bits past its end. */
  static decode(size: number, bytes: Uint8Array): PieceSet {
    const s = new PieceSet(size);
    if (bytes.length !== s.bits.length) throw new RangeError(`piece set of ${size} pieces needs ${s.bits.length} bytes, got ${bytes.length}`);
    const spare = s.bits.length * 8 - size;
    if (spare > 0 && (bytes[bytes.length - 1]! & ((1 << spare) - 1)) !== 0) throw new RangeError('piece set has bits set past its last piece');
    s.bits.set(bytes);
    for (const b of bytes) s.held += popcount(b);
    return s;
  }

  has(piece: number): boolean {
    return (this.bits[piece >> 3]! & (0x80 >> (piece & 7))) !== 0;
  }

  /** Adds a piece; returns false when it was already there. */
  add(piece: number): boolean {
    if (!(piece >= 0 && piece < this.size)) throw new RangeError(`piece ${piece} is outside 0..${this.size - 1}`);
    const mask = 0x80 >> (piece & 7);
    if (this.bits[piece >> 3]! & mask) return false;
    this.bits[piece >> 3]! |= mask;
    this.held++;
    return true;
  }

  get count(): number {
    return this.held;
  }

  get complete(): boolean {
    return this.held === this.size;
  }

  /** The pieces held, in order. */
  *[Symbol.iterator](): IterableIterator<number> {
    for (let i = 0; i < this.size; i++) if (this.has(i)) yield i;
  }

  /** Most significant bit first, as BitTorrent's bitfield message. */
  encode(): Uint8Array {
    return this.bits.slice();
  }
}

function popcount(b: number): number {
  let n = 0;
  for (; b; b &= b - 1) n++;
  return n;
}
