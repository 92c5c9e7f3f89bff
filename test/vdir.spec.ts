// VDir: the TypeScript writer (through the native addon) and the C reader
// (shim/build/vdir-hammer, built from shim/tests/vdir_hammer.c) against the
// same shared-memory objects.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadNative, packageRoot } from '../src/lib/native.js';
import { S_IFDIR, S_IFLNK, S_IFREG, VDIR_F_REMOTE, VDir, type VDirEntryInput } from '../src/node/mount/vdir.js';
import { encodeNames } from '../src/node/store/names.js';
import { encodeTree, sortEntries, type TreeEntry } from '../src/node/store/tree.js';
import { runAs, runnableByAnyone } from './helpers/other-user.js';

const HAMMER = join(packageRoot(), 'shim', 'build', 'vdir-hammer');
const HAMMER_SAN = join(packageRoot(), 'shim', 'build', 'san', 'vdir-hammer');
const CAS = '/var/lib/vrift/cas';
const MNT = '/work/mnt';

let seq = 0;
const open: VDir[] = [];
function fresh(opts: { capacity?: number; poolBytes?: number } = {}): VDir {
  const v = VDir.create(`spec-${process.pid}-${++seq}`, { casRoot: CAS, mountRoot: MNT, ...opts });
  open.push(v);
  return v;
}
afterEach(() => {
  for (const v of open.splice(0)) v.close();
});

const dir = (path: string, mtimeSec = 1): VDirEntryInput => ({ path, mode: S_IFDIR | 0o755, size: 0, mtimeSec });
const file = (path: string, digest: string, size = 1, mode = 0o644): VDirEntryInput => ({
  path,
  mode: S_IFREG | mode,
  size,
  mtimeSec: 1700000000,
  digest,
});
const hex = (n: number) => n.toString(16).padStart(2, '0').repeat(32);

/** Runs vdir-hammer synchronously; returns its JSON lines. */
function hammer(args: string[]): { status: number | null; lines: any[]; stderr: string } {
  const r = spawnSync(HAMMER, args, { encoding: 'utf8', timeout: 300_000, killSignal: 'SIGKILL' });
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  return { status: r.status, lines, stderr: r.stderr };
}

