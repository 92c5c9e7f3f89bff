// A tree's lazy index (docs/tree-format.md "Lazy index"): the names blob
// (the listing without digests), the head that authenticates it and the
// files' digests piece by piece, and the signed ref that names the head.
// Everything a reader gets from a tier is untrusted: every field that
// could be swapped is refused.
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hashBuffer } from '../../src/lib/digest.js';
import { parseRefRecord, RefSigner, verifyRefRecord } from '../../src/lib/ref-signature.js';
import { buildLazyIndex, decodeLazyHead, PIECE_FILES, pieceRange, pieceVerifies } from '../../src/node/store/lazy-index.js';
import { checkNames, checkNamesAsync, decodeNames, encodeNames } from '../../src/node/store/names.js';
import { encodeTree, decodeTree, type TreeEntry } from '../../src/node/store/tree.js';

const digest = () => randomBytes(32).toString('hex');

/** A tree of `n` files in a few directories, a symlink, a path with spaces, as stored (tree order). */
function tree(n: number): { id: string; entries: TreeEntry[] } {
  const entries: TreeEntry[] = [
    { path: 'a b', kind: 'dir', mode: 0o755, size: 0 },
    { path: 'a b/c d.txt', kind: 'file', mode: 0o644, size: 3, digest: digest() },
    { path: 'bin', kind: 'dir', mode: 0o755, size: 0 },
    { path: 'bin/run', kind: 'file', mode: 0o755, size: 10, digest: digest() },
    { path: 'link', kind: 'symlink', mode: 0o777, size: 7, target: 'bin/run' },
    { path: 'lib', kind: 'dir', mode: 0o755, size: 0 },
  ];
  for (let i = 0; i < n; i++) entries.push({ path: `lib/m${i}.js`, kind: 'file', mode: 0o644, size: i, digest: digest() });
  const enc = encodeTree(entries);
  return { id: hashBuffer(enc), entries: decodeTree(enc) };
}

const files = (entries: TreeEntry[]) => entries.filter((e) => e.kind === 'file');
const raw = (e: TreeEntry) => Buffer.from(e.digest!, 'hex');

