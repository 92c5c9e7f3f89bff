// How a tree's pack is cut into pieces, and how a piece is checked before
// it is kept or served on. Every piece has its own BLAKE3 digest; the list
// of them has one digest too, which the tree's pack index carries (so a
// node that trusts the index trusts every piece digest, and rejects a bad
// piece by itself, without the rest of the pack).
import { hashBuffer, type Digest } from '../../lib/digest.js';

const MIN_PIECE = 256 * 1024;
const MAX_PIECE = 4 * 1024 * 1024;
/** About this many pieces per tree: enough to spread a crowd, few enough to announce in a few hundred bytes. */
const TARGET_PIECES = 512;

/** Piece size for a pack of `total` bytes: a power of two from 256 KiB (or `min`) to 4 MiB (Kraken's), about `target` pieces. */
export function choosePieceBytes(total: number, opts: { min?: number; target?: number } = {}): number {
  if (!(Number.isSafeInteger(total) && total >= 0)) throw new RangeError(`pack size must be a whole number of bytes, not ${total}`);
  let size = opts.min ?? MIN_PIECE;
  while (size < MAX_PIECE && size * (opts.target ?? TARGET_PIECES) < total) size *= 2;
  return size;
}

export interface PieceList {
  /** Bytes in the whole pack. */
  total: number;
  pieceBytes: number;
  digests: Digest[];
}

export function pieceCount(total: number, pieceBytes: number): number {
  return Math.max(1, Math.ceil(total / pieceBytes));
}

/** The byte range [start, end) of one piece. */
export function pieceRange(list: Pick<PieceList, 'total' | 'pieceBytes'>, piece: number): [number, number] {
  const start = piece * list.pieceBytes;
  if (!(Number.isInteger(piece) && piece >= 0 && start < Math.max(1, list.total))) throw new RangeError(`piece ${piece} is outside a pack of ${list.total} bytes`);
  return [start, Math.min(list.total, start + list.pieceBytes)];
}

/** Cuts a pack into pieces and digests each (what `vrift save` would store beside the pack index). */
export function buildPieceList(pack: Uint8Array, pieceBytes = choosePieceBytes(pack.length)): PieceList {
  const list: PieceList = { total: pack.length, pieceBytes, digests: [] };
  for (let p = 0; p < pieceCount(pack.length, pieceBytes); p++) list.digests.push(hashBuffer(pack.subarray(...pieceRange(list, p))));
  return list;
}

/** The digest the pack index carries for the list: of its sizes and every piece digest, in order. */
export function pieceListDigest(list: PieceList): Digest {
  return hashBuffer(Buffer.from(`vrift-pieces-v1 ${list.total} ${list.pieceBytes} ${list.digests.join(' ')}`));
}

/** Whether `bytes` are exactly piece `piece` of the list. */
export function verifyPiece(list: PieceList, piece: number, bytes: Uint8Array): boolean {
  const [start, end] = pieceRange(list, piece);
  return bytes.length === end - start && hashBuffer(bytes) === list.digests[piece];
}
