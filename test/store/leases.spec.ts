// gc never breaks a running operation: what a lease names, and what its
// operation admits while it runs, stays through gc in this process and in
// another; a dead owner's lease counts for nothing; a lease that begins or
// grows while gc works is seen before gc evicts; and `vrift ingest` with
// `vrift gc` looping beside it always yields a tree that materializes.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { hashBuffer, type Digest } from '../../src/lib/digest.js';
import { gc, LEASE_CTIME_MARGIN_MS, planGc, runGc, type GcResult } from '../../src/node/store/gc.js';
import { ingest } from '../../src/node/store/ingest.js';
import { selfOwner, type LeaseRecord } from '../../src/node/store/leases.js';
import { Store } from '../../src/node/store/store.js';
import { ROOT, vrift, vriftAsync, vriftJson } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { snapshotTree, treeMode } from '../helpers/trees.js';

const STORE_JS = join(ROOT, 'dist', 'src', 'node', 'store', 'store.js');

const opened: Store[] = [];
afterAll(async () => {
  for (const s of opened.splice(0)) await s.close();
});

function openStore(home: string): Store {
  const s = Store.open(home);
  opened.push(s);
  return s;
}

/** Lets lmdb read a fresh snapshot (its read transaction is renewed on the next macrotask). */
const tick = (): Promise<void> => sleep(2);

/** Waits until CAS files written now count as older than a lease begun after this. */
const outOfMargin = (): Promise<void> => sleep(LEASE_CTIME_MARGIN_MS + 200);