describe('the names blob', () => {
  it('is the listing without digests, byte for byte, and reads back with every rule of a tree', () => {
    const { entries } = tree(3);
    const names = encodeNames(entries).toString('utf8');
    expect(names.startsWith('vrift-names 1\nd 755 0 a b\0f 644 3 a b/c d.txt\0d 755 0 bin\0f 755 10 bin/run\0d 755 0 lib\0f 644 0 lib/m0.js\0')).toBe(true);
    expect(names.endsWith('f 644 2 lib/m2.js\0l 777 7 link\0bin/run\0')).toBe(true);
    expect(names).not.toMatch(/[0-9a-f]{64}/);
    expect(decodeNames(encodeNames(entries))).toEqual(entries.map(({ digest: _d, ...rest }) => rest));
  });

  it('refuses what a tree would refuse (order, parents, modes), and any other header, in TypeScript and in the addon', async () => {
    const { entries } = tree(2);
    const good = encodeNames(entries);
    const swapped = Buffer.from(good.toString('latin1').replace('f 644 0 lib/m0.js\0f 644 1 lib/m1.js\0', 'f 644 1 lib/m1.js\0f 644 0 lib/m0.js\0'), 'latin1');
    const orphan = Buffer.from(good.toString('latin1').replace('d 755 0 lib\0', ''), 'latin1');
    const badMode = Buffer.from(good.toString('latin1').replace('f 644 1 ', 'f 600 1 '), 'latin1');
    const otherHeader = Buffer.concat([Buffer.from('vrift-tree 1\n'), good.subarray(14)]);
    const cut = good.subarray(0, good.length - 3);
    for (const read of [decodeNames, checkNames]) {
      expect(() => read(swapped)).toThrow(/order/);
      expect(() => read(orphan)).toThrow(/parent/);
      expect(() => read(badMode)).toThrow();
      expect(() => read(otherHeader)).toThrow(/header/);
      expect(() => read(cut)).toThrow();
    }
    // the worker thread's check (a lazy MOUNT's) refuses the same, with the same messages
    for (const [b, why] of [[swapped, /order/], [orphan, /parent/], [badMode, /mode/], [otherHeader, /header/], [cut, /truncated|end/]] as const) {
      await expect(checkNamesAsync(b)).rejects.toThrow(why);
      await expect(checkNamesAsync(b)).rejects.toMatchObject({ code: 'ERR_VRIFT_TREE_MALFORMED' });
    }
  });

  it('never throws anything but a VriftError on arbitrary edits, and the addon accepts exactly what TypeScript accepts', () => {
    const good = encodeNames(tree(5).entries);
    const outcome = (read: () => unknown): string => {
      try {
        read();
        return 'ok';
      } catch (e) {
        expect((e as { code?: string }).code).toMatch(/^ERR_VRIFT_/);
        return 'refused';
      }
    };
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(good.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), (edits) => {
        const b = Buffer.from(good);
        for (const [at, v] of edits) b[at] = v;
        expect(outcome(() => checkNames(b))).toBe(outcome(() => decodeNames(b)));
      }),
      { numRuns: 300 },
    );
  });

  it('finds each file by path and by ordinal (its place among the files), and nothing else, on either thread', async () => {
    const { entries } = tree(300);
    const { summary, files: index } = checkNames(encodeNames(entries));
    const onWorker = await checkNamesAsync(encodeNames(entries));
    expect(onWorker.summary).toEqual(summary);
    const theFiles = files(entries);
    expect(summary).toMatchObject({ entries: entries.length, files: theFiles.length, dirs: 3, symlinks: 1 });
    expect(index.count).toBe(theFiles.length);
    theFiles.forEach((f, ordinal) => {
      const want = { ordinal, size: f.size, exec: f.mode === 0o755 };
      expect(index.fileAt(f.path)).toEqual(want);
      expect(index.fileOf(ordinal)).toEqual({ ...want, rel: f.path });
      expect(onWorker.files.fileOf(ordinal)).toEqual({ ...want, rel: f.path });
    });
    for (const absent of ['', 'a b', 'bin', 'link', 'lib/m', 'lib/m0.jsx', 'zz', 'a b/c d.txt/x']) expect(index.fileAt(absent)).toBeUndefined();
    expect(index.fileOf(-1)).toBeUndefined();
    expect(index.fileOf(theFiles.length)).toBeUndefined();
  });
});

