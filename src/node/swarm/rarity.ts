// The pieces a node still wants, kept sorted by how many of its neighbours
// hold each (rarest first), updated in O(1) per "have": libtorrent's piece
// picker keeps its pieces the same way. Pieces of equal availability stay
// in the random order each node starts with, so a crowd does not all chase
// the same rare piece.

export class RarityOrder {
  private readonly order: Int32Array;
  private readonly pos: Int32Array;
  private readonly avail: Int32Array;
  /** start[a] = index of the first wanted piece held by a neighbours; start[top + 1] = wanted count. */
  private readonly start: number[];
  private wanted: number;

  constructor(pieces: number, random: () => number = Math.random) {
    this.order = new Int32Array(pieces);
    this.pos = new Int32Array(pieces);
    this.avail = new Int32Array(pieces);
    for (let i = 0; i < pieces; i++) this.order[i] = i;
    for (let i = pieces - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      const t = this.order[i]!;
      this.order[i] = this.order[j]!;
      this.order[j] = t;
    }
    for (let i = 0; i < pieces; i++) this.pos[this.order[i]!] = i;
    this.wanted = pieces;
    this.start = [0, pieces];
  }

  /** How many wanted pieces remain. */
  get length(): number {
    return this.wanted;
  }

  /** The wanted piece at rank i (0 = rarest). */
  at(i: number): number {
    return this.order[i]!;
  }

  /** Rank of the first wanted piece that at least `a` neighbours hold. */
  firstWithAvailability(a: number): number {
    return a < this.start.length ? this.start[a]! : this.wanted;
  }

  availability(piece: number): number {
    return this.avail[piece]!;
  }

  isWanted(piece: number): boolean {
    return this.pos[piece]! >= 0;
  }

  /** One more neighbour holds `piece`. */
  increment(piece: number): void {
    const a = this.avail[piece]!;
    this.avail[piece] = a + 1;
    if (this.pos[piece]! < 0) return;
    if (a + 2 >= this.start.length) this.start.push(this.wanted);
    // Swap to the end of bucket a, then move the boundary down over it.
    this.swap(piece, this.order[this.start[a + 1]! - 1]!);
    this.start[a + 1]!--;
  }

  /** One fewer neighbour holds `piece` (it left). */
  decrement(piece: number): void {
    const a = this.avail[piece]!;
    if (a === 0) throw new RangeError(`piece ${piece} has no holder to lose`);
    this.avail[piece] = a - 1;
    if (this.pos[piece]! < 0) return;
    this.swap(piece, this.order[this.start[a]!]!);
    this.start[a]!++;
  }

  /** The node holds `piece` now: it is no longer wanted. */
  remove(piece: number): void {
    if (this.pos[piece]! < 0) return;
    const top = this.start.length - 2;
    // Walk it up through the buckets to the very end, then drop the end.
    for (let a = this.avail[piece]!; a <= top; a++) {
      this.swap(piece, this.order[this.start[a + 1]! - 1]!);
      if (a < top) this.start[a + 1]!--;
    }
    this.wanted--;
    this.start[top + 1] = this.wanted;
    this.pos[piece] = -1;
  }

  private swap(p: number, q: number): void {
    const i = this.pos[p]!;
    const j = this.pos[q]!;
    this.order[i] = q;
    this.order[j] = p;
    this.pos[p] = j;
    this.pos[q] = i;
  }
}