async function gcElsewhere(home: string): Promise<{ evicted: number; leases: number; leasedBytes: number }> {
  const r = await vriftAsync(['gc', '--json'], { home });
  if (r.code !== 0) throw new Error(`vrift gc exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/**
 * A node process holding a lease on the store (through the compiled code,
 * as the CLI runs it): it runs `body` (which sets `out`), prints `out`, then
 * either dies on the spot (SIGKILL: no finally runs) or releases the lease
 * when its stdin closes.
 */
function leaseHolder(home: string, body: string, die = false): { proc: ReturnType<typeof spawn>; out: Promise<Record<string, unknown>> } {
  const script = `
    const { Store } = await import(${JSON.stringify(STORE_JS)});
    const store = Store.open(${JSON.stringify(home)});
    const lease = await store.leases.begin('holder');
    ${body}
    await store.meta.flush();
    process.stdout.write(JSON.stringify(out) + '\\n');
    if (${die}) process.kill(process.pid, 'SIGKILL');
    process.stdin.resume();
    process.stdin.on('end', async () => { lease.release(); await store.close(); process.exit(0); });
  `;
  const proc = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const out = new Promise<Record<string, unknown>>((resolve, reject) => {
    let buf = '';
    proc.stdout!.on('data', (d) => {
      buf += d;
      if (buf.includes('\n')) resolve(JSON.parse(buf));
    });
    proc.on('exit', (code) => reject(new Error(`lease holder exited ${code} before answering`)));
  });
  return { proc, out };
}

describe('leases', () => {
  it('keep what their operation admitted from gc, in this process and another, until released', async () => {
    const home = tempDir();
    const store = openStore(home);
    const before = store.putBlob(Buffer.from('stored before the lease')).digest;
    await outOfMargin();

    const lease = await store.leases.begin('test: admit');
    const a = store.putBlob(Buffer.from('admitted while the lease runs')).digest;
    const w = store.admission.writer('test'); // the streamed path, as tiers and peers admit
    w.write(Buffer.alloc(100_000, 7));
    const b = w.commit(hashBuffer(Buffer.alloc(100_000, 7))).digest;
    await store.meta.flush();

    const here = await gc(store);
    expect(here).toMatchObject({ evicted: 1, leases: 1 });
    expect(here.leasedBytes).toBeGreaterThanOrEqual(100_000);
    expect(store.cas.has(before)).toBe(false);
    for (const d of [a, b]) expect(store.hasBlob(d)).toBe(true);

    const there = await gcElsewhere(home);
    expect(there).toMatchObject({ evicted: 0, leases: 1 });
    await tick();
    for (const d of [a, b]) expect(store.hasBlob(d)).toBe(true);

    lease.release();
    await store.meta.flush();
    expect(await gcElsewhere(home)).toMatchObject({ evicted: 2, leases: 0 });
    await tick();
    for (const d of [a, b]) expect(store.cas.has(d)).toBe(false);
    expect(store.leases.live()).toEqual([]);
  });

  it('of a dead owner or a reused pid count for nothing; held by another process, they keep its blobs', async () => {
    const home = tempDir();
    const store = openStore(home);

    // A holder that dies without releasing its lease …
    const dead = leaseHolder(home, `const out = { id: lease.id, blob: store.putBlob(Buffer.from('orphaned')).digest };`, true);
    const orphan = await dead.out;
    await new Promise((r) => dead.proc.once('exit', r));
    // … and a record naming this process's pid with another start time: an earlier process that had our pid.
    const reused: LeaseRecord = { id: 'reused-pid', what: 'earlier process', owner: { ...selfOwner(), start: selfOwner().start + 1 }, startedAt: Date.now(), trees: [] };
    store.meta.state.putSync(['lease', reused.id], reused);
    await tick();
    expect(store.meta.state.get(['lease', orphan.id as string])).toBeDefined();
    expect(store.leases.live()).toEqual([]);
    expect(await gcElsewhere(home)).toMatchObject({ evicted: 1, leases: 0 });
    await tick();
    expect(store.cas.has(orphan.blob as Digest)).toBe(false);
    // gc removed the dead records.
    expect(store.meta.state.get(['lease', orphan.id as string])).toBeUndefined();
    expect(store.meta.state.get(['lease', 'reused-pid'])).toBeUndefined();

    // A live holder in another process.
    const live = leaseHolder(home, `const out = { id: lease.id, blob: store.putBlob(Buffer.from('held elsewhere')).digest };`);
    const held = await live.out;
    await tick();
    expect(store.leases.live().map((l) => l.id)).toEqual([held.id]);
    expect(await gc(store)).toMatchObject({ evicted: 0, leases: 1 });
    expect(store.hasBlob(held.blob as Digest)).toBe(true);

    live.proc.stdin!.end();
    await new Promise((res) => live.proc.once('exit', res));
    await tick();
    expect(store.leases.live()).toEqual([]);
    expect(await gcElsewhere(home)).toMatchObject({ evicted: 1, leases: 0 });
    await tick();
    expect(store.cas.has(held.blob as Digest)).toBe(false);
  });

  it('on a tree keep its blobs, however old, from gc in another process', async () => {
    const home = tempDir();
    const src = join(tempDir(), 'src');
    mkdirSync(join(src, 'sub'), { recursive: true });
    writeFileSync(join(src, 'a.txt'), 'a\n');
    writeFileSync(join(src, 'sub', 'b.bin'), Buffer.alloc(300_000, 3));
    writeFileSync(join(src, 'run.sh'), '#!/bin/sh\n');
    chmodSync(join(src, 'run.sh'), 0o755);
    const tree = vriftJson(['ingest', src], { home }).tree as Digest; // no ref: nothing pins it
    await outOfMargin();

    const store = openStore(home);
    const lease = await store.leases.begin('test: tree');
    await lease.addTree(tree);
    expect(await gcElsewhere(home)).toMatchObject({ evicted: 0, leases: 1 });
    const out = join(tempDir(), 'out');
    expect(vrift(['materialize', tree, out], { home }).code).toBe(0);
    expect(snapshotTree(out, { mode: treeMode })).toEqual(snapshotTree(src, { mode: treeMode }));

    lease.release();
    await store.meta.flush();
    expect((await gcElsewhere(home)).evicted).toBe(5); // three blobs, the tree and its times blob
    const again = vrift(['materialize', tree, join(tempDir(), 'again')], { home });
    expect(again.code).toBe(1);
  });

  it('begun or grown while gc works are seen before gc evicts anything', async () => {
    const home = tempDir();
    const store = openStore(home);
    const x = store.putBlob(Buffer.from('x: in a tree a lease will name')).digest;
    const tree = store.putTree([{ path: 'x.txt', kind: 'file', mode: 0o644, size: 31, digest: x }]);
    const y = store.putBlob(Buffer.from('y: nothing needs me')).digest;
    const rBytes = Buffer.from('r: evicted by someone else, then admitted again under a lease');
    const r = store.putBlob(rBytes).digest;
    await store.meta.flush();
    await outOfMargin();

    // gc decides with no lease live …
    const plan = planGc(store);
    expect(plan.keep.leases).toBe(0);
    expect(new Set(plan.candidates.map((c) => c.digest))).toEqual(new Set([x, tree, y, r]));

    // … then, before it evicts, an operation begins, names a tree, and admits a blob gc saw before.
    store.forgetBlob(r); // as another gc would
    await store.meta.flush();
    const lease = await store.leases.begin('test: during gc');
    await lease.addTree(tree);
    store.putBlob(rBytes);
    await store.meta.flush();

    const res = await runGc(store, plan);
    expect(res).toMatchObject({ evicted: 1, leases: 1 });
    expect(store.cas.has(y)).toBe(false);
    for (const d of [x, tree, r]) expect(store.hasBlob(d), d).toBe(true);
    lease.release();
  });

  it('begin and addTree wait for a gc batch already past its check', async () => {
    const home = tempDir();
    const store = openStore(home);
    // A batch in flight, marked by a live process (this one), as gc marks it.
    store.meta.transact(() => store.leases.markGcBatch('in-flight'));
    let begun = false;
    const p = store.leases.begin('test: waits').then((l) => {
      begun = true;
      return l;
    });
    await sleep(100);
    expect(begun).toBe(false);
    store.meta.transact(() => store.leases.clearGcBatch('in-flight'));
    const lease = await p;
    expect(begun).toBe(true);

    store.meta.transact(() => store.leases.markGcBatch('second'));
    let added = false;
    const q = lease.addTree('0'.repeat(64)).then(() => (added = true));
    await sleep(100);
    expect(added).toBe(false);
    store.meta.transact(() => store.leases.clearGcBatch('second'));
    await q;
    expect(lease.trees).toEqual(['0'.repeat(64)]);
    lease.release();
  });
});

describe('ingest under gc', () => {
  it('stores again what gc evicted while it ran, before its lease named the tree', async () => {
    const home = tempDir();
    const store = openStore(home);
    // An old tree nothing pins, whose 200 files a new directory repeats.
    const old = join(tempDir(), 'old');
    const src = join(tempDir(), 'src');
    mkdirSync(old);
    mkdirSync(src);
    for (let i = 0; i < 200; i++) {
      writeFileSync(join(old, `f${i}.txt`), `same content ${i}\n`);
      writeFileSync(join(src, `a-dup${i}.txt`), `same content ${i}\n`);
    }
    await ingest(store, old);
    await outOfMargin();
    // Then 40 MB of new files: more than one read batch (32 MB), so ingest waits for
    // its second batch after it found the 200 blobs of its first one already stored.
    for (let i = 0; i < 20; i++) writeFileSync(join(src, `z-new${i}.bin`), randomBytes(2 << 20));

    // gc runs, in full, the moment ingest first waits after its first progress report.
    let gcRun: Promise<GcResult> | undefined;
    const r = await ingest(store, src, {
      onProgress: () => {
        gcRun ??= new Promise((resolve) => queueMicrotask(() => resolve(gc(store))));
      },
    });
    expect((await gcRun!).evicted).toBeGreaterThanOrEqual(200);
    expect(r).toMatchObject({ hashed: 220, newBlobs: 220 }); // 20 new, 200 stored again
    const out = join(tempDir(), 'out');
    expect(vrift(['materialize', r.tree, out], { home }).code).toBe(0);
    expect(snapshotTree(out, { mode: treeMode })).toEqual(snapshotTree(src, { mode: treeMode }));
  });
});

describe('ingest re-reading a directory under gc', () => {
  it('keeps the blobs of the previous tree of the directory from the start', async () => {
    const home = tempDir();
    const store = openStore(home);
    const src = join(tempDir(), 'src');
    mkdirSync(src);
    for (let i = 0; i < 100; i++) writeFileSync(join(src, `f${i}.txt`), `file ${i}\n`);
    await sleep(1100); // out of the racy window: the re-ingest cache will vouch for these
    const first = await ingest(store, src); // no ref: nothing pins the tree
    await outOfMargin();
    writeFileSync(join(src, 'f0.txt'), 'changed\n');

    let gcRun: Promise<GcResult> | undefined;
    const r = await ingest(store, src, {
      onProgress: () => {
        gcRun ??= new Promise((resolve) => queueMicrotask(() => resolve(gc(store))));
      },
    });
    // gc ran while ingest read f0.txt; the lease named the previous tree before that.
    expect(await gcRun!).toMatchObject({ evicted: 0, leases: 1 });
    expect(r).toMatchObject({ cached: 99, hashed: 1, newBlobs: 1 });
    expect(store.hasBlob(first.tree)).toBe(true);
    const out = join(tempDir(), 'out');
    expect(vrift(['materialize', r.tree, out], { home }).code).toBe(0);
    expect(snapshotTree(out, { mode: treeMode })).toEqual(snapshotTree(src, { mode: treeMode }));
  });
});

describe('vrift ingest with vrift gc running beside it', () => {
  it('never fails, and every tree it prints materializes completely', async () => {
    const home = tempDir();
    const src = join(tempDir(), 'src');
    const FILES = 2000;
    // Each round rewrites a third of the files with content of two rounds
    // before (by then unpinned: gc is evicting it), so ingest keeps finding
    // blobs already stored that gc is about to take; the rest come from the
    // re-ingest cache; one file in 50 is executable (its twin is made too).
    const write = (round: number): void => {
      for (let i = 0; i < FILES; i++) {
        if (round > 0 && i % 3 !== round % 3) continue;
        const dir = join(src, `d${i % 30}`);
        mkdirSync(dir, { recursive: true });
        const p = join(dir, `f${i}${i % 50 === 0 ? '.sh' : '.txt'}`);
        writeFileSync(p, `file ${i} variant ${round % 2}\n${'.'.repeat(i % 2000)}`);
        if (i % 50 === 0) chmodSync(p, 0o755);
      }
    };

    let stop = false;
    const gcFailures: string[] = [];
    let gcRuns = 0;
    const looping = (async () => {
      while (!stop) {
        const r = await vriftAsync(['gc'], { home });
        gcRuns++;
        if (r.code !== 0) gcFailures.push(r.stderr);
      }
    })();

    try {
      for (let round = 0; round < 6; round++) {
        write(round);
        const r = await vriftAsync(['ingest', src, '--ref', 'e2e', '--json'], { home });
        expect(r.code, r.stderr).toBe(0);
        const tree = JSON.parse(r.stdout).tree as string;
        // The ref pins it now: materializing while gc loops is safe.
        const out = join(tempDir(), `out${round}`);
        const m = await vriftAsync(['materialize', tree, out], { home });
        expect(m.code, m.stderr).toBe(0);
        expect(snapshotTree(out, { mode: treeMode })).toEqual(snapshotTree(src, { mode: treeMode }));
      }
    } finally {
      stop = true;
      await looping;
    }
    expect(gcFailures).toEqual([]);
    expect(gcRuns).toBeGreaterThan(3);
    expect(vriftJson(['verify'], { home }).corrupt).toEqual([]);
  }, 240_000);
});
