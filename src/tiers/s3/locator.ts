// S3's part of a tree's lazy index (docs/tree-format.md "Lazy index"):
// the locator, `lazy/<head>.loc`, one 64-byte record per file entry of the
// tree in tree order, so the record of file ordinal n is bytes
// [64n, 64n+64) and a reader fetches a piece of records by one ranged GET:
//
//   digest[32]                       the file's digest (checked by piece
//                                    against the signed head: lazy-index.ts)
//   u32 pack  u32 skip               the pack (its place in the tree's
//   u64 start u32 length u32 decoded manifest) and the ranged read of its
//   u64 size                         frames, as PackIndex.locate gives it
//
// pack LOOSE: the blob is its own object (`blobs/<digest>`); NONE: no
// indexed pack lists it (read as before: the tree's archives). Locations
// are not signed: they only say where to look, and whatever is read there
// is hashed against the (signed) digest before it is admitted.
import type { Digest } from '../../lib/digest.js';
import { LOCATOR_LOOSE, LOCATOR_RECORD } from '../../node/store/lazy-index.js';
import type { TreeEntry } from '../../node/store/tree.js';
import { FRAME_TARGET, type BlobRange, type PackIndex } from './pack-index.js';
import type { PackRef } from './pack-manifest.js';

export const RECORD = LOCATOR_RECORD;
export const LOOSE = LOCATOR_LOOSE;
export const NONE = 0xfffffffe;

/** Where the lazy index with head `head` keeps its parts. */
export const lazyKeys = (head: Digest) => ({ head: `lazy/${head}`, names: `lazy/${head}.names.zst`, locator: `lazy/${head}.loc` });

/** The locator of `files` (tree order): each located in the first of `packs` whose index lists it, else loose when at least `looseBytes`. */
export function encodeLocator(files: readonly TreeEntry[], packs: readonly PackRef[], indexes: readonly (PackIndex | undefined)[], looseBytes: number): Buffer {
  const b = Buffer.alloc(RECORD * files.length);
  files.forEach((e, i) => {
    const at = RECORD * i;
    b.write(e.digest!, at, 32, 'hex');
    let pack = NONE;
    let range: BlobRange | undefined;
    for (let p = 0; p < packs.length && !range; p++) if ((range = indexes[p]?.locate(e.digest!))) pack = p;
    if (!range && e.size >= looseBytes) pack = LOOSE;
    b.writeUInt32BE(pack, at + 32);
    b.writeBigUInt64BE(BigInt(e.size), at + 56);
    if (!range) return;
    b.writeUInt32BE(range.skip, at + 36);
    b.writeBigUInt64BE(BigInt(range.start), at + 40);
    b.writeUInt32BE(range.end - range.start, at + 48);
    b.writeUInt32BE(range.decoded, at + 52);
  });
  return b;
}

/** One file's place, read from a locator record (after its piece verified). */
export type Location = { kind: 'pack'; pack: PackRef; range: BlobRange } | { kind: 'loose' } | { kind: 'none' };

/**
 * The location in the record at `at` of `buf`, for a file of `size` bytes
 * (the names blob's, signed) among the tree's `packs`; a record that does
 * not fit them is read as `none` (the file is then found as before).
 */
export function decodeLocation(buf: Buffer, at: number, size: number, packs: readonly PackRef[]): Location {
  const pack = buf.readUInt32BE(at + 32);
  if (Number(buf.readBigUInt64BE(at + 56)) !== size) return { kind: 'none' };
  if (pack === LOOSE) return { kind: 'loose' };
  const p = packs[pack];
  if (!p?.index) return { kind: 'none' };
  const skip = buf.readUInt32BE(at + 36);
  const start = Number(buf.readBigUInt64BE(at + 40));
  const length = buf.readUInt32BE(at + 48);
  const decoded = buf.readUInt32BE(at + 52);
  const compressed = p.compression === 'zstd';
  // A frame run holds the blob and at most a frame's worth of others (planPack): an unsigned record cannot make a read inflate more.
  if (!Number.isSafeInteger(start + length) || skip + size > decoded || decoded > size + FRAME_TARGET + (4 << 10)) return { kind: 'none' };
  if (!compressed && (skip !== 0 || decoded !== size || length !== size)) return { kind: 'none' };
  return { kind: 'pack', pack: p, range: { start, end: start + length, compressed, skip, size, decoded, archiveStart: compressed ? 0 : start } };
}
