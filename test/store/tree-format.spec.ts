// The canonical tree encoding: deterministic, validated, and robust to
// whatever bytes a peer or a bucket may send.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyEdits, byteEdits } from '../helpers/byte-edits.js';
import { isVriftError } from '../../src/lib/errors.js';
import { checkEncodedTree, comparePaths, decodeCheckedTree, decodeTree, encodeTree, pathProblem, quickPathProblem, summarize, treeId, type TreeEntry } from '../../src/node/store/tree.js';

const D1 = 'a'.repeat(64);
const D2 = 'b'.repeat(64);

const sample: TreeEntry[] = [
  { path: 'src', kind: 'dir', mode: 0o755, size: 0 },
  { path: 'src/main.c', kind: 'file', mode: 0o644, size: 12, digest: D1 },
  { path: 'run.sh', kind: 'file', mode: 0o755, size: 3, digest: D2 },
  { path: 'link', kind: 'symlink', mode: 0o777, size: 10, target: 'src/main.c' },
];

describe('tree encoding', () => {
  it('is byte-for-byte the documented format (docs/tree-format.md)', () => {
    const enc = encodeTree(sample).toString('utf8');
    expect(enc).toBe(
      'vrift-tree 1\n' +
        'l 777 10 - link\0src/main.c\0' +
        `f 755 3 ${D2} run.sh\0` +
        'd 755 0 - src\0' +
        `f 644 12 ${D1} src/main.c\0`,
    );
  });

  it('gives the same id whatever order entries come in', () => {
    const a = treeId(encodeTree(sample));
    const b = treeId(encodeTree([...sample].reverse()));
    expect(a).toBe(b);
    expect(a).toMatch(/^[0-9a-f]{64}$/);
  });

  it('round-trips through decode', () => {
    const dec = decodeTree(encodeTree(sample));
    expect(dec.map((e) => e.path)).toEqual(['link', 'run.sh', 'src', 'src/main.c']);
    expect(dec.find((e) => e.path === 'link')?.target).toBe('src/main.c');
    expect(dec.find((e) => e.path === 'run.sh')?.mode).toBe(0o755);
  });

  it('sorts by UTF-8 bytes, not UTF-16 code units', () => {
    // U+FF21 (3 UTF-8 bytes, EF BC A1) sorts before U+1F600 (4 bytes, F0 9F 98 80),
    // although its UTF-16 unit 0xFF21 is above the surrogate 0xD83D.
    const a = '\uFF21';
    const b = '\u{1F600}';
    expect(comparePaths(a, b)).toBeLessThan(0);
    expect(Buffer.compare(Buffer.from(a), Buffer.from(b))).toBeLessThan(0);
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), fc.string({ unit: 'grapheme' }), (x, y) => {
        expect(Math.sign(comparePaths(x, y))).toBe(Math.sign(Buffer.compare(Buffer.from(x), Buffer.from(y))));
      }),
    );
  });

  it('rejects paths that could escape or confuse a materialize', () => {
    for (const bad of ['', '/etc/passwd', '../up', 'a/../../b', 'a//b', './a', 'a/.', 'nul\0byte', 'x'.repeat(256), '\uD800lone']) {
      expect(pathProblem(bad), JSON.stringify(bad)).toBeTypeOf('string');
      const entries: TreeEntry[] = [{ path: bad, kind: 'file', mode: 0o644, size: 0, digest: D1 }];
      expect(() => encodeTree(entries)).toThrow(/invalid path|malformed/);
    }
    expect(pathProblem('ok/dir with space/ünï.txt')).toBeUndefined();
  });

  it('refuses malformed tree blobs with a clear error', () => {
    const good = encodeTree(sample);
    const cases: Buffer[] = [
      Buffer.from('not a tree'),
      Buffer.from('vrift-tree 1\nf 644 1 zz x\0'),
      Buffer.from(`vrift-tree 1\nf 644 1 ${D1} /abs\0`),
      Buffer.from(`vrift-tree 1\nf 644 1 ${D1} a/../b\0`),
      Buffer.from(`vrift-tree 1\nf 644 1 ${D1} b\0f 644 1 ${D1} a\0`), // out of order
      Buffer.from(`vrift-tree 1\nf 644 1 ${D1} a/b\0`), // no parent dir entry
      Buffer.from(`vrift-tree 1\nf 600 1 ${D1} a\0`), // non-normalized mode
      Buffer.from('vrift-tree 1\nl 777 3 - a\0'), // symlink without target
      Buffer.concat([Buffer.from('vrift-tree 1\nd 755 0 - '), Buffer.from([0xff, 0xfe]), Buffer.from('\0')]), // not UTF-8
      good.subarray(0, good.length - 5), // truncated
      Buffer.from(`vrift-tree 1\nf 644 1 ${D1.toUpperCase()} a\0`), // digest not lowercase
      Buffer.from(`vrift-tree 1\nf 644 1 ${D1.slice(1)} a\0`), // 63 digits
      Buffer.from(`vrift-tree 1\nf 644 1 ${D1}0 a\0`), // 65 digits
      Buffer.from(`vrift-tree 1\nf 644 1 ${D1.slice(0, 63)}g a\0`), // not hex
      Buffer.from('vrift-tree 1\nd 755 0 -- a\0'), // "--" is not "-"
      Buffer.from(`vrift-tree 1\nd 755 0 ${D1} a\0`), // a dir with a digest
      Buffer.from('vrift-tree 1\nf 644 1 - a\0'), // a file without one
      Buffer.from(`vrift-tree 1\nf 644 01 ${D1} a\0`), // a leading zero
      Buffer.from(`vrift-tree 1\nf 644 9007199254740992 ${D1} a\0`), // past 2^53
      Buffer.from('vrift-tree 1\nd 755 1 - a\0'), // a dir with a size
      Buffer.from('vrift-tree 1\nl 777 2 - a\0abc\0'), // a symlink whose size is not its target's
      Buffer.from(`vrift-tree 1\nf 644 1 ${D1} a\0f 644 1 ${D1} a\0`), // twice
    ];
    for (const c of cases) {
      for (const check of [decodeTree, checkEncodedTree]) {
        let err: unknown;
        try {
          check(c);
        } catch (e) {
          err = e;
        }
        expect(isVriftError(err), `${check.name}: ${c.toString('latin1')}`).toBe(true);
        expect((err as Error).message).toMatch(/^malformed tree: /);
      }
    }
  });

  it('checks an encoding natively (checkEncodedTree) exactly as decodeTree does, with the same counts, and decodeCheckedTree then gives its entries (mutations of a good tree)', () => {
    const entries: TreeEntry[] = [...sample, { path: 'src/é', kind: 'dir', mode: 0o755, size: 0 }, { path: 'src/é/x', kind: 'file', mode: 0o644, size: 9007199254740991, digest: D2 }];
    const good = encodeTree(entries);
    expect(checkEncodedTree(good)).toEqual(summarize(decodeTree(good)));
    expect(decodeCheckedTree(good)).toEqual(decodeTree(good));
    const outcome = (f: () => unknown) => {
      try {
        return f();
      } catch (e) {
        expect(isVriftError(e)).toBe(true);
        return 'malformed';
      }
    };
    const bytes = [0x20, 0x00, 0x2f, 0x2e, 0x30, 0x31, 0x61, 0x66, 0x64, 0x6c, 0x37, 0x2d, 0xff, 0xc3];
    fc.assert(
      fc.property(byteEdits(good, bytes), (edits) => {
        const buf = applyEdits(good, edits);
        const decoded = outcome(() => summarize(decodeTree(buf)));
        expect(outcome(() => checkEncodedTree(buf)), buf.toString('latin1')).toEqual(decoded);
        if (decoded !== 'malformed') expect(decodeCheckedTree(buf)).toEqual(decodeTree(buf));
      }),
      { numRuns: 5000 },
    );
  });

  it('never crashes on arbitrary bytes (fuzz)', () => {
    const header = Buffer.from('vrift-tree 1\n');
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.boolean(), (bytes, withHeader) => {
        const buf = withHeader ? Buffer.concat([header, bytes]) : Buffer.from(bytes);
        for (const check of [decodeTree, checkEncodedTree]) {
          try {
            check(buf);
          } catch (e) {
            expect(isVriftError(e)).toBe(true);
          }
        }
      }),
      { numRuns: 3000 },
    );
  });
});

