// The index of an S3 pack (docs/archive-format.md, "Pack index"): where
// each blob's bytes sit in the pack object, so one blob is one ranged GET
// instead of a download of the pack. A compressed pack is a run of
// independent zstd frames, cut only between blobs; the index lists the
// frames (where each starts in the object and in the archive) and the
// blobs (digest, offset of the content in the archive, size), the blobs
// sorted by digest so a lookup is a binary search in the raw bytes.
//
//   header  "VRIFTIDX" u16 version u16 flags u32 reserved               16
//           u64 archive bytes  u64 object bytes  u32 frames  u32 blobs  24
//   frames  u64 object offset  u64 archive offset (frame starts)    16 each
//   blobs   digest[32]  u64 content offset (archive)  u64 size       48 each
//
// An uncompressed pack has no frames: the object is the archive.
import type { Digest } from '../../lib/digest.js';
import { END_LEN, FRAME_LEN, HEADER_LEN } from '../../node/archive/format.js';

export const INDEX_MAGIC = Buffer.from('VRIFTIDX', 'latin1');
export const INDEX_VERSION = 1;
const HEAD = 40;
const FRAME = 16;
const BLOB = 48;

/**
 * Frames of a compressed pack hold blobs up to this many archive bytes;
 * a larger blob has a frame of its own. A ranged read of a small blob
 * therefore moves at most about this much (compressed), while frames stay
 * big enough for zstd to find repeats across neighbouring files.
 */
export const FRAME_TARGET = 64 << 10;

/** Where the blobs of a pack go in its archive, and where its frames end. */
export interface PackPlan {
  archiveBytes: number;
  /** In archive order: each blob's content offset. */
  blobs: { digest: Digest; offset: number; size: number }[];
  /** Archive offsets at which zstd frames end (ascending; the last is archiveBytes). */
  frameEnds: number[];
}

/** The layout of the archive of `blobs` (written in this order), with frames cut between blobs near `frameTarget` bytes. */
export function planPack(blobs: readonly { digest: Digest; size: number }[], frameTarget = FRAME_TARGET): PackPlan {
  const placed: PackPlan['blobs'] = [];
  const frameEnds: number[] = [];
  let pos = HEADER_LEN; // the header starts the first frame
  let frameStart = 0;
  let inFrame = 0; // blobs in the current frame
  for (const { digest, size } of blobs) {
    const len = FRAME_LEN + size;
    // Full: cut before this blob, so no frame but a lone blob's grows past the target.
    if (inFrame > 0 && pos - frameStart + len > frameTarget) {
      frameEnds.push(pos);
      frameStart = pos;
      inFrame = 0;
    }
    placed.push({ digest, offset: pos + FRAME_LEN, size });
    pos += len;
    inFrame++;
  }
  pos += END_LEN; // the end frame closes the last frame
  frameEnds.push(pos);
  return { archiveBytes: pos, blobs: placed, frameEnds };
}

/** A frame start: where it is in the object, and where its bytes belong in the archive. */
export interface PackFrame {
  objectOffset: number;
  archiveOffset: number;
}

/** The index of a pack: `frames` for a compressed one (in order, from the compressor), none for one stored as is. */
export function encodePackIndex(plan: PackPlan, objectBytes: number, frames: readonly PackFrame[] = []): Buffer {
  const b = Buffer.alloc(HEAD + FRAME * frames.length + BLOB * plan.blobs.length);
  INDEX_MAGIC.copy(b, 0);
  b.writeUInt16BE(INDEX_VERSION, 8);
  b.writeBigUInt64BE(BigInt(plan.archiveBytes), 16);
  b.writeBigUInt64BE(BigInt(objectBytes), 24);
  b.writeUInt32BE(frames.length, 32);
  b.writeUInt32BE(plan.blobs.length, 36);
  let at = HEAD;
  for (const f of frames) {
    b.writeBigUInt64BE(BigInt(f.objectOffset), at);
    b.writeBigUInt64BE(BigInt(f.archiveOffset), at + 8);
    at += FRAME;
  }
  for (const x of [...plan.blobs].sort((p, q) => (p.digest < q.digest ? -1 : p.digest > q.digest ? 1 : 0))) {
    b.write(x.digest, at, 32, 'hex');
    b.writeBigUInt64BE(BigInt(x.offset), at + 32);
    b.writeBigUInt64BE(BigInt(x.size), at + 40);
    at += BLOB;
  }
  return b;
}

/** The bytes of the pack object to read for one blob: `[start, end)`, then `skip` bytes of what they decode to, then `size`. */
export interface BlobRange {
  start: number;
  end: number;
  /** The range is zstd frames: decompress, then skip. */
  compressed: boolean;
  skip: number;
  size: number;
  /** Bytes `[start, end)` decode to, as the index gives them: a range that inflates to more is damaged (or a bomb). */
  decoded: number;
  /** Where in the archive the bytes `[start, end)` decode to begin (a frame's start; uncompressed: the blob's content). */
  archiveStart: number;
}

/** A pack index read from a tier: checked whole when read (it comes from outside), then looked up in place. */
export class PackIndex {
  readonly archiveBytes: number;
  readonly objectBytes: number;
  readonly frameCount: number;
  readonly blobCount: number;