describe('the head and its pieces', () => {
  it('names the tree, the names blob, and each piece of the files\' digests', () => {
    const { id, entries } = tree(PIECE_FILES * 2 + 5); // three pieces, the last short
    const lazy = buildLazyIndex(id, entries);
    const h = decodeLazyHead(lazy.head, lazy.digest, id);
    if ('problem' in h) throw new Error(h.problem);
    expect(h.files).toBe(files(entries).length);
    expect(h.pieces).toHaveLength(3);
    expect(h.names).toBe(hashBuffer(encodeNames(entries)));
    expect(h.namesBytes).toBe(lazy.names.length);
    for (let k = 0; k < 3; k++) {
      const { first, end } = pieceRange(h, k);
      expect(pieceVerifies(h, k, files(entries).slice(first, end).map(raw))).toBe(true);
    }
    expect(pieceRange(h, 2)).toEqual({ first: PIECE_FILES * 2, end: PIECE_FILES * 2 + 7 });
  });

  it('is a function of the tree: the same tree gives the same head', () => {
    const { id, entries } = tree(10);
    expect(buildLazyIndex(id, entries).digest).toBe(buildLazyIndex(id, decodeTree(encodeTree(entries))).digest);
  });

  it('refuses a head that is not the one the ref names, of another tree, or damaged', () => {
    const { id, entries } = tree(100);
    const lazy = buildLazyIndex(id, entries);
    const other = tree(100);
    const otherLazy = buildLazyIndex(other.id, other.entries);
    expect(decodeLazyHead(otherLazy.head, lazy.digest, id)).toEqual({ problem: expect.stringMatching(/do not hash/) });
    expect(decodeLazyHead(otherLazy.head, otherLazy.digest, id)).toEqual({ problem: expect.stringMatching(/another tree/) });
    const cut = lazy.head.subarray(0, lazy.head.length - 32);
    expect(decodeLazyHead(cut, hashBuffer(cut), id)).toEqual({ problem: expect.stringMatching(/pieces/) });
    const magic = Buffer.from(lazy.head);
    magic[0] = 0x41;
    expect(decodeLazyHead(magic, hashBuffer(magic), id)).toEqual({ problem: expect.stringMatching(/magic/) });
  });

  it('refuses a piece with a digest swapped, dropped, moved or from another piece', () => {
    const { id, entries } = tree(PIECE_FILES + 10);
    const lazy = buildLazyIndex(id, entries);
    const h = decodeLazyHead(lazy.head, lazy.digest, id);
    if ('problem' in h) throw new Error(h.problem);
    const piece0 = files(entries).slice(0, PIECE_FILES).map(raw);
    const swapped = [...piece0];
    swapped[5] = randomBytes(32);
    expect(pieceVerifies(h, 0, swapped)).toBe(false);
    expect(pieceVerifies(h, 0, piece0.slice(1))).toBe(false);
    expect(pieceVerifies(h, 0, [piece0[1]!, piece0[0]!, ...piece0.slice(2)])).toBe(false);
    expect(pieceVerifies(h, 1, piece0.slice(0, 12))).toBe(false);
    expect(pieceVerifies(h, 2, [])).toBe(false);
  });
});

describe('the signed ref names the head', () => {
  const signer = RefSigner.fromPem(RefSigner.generatePem());
  const tree1 = digest();
  const times = digest();
  const lazy = digest();

  it('verifies with the head, with or without times, and an older record still verifies', () => {
    for (const t of [times, undefined]) {
      const rec = parseRefRecord(JSON.stringify(signer.record('main/app', tree1, t, Date.now(), lazy)));
      if (typeof rec === 'string') throw new Error(rec);
      expect(rec.lazy).toBe(lazy);
      expect(verifyRefRecord('main/app', rec)).toBe(true);
    }
    const old = parseRefRecord(JSON.stringify(signer.record('main/app', tree1, times)));
    if (typeof old === 'string') throw new Error(old);
    expect(old.lazy).toBeUndefined();
    expect(verifyRefRecord('main/app', old)).toBe(true);
  });

  it('does not verify once the head is swapped or its signature moved; dropping both only loses the index', () => {
    const signed = signer.record('main/app', tree1, times, Date.now(), lazy);
    expect(verifyRefRecord('main/app', { ...signed, lazy: digest() })).toBe(false);
    expect(verifyRefRecord('main/app', { ...signed, times: digest() })).toBe(false);
    expect(verifyRefRecord('other/app', signed)).toBe(false);
    const { lazySig: _s, ...noSig } = signed;
    expect(verifyRefRecord('main/app', noSig)).toBe(false);
    expect(parseRefRecord(JSON.stringify(noSig))).toBe('a malformed signature');
    // Another record's lazy signature (same key, same tree, another time) does not carry over.
    const later = signer.record('main/app', tree1, times, signed.updatedAt + 1, digest());
    expect(verifyRefRecord('main/app', { ...signed, lazy: later.lazy, lazySig: later.lazySig })).toBe(false);
    // What a vrift before the lazy index reads (it drops unknown fields): the record still verifies, without an index.
    const { lazy: _l, lazySig: _ls, ...older } = signed;
    expect(verifyRefRecord('main/app', older)).toBe(true);
    expect(parseRefRecord(JSON.stringify({ ...signed, lazy: 'nope' }))).toBe('a malformed lazy index id');
  });
});
