// Trees: the canonical manifest of one directory tree. Its encoding is
// specified in docs/tree-format.md; the tree id is the BLAKE3 digest of
// the encoding, so the same directory gets the same id on any machine.
import { isUtf8 } from 'node:buffer';
import { LAYOUT } from '../../gen/layout.js';
import { hashBuffer, isDigest, type Digest } from '../../lib/digest.js';
import { VriftError } from '../../lib/errors.js';
import { loadNative } from '../../lib/native.js';

export type EntryKind = 'file' | 'dir' | 'symlink';

export interface TreeEntry {
  /** Relative path, '/'-separated, no leading '/', no '.' or '..' components. */
  path: string;
  kind: EntryKind;
  /** Normalized permission bits: 0o644 or 0o755 for files, 0o755 for dirs, 0o777 for symlinks. */
  mode: number;
  /** Bytes of content (files) or of the link target (symlinks); 0 for dirs. */
  size: number;
  /** Content digest (files only). */
  digest?: Digest;
  /** Link target (symlinks only), stored verbatim. */
  target?: string;
}

export interface Tree {
  id: Digest;
  entries: TreeEntry[];
}

export interface TreeSummary {
  entries: number;
  files: number;
  dirs: number;
  symlinks: number;
  /** Sum of file sizes. */
  bytes: number;
}

// The encoding's header, letters, modes and limits are shim/vrift_layout.h's
// (the addon reads trees with the same ones).
const T = LAYOUT.tree;
const HEADER: string = T.header;
const KIND_CHAR: Record<EntryKind, string> = { file: T.kindFile, dir: T.kindDir, symlink: T.kindSymlink };
const CHAR_KIND: Record<string, EntryKind> = { [T.kindFile]: 'file', [T.kindDir]: 'dir', [T.kindSymlink]: 'symlink' };
const MODE_FILE: number = T.modeFile;
const MODE_EXEC: number = T.modeExec;
const MODE_DIR: number = T.modeDir;
const MODE_SYMLINK: number = T.modeSymlink;
const NO_REF: string = T.noRef;
const MAX_PATH: number = T.pathMax;
const MAX_NAME: number = T.nameMax;

/** The mode a tree records for a file: only the owner's exec bit survives (as git does). */
export function normalizeFileMode(statMode: number): number {
  return statMode & 0o100 ? MODE_EXEC : MODE_FILE;
}

export function modeFor(kind: EntryKind, exec = false): number {
  if (kind === 'dir') return MODE_DIR;
  if (kind === 'symlink') return MODE_SYMLINK;
  return exec ? MODE_EXEC : MODE_FILE;
}

function malformed(why: string): VriftError {
  return new VriftError('ERR_VRIFT_TREE_MALFORMED', `malformed tree: ${why}`, {
    hint: 'the tree blob is damaged or was not written by vrift; ingest or pull it again',
  });
}

/**
 * Checks a relative path as trees store it. Returns the reason it is
 * invalid, or undefined when it is fine.
 */
export function pathProblem(path: string): string | undefined {
  if (path.length === 0) return 'empty path';
  if (path.includes('\0')) return 'contains a NUL byte';
  if (path.startsWith('/')) return 'absolute path';
  // A UTF-16 unit is at most 3 UTF-8 bytes: short strings need no byte count.
  if (path.length * 3 > MAX_PATH && Buffer.byteLength(path) > MAX_PATH) return `longer than ${MAX_PATH} bytes`;
  for (const part of path.split('/')) {
    if (part === '') return 'empty path component';
    if (part === '.' || part === '..') return `"${part}" component`;
    if (part.length * 3 > MAX_NAME && Buffer.byteLength(part) > MAX_NAME) return `component longer than ${MAX_NAME} bytes`;
  }
  if (!path.isWellFormed()) return 'not valid UTF-8 (lone surrogate)';
  return undefined;
}

/**
 * Byte-wise UTF-8 order (= code point order), the one order every
 * implementation agrees on, computed on JS strings without encoding them.
 * UTF-16 code units sort like code points except that surrogates
 * (U+D800–DFFF) must sort above U+E000–FFFF; the fix-up handles that.
 */