describe('VDir writer', () => {
  it('round-trips create, lookup, list and remove, and the C reader sees the same', () => {
    const v = fresh();
    const d1 = 'ab'.repeat(32);
    v.apply([
      dir('src'),
      dir('src/lib'),
      file('src/lib/a.js', d1, 123),
      file('src/run.sh', hex(7), 9, 0o755),
      { path: 'src/link', mode: S_IFLNK | 0o777, size: 0, mtimeSec: 5, target: 'lib/a.js' },
      { ...file('lazy.bin', hex(9), 2 ** 40), flags: VDIR_F_REMOTE },
    ]);
    expect(v.lookup('src/lib/a.js')).toMatchObject({ mode: S_IFREG | 0o644, size: 123, mtimeSec: 1700000000, digest: d1, flags: 0 });
    expect(v.lookup('src/link')).toMatchObject({ mode: S_IFLNK | 0o777, size: 8, target: 'lib/a.js' });
    expect(v.lookup('lazy.bin')).toMatchObject({ size: 2 ** 40, flags: VDIR_F_REMOTE });
    expect(v.lookup('')).toMatchObject({ mode: S_IFDIR | 0o755, index: 0, nchildren: 2 });
    expect(v.list('')).toEqual(['src', 'lazy.bin']);
    expect(v.list('src')).toEqual(['lib', 'run.sh', 'link']);
    expect(v.lookup('src/lib/a')).toBeUndefined();
    expect(v.lookup('src/lib/a.js/')).toBeUndefined();

    const { shmPath } = v.stats();
    const [a, sh, l, miss] = hammer(['lookup', shmPath, 'src/lib/a.js', 'src/run.sh', 'src/link', 'src/nope']).lines;
    expect(a).toMatchObject({ rc: 0, mode: S_IFREG | 0o644, size: 123, digest: d1, ino: v.lookup('src/lib/a.js')!.index + 2 });
    expect(a.blob).toBe(`${CAS}/ab/${d1}`);
    expect(sh.blob).toBe(`${CAS}/07/${hex(7)}.x`); // executable: the .x twin
    expect(l).toMatchObject({ rc: 0, target: 'lib/a.js', size: 8 });
    expect(miss.rc).toBe(-2);
    expect(hammer(['list', shmPath, 'src']).lines[0]).toMatchObject({ rc: 0, names: ['lib', 'run.sh', 'link'] });
    expect(hammer(['list', shmPath, 'src/run.sh']).lines[0].rc).toBe(-20); // ENOTDIR

    // Change, then remove a directory together with its children.
    const before = v.stats().generation;
    v.apply([file('src/lib/a.js', hex(3), 4)]);
    expect(v.lookup('src/lib/a.js')).toMatchObject({ digest: hex(3), size: 4 });
    expect(v.stats().generation).toBe(before + 2);
    v.apply([], ['src/lib', 'src/lib/a.js']);
    expect(v.lookup('src/lib')).toBeUndefined();
    expect(v.list('src')).toEqual(['run.sh', 'link']);
    expect(hammer(['lookup', shmPath, 'src/lib/a.js']).lines[0].rc).toBe(-2);
    // A file can become a directory and back, in one batch with its children.
    v.apply([dir('src/run.sh'), file('src/run.sh/x', hex(1))]);
    expect(v.list('src/run.sh')).toEqual(['x']);
    v.apply([file('src/run.sh', hex(2))], ['src/run.sh/x']);
    expect(v.lookup('src/run.sh')).toMatchObject({ digest: hex(2) });
    expect(v.stats().entries).toBe(5); // root, src, src/run.sh, src/link, lazy.bin
  });

  it('rejects bad batches whole, with a code and a hint', () => {
    const v = fresh();
    v.apply([dir('a'), file('a/f', hex(1))]);
    const gen = v.stats().generation;
    const cases: [VDirEntryInput[], string[], string][] = [
      [[file('x/y', hex(1))], [], 'ERR_VRIFT_VDIR_NOT_FOUND'],
      [[file('a/f/g', hex(1))], [], 'ERR_VRIFT_VDIR_NOT_DIR'],
      [[], ['a'], 'ERR_VRIFT_VDIR_NOT_EMPTY'],
      [[file('a', hex(1))], [], 'ERR_VRIFT_VDIR_NOT_EMPTY'],
      [[], ['nope'], 'ERR_VRIFT_VDIR_NOT_FOUND'],
      [[], [''], 'ERR_VRIFT_VDIR_INVALID'],
      [[dir('b'), file('b/../c', hex(1))], [], 'ERR_VRIFT_VDIR_INVALID'],
      [[file('/abs', hex(1))], [], 'ERR_VRIFT_VDIR_INVALID'],
      [[{ path: 'nodigest', mode: S_IFREG | 0o644, size: 0, mtimeSec: 0 }], [], 'ERR_VRIFT_VDIR_INVALID'],
      [[file('baddigest', 'xyz')], [], 'ERR_VRIFT_VDIR_INVALID'],
      [[{ path: 'fifo', mode: 0o010644, size: 0, mtimeSec: 0 }], [], 'ERR_VRIFT_VDIR_INVALID'],
      [[{ path: 'l', mode: S_IFLNK | 0o777, size: 0, mtimeSec: 0 }], [], 'ERR_VRIFT_VDIR_INVALID'],
    ];
    for (const [ups, rems, code] of cases) {
      let err: any;
      try {
        v.apply([file('a/new', hex(2)), ...ups], rems); // a valid first upsert must not land either
      } catch (e) {
        err = e;
      }
      expect(err?.code, JSON.stringify([ups, rems])).toBe(code);
      expect(err.hint).toBeTruthy();
    }
    expect(v.lookup('a/new')).toBeUndefined();
    expect(v.stats().generation).toBe(gen);
    expect(() => VDir.create('bad/name', { casRoot: CAS, mountRoot: MNT })).toThrow(/invalid VDir name/);
  });

  it('applyNew publishes only entries whose path is free and whose parent is a directory, and says which it left out', () => {
    const v = fresh();
    v.apply([dir('a'), file('a/f', hex(1)), { path: 'ln', mode: S_IFLNK | 0o777, size: 0, mtimeSec: 5, target: 'a' }]);
    const gen = v.stats().generation;
    const left = v.applyNew([
      file('a/new', hex(2)), // 0: new, under a directory of the VDir
      file('a/f', hex(3)), // 1: taken in the VDir (not replaced)
      dir('a/d'), // 2: new directory ...
      file('a/d/x', hex(4)), // 3: ... whose child comes in the same batch
      file('a/new', hex(5)), // 4: taken by entry 0 of this batch
      file('nodir/y', hex(6)), // 5: parent missing
      file('a/f/z', hex(7)), // 6: parent is a file
      file('ln/z', hex(8)), // 7: parent is a symlink
      dir('ln'), // 8: taken (by the symlink) ...
      file('ln/w', hex(9)), // 9: ... so not a directory for its child either
      file('', hex(1)), // 10: the root
    ]);
    expect([...left]).toEqual([1, 4, 5, 6, 7, 8, 9, 10]);
    expect(v.lookup('a/new')).toMatchObject({ digest: hex(2) });
    expect(v.lookup('a/f')).toMatchObject({ digest: hex(1) });
    expect(v.lookup('a/d/x')).toMatchObject({ digest: hex(4) });
    expect(v.lookup('ln')).toMatchObject({ mode: S_IFLNK | 0o777, target: 'a' });
    expect(v.list('a')).toEqual(['f', 'new', 'd']);
    expect(v.stats().generation).toBe(gen + 2); // one seqlock window
    // nothing new: no window at all; a batch that is invalid fails whole
    expect([...v.applyNew([file('a/f', hex(3))])]).toEqual([0]);
    expect(v.stats().generation).toBe(gen + 2);
    expect(() => v.applyNew([file('a/ok', hex(1)), file('a/bad', 'xyz')])).toThrow(expect.objectContaining({ code: 'ERR_VRIFT_VDIR_INVALID' }));
    expect(v.lookup('a/ok')).toBeUndefined();
  });

  it('creates the object owner-only (0600) and another user cannot open it', () => {
    const v = fresh();
    const st = statSync(v.stats().shmPath);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.uid).toBe(process.getuid!());
    expect(hammer(['probe', v.stats().shmPath]).lines[0]).toEqual({ open: 0, error: '' });
    const r = runAs('nobody', runnableByAnyone(HAMMER), ['probe', v.stats().shmPath]);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ open: -13, error: 'Permission denied' });
    expect(r.status).toBe(13); // EACCES
  });

  it('returns exactly the path asked for among many colliding tags, and misses absent ones', () => {
    const v = fresh({ capacity: 100 });
    const paths: string[] = [];
    const ups: VDirEntryInput[] = [];
    for (let d = 0; d < 40; d++) {
      ups.push(dir(`p${d}`));
      for (let f = 0; f < 1000; f++) {
        const p = `p${d}/m${f}`;
        paths.push(p);
        ups.push({ ...file(p, hex(f % 256), d * 1000 + f) });
      }
    }
    v.apply(ups);
    // 40 000 paths over 8-bit tags: many lookups meet a same-tag stranger
    // first and must reject it by comparing the full path.
    const probe = v.probeStats();
    expect(probe.tagCollisions).toBeGreaterThan(100);
    for (const [i, p] of paths.entries()) {
      const e = v.lookup(p);
      if (e?.size !== Math.floor(i / 1000) * 1000 + (i % 1000)) throw new Error(`lookup(${p}) returned ${JSON.stringify(e)}`);
    }
    // Near misses: prefixes, suffixes, other dirs, same length.
    for (const p of ['p0/m', 'p0/m1000', 'p0/m0/', 'p40/m1', 'p1/n1', 'p0m1', 'P0/m1', 'p0/m01']) expect(v.lookup(p)).toBeUndefined();
    for (let f = 0; f < 5000; f++) expect(v.lookup(`p${f % 40}/x${f}`)).toBeUndefined();
    // The C reader agrees, on hits and misses alike.
    const sample = paths.filter((_, i) => i % 997 === 0);
    const out = hammer(['lookup', v.stats().shmPath, ...sample, ...sample.map((p) => `${p}z`)]).lines;
    sample.forEach((p, k) => expect(out[k]).toMatchObject({ path: p, rc: 0, size: v.lookup(p)!.size }));
    sample.forEach((p, k) => expect(out[sample.length + k]).toMatchObject({ rc: -2 }));
  });

  it('agrees with the C reader on paths of every length (all hash tail cases) and on UTF-8', () => {
    const v = fresh();
    const names = Array.from({ length: 70 }, (_, n) => 'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(2).slice(0, n + 1));
    v.apply([dir('x'), ...names.map((n, k) => file(`x/${n}`, hex(k), k))]);
    const near = names.map((n) => `x/${n.slice(0, -1)}Z`); // same length, last byte differs
    const out = hammer(['lookup', v.stats().shmPath, ...names.map((n) => `x/${n}`), ...near]).lines;
    names.forEach((n, k) => expect(out[k], n).toMatchObject({ rc: 0, size: k }));
    near.forEach((n, k) => expect(out[names.length + k], n).toMatchObject({ rc: -2 }));
    // Non-ASCII paths are UTF-8 bytes on both sides.
    v.apply([dir('ünï'), file('ünï/çödé-日本.txt', hex(5), 77)]);
    expect(v.list('ünï')).toEqual(['çödé-日本.txt']);
    expect(hammer(['lookup', v.stats().shmPath, 'ünï/çödé-日本.txt']).lines[0]).toMatchObject({ rc: 0, size: 77 });
    expect(hammer(['list', v.stats().shmPath, 'ünï']).lines[0]).toMatchObject({ rc: 0, names: ['çödé-日本.txt'] });
  });

  it('grows past its capacity by resizing, keeping lookups, slots and listings', () => {
    const v = fresh({ capacity: 8, poolBytes: 64 });
    const small = v.stats();
    v.apply([dir('d')]);
    const idx = v.lookup('d')!.index;
    for (let round = 0; round < 10; round++) {
      const ups: VDirEntryInput[] = [];
      for (let k = 0; k < 300; k++) ups.push(file(`d/f${round * 300 + k}`, hex(k % 256), k));
      v.apply(ups);
    }
    const big = v.stats();
    expect(big.resizes).toBeGreaterThan(2);
    expect(big.capacity).toBeGreaterThan(3000);
    expect(big.mappedBytes).toBeGreaterThan(small.mappedBytes);
    expect(big.shmPath).toBe(small.shmPath);
    expect(big.entries).toBe(3002);
    expect(v.lookup('d')!.index).toBe(idx); // slots (inodes) survive resizes
    for (let i = 0; i < 3000; i++) expect(v.lookup(`d/f${i}`)?.size).toBe(i % 300);
    expect(v.list('d')).toHaveLength(3000);
    expect(v.list('d').slice(0, 3)).toEqual(['f0', 'f1', 'f2']);
    // Symlink churn fills the pool with garbage: reclaimed in place, no growth.
    const target = (r: number) => `target-${r}-${'y'.repeat(1000)}`;
    const link = (r: number) => v.apply([{ path: 'd/link', mode: S_IFLNK | 0o777, size: 0, mtimeSec: r, target: target(r) }]);
    link(0); // the first target may need room (a pool filled by the files may grow once)
    const linked = v.stats().mappedBytes;
    for (let r = 1; r < 300; r++) link(r);
    expect(v.stats().compactions).toBeGreaterThan(0);
    expect(v.stats().mappedBytes).toBe(linked);
    expect(v.lookup('d/link')).toMatchObject({ target: target(299), size: target(299).length });
    const out = hammer(['lookup', big.shmPath, 'd/f2999', 'd/link']).lines;
    expect(out[0]).toMatchObject({ rc: 0, size: 2999 % 300 });
    expect(out[1]).toMatchObject({ rc: 0, target: target(299) });
  });

  it('copies an image: the same lookups and listings for the C reader at a new mount root, new mtimes, and a copy that takes changes on its own', () => {
    const src = fresh({ capacity: 16, poolBytes: 256 });
    const ups: VDirEntryInput[] = [dir('a'), dir('a/b'), { path: 'a/l', mode: S_IFLNK | 0o777, size: 0, mtimeSec: 3, target: 'b/f0' }];
    for (let i = 0; i < 200; i++) ups.push(file(`a/b/f${i}`, hex(i % 256), i, i % 3 ? 0o644 : 0o755));
    src.apply(ups); // grows: the image is of a resized object
    src.apply([], ['a/b/f7']); // and has a free slot
    const image = src.image();
    expect(image.byteLength).toBe(src.stats().mappedBytes);
    const name = `spec-${process.pid}-${++seq}`;
    const copy = VDir.fromImage(name, { casRoot: CAS, mountRoot: '/work/other mnt', image, mtimeSec: 1800000000 });
    open.push(copy);
    const paths = ['', 'a', 'a/b', 'a/l', 'a/b/f7', ...Array.from({ length: 200 }, (_, i) => `a/b/f${i}`)];
    for (const p of paths) {
      const [x, y] = [src.lookup(p), copy.lookup(p)];
      expect(y === undefined).toBe(x === undefined);
      if (x && y) expect({ ...y, mtimeSec: 0, check: 0 }).toEqual({ ...x, mtimeSec: 0, check: 0 });
      if (y) expect(y.mtimeSec).toBe(1800000000);
    }
    expect(copy.list('a/b')).toEqual(src.list('a/b'));
    expect(copy.stats()).toMatchObject({ entries: src.stats().entries, capacity: src.stats().capacity, mappedBytes: src.stats().mappedBytes });
    // The C reader: checks verify (a bad one would be -EIO), the new mount root and CAS path.
    const { shmPath } = copy.stats();
    expect(shmPath).toContain(name);
    const [f1, l, gone] = hammer(['lookup', shmPath, 'a/b/f1', 'a/l', 'a/b/f7']).lines;
    expect(f1).toMatchObject({ rc: 0, size: 1, mtime: 1800000000, blob: `${CAS}/01/${hex(1)}` });
    expect(l).toMatchObject({ rc: 0, target: 'b/f0' });
    expect(gone.rc).toBe(-2);
    expect(hammer(['list', shmPath, 'a/b']).lines[0].names).toEqual(src.list('a/b'));
    // The copy is a full writer (its private state rebuilt): removals in the
    // middle of a list, reuse of the free slot, growth; the source is untouched.
    copy.apply([file('a/b/new', hex(9), 9)], ['a/b/f100', 'a/b/f0']);
    for (let i = 0; i < 400; i++) copy.apply([file(`a/c${i}`, hex(i % 256), i)]);
    expect(copy.list('a/b')).toEqual(src.list('a/b').filter((n) => n !== 'f100' && n !== 'f0').concat('new'));
    expect(copy.lookup('a/b/new')).toMatchObject({ size: 9 });
    expect(copy.lookup('a/c399')).toMatchObject({ size: 399 });
    expect(copy.stats().resizes).toBeGreaterThan(0);
    expect(hammer(['list', copy.stats().shmPath, 'a/b']).lines[0].names).toEqual(copy.list('a/b'));
    expect(src.lookup('a/b/f100')).toMatchObject({ size: 100 });
    expect(src.lookup('a/b/new')).toBeUndefined();
    // mtimes kept when not given
    const kept = VDir.fromImage(`spec-${process.pid}-${++seq}`, { casRoot: CAS, mountRoot: MNT, image });
    open.push(kept);
    expect(kept.lookup('a/l')).toMatchObject({ mtimeSec: 3 });
  });

  it('builds from an encoded tree: the same entries, listings and C-reader view as applying its records, ctimes per entry, sized to fit', () => {
    const entries: TreeEntry[] = [
      { path: 'a', kind: 'dir', mode: 0o755, size: 0 },
      { path: 'a/b', kind: 'dir', mode: 0o755, size: 0 },
      { path: 'a/l', kind: 'symlink', mode: 0o777, size: 4, target: 'b/f0' },
      { path: 'é', kind: 'file', mode: 0o644, size: 2 ** 40, digest: hex(250) },
    ];
    for (let i = 0; i < 300; i++) entries.push({ path: `a/b/f${i}`, kind: 'file', mode: i % 3 ? 0o644 : 0o755, size: i, digest: hex(i % 256) });
    const encoded = encodeTree(entries);
    const sorted = sortEntries(entries).map((e) => e.path); // (the tree's order: ctimes go by it)
    const ctimes = new BigUint64Array(entries.length);
    const at = sorted.indexOf('a/b/f1');
    ctimes[at] = 1_700_000_000_123_456_789n;
    const name = `spec-${process.pid}-${++seq}`;
    const built = VDir.fromTree(name, { casRoot: CAS, mountRoot: MNT, tree: encoded, mtimeSec: 1800000000, ctimes });
    open.push(built);
    const ref = fresh();
    ref.apply(
      asRecords(entries, 1800000000).sort((x, y) => sorted.indexOf(x.path) - sorted.indexOf(y.path)),
    );
    for (const p of ['', 'a', 'a/b', 'a/l', 'é', ...Array.from({ length: 300 }, (_, i) => `a/b/f${i}`)]) {
      const x = ref.lookup(p)!;
      const y = built.lookup(p)!;
      // (the root's mtime is each VDir's creation time: the two may fall in different seconds)
      const same = p === '' ? { ctimeNs: 0n, check: 0, mtimeSec: 0 } : { ctimeNs: 0n, check: 0 };
      expect({ ...y, ...same }).toEqual({ ...x, ...same });
    }
    expect(built.lookup('a/b/f1')!.ctimeNs).toBe(1_700_000_000_123_456_789n);
    expect(built.lookup('a/b/f2')!.ctimeNs).toBe(0n);
    expect(built.list('a/b')).toEqual(ref.list('a/b'));
    expect(built.stats()).toMatchObject({ entries: entries.length + 1, capacity: ref.stats().entries });
    const [f1, l] = hammer(['lookup', built.stats().shmPath, 'a/b/f1', 'a/l']).lines;
    expect(f1).toMatchObject({ rc: 0, size: 1, mtime: 1800000000, blob: `${CAS}/01/${hex(1)}` });
    expect(l).toMatchObject({ rc: 0, target: 'b/f0' });
    // without ctimes: every one unknown
    const plain = VDir.fromTree(`spec-${process.pid}-${++seq}`, { casRoot: CAS, mountRoot: MNT, tree: encoded, mtimeSec: 1 });
    open.push(plain);
    expect(plain.lookup('a/b/f1')).toMatchObject({ ctimeNs: 0n, mtimeSec: 1 });
  });

  it('builds from a names blob (a partial mount): every file names 0…0, and every entry is what applying its records gives, its check good', () => {
    const entries: TreeEntry[] = [
      { path: 'a', kind: 'dir', mode: 0o755, size: 0 },
      { path: 'a-b', kind: 'file', mode: 0o644, size: 1, digest: hex(1) }, // (sorts between 'a' and 'a/…': siblings of one parent are not contiguous)
      { path: 'a/b', kind: 'dir', mode: 0o755, size: 0 },
      { path: 'a/l', kind: 'symlink', mode: 0o777, size: 4, target: 'b/f0' },
      { path: 'z', kind: 'dir', mode: 0o755, size: 0 },
      { path: 'z/y', kind: 'file', mode: 0o755, size: 7, digest: hex(2) },
    ];
    for (let i = 0; i < 300; i++) entries.push({ path: `a/b/f${i}`, kind: 'file', mode: i % 3 ? 0o644 : 0o755, size: i, digest: hex(i % 256) });
    const sorted = sortEntries(entries);
    const built = VDir.fromNames(`spec-${process.pid}-${++seq}`, { casRoot: CAS, mountRoot: MNT, names: encodeNames(sorted), mtimeSec: 1800000000 });
    open.push(built);
    const ref = fresh();
    ref.apply(
      asRecords(sorted, 1800000000, () => '0'.repeat(64)),
    );
    // (a check covers the VDir's own hash seed: each object's differ; the C reader below checks them)
    for (const e of sorted) expect({ ...built.lookup(e.path)!, check: 0 }).toEqual({ ...ref.lookup(e.path)!, check: 0 });
    for (const d of ['', 'a', 'a/b', 'z']) expect(built.list(d)).toEqual(ref.list(d));
    // The C reader checks every entry's check as it reads it.
    const seen = hammer(['lookup', built.stats().shmPath, ...sorted.map((e) => e.path)]).lines;
    expect(seen.map((l) => l.rc)).toEqual(sorted.map(() => 0));
    expect(seen[sorted.findIndex((e) => e.path === 'a/b/f7')]).toMatchObject({ size: 7, blob: `${CAS}/00/${'0'.repeat(64)}` });
  });

  it('builds from a names blob on a worker thread as it does on the caller\'s; refuses what does not parse, leaves no object, and cannot be closed mid-build', async () => {
    const entries: TreeEntry[] = [{ path: 'a', kind: 'dir', mode: 0o755, size: 0 }];
    for (let i = 0; i < 20_000; i++) entries.push({ path: `a/f${i}`, kind: 'file', mode: i % 3 ? 0o644 : 0o755, size: i, digest: hex(i % 256) });
    const names = encodeNames(sortEntries(entries));
    const sync = VDir.fromNames(`spec-${process.pid}-${++seq}`, { casRoot: CAS, mountRoot: MNT, names, mtimeSec: 1800000000 });
    open.push(sync);
    const built = await VDir.fromNamesAsync(`spec-${process.pid}-${++seq}`, { casRoot: CAS, mountRoot: MNT, names, mtimeSec: 1800000000 });
    open.push(built);
    expect(built.stats().entries).toBe(sync.stats().entries);
    for (const p of ['a', 'a/f0', 'a/f7', 'a/f19999']) expect({ ...built.lookup(p)!, check: 0 }).toEqual({ ...sync.lookup(p)!, check: 0 });
    const seen = hammer(['lookup', built.stats().shmPath, 'a/f7', 'a/f19999']).lines;
    expect(seen.map((l) => l.rc)).toEqual([0, 0]);
    // a names blob that does not parse: refused as the synchronous build refuses it, and no object is left
    const bad = Buffer.from(names.toString('utf8').replace('a/f10\0', 'a/../f10\0'));
    await expect(VDir.fromNamesAsync(`spec-${process.pid}-badasync`, { casRoot: CAS, mountRoot: MNT, names: bad, mtimeSec: 1 })).rejects.toMatchObject({ code: 'ERR_VRIFT_VDIR_INVALID' });
    expect(existsSync(`/dev/shm/vrift.${process.getuid!()}.spec-${process.pid}-badasync`)).toBe(false);
    // While a worker thread builds it, the writer refuses to close (it would unmap what the thread writes).
    const { VDirWriter } = loadNative();
    const w = new VDirWriter(`spec-${process.pid}-${++seq}`, CAS, MNT, 0, 0);
    const building = w.applyNamesAsync(names, 1);
    expect(() => w.close(true)).toThrow(/still being built/);
    expect(() => w.applyNamesAsync(names, 1)).toThrow(/being built already/);
    await expect(building).resolves.toBe(sync.stats().entries - 1);
    w.close(true);
  });

  it('refuses to build from a tree that does not parse, or ctimes that do not match it, and leaves no object', () => {
    const encoded = encodeTree([{ path: 'a', kind: 'dir', mode: 0o755, size: 0 }, { path: 'a/f', kind: 'file', mode: 0o644, size: 1, digest: hex(1) }]);
    const make = (tree: Buffer, ctimes?: BigUint64Array) => VDir.fromTree(`spec-${process.pid}-bad`, { casRoot: CAS, mountRoot: MNT, tree, mtimeSec: 1, ctimes });
    const bad = { code: 'ERR_VRIFT_VDIR_INVALID' };
    expect(() => make(Buffer.from('not a tree'))).toThrow(expect.objectContaining(bad));
    expect(() => make(Buffer.from(encoded.toString('utf8').replace('f 644 1 ', 'f 644 x ')))).toThrow(expect.objectContaining(bad));
    expect(() => make(Buffer.from(encoded.toString('utf8').replace('d 755 0 - a\0', '')))).toThrow(expect.objectContaining(bad)); // no parent
    expect(() => make(encoded, new BigUint64Array(1))).toThrow(expect.objectContaining(bad));
    // a tree may hold what a VDir cannot: each entry's fields are still checked
    const long = 'x'.repeat(5000);
    expect(() => make(encodeTree([{ path: 'l', kind: 'symlink', mode: 0o777, size: long.length, target: long }]))).toThrow(expect.objectContaining(bad));
    expect(() => make(encodeTree([{ path: 'big', kind: 'file', mode: 0o644, size: 2 ** 49, digest: hex(1) }]))).toThrow(expect.objectContaining(bad));
    expect(existsSync(`/dev/shm/vrift.${process.getuid!()}.spec-${process.pid}-bad`)).toBe(false);
  });

  it('refuses an image that is not a complete object of this CAS', () => {
    const src = fresh();
    src.apply([dir('x')]);
    const image = src.image();
    const make = (img: Buffer, casRoot = CAS) => VDir.fromImage(`spec-${process.pid}-${++seq}`, { casRoot, mountRoot: MNT, image: img });
    const bad = { code: 'ERR_VRIFT_VDIR_INVALID' };
    expect(() => make(image.subarray(0, 4096))).toThrow(expect.objectContaining(bad));
    expect(() => make(Buffer.alloc(image.byteLength))).toThrow(expect.objectContaining(bad));
    expect(() => make(image, '/another/cas')).toThrow(expect.objectContaining(bad));
    const odd = Buffer.from(image);
    odd.writeBigUInt64LE(odd.readBigUInt64LE(16) + 1n, 16); // gen odd: a copy taken mid-batch
    expect(() => make(odd)).toThrow(expect.objectContaining(bad));
  });

  it('retires on close: the name is gone and the writer refuses further use', () => {
    const v = VDir.create(`spec-${process.pid}-close`, { casRoot: CAS, mountRoot: MNT });
    const { shmPath } = v.stats();
    v.close();
    expect(existsSync(shmPath)).toBe(false);
    expect(() => v.stats()).toThrow(expect.objectContaining({ code: 'ERR_VRIFT_VDIR_CLOSED' }));
    v.close(); // idempotent
  });

  it('points readers of a stale object at its replacement, and close never unlinks a successor', async () => {
    const name = `spec-${process.pid}-stale`;
    const old = VDir.create(name, { casRoot: CAS, mountRoot: MNT });
    old.apply([file('x', hex(1), 1)]);
    const reader = new LineReader(spawn(HAMMER, ['follow', old.stats().shmPath], { stdio: ['pipe', 'pipe', 'inherit'] }));
    expect(await reader.next()).toBe('ready');
    expect(JSON.parse(await reader.ask('x'))).toMatchObject({ rc: 0, size: 1, remaps: 0 });
    // A new daemon takes the name over while the old object is still mapped.
    const next = VDir.create(name, { casRoot: CAS, mountRoot: MNT });
    open.push(next);
    next.apply([file('x', hex(2), 2)]);
    expect(JSON.parse(await reader.ask('x'))).toMatchObject({ rc: 0, size: 2, remaps: 1 });
    old.close(); // retires the old object only: the name is the successor's
    expect(existsSync(next.stats().shmPath)).toBe(true);
    expect(JSON.parse(await reader.ask('x'))).toMatchObject({ rc: 0, size: 2 });
    next.close();
    expect(JSON.parse(await reader.ask('x'))).toMatchObject({ rc: -116 }); // ESTALE: retired
    reader.end();
  });
});

