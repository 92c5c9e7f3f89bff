// A tree's names blob (docs/tree-format.md "Lazy index"): the listing in
// tree order without the files' digests, so a lazy mount can publish every
// path, mode and size at once while moving ~8 bytes an entry instead of
// the listing's ~40 (its 32-byte digests do not compress). Each file
// entry's ordinal (its position among the tree's files) is how the rest of
// the lazy index (store/lazy-index.ts) and the times blob name it.
//
//   names = "vrift-names 1\n" *entry
//   entry = kind SP mode SP size SP path NUL [target NUL]
import { isUtf8 } from 'node:buffer';
import { LAYOUT } from '../../gen/layout.js';
import { VriftError } from '../../lib/errors.js';
import { loadNative } from '../../lib/native.js';
import { decodeTree, encodeSorted, type TreeEntry, type TreeSummary } from './tree.js';

export const NAMES_HEADER: string = LAYOUT.tree.namesHeader;
const TREE_HEADER: string = LAYOUT.tree.header;
const FILE: string = LAYOUT.tree.kindFile;
const SYMLINK: string = LAYOUT.tree.kindSymlink;
/** A file's digest when the names are read through decodeTree's checks (never published: the lazy index brings the real one). */
const PLACEHOLDER = '0'.repeat(64);

/** The names blob of entries already in tree order (as a tree's encoding, without the refs). */
export function encodeNames(sorted: readonly TreeEntry[]): Buffer {
  const tree = encodeSorted(sorted as TreeEntry[]);
  return withoutRefs(tree);
}

/**
 * Reads a names blob (untrusted until its digest is checked against a
 * verified head) with every rule of docs/tree-format.md; file entries come
 * back without a digest.
 */
export function decodeNames(buf: Buffer): TreeEntry[] {
  const entries = decodeTree(listingOfNames(buf));
  for (const e of entries) delete e.digest;
  return entries;
}

/**
 * Checks a names blob from anywhere with every rule of a tree (in the
 * addon, as checkEncodedTree checks a listing, without an object per
 * entry): its counts, and an index of its files by path and by ordinal.
 * Throws ERR_VRIFT_TREE_MALFORMED.
 */
export function checkNames(buf: Buffer): { summary: TreeSummary; files: NamesIndex } {
  utf8(buf);
  let checked: { counts: Float64Array; fileStarts: Uint32Array };
  try {
    checked = loadNative().checkNames(buf);
  } catch (e) {
    throw refused(e);
  }
  return indexed(buf, checked);
}

/** checkNames on the addon's worker thread (a lazy mount's names: the daemon's thread stays on the network). */
export async function checkNamesAsync(buf: Buffer): Promise<{ summary: TreeSummary; files: NamesIndex }> {
  const checked = await loadNative()
    .checkNamesAsync(utf8(buf))
    .catch((e: unknown) => {
      throw refused(e);
    });
  return indexed(buf, checked);
}

/** `buf`, when it is UTF-8 (the addon checks everything else); throws ERR_VRIFT_TREE_MALFORMED. */
function utf8(buf: Buffer): Buffer {
  if (!isUtf8(buf)) throw bad('not valid UTF-8');
  return buf;
}

/** The addon's refusal ("malformed tree: …", code EINVAL) as ERR_VRIFT_TREE_MALFORMED. */
function refused(e: unknown): VriftError {
  return bad((e as Error).message.replace(/^malformed tree: /, ''));
}

function indexed(buf: Buffer, checked: { counts: Float64Array; fileStarts: Uint32Array }): { summary: TreeSummary; files: NamesIndex } {
  const c = checked.counts;
  return { summary: { entries: c[0]!, files: c[1]!, dirs: c[2]!, symlinks: c[3]!, bytes: c[4]! }, files: new NamesIndex(buf, checked.fileStarts) };
}

/** A file of a names blob: its ordinal (its position among the tree's files), size and exec bit. */
export interface NamedFile {
  ordinal: number;
  size: number;
  exec: boolean;
}

/**
 * The files of a checked names blob, found by path (a binary search: the
 * blob is in strict byte order of paths) or by ordinal, reading the one
 * entry asked for: no map of every path, which cost a partial mount's
 * first open ~120 ms for 100 000 files.
 */
export class NamesIndex {
  constructor(
    private readonly names: Buffer,
    /** Where each file's entry begins, in file order (checkNames). */
    private readonly starts: Uint32Array,
  ) {}