export function comparePaths(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x !== y) {
      if (x >= 0xd800 && y >= 0xd800) {
        x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
        y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
      }
      return x - y;
    }
  }
  return a.length - b.length;
}

export function sortEntries(entries: TreeEntry[]): TreeEntry[] {
  return [...entries].sort((x, y) => comparePaths(x.path, y.path));
}

/** Encodes entries (any order) canonically. Throws on an invalid entry. */
export function encodeTree(entries: TreeEntry[]): Buffer {
  return encodeSorted(sortEntries(entries));
}

/**
 * Encodes entries already in canonical order (see sortEntries), checking
 * each as decodeTree would: the result always decodes.
 */
export function encodeSorted(sorted: TreeEntry[]): Buffer {
  const dirs = new Set<string>();
  const parts: string[] = [HEADER];
  let prev: string | undefined;
  for (const e of sorted) {
    const problem = quickPathProblem(e.path);
    if (problem) throw new VriftError('ERR_VRIFT_TREE_PATH', `invalid path ${JSON.stringify(e.path)}: ${problem}`, { hint: 'rename the file' });
    const want = modeFor(e.kind, e.mode === MODE_EXEC);
    if (e.mode !== want || !Number.isSafeInteger(e.size) || e.size < 0 || (e.kind === 'dir' && e.size !== 0)) {
      throw malformed(`${e.kind} ${e.path} has mode ${e.mode.toString(8)} size ${e.size}`);
    }
    if (prev !== undefined && comparePaths(prev, e.path) >= 0) {
      throw new VriftError('ERR_VRIFT_TREE_PATH', prev === e.path ? `duplicate path ${JSON.stringify(e.path)}` : `entries out of order at ${JSON.stringify(e.path)}`);
    }
    prev = e.path;
    const slash = e.path.lastIndexOf('/');
    if (slash >= 0 && !dirs.has(e.path.slice(0, slash))) throw malformed(`${JSON.stringify(e.path)} has no parent directory entry`);
    if (e.kind === 'dir') dirs.add(e.path);
    const ref = e.kind === 'file' ? e.digest : NO_REF;
    if (e.kind === 'file' && (ref === undefined || !isDigest(ref))) throw malformed(`file ${e.path} has no digest`);
    parts.push(`${KIND_CHAR[e.kind]} ${e.mode.toString(8)} ${e.size} ${ref} ${e.path}\0`);
    if (e.kind === 'symlink') {
      if (e.target === undefined || e.target.includes('\0') || e.target.length === 0 || Buffer.byteLength(e.target) !== e.size) {
        throw malformed(`symlink ${e.path} has no valid target`);
      }
      parts.push(`${e.target}\0`);
    }
  }
  return Buffer.from(parts.join(''), 'utf8');
}

export function treeId(encoded: Uint8Array): Digest {
  return hashBuffer(encoded);
}

/** A component of more than this many UTF-16 units may be longer than MAX_NAME bytes: checked in full. */
const SHORT_COMPONENT = Math.floor(MAX_NAME / 3);

/**
 * Whether every component of `path` is short, non-empty, not "." or ".."
 * and free of NUL: one pass over the characters. (A regex for the long
 * component, /[^/]{86}/, tries every start and took most of the time of
 * decoding a 100 000-entry tree.)
 */
function plainComponents(path: string): boolean {
  let len = 0; // of the component so far
  let dots = 0; // leading dots of the component (only counts while it is all dots)
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 47) {
      if (len === 0 || (dots === len && len <= 2)) return false;
      len = 0;
      dots = 0;
      continue;
    }
    if (c === 0) return false;
    if (c === 46 && dots === len) dots++;
    if (++len > SHORT_COMPONENT) return false;
  }
  return len > 0 && !(dots === len && len <= 2);
}