  private constructor(private readonly buf: Buffer) {
    this.archiveBytes = u64(buf, 16);
    this.objectBytes = u64(buf, 24);
    this.frameCount = buf.readUInt32BE(32);
    this.blobCount = buf.readUInt32BE(36);
  }

  get byteLength(): number {
    return this.buf.byteLength;
  }

  /** Reads and checks an index; throws an Error saying what is wrong. */
  static decode(buf: Buffer): PackIndex {
    if (buf.length < HEAD || !buf.subarray(0, 8).equals(INDEX_MAGIC)) throw new Error('not a pack index (bad magic)');
    if (buf.readUInt16BE(8) !== INDEX_VERSION) throw new Error(`index version ${buf.readUInt16BE(8)} (this vrift reads ${INDEX_VERSION})`);
    if (buf.readUInt16BE(10) !== 0 || buf.readUInt32BE(12) !== 0) throw new Error('unknown index flags');
    const ix = new PackIndex(buf);
    if (buf.length !== HEAD + FRAME * ix.frameCount + BLOB * ix.blobCount) throw new Error(`${buf.length} bytes do not hold ${ix.frameCount} frames and ${ix.blobCount} blobs`);
    if (ix.frameCount === 0 && ix.objectBytes !== ix.archiveBytes) throw new Error('an uncompressed pack whose object is not its archive');
    for (let i = 0; i < ix.frameCount; i++) {
      const o = ix.frameObject(i);
      const a = ix.frameArchive(i);
      const first = i === 0;
      if (first ? o !== 0 || a !== 0 : o <= ix.frameObject(i - 1) || a <= ix.frameArchive(i - 1)) throw new Error(`frame ${i} does not follow the one before`);
      if (o >= ix.objectBytes || a >= ix.archiveBytes) throw new Error(`frame ${i} starts past the end of the pack`);
    }
    // (A cold lazy mount loads this while its listing arrives: no BigInt and no native call per blob.)
    const digests = HEAD + FRAME * ix.frameCount;
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    for (let i = 0; i < ix.blobCount; i++) {
      const at = digests + BLOB * i;
      if (i > 0 && !digestAbove(dv, at - BLOB, at)) throw new Error('blobs are not sorted by digest');
      const offset = u64Fast(dv, buf, at + 32);
      const size = u64Fast(dv, buf, at + 40);
      if (offset < HEADER_LEN + FRAME_LEN || offset + size > ix.archiveBytes - END_LEN) throw new Error(`blob ${buf.toString('hex', at, at + 32)} lies outside the archive`);
    }
    return ix;
  }

  /** Where blob `digest` is, or undefined when this pack does not hold it. */
  locate(digest: Digest): BlobRange | undefined {
    const at = this.find(Buffer.from(digest, 'hex'));
    if (at === undefined) return undefined;
    const offset = u64(this.buf, at + 32);
    const size = u64(this.buf, at + 40);
    if (this.frameCount === 0) return { start: offset, end: offset + size, compressed: false, skip: 0, size, decoded: size, archiveStart: offset };
    const first = this.frameAt(offset);
    const last = this.frameAt(Math.max(offset, offset + size - 1));
    const end = last + 1 < this.frameCount ? this.frameObject(last + 1) : this.objectBytes;
    const decodedEnd = last + 1 < this.frameCount ? this.frameArchive(last + 1) : this.archiveBytes;
    return { start: this.frameObject(first), end, compressed: true, skip: offset - this.frameArchive(first), size, decoded: decodedEnd - this.frameArchive(first), archiveStart: this.frameArchive(first) };
  }

  has(digest: Digest): boolean {
    return this.find(Buffer.from(digest, 'hex')) !== undefined;
  }

  /** Byte offset of the blob entry for `key`, by binary search. */
  private find(key: Buffer): number | undefined {
    const base = HEAD + FRAME * this.frameCount;
    let lo = 0;
    let hi = this.blobCount - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const at = base + BLOB * mid;
      const c = this.buf.compare(key, 0, 32, at, at + 32);
      if (c === 0) return at;
      if (c < 0) lo = mid + 1;
      else hi = mid - 1;
    }
    return undefined;
  }

  /** The last frame starting at or before archive offset `offset`. */
  private frameAt(offset: number): number {
    let lo = 0;
    let hi = this.frameCount - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.frameArchive(mid) <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  private frameObject(i: number): number {
    return u64(this.buf, HEAD + FRAME * i);
  }

  private frameArchive(i: number): number {
    return u64(this.buf, HEAD + FRAME * i + 8);
  }
}

/** A u64 that must fit a JavaScript number (a larger one is a damaged index). */
function u64(b: Buffer, at: number): number {
  const v = b.readBigUInt64BE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`a number in the index is too large (${v})`);
  return Number(v);
}

/** u64, as u64() reads it, without a BigInt. */
function u64Fast(dv: DataView, b: Buffer, at: number): number {
  const hi = dv.getUint32(at);
  if (hi > 0x1fffff) return u64(b, at); // past 2^53: u64 says so
  return hi * 2 ** 32 + dv.getUint32(at + 4);
}

/** Whether the 32-byte digest at `b` sorts strictly after the one at `a` (big-endian words compare as bytes do). */
function digestAbove(dv: DataView, a: number, b: number): boolean {
  for (let k = 0; k < 32; k += 4) {
    const x = dv.getUint32(a + k);
    const y = dv.getUint32(b + k);
    if (x !== y) return y > x;
  }
  return false;
}
