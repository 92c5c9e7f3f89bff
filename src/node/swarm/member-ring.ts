// Who fetches which piece from the origin, decided with no coordinator:
// every member of a tree's swarm places itself on a hash ring (a few
// points each, for balance); the member after a piece's point is its
// primary, the next different member its secondary. Every node computes
// the same answer from the same member list, so a flash crowd takes about
// one copy of each piece from S3 (two if a primary dies or is slow), not
// one per node. Views that differ for a moment cost at most a few copies.

const POINTS_PER_MEMBER = 8;

/** A 32-bit mix of a string (FNV-1a, then murmur3's finalizer for spread). */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return fmix32(h);
}

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Where a piece of a tree sits on the ring (the tree's seed spreads trees apart). */
export function piecePoint(treeSeed: number, piece: number): number {
  return fmix32((treeSeed ^ Math.imul(piece + 1, 0x9e3779b1)) >>> 0);
}

interface Point {
  at: number;
  member: string;
}

export class MemberRing {
  private constructor(
    private readonly points: readonly Point[],
    /** How many members. */
    readonly size: number,
  ) {}

  static of(members: Iterable<string>): MemberRing {
    const unique = [...new Set(members)];
    return new MemberRing(unique.flatMap(pointsOf).sort(byPoint), unique.length);
  }

  /** This ring plus one member (a merge, not a rebuild: a fleet joins one at a time). */
  with(member: string): MemberRing {
    if (this.points.some((p) => p.member === member)) return this;
    const add = pointsOf(member).sort(byPoint);
    const out: Point[] = [];
    let i = 0;
    for (const p of this.points) {
      while (i < add.length && byPoint(add[i]!, p) < 0) out.push(add[i++]!);
      out.push(p);
    }
    while (i < add.length) out.push(add[i++]!);
    return new MemberRing(out, this.size + 1);
  }

  /** This ring without a member (it left or was found dead). */
  without(member: string): MemberRing {
    const out = this.points.filter((p) => p.member !== member);
    return out.length === this.points.length ? this : new MemberRing(out, this.size - 1);
  }

  /** 0 when `member` is the piece's primary, 1 its secondary, -1 neither (or not a member). */
  rank(member: string, point: number): 0 | 1 | -1 {
    const pts = this.points;
    const n = pts.length;
    if (n === 0) return -1;
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (pts[mid]!.at < point) lo = mid + 1;
      else hi = mid;
    }
    const first = pts[lo % n]!.member;
    if (first === member) return 0;
    for (let k = 1; k < n; k++) {
      const o = pts[(lo + k) % n]!.member;
      if (o !== first) return o === member ? 1 : -1;
    }
    return -1;
  }
}

function pointsOf(member: string): Point[] {
  return Array.from({ length: POINTS_PER_MEMBER }, (_, k) => ({ at: hash32(`${member}#${k}`), member }));
}

/** Ring order; ties (rare) broken by name so every node agrees. */
function byPoint(a: Point, b: Point): number {
  return a.at - b.at || (a.member < b.member ? -1 : a.member > b.member ? 1 : 0);
}