/** text[from, to) is 64 lowercase hex digits (checked in place: no substring, no regex). */
function isHex64At(text: string, from: number, to: number): boolean {
  if (to - from !== 64) return false;
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

/** pathProblem, fast for the common case (a short, clean path): one regex instead of a split. */
export function quickPathProblem(path: string): string | undefined {
  // Short enough in UTF-16 units that no byte limit can be passed (node_modules paths are often over 85 units, never over 1365).
  if (path.length === 0 || path.length * 3 > MAX_PATH || !plainComponents(path) || !path.isWellFormed()) return pathProblem(path);
  return undefined;
}

function badEntry(text: string, pos: number, why: string): VriftError {
  return malformed(`${why} in entry ${JSON.stringify(text.slice(pos, pos + 80))}`);
}

/** Parses a decimal or octal field of at most `max` digits; NaN when malformed. */
function parseField(text: string, from: number, to: number, radix: 8 | 10, max: number): number {
  const n = to - from;
  if (n < 1 || n > max) return NaN;
  if (radix === 10 && n > 1 && text.charCodeAt(from) === 48) return NaN; // no leading zeros
  let v = 0;
  for (let i = from; i < to; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d >= radix) return NaN;
    v = v * radix + d;
  }
  return v;
}

/**
 * Decodes and validates a tree. Input may come from anywhere (a peer, S3):
 * every field is checked, paths must be valid and strictly increasing,
 * and every entry's parent must be a directory entry of the tree.
 */
export function decodeTree(buf: Uint8Array): TreeEntry[] {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (!b.subarray(0, HEADER.length).equals(Buffer.from(HEADER))) throw malformed('bad header (not a vrift tree, or a newer format)');
  if (!isUtf8(b)) throw malformed('not valid UTF-8');
  const text = b.toString('utf8', HEADER.length);
  const entries: TreeEntry[] = [];
  const dirs = new Set<string>();
  let pos = 0;
  let prevPath: string | undefined;
  while (pos < text.length) {
    const kind = CHAR_KIND[text[pos]!];
    if (!kind || text.charCodeAt(pos + 1) !== 32) throw badEntry(text, pos, 'bad kind');
    const sp1 = text.indexOf(' ', pos + 2);
    const sp2 = sp1 < 0 ? -1 : text.indexOf(' ', sp1 + 1);
    const sp3 = sp2 < 0 ? -1 : text.indexOf(' ', sp2 + 1);
    const end = sp3 < 0 ? -1 : text.indexOf('\0', sp3 + 1);
    if (end < 0) throw malformed('truncated entry');
    const nul = text.indexOf('\0', pos);
    if (nul < end) throw badEntry(text, pos, 'missing field');
    const mode = parseField(text, pos + 2, sp1, 8, 4);
    const size = parseField(text, sp1 + 1, sp2, 10, 16);
    if (Number.isNaN(mode)) throw badEntry(text, pos, 'bad mode');
    if (Number.isNaN(size) || !Number.isSafeInteger(size)) throw badEntry(text, pos, 'bad size');
    const noRef = sp3 - sp2 - 1 === NO_REF.length && text.startsWith(NO_REF, sp2 + 1);
    if (!noRef && !isHex64At(text, sp2 + 1, sp3)) throw badEntry(text, pos, 'bad digest');
    const ref = noRef ? NO_REF : text.slice(sp2 + 1, sp3);
    const path = text.slice(sp3 + 1, end);
    const problem = quickPathProblem(path);
    if (problem) throw malformed(`path ${JSON.stringify(path)}: ${problem}`);
    if (prevPath !== undefined && comparePaths(prevPath, path) >= 0) throw malformed(`entries out of order at ${JSON.stringify(path)}`);
    prevPath = path;
    const slash = path.lastIndexOf('/');
    if (slash >= 0 && !dirs.has(path.slice(0, slash))) throw malformed(`${JSON.stringify(path)} has no parent directory entry`);
    pos = end + 1;
    const entry: TreeEntry = { path, kind, mode, size };
    if (kind === 'file') {
      if (ref === NO_REF) throw malformed(`file ${path} has no digest`);
      if (mode !== MODE_FILE && mode !== MODE_EXEC) throw malformed(`file ${path} has mode ${mode.toString(8)}`);
      entry.digest = ref;
    } else {
      if (ref !== NO_REF) throw malformed(`${kind} ${path} carries a digest`);
      if (kind === 'dir') {
        if (mode !== MODE_DIR || size !== 0) throw malformed(`dir ${path} has mode ${mode.toString(8)} size ${size}`);
        dirs.add(path);
      }
    }
    if (kind === 'symlink') {
      const tend = text.indexOf('\0', pos);
      if (tend < 0) throw malformed(`symlink ${path} has no target`);
      const target = text.slice(pos, tend);
      pos = tend + 1;
      if (target.length === 0) throw malformed(`symlink ${path} has an empty target`);
      if (Buffer.byteLength(target) !== size) throw malformed(`symlink ${path} size does not match its target`);
      if (mode !== MODE_SYMLINK) throw malformed(`symlink ${path} has mode ${mode.toString(8)}`);
      entry.target = target;
    }
    entries.push(entry);
  }
  return entries;
}