// ---- the hammer: C readers against a live writer ---------------------------

// The payload of (path i, version v): mirrored from shim/tests/vdir_hammer.c.
function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
/** A tree's entries as the VDir records applying them takes (every mtime `mtimeSec`; a file's digest its own, or `digestOf`'s). */
function asRecords(entries: readonly TreeEntry[], mtimeSec: number, digestOf = (e: TreeEntry) => e.digest!): VDirEntryInput[] {
  return entries.map((e): VDirEntryInput => {
    if (e.kind === 'dir') return dir(e.path, mtimeSec);
    if (e.kind === 'symlink') return { path: e.path, mode: S_IFLNK | 0o777, size: e.size, mtimeSec, target: e.target! };
    return { ...file(e.path, digestOf(e), e.size, e.mode), mtimeSec };
  });
}

function hammerPath(i: number, dirs: number): string {
  return `d${i % dirs}/${i % 5 === 4 ? 'l' : 'f'}${i}`;
}
function hammerEntry(i: number, v: number, dirs: number): VDirEntryInput {
  const path = hammerPath(i, dirs);
  if (i % 5 === 4) return { path, mode: S_IFLNK | 0o777, size: 0, mtimeSec: v, target: `t/${i}/${v}/${'x'.repeat(v % 13)}` };
  const d = Buffer.alloc(32);
  for (let j = 0; j < 8; j++) d.writeUInt32LE(mix32(Math.imul(i, 0x9e3779b1) ^ Math.imul(v, 0x85ebca77) ^ Math.imul(j, 0xc2b2ae3d)), 4 * j);
  return { path, mode: S_IFREG | (v & 1 ? 0o755 : 0o644), size: v * 7 + i, mtimeSec: v, flags: v & 1, digest: d.toString('hex') };
}

