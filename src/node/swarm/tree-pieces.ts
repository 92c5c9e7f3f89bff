// How a tree is cut into pieces for a swarm, from the tree alone: every
// node that has the tree blob (verified against the tree id) computes the
// same pieces, so no piece list has to be made, stored or trusted.
//
// The tree's distinct file blobs, in tree order, are the byte space:
// - a blob of at least LARGE_BLOB bytes is cut into chunks of `pieceBytes`
//   (a power of two from 1 to 4 MiB, so whole Bao groups): each chunk
//   is a piece, verified on arrival against the blob's digest through its
//   Bao outboard (src/lib/bao.ts), before the rest of the blob is there;
// - smaller blobs are grouped whole, in order, into pieces of about
//   `pieceBytes` (a piece holds one blob larger than that alone): each
//   blob of a piece is hashed against its digest on arrival, and enters
//   the CAS at once.
// LARGE_BLOB is S3's loose-object size (s3.looseBlobBytes' default), so a
// chunk from the origin is one ranged GET of that object, and a group one
// ranged GET of the pack run that holds it.
import type { Digest } from '../../lib/digest.js';
import type { TreeEntry } from '../store/tree.js';
import { choosePieceBytes } from './piece-list.js';

/** Blobs of this size and more are cut into chunk pieces. */
export const LARGE_BLOB = 8 << 20;
/**
 * Pieces of 1 to 4 MiB, about 256 to a tree: each piece costs a request,
 * an answer, a file open and an S3 GET, which at 256 KiB (the
 * simulation's smallest) cost more than the bytes on loopback; 256 pieces
 * still spread a crowd of hundreds.
 */
const PIECE_CUT = { min: 1 << 20, target: 256 };
/** Changes whenever the rules above change: nodes with another layout do not swarm together. */
const LAYOUT_VERSION = 2;

export interface BlobRef {
  digest: Digest;
  size: number;
}

export type Piece =
  /** Whole small blobs, in tree order. */
  | { kind: 'blobs'; blobs: BlobRef[]; bytes: number }
  /** Bytes [offset, offset + bytes) of one large blob. */
  | { kind: 'chunk'; blob: BlobRef; offset: number; bytes: number };

export interface TreePieces {
  tree: Digest;
  pieceBytes: number;
  pieces: Piece[];
  /** Bytes of all pieces (the tree's distinct non-empty blobs). */
  totalBytes: number;
  /** Large blob → its pieces (first, count). */
  chunksOf: Map<Digest, { first: number; count: number; size: number }>;
  /** What two nodes compare before they swarm: same tree, same cut. */
  layout: string;
}

export function planPieces(tree: Digest, entries: readonly TreeEntry[]): TreePieces {
  const blobs: BlobRef[] = [];
  const seen = new Set<Digest>();
  let total = 0;
  for (const e of entries) {
    if (e.kind !== 'file' || e.size === 0 || seen.has(e.digest!)) continue;
    seen.add(e.digest!);
    blobs.push({ digest: e.digest!, size: e.size });
    total += e.size;
  }
  const pieceBytes = choosePieceBytes(total, PIECE_CUT);
  const pieces: Piece[] = [];
  const chunksOf = new Map<Digest, { first: number; count: number; size: number }>();
  let group: BlobRef[] = [];
  let groupBytes = 0;
  const flush = () => {
    if (group.length > 0) pieces.push({ kind: 'blobs', blobs: group, bytes: groupBytes });
    group = [];
    groupBytes = 0;
  };
  for (const b of blobs) {
    if (b.size >= LARGE_BLOB) {
      flush();
      const first = pieces.length;
      for (let off = 0; off < b.size; off += pieceBytes) pieces.push({ kind: 'chunk', blob: b, offset: off, bytes: Math.min(pieceBytes, b.size - off) });
      chunksOf.set(b.digest, { first, count: pieces.length - first, size: b.size });
      continue;
    }
    if (groupBytes > 0 && groupBytes + b.size > pieceBytes) flush();
    group.push(b);
    groupBytes += b.size;
  }
  flush();
  return { tree, pieceBytes, pieces, totalBytes: total, chunksOf, layout: `v${LAYOUT_VERSION}/${pieceBytes}/${pieces.length}/${total}` };
}

/** The largest piece of a layout (what a receiver may have to hold at once). */
export function largestPiece(t: TreePieces): number {
  let max = 0;
  for (const p of t.pieces) max = Math.max(max, p.bytes);
  return max;
}