/**
 * Checks a tree from anywhere as decodeTree does (the same rules, in the
 * addon: native/src/tree_parse.h) without decoding it: no object per
 * entry, for a listing a lazy mount may never need in JavaScript. Its
 * counts.
 */
export function checkEncodedTree(buf: Uint8Array): TreeSummary {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (!b.subarray(0, HEADER.length).equals(Buffer.from(HEADER))) throw malformed('bad header (not a vrift tree, or a newer format)');
  if (!isUtf8(b)) throw malformed('not valid UTF-8');
  let counts: Float64Array;
  try {
    counts = loadNative().checkTreeEncoding(b);
  } catch (e) {
    throw malformed((e as Error).message.replace(/^malformed tree: /, ''));
  }
  return { entries: counts[0]!, files: counts[1]!, dirs: counts[2]!, symlinks: counts[3]!, bytes: counts[4]! };
}

/**
 * Decodes an encoding that checkEncodedTree accepted, these very bytes
 * (a listing admitted just now): the entries decodeTree gives, without
 * checking anything again (a third of its time for 100 000 entries). Never
 * for bytes read back from the store: a blob of the same digest may have
 * come in as a file.
 */
export function decodeCheckedTree(buf: Uint8Array): TreeEntry[] {
  const text = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('utf8', HEADER.length);
  const entries: TreeEntry[] = [];
  let pos = 0;
  while (pos < text.length) {
    const kind = CHAR_KIND[text[pos]!]!;
    const sp1 = text.indexOf(' ', pos + 2);
    const sp2 = text.indexOf(' ', sp1 + 1);
    const sp3 = text.indexOf(' ', sp2 + 1);
    const end = text.indexOf('\0', sp3 + 1);
    const entry: TreeEntry = { path: text.slice(sp3 + 1, end), kind, mode: parseField(text, pos + 2, sp1, 8, 4), size: parseField(text, sp1 + 1, sp2, 10, 16) };
    pos = end + 1;
    if (kind === 'file') entry.digest = text.slice(sp2 + 1, sp3);
    else if (kind === 'symlink') {
      const tend = text.indexOf('\0', pos);
      entry.target = text.slice(pos, tend);
      pos = tend + 1;
    }
    entries.push(entry);
  }
  return entries;
}

export function summarize(entries: TreeEntry[]): TreeSummary {
  const s: TreeSummary = { entries: entries.length, files: 0, dirs: 0, symlinks: 0, bytes: 0 };
  for (const e of entries) {
    if (e.kind === 'file') {
      s.files++;
      s.bytes += e.size;
    } else if (e.kind === 'dir') s.dirs++;
    else s.symlinks++;
  }
  return s;
}

/** Looks an entry up by path in a decoded (sorted) tree. */
export function findEntry(entries: TreeEntry[], path: string): TreeEntry | undefined {
  let lo = 0;
  let hi = entries.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const c = comparePaths(entries[mid]!.path, path);
    if (c === 0) return entries[mid];
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return undefined;
}
