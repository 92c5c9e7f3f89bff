// A tree's names blob (docs/tree-format.md "Lazy index"): the listing in
// tree order without the files' digests, so a lazy mount can publish every
// path, mode and size at once while moving ~8 bytes an entry instead of
// the listing's ~40 (its 32-byte digests do not compress). Each file
// entry's ordinal (its position among the tree's files) is how the rest of
// the lazy index (store/lazy-index.ts) and the times blob name it.
//
//   names = "vrift-names 1\n" *entry
//   entry = kind SP mode SP size SP path NUL [target NUL]
import { LAYOUT } from '../../gen/layout.js';
import { VriftError } from '../../lib/errors.js';
import { decodeTree, encodeSorted, type TreeEntry } from './tree.js';

export const NAMES_HEADER = 'vrift-names 1\n';
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
 * The names as a tree encoding whose files all name the digest 0…0: what
 * the addon checks (checkEncodedTree) and publishes as a VDir (a lazy
 * mount's files then learn their digests when opened). Throws on a blob
 * whose entries do not even split.
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