describe('the quick path check', () => {
  it('accepts exactly the paths the full check accepts (short, long, odd components, multi-byte names)', () => {
    const part = fc.oneof(
      fc.constantFrom('', '.', '..', '...', '.a', 'a.', '..b', '.'.repeat(86), 'a', 'node_modules', '\0', '\ud800', 'é'.repeat(86), 'x'.repeat(85), 'x'.repeat(86), '語'.repeat(85), '語'.repeat(86)),
      fc.string({ maxLength: 100 }),
      fc.string({ unit: 'grapheme', maxLength: 90 }),
    );
    const path = fc.oneof(
      fc.array(part, { minLength: 1, maxLength: 8 }).map((ps) => ps.join('/')),
      fc.array(fc.constantFrom('.', '..', '...', 'a', ''), { minLength: 1, maxLength: 6 }).map((ps) => ps.join('/')), // dots: the one-pass check counts them
      fc.array(fc.constantFrom('abcdefghij'.repeat(9), 'k'), { minLength: 40, maxLength: 50 }).map((ps) => ps.join('/')), // near 4095 bytes
    );
    fc.assert(
      fc.property(path, (p) => {
        expect(quickPathProblem(p) === undefined).toBe(pathProblem(p) === undefined);
      }),
      { numRuns: 3000 },
    );
  });
});
