// A tree's lazy index (docs/tree-format.md "Lazy index", docs/lazy.md): what
// a lazy mount needs to start without the tree's full listing. The listing
// holds a 32-byte digest per file, which no encoding shrinks; a mount needs
// the names at once and a file's digest only when the file is opened. So
// the index has three parts, all functions of the tree alone:
//
//   names    the listing without digests (names.ts), one blob;
//   digests  the files' digests in tree order, in pieces of PIECE_FILES,
//            each piece authenticated on its own by its BLAKE3 digest;
//   head     "VRIFTLZY" u16 version u16 flags u32 reserved          16
//            tree[32] names[32] u64 names bytes u32 files u32 piece  80
//            piece digests[32 each]
//
// The head's digest is what a signed ref names (its `lazy` field), so a
// reader holding a verified ref verifies the head, then the names and each
// piece of digests it reads. Where the tier keeps each blob (S3: the
// locator, src/tiers/s3/locator.ts) rides beside the digests unsigned: a
// blob's bytes are hashed before admission anyway.
import { hashBuffer, type Digest } from '../../lib/digest.js';
import type { Meta } from './meta.js';
import { encodeNames } from './names.js';
import type { TreeEntry } from './tree.js';

export const LAZY_MAGIC = Buffer.from('VRIFTLZY', 'latin1');
export const LAZY_VERSION = 1;
/** Files per piece of digests: a reader fetches and checks this many at once (with S3's 64-byte locator records, 4 KiB). */
export const PIECE_FILES = 64;
const HEAD = 96;
/** Pieces a head may list: 2^24 files, far beyond any tree a node mounts (a head read from a tier is bounded by this). */
export const MAX_PIECES = (1 << 24) / PIECE_FILES;
export const MAX_HEAD_BYTES = HEAD + 32 * MAX_PIECES;
/**
 * A locator record (S3's, src/tiers/s3/locator.ts has its layout): its
 * size, and the pack number of a blob kept as its own object. Here
 * because the tier writes them and the daemon's partial mounts read them.
 */
export const LOCATOR_RECORD = 64;
export const LOCATOR_LOOSE = 0xffffffff;

export interface LazyHead {
  tree: Digest;
  /** The names blob's digest and length (uncompressed). */
  names: Digest;
  namesBytes: number;
  /** File entries of the tree (the digests, in tree order). */
  files: number;
  /** Files per piece. */
  pieceFiles: number;
  /** Each piece's digest: BLAKE3 of its files' raw digests, concatenated. */
  pieces: Buffer[];
}

/** The lazy index of a tree, built by the writer from its entries (in tree order). */
export interface LazyIndex {
  /** The head's digest: what the ref names. */
  digest: Digest;
  head: Buffer;
  names: Buffer;
  /** The file entries, in tree order (ordinal = position here). */
  files: TreeEntry[];
}

/** Builds the lazy index of `tree` from its entries in tree order. */
export function buildLazyIndex(tree: Digest, sorted: readonly TreeEntry[]): LazyIndex {
  const names = encodeNames(sorted);
  const files = sorted.filter((e) => e.kind === 'file');
  const pieces: Buffer[] = [];
  for (let i = 0; i < files.length; i += PIECE_FILES) pieces.push(pieceDigest(files.slice(i, i + PIECE_FILES).map((e) => Buffer.from(e.digest!, 'hex'))));
  const head = encodeLazyHead({ tree, names: hashBuffer(names), namesBytes: names.byteLength, files: files.length, pieceFiles: PIECE_FILES, pieces });
  return { digest: hashBuffer(head), head, names, files };
}

/** BLAKE3 of a piece's raw digests, concatenated (in tree order). */
export function pieceDigest(digests: readonly Buffer[]): Buffer {
  return Buffer.from(hashBuffer(Buffer.concat(digests)), 'hex');
}

export function encodeLazyHead(h: LazyHead): Buffer {
  const b = Buffer.alloc(HEAD + 32 * h.pieces.length);
  LAZY_MAGIC.copy(b, 0);
  b.writeUInt16BE(LAZY_VERSION, 8);
  b.write(h.tree, 16, 32, 'hex');
  b.write(h.names, 48, 32, 'hex');
  b.writeBigUInt64BE(BigInt(h.namesBytes), 80);
  b.writeUInt32BE(h.files, 88);
  b.writeUInt32BE(h.pieceFiles, 92);
  h.pieces.forEach((p, i) => p.copy(b, HEAD + 32 * i));
  return b;
}

