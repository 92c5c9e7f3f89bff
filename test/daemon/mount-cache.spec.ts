// The daemon keeps the VDir images of recently mounted trees
// (src/node/mount/image-cache.ts): a new mount of the same tree is a copy of
// one, and must be indistinguishable from a mount built from the tree.
import { chmodSync, existsSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ingest } from '../../src/node/store/ingest.js';
import { MountImageCache } from '../../src/node/mount/image-cache.js';
import { MountManager } from '../../src/node/mount/mounts.js';
import { Store } from '../../src/node/store/store.js';
import type { VDir } from '../../src/node/mount/vdir.js';
import { tempDir } from '../helpers/tmp.js';

const base = tempDir('vrift-mount-cache-');
let store: Store;
let treeA: string;
let treeB: string;

function writeTree(dir: string, variant: string): void {
  mkdirSync(join(dir, 'lib', 'deep', 'er'), { recursive: true });
  for (let i = 0; i < 40; i++) writeFileSync(join(dir, 'lib', i % 2 ? 'deep' : '', `f${i}.js`), `// ${variant} ${i}\n`.repeat(i + 1));
  writeFileSync(join(dir, 'lib', 'deep', 'er', 'name with spaces ü.txt'), variant);
  writeFileSync(join(dir, 'run.sh'), '#!/bin/sh\necho hi\n');
  chmodSync(join(dir, 'run.sh'), 0o755);
  symlinkSync('lib/f0.js', join(dir, 'main.js'));
}

/** Every path of a mounted VDir, walked through list(), with what lookup() says of each (slots included). */
function walk(v: VDir): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const visit = (p: string) => {
    out[p] = v.lookup(p);
    if (v.lookup(p)?.nchildren !== undefined) for (const n of v.list(p)) visit(p === '' ? n : `${p}/${n}`);
  };
  visit('');
  return out;
}

beforeAll(async () => {
  store = Store.open(join(base, 'home'));
  for (const [name, variant] of [['a', 'A'], ['b', 'B']] as const) writeTree(join(base, name), variant);
  treeA = (await ingest(store, join(base, 'a'))).tree;
  treeB = (await ingest(store, join(base, 'b'))).tree;
});
afterAll(async () => {
  await store.close();
});

describe('mounting a tree again', () => {
  it('copies the cached image: the same entries, slots and listings as a mount built from the tree', () => {
    const cold = new MountManager(store, () => {}, { imageCacheBytes: 0 }); // caches nothing
    const warm = new MountManager(store, () => {});
    try {
      cold.mount(treeA, join(base, 'm-cold'));
      warm.mount(treeA, join(base, 'm-1'));
      expect(warm.images.stats()).toMatchObject({ trees: 1, hits: 0, misses: 1 });
      warm.mount(treeA, join(base, 'm-2'));
      expect(warm.images.stats()).toMatchObject({ trees: 1, hits: 1, misses: 1 });
      expect(cold.images.stats()).toMatchObject({ trees: 0 });
      const want = walk(cold.vdirOf(join(base, 'm-cold'))!);
      expect(Object.keys(want).length).toBeGreaterThan(40);
      const noTime = (w: Record<string, unknown>) =>
        Object.fromEntries(Object.entries(w).map(([k, e]) => [k, { ...(e as object), mtimeSec: 0, check: 0 }]));
      for (const m of ['m-1', 'm-2']) {
        const v = warm.vdirOf(join(base, m))!;
        expect(noTime(walk(v))).toEqual(noTime(want));
        expect(v.stats().shmPath).toContain(warm.recordOf(join(base, m))!.name);
      }
      // each mount its own object: a change in one is not seen in the other
      warm.vdirOf(join(base, 'm-2'))!.apply([], ['lib/f0.js']);
      expect(warm.vdirOf(join(base, 'm-1'))!.lookup('lib/f0.js')).toBeDefined();
      expect(warm.vdirOf(join(base, 'm-2'))!.lookup('lib/f0.js')).toBeUndefined();
      // executables still get their .x twin
      const exe = warm.vdirOf(join(base, 'm-2'))!.lookup('run.sh')!;
      expect(existsSync(join(store.layout.cas, exe.digest!.slice(0, 2), `${exe.digest}.x`))).toBe(true);
    } finally {
      for (const m of ['m-cold']) cold.unmount(join(base, m));
      for (const m of ['m-1', 'm-2']) warm.unmount(join(base, m));
    }
  });

  it('never serves another tree from the cache', () => {
    const mm = new MountManager(store, () => {});
    try {
      mm.mount(treeA, join(base, 'x-a'));
      mm.mount(treeB, join(base, 'x-b'));
      expect(mm.images.stats()).toMatchObject({ trees: 2, hits: 0, misses: 2 });
      const [a, b] = [mm.vdirOf(join(base, 'x-a'))!, mm.vdirOf(join(base, 'x-b'))!];
      expect(a.lookup('lib/f0.js')!.digest).not.toBe(b.lookup('lib/f0.js')!.digest);
      expect(b.lookup('lib/f0.js')!.digest).toBe(store.getTree(treeB).entries.find((e) => e.path === 'lib/f0.js')!.digest);
    } finally {
      mm.unmount(join(base, 'x-a'));
      mm.unmount(join(base, 'x-b'));
    }
  });
});

describe('MountImageCache', () => {
  const img = (bytes: number) => ({ image: Buffer.alloc(bytes), execDigests: [] });

  it('forgets the least recently used tree first, and keeps within its bound', () => {
    const c = new MountImageCache(300);
    c.set('t1', img(100));
    c.set('t2', img(100));
    c.set('t3', img(100));
    expect(c.get('t1')).toBeDefined(); // t2 is now the oldest
    c.set('t4', img(100));
    expect([c.has('t1'), c.has('t2'), c.has('t3'), c.has('t4')]).toEqual([true, false, true, true]);
    c.set('big', img(301)); // larger than the bound: not kept, nothing evicted
    expect(c.has('big')).toBe(false);
    expect(c.stats()).toMatchObject({ trees: 3, bytes: 300 });
    c.set('t3', img(250)); // replacing an entry evicts others to fit
    expect(c.stats().bytes).toBeLessThanOrEqual(300);
    expect(c.has('t3')).toBe(true);
  });
});

afterAll(() => rmSync(base, { recursive: true, force: true }));
