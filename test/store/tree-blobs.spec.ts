// A tree's blob list (store/tree-blobs.ts), read by the addon from the
// encoding: the same blobs, in the same order, with the same sizes and
// exec flags as a walk of the decoded entries gives, and an index that
// finds each of them and nothing else.
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyEdits, byteEdits } from '../helpers/byte-edits.js';
import { TreeBlobs } from '../../src/node/store/tree-blobs.js';
import { decodeTree, encodeTree, type TreeEntry } from '../../src/node/store/tree.js';

/** What the blob list must hold: the decoded entries walked in order (the list's definition). */
function reference(entries: readonly TreeEntry[]) {
  const digests: string[] = [];
  const sizes: number[] = [];
  const exec: boolean[] = [];
  const index = new Map<string, number>();
  const paths: string[][] = [];
  let bytes = 0;
  for (const e of entries) {
    if (e.kind !== 'file') continue;
    const at = index.get(e.digest!);
    if (at !== undefined) paths[at]!.push(e.path);
    else paths.push([e.path]);
    if (at !== undefined) {
      if (e.mode === 0o755) exec[at] = true;
      continue;
    }
    index.set(e.digest!, digests.length);
    digests.push(e.digest!);
    sizes.push(e.size);
    exec.push(e.mode === 0o755);
    bytes += e.size;
  }
  return { digests, sizes, exec, index, bytes, paths };
}

function expectSame(blobs: TreeBlobs, entries: readonly TreeEntry[]): void {
  const ref = reference(entries);
  expect(blobs.count).toBe(ref.digests.length);
  expect(blobs.bytes).toBe(ref.bytes);
  for (let i = 0; i < ref.digests.length; i++) {
    expect(blobs.digest(i)).toBe(ref.digests[i]);
    expect(blobs.size(i)).toBe(ref.sizes[i]);
    expect(blobs.exec(i)).toBe(ref.exec[i]);
    expect(blobs.indexOf(ref.digests[i]!)).toBe(i);
    expect(blobs.paths(i)).toEqual(ref.paths[i]);
  }
}

/** A tree of `n` files under a few directories; digests drawn from `pool` distinct ones (so some repeat). */
function tree(n: number, pool: number, seed: number): TreeEntry[] {
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const digests = Array.from({ length: pool }, () => randomBytes(32).toString('hex'));
  const entries: TreeEntry[] = [];
  for (let d = 0; d < 8; d++) entries.push({ path: `d${d}`, kind: 'dir', mode: 0o755, size: 0 });
  for (let i = 0; i < n; i++) {
    const exec = rand() < 0.1;
    const at = Math.floor(rand() * pool);
    entries.push({ path: `d${i % 8}/f${i}${i % 7 === 0 ? 'é' : ''}`, kind: 'file', mode: exec ? 0o755 : 0o644, size: at * 7 + 1, digest: digests[at]! });
    if (i % 50 === 0) entries.push({ path: `d${i % 8}/l${i}`, kind: 'symlink', mode: 0o777, size: 3, target: 'abc' });
  }
  return entries;
}

describe('tree blob list (native)', () => {
  it('holds the decoded walk: order of first entry, sizes, exec when any entry of a blob is executable, each blob\'s paths, the total', () => {
    const D1 = 'a'.repeat(64);
    const D2 = 'b'.repeat(64);
    const entries: TreeEntry[] = [
      { path: 'a', kind: 'file', mode: 0o644, size: 5, digest: D2 },
      { path: 'b', kind: 'symlink', mode: 0o777, size: 1, target: 'a' },
      { path: 'c', kind: 'dir', mode: 0o755, size: 0 },
      { path: 'c/x', kind: 'file', mode: 0o644, size: 3, digest: D1 },
      { path: 'c/y', kind: 'file', mode: 0o755, size: 5, digest: D2 },
      { path: 'c/z', kind: 'file', mode: 0o644, size: 0, digest: D1 },
    ];
    const enc = encodeTree(entries);
    const blobs = new TreeBlobs(enc);
    expect([blobs.count, blobs.bytes]).toEqual([2, 8]);
    expect([blobs.digest(0), blobs.size(0), blobs.exec(0)]).toEqual([D2, 5, true]);
    expect([blobs.digest(1), blobs.size(1), blobs.exec(1)]).toEqual([D1, 3, false]);
    expect([blobs.paths(0), blobs.paths(1)]).toEqual([['a', 'c/y'], ['c/x', 'c/z']]);
    expectSame(blobs, decodeTree(enc));
    expect(new TreeBlobs(encodeTree([])).count).toBe(0);
  });

  it('indexes tens of thousands of blobs (the table grows) and finds no digest the tree lacks', () => {
    const entries = tree(30_000, 20_000, 7);
    const blobs = new TreeBlobs(encodeTree(entries));
    expectSame(blobs, decodeTree(encodeTree(entries)));
    const present = new Set(entries.filter((e) => e.kind === 'file').map((e) => e.digest!));
    let misses = 0;
    for (let i = 0; i < 5000; i++) {
      const d = randomBytes(32).toString('hex');
      if (!present.has(d)) expect(blobs.indexOf(d)).toBeUndefined(), misses++;
    }
    expect(misses).toBe(5000);
    // Not digests at all: never found, never thrown.
    for (const d of ['', 'zz', blobs.digest(0).toUpperCase(), 'g'.repeat(64), `${blobs.digest(0)}00`]) expect(blobs.has(d)).toBe(false);
  });

  it('agrees with the decoder on mutated encodings: the same blobs when it decodes, never a crash when it does not', () => {
    const good = encodeTree(tree(40, 25, 3));
    const bytes = [0x20, 0x00, 0x2f, 0x30, 0x31, 0x35, 0x37, 0x61, 0x66, 0x64, 0x6c, 0x2d];
    fc.assert(
      fc.property(byteEdits(good, bytes), (edits) => {
        const buf = applyEdits(good, edits);
        let decoded: TreeEntry[] | undefined;
        try {
          decoded = decodeTree(buf);
        } catch {
          /* malformed: the list may refuse it or read what it can */
        }
        let blobs: TreeBlobs | undefined;
        try {
          blobs = new TreeBlobs(buf);
        } catch (e) {
          expect((e as Error).message).toMatch(/^malformed tree: /);
        }
        if (decoded) {
          expect(blobs, buf.toString('latin1')).toBeDefined();
          expectSame(blobs!, decoded);
        }
      }),
      { numRuns: 3000 },
    );
  });
});