  get count(): number {
    return this.starts.length;
  }

  /** The file at `rel`, or undefined when no file has that path. */
  fileAt(rel: string): NamedFile | undefined {
    const want = Buffer.from(rel);
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const e = this.entry(mid);
      const c = want.compare(this.names, e.path, e.end);
      if (c === 0) return { ordinal: mid, size: e.size, exec: e.exec };
      if (c < 0) hi = mid - 1;
      else lo = mid + 1;
    }
    return undefined;
  }

  /** File `ordinal` and its path, or undefined past the last file. */
  fileOf(ordinal: number): (NamedFile & { rel: string }) | undefined {
    if (!(ordinal >= 0 && ordinal < this.starts.length)) return undefined;
    const e = this.entry(ordinal);
    return { ordinal, size: e.size, exec: e.exec, rel: this.names.toString('utf8', e.path, e.end) };
  }

  /** The fields of file `i`'s entry: `f SP mode SP size SP path NUL` (checked by checkNames). */
  private entry(i: number): { exec: boolean; size: number; path: number; end: number } {
    const b = this.names;
    const at = this.starts[i]!;
    const sp2 = b.indexOf(0x20, at + 2);
    const sp3 = b.indexOf(0x20, sp2 + 1);
    let size = 0;
    for (let k = sp2 + 1; k < sp3; k++) size = size * 10 + (b[k]! - 0x30);
    const end = b.indexOf(0, sp3 + 1);
    // (a file's mode is 644 or 755: its last digit tells them apart)
    return { exec: b[sp2 - 1] === 0x35, size, path: sp3 + 1, end };
  }
}

/**
 * The names as a tree encoding whose files all name the digest 0…0 (what
 * decodeTree reads: a partial mount's entries when changes sit on top of
 * it). Throws on a blob whose entries do not even split.
 */
export function listingOfNames(buf: Buffer): Buffer {
  if (!buf.subarray(0, NAMES_HEADER.length).equals(Buffer.from(NAMES_HEADER))) throw bad('bad header (not a names blob, or a newer format)');
  const parts: Buffer[] = [Buffer.from(TREE_HEADER)];
  const fileRef = Buffer.from(` ${PLACEHOLDER}`);
  const otherRef = Buffer.from(' -');
  let at = NAMES_HEADER.length;
  while (at < buf.length) {
    const kind = String.fromCharCode(buf[at]!);
    let sp = at;
    for (let n = 0; n < 3; n++) {
      sp = buf.indexOf(0x20, sp + 1);
      if (sp < 0) throw bad(`entry at byte ${at} is cut short`);
    }
    const nul = buf.indexOf(0, sp);
    if (nul < 0) throw bad(`entry at byte ${at} has no end`);
    let end = nul + 1;
    if (kind === SYMLINK) {
      end = buf.indexOf(0, end) + 1;
      if (end === 0) throw bad(`symlink at byte ${at} has no target end`);
    }
    parts.push(buf.subarray(at, sp), kind === FILE ? fileRef : otherRef, buf.subarray(sp, end));
    at = end;
  }
  return Buffer.concat(parts);
}

/** The digest every file of listingOfNames names (never a real blob's). */
export const NO_DIGEST_YET = PLACEHOLDER;

/** A tree's encoding with each entry's ` <ref>` field dropped. */
function withoutRefs(tree: Buffer): Buffer {
  const parts: Buffer[] = [Buffer.from(NAMES_HEADER)];
  let at = TREE_HEADER.length;
  while (at < tree.length) {
    const kind = String.fromCharCode(tree[at]!);
    let sp = at;
    for (let n = 0; n < 3; n++) sp = tree.indexOf(0x20, sp + 1); // before the ref
    const refEnd = tree.indexOf(0x20, sp + 1); // before the path
    let end = tree.indexOf(0, refEnd) + 1;
    if (kind === SYMLINK) end = tree.indexOf(0, end) + 1;
    parts.push(tree.subarray(at, sp), tree.subarray(refEnd, end));
    at = end;
  }
  return Buffer.concat(parts);
}

function bad(why: string): VriftError {
  return new VriftError('ERR_VRIFT_TREE_MALFORMED', `names blob: ${why}`, { hint: 'the tier holds a damaged lazy index: the mount reads the full listing instead' });
}