/** Line-at-a-time access to a child's stdout. */
class LineReader {
  private buf = '';
  private waiters: ((line: string) => void)[] = [];
  private lines: string[] = [];
  readonly exited: Promise<number | null>;
  constructor(readonly child: ReturnType<typeof spawn>) {
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      this.buf += chunk;
      let nl;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        const w = this.waiters.shift();
        if (w) w(line);
        else this.lines.push(line);
      }
    });
    this.exited = new Promise((resolve) => child.on('exit', resolve));
  }
  next(): Promise<string> {
    const l = this.lines.shift();
    return l !== undefined ? Promise.resolve(l) : new Promise((resolve) => this.waiters.push(resolve));
  }
  ask(line: string): Promise<string> {
    this.child.stdin!.write(`${line}\n`);
    return this.next();
  }
  end(): void {
    this.child.stdin!.end();
  }
}

describe('VDir under concurrent readers', () => {
  it('never shows a C reader a torn or wrong entry while the writer adds, changes, removes and resizes', async () => {
    const P = 4000;
    const D = 16;
    const v = fresh({ capacity: 32, poolBytes: 256 });
    v.apply(Array.from({ length: D }, (_, k) => dir(`d${k}`)));
    const child = spawn(HAMMER, ['hammer', v.stats().shmPath, '--paths', `${P}`, '--dirs', `${D}`, '--threads', '2', '--min-lookups', '2000000', '--timeout', '120'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (c) => (stderr += c));
    const reader = new LineReader(child);
    expect(await reader.next()).toBe('ready');

    let seed = 12345;
    const rand = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    const present = new Set<number>();
    let version = 0;
    let ops = 0;
    let batches = 0;
    const t0 = Date.now();
    while (ops < 20_000 || Date.now() - t0 < 2000) {
      const ups: VDirEntryInput[] = [];
      const rems: string[] = [];
      const touched = new Set<number>();
      for (let k = 1 + rand(64); k > 0; k--) {
        const i = rand(P);
        if (touched.has(i)) continue;
        touched.add(i);
        if (!present.has(i) || rand(10) < 7) {
          ups.push(hammerEntry(i, ++version, D));
          present.add(i);
        } else {
          rems.push(hammerPath(i, D));
          present.delete(i);
        }
      }
      v.apply(ups, rems);
      ops += ups.length + rems.length;
      if (++batches % 8 === 0) await new Promise((r) => setImmediate(r));
    }
    const stats = v.stats();
    v.apply([file('done', hex(0))]);
    const status = await reader.exited;
    const result = JSON.parse(await reader.next());
    console.log(`vdir hammer: writer ${ops} ops in ${batches} batches, ${stats.resizes} resizes, ${stats.compactions} compactions; reader ${JSON.stringify(result)}`);
    expect(stderr).toBe('');
    expect(status).toBe(0);
    expect(result).toMatchObject({ bad: 0, eagain: 0, finished: true });
    expect(result.lookups).toBeGreaterThan(1_000_000);
    expect(result.hits).toBeGreaterThan(0);
    expect(result.misses).toBeGreaterThan(0);
    expect(result.lists).toBeGreaterThan(0);
    expect(stats.resizes).toBeGreaterThanOrEqual(3);
    // The reader followed the resizes (two quick ones may be followed in one
    // step) and ended on the writer's current object.
    expect(result.remaps).toBeGreaterThanOrEqual(1);
    expect(result.remaps).toBeLessThanOrEqual(stats.resizes);
    expect(result.capacity).toBe(v.stats().capacity);
    expect(result.entries).toBe(present.size + D + 2); // root, dirs, "done"
  }, 180_000);

  it('survives garbage: corrupted copies make calls fail, never crash (plain and ASan/UBSan builds)', () => {
    const v = fresh();
    const ups: VDirEntryInput[] = [];
    for (let d = 0; d < 12; d++) {
      ups.push(dir(`dir${d}`), dir(`dir${d}/sub`));
      for (let f = 0; f < 30; f++) {
        ups.push(file(`dir${d}/f${f}`, hex(f), f), file(`dir${d}/sub/file${f}.txt`, hex(f + 1), f));
        ups.push({ path: `dir${d}/l${f}`, mode: S_IFLNK | 0o777, size: 0, mtimeSec: f, target: `sub/file${f}.txt` });
      }
    }
    v.apply(ups);
    const shm = v.stats().shmPath;
    for (const bin of [HAMMER, HAMMER_SAN]) {
      const r = spawnSync(bin, ['fuzz', shm, '--iterations', '3000', '--seed', `${Date.now() % 100000}`], { encoding: 'utf8', timeout: 300_000, killSignal: 'SIGKILL' });
      expect(r.signal, r.stderr).toBeNull();
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(out).toMatchObject({ iterations: 3000, unexpected: 0 });
      expect(out.known).toBeGreaterThan(700);
      expect(out.eio).toBeGreaterThan(0); // corruption was seen and reported
      expect(out.ok).toBeGreaterThan(0);
      expect(out.stuck_seconds).toBeLessThan(5); // a stuck writer costs a bounded wait
    }
  });
});