/**
 * Reads a head from a tier (untrusted): it must hash to `digest` (the
 * signed ref's `lazy`), name `tree` and be well formed. Returns it, or
 * why it is refused.
 */
export function decodeLazyHead(buf: Buffer, digest: Digest, tree: Digest): LazyHead | { problem: string } {
  if (hashBuffer(buf) !== digest) return { problem: 'its bytes do not hash to the digest the ref names' };
  if (buf.length < HEAD || !buf.subarray(0, 8).equals(LAZY_MAGIC)) return { problem: 'not a lazy index head (bad magic)' };
  if (buf.readUInt16BE(8) !== LAZY_VERSION) return { problem: `version ${buf.readUInt16BE(8)} (this vrift reads ${LAZY_VERSION})` };
  if (buf.readUInt16BE(10) !== 0 || buf.readUInt32BE(12) !== 0) return { problem: 'unknown flags' };
  const h: LazyHead = {
    tree: buf.toString('hex', 16, 48),
    names: buf.toString('hex', 48, 80),
    namesBytes: Number(buf.readBigUInt64BE(80)),
    files: buf.readUInt32BE(88),
    pieceFiles: buf.readUInt32BE(92),
    pieces: [],
  };
  if (h.tree !== tree) return { problem: `it indexes another tree (${h.tree.slice(0, 12)}…)` };
  if (h.pieceFiles !== PIECE_FILES) return { problem: `pieces of ${h.pieceFiles} files (this vrift reads ${PIECE_FILES})` };
  if (!Number.isSafeInteger(h.namesBytes)) return { problem: 'a names blob too large' };
  const count = Math.ceil(h.files / PIECE_FILES);
  if (buf.length !== HEAD + 32 * count) return { problem: `${buf.length} bytes do not hold the ${count} pieces of ${h.files} files` };
  for (let i = 0; i < count; i++) h.pieces.push(buf.subarray(HEAD + 32 * i, HEAD + 32 * (i + 1)));
  return h;
}

/** The files piece `k` covers: `[first, end)` ordinals. */
export function pieceRange(h: LazyHead, k: number): { first: number; end: number } {
  const first = k * h.pieceFiles;
  return { first, end: Math.min(h.files, first + h.pieceFiles) };
}

/** Whether `digests` (raw, one per file of piece `k`, in order) are the ones the head vouches for. */
export function pieceVerifies(h: LazyHead, k: number, digests: readonly Buffer[]): boolean {
  const { first, end } = pieceRange(h, k);
  if (k < 0 || k >= h.pieces.length || digests.length !== end - first || digests.some((d) => d.length !== 32)) return false;
  return pieceDigest(digests).equals(h.pieces[k]!);
}

// --- kept locally (a partial mount: src/node/ops/partial-tree.ts) -----------

/** A tree this node knows from its lazy index: the head, and the names blob (both in the CAS). */
export interface LocalLazyTree {
  lazy: Digest;
  names: Digest;
}

/** Notes that `tree` is known here from its lazy index (gc keeps what it fetched while the tree is pinned). */
export function rememberLazyTree(meta: Meta, tree: Digest, rec: LocalLazyTree): void {
  void meta.state.put(['lazy-tree', tree], rec);
}

/** The lazy index `tree` is known here from, if any. */
export function localLazyTree(meta: Meta, tree: Digest): LocalLazyTree | undefined {
  return meta.state.get(['lazy-tree', tree]) as LocalLazyTree | undefined;
}

/** Where a checked piece of digests is kept. */
export function pieceKey(lazy: Digest, k: number): [string, string] {
  return ['lazy-piece', `${lazy}:${k}`];
}

/** Every digest of the checked pieces of lazy index `lazy` kept here (raw pieces, 32 bytes a digest). */
export function* keptPieceDigests(meta: Meta, lazy: Digest): Generator<Digest> {
  for (const { value } of meta.state.getRange({ start: ['lazy-piece', `${lazy}:`], end: ['lazy-piece', `${lazy}:\uffff`] })) {
    const b = Buffer.from(value as Uint8Array);
    for (let i = 0; i + 32 <= b.length; i += 32) yield b.toString('hex', i, i + 32);
  }
}
