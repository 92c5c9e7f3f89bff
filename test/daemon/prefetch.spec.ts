// Traces, prefetch and the bulk switch of lazy mounts (issue 12,
// docs/lazy.md): node A saves a tree to S3; node B lazily runs a job on it,
// and the order its files were first opened (B's trace) goes to S3 beside
// the tree; node C, empty, mounts the tree and prefetches in B's order,
// paced, while a demand open jumps the queue. A trace from a tier is
// untrusted. A job that reads most of a tree switches to the bulk pull.
// Real daemons, a real s3rver, real programs under the shim.
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { RefSigner } from '../../src/lib/ref-signature.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashBuffer } from '../../src/lib/digest.js';
import { encodeTraceBlob, MAX_TRACE_BLOB_BYTES } from '../../src/node/store/trace.js';
import { vrift, vriftJson } from '../helpers/cli.js';
import { startDaemon, stopDaemon } from '../helpers/daemon.js';
import { startS3, tierEnv, type S3Server } from '../helpers/s3-server.js';
import { tempDir } from '../helpers/tmp.js';

let s3: S3Server;
let env: Record<string, string>;

beforeAll(async () => {
  s3 = await startS3(['vrift-ci']);
  // One blob per fetch, so the order and the counts these tests watch are the fetches' own
  // (a pack frame's other blobs coming along is lazy.spec's concern).
  // Mounts from the full listing (prefetch and the bulk switch by blob); a partial mount's traced start is partial-mount.spec.ts.
  env = { ...tierEnv({ s3 }), VRIFT_S3_NEIGHBORS: 'false', VRIFT_LAZY_INDEX: 'false' };
});
afterAll(async () => {
  await s3?.stop();
});

interface Saved {
  tree: string;
  dir: string;
  /** Digest of each file, by name. */
  digest: Record<string, string>;
}

/** Node A: `n` files f000.txt … of 2 KiB each (distinct), and any `extra` files, saved to S3 under `ref`. */
function saveTree(ref: string, n: number, extra: Record<string, Buffer> = {}): Saved {
  const dir = tempDir('vrift-prefetch-src-');
  const digest: Record<string, string> = {};
  for (const [name, body] of Object.entries(extra)) {
    writeFileSync(join(dir, name), body);
    digest[name] = hashBuffer(body);
  }
  for (let i = 0; i < n; i++) {
    const name = `f${String(i).padStart(3, '0')}.txt`;
    const body = Buffer.from(`${ref} ${name}\n`.padEnd(2048, '.'));
    writeFileSync(join(dir, name), body);
    digest[name] = hashBuffer(body);
  }
  const { tree } = vriftJson<{ tree: string }>(['save', ref, dir], { home: tempDir(), env });
  return { tree, dir, digest };
}

interface MountStatus {
  path: string;
  treeBlobs: { blobs: number; bytes: number };
  local: { blobs: number; bytes: number };
  fetchedOnOpen: { blobs: number; bytes: number };
  prefetched: { blobs: number; bytes: number };
  prefetch: { state: string; trace: number; traceFrom: string | null; queued: number; failed: number };
  bulk: { reason: string; state: string; blobs: number; bytes: number } | null;
}

const status = (home: string, e = env) => vriftJson(['status'], { home, env: e });
const mountOf = (home: string, mnt: string, e = env): MountStatus => (status(home, e).mounts as MountStatus[]).find((m) => m.path === mnt)!;
const daemonLog = (home: string) => readFileSync(join(home, 'run', 'vriftd.log'), 'utf8');
const inCas = (home: string, d: string) => existsSync(join(home, 'cas', d.slice(0, 2), d));
/** FETCHes the daemon at `home` answered so far, of any result (its latency histogram's counts). */
async function fetchesAnswered(home: string): Promise<number> {
  const text = await (await fetch(status(home).metricsUrl as string)).text();
  return text.split('\n').filter((l) => l.startsWith('vrift_fetch_duration_seconds_count')).reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
}

/** Polls until `ok()` holds (each test's own bound stays far below the suite's timeout). */
async function until(ok: () => boolean, what: string, ms = 20_000): Promise<void> {
  for (const end = Date.now() + ms; !ok(); await sleep(50)) if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
}

function newMountPoint(): string {
  const mnt = join(tempDir(), 'mnt');
  mkdirSync(mnt);
  return mnt;
}

describe('traces and prefetch', () => {
  it("node B's first opens become the tree's trace in S3; node C prefetches in that order, paced, and a demand open jumps the queue", async () => {
    const t = saveTree('ci/prefetch', 40);
    const order = ['f007.txt', 'f003.txt', 'f021.txt', 'f012.txt', 'f030.txt'];

    // Node B: a job opens five files, in this order; the unmount saves and pushes the trace.
    const b = tempDir();
    startDaemon(b, env);
    const mntB = newMountPoint();
    const job = vrift(['run', '--mount', `${mntB}=ci/prefetch`, '--', 'sh', '-c', order.map((f) => `cat '${mntB}/${f}' >/dev/null`).join(' && ')], { home: b, env });
    expect(job.code, job.stderr).toBe(0);
    const onB = mountOf(b, mntB);
    expect(onB.fetchedOnOpen).toEqual({ blobs: 5, bytes: 5 * 2048 });
    expect(onB).toMatchObject({ treeBlobs: { blobs: 40, bytes: 40 * 2048 }, local: { blobs: 0, bytes: 0 }, prefetched: { blobs: 0, bytes: 0 }, prefetch: { state: 'no trace' }, bulk: null });
    vrift(['unmount', mntB], { home: b, env });
    await until(() => daemonLog(b).includes(`trace: tree ${t.tree}: 5 blobs pushed to s3`), "B's trace push");
    stopDaemon(b);

    // Node C, empty: one blob per second at most, one at a time, so the order shows.
    const c = tempDir();
    const envC = { ...env, VRIFT_PREFETCH_BYTES_PER_SEC: '2K', VRIFT_PREFETCH_CONCURRENCY: '1' };
    startDaemon(c, envC);
    const mntC = newMountPoint();
    vriftJson(['mount', 'ci/prefetch', mntC], { home: c, env: envC });
    // The last blob of the trace, opened at once: fetched on demand, not after the four before it.
    const last = order[order.length - 1]!;
    const cat = vrift(['run', '--mount', `${mntC}=ci/prefetch`, '--', 'cat', `${mntC}/${last}`], { home: c, env: envC });
    expect(cat.code, cat.stderr).toBe(0);
    expect(cat.stdout).toBe(readFileSync(join(t.dir, last), 'utf8'));
    const early = mountOf(c, mntC, envC);
    expect(early.fetchedOnOpen).toEqual({ blobs: 1, bytes: 2048 });
    expect(early.prefetch.state).toBe('running');
    expect(early.prefetch).toMatchObject({ trace: 5, traceFrom: 's3' });

    // The rest arrive without being opened, in B's order: what is here is always a prefix of it.
    const rest = order.slice(0, -1).map((f) => t.digest[f]!);
    await until(() => {
      const here = rest.map((d) => inCas(c, d));
      expect(here.indexOf(false) === -1 || here.slice(here.indexOf(false)).every((h) => !h), `arrived out of order: ${here}`).toBe(true);
      return here.every(Boolean);
    }, 'the prefetch');
    await until(() => mountOf(c, mntC, envC).prefetch.state === 'done', 'the prefetch to end');
    const done = mountOf(c, mntC, envC);
    expect(done).toMatchObject({ prefetched: { blobs: 4, bytes: 4 * 2048 }, fetchedOnOpen: { blobs: 1, bytes: 2048 }, local: { blobs: 0, bytes: 0 }, bulk: null });
    // No other blob of the tree came.
    expect(Object.values(t.digest).filter((d) => inCas(c, d)).sort()).toEqual(order.map((f) => t.digest[f]!).sort());
    expect(daemonLog(c)).toMatch(new RegExp(`prefetch: ${mntC}: 5 blobs \\(10240 bytes\\) in the order of the tree's trace \\(from s3\\)`));
    expect(status(c, envC).metrics).toMatchObject({ vrift_mount_prefetched_blobs_total: 4 });
    stopDaemon(c);
  });

  it('a cold node with a trace fetches its start-up set in one batch, begun with the listing: the job finds its files local', async () => {
    // A large file among the first ones the job opens (fetched alongside the batch, on its own), and one
    // it never opens, so what the job needs stays well under the bulk switch's quarter of the tree.
    const t = saveTree('ci/prefetch-batch', 60, { 'big.bin': randomBytes(1536 << 10), 'unread.bin': randomBytes(6 << 20) });
    const order = ['big.bin', ...Object.keys(t.digest).filter((f) => !f.endsWith('.bin')).filter((_, i) => i % 5 === 2)]; // 13 files, spread over the pack
    const cat = (mnt: string) => ['sh', '-c', `{ ${order.map((f) => `cat '${mnt}/${f}'`).join(' && ')}; } | sha256sum`];
    const b = tempDir();
    startDaemon(b, env);
    const mntB = newMountPoint();
    expect(vrift(['run', '--mount', `${mntB}=ci/prefetch-batch`, '--', ...cat(mntB)], { home: b, env }).code).toBe(0);
    vrift(['unmount', mntB], { home: b, env });
    await until(() => daemonLog(b).includes(`trace: tree ${t.tree}: 13 blobs pushed to s3`), "B's trace push");
    stopDaemon(b);

    // Node C, empty, default pace: the same job, in one `vrift run` (MOUNT, then the program at once).
    const c = tempDir();
    startDaemon(c, env);
    const mntC = newMountPoint();
    const job = vrift(['run', '--mount', `${mntC}=ci/prefetch-batch`, '--', ...cat(mntC)], { home: c, env });
    expect(job.code, job.stderr).toBe(0);
    expect(job.stdout.split(' ')[0]).toBe(createHash('sha256').update(Buffer.concat(order.map((f) => readFileSync(join(t.dir, f))))).digest('hex'));
    await until(() => mountOf(c, mntC).prefetch.state === 'done', 'the prefetch to end');
    const m = mountOf(c, mntC);
    // Every small blob came with the batch (an open that asked meanwhile waited for it). The large one is
    // fetched alongside, on its own, and the job opens it first: when its open asks before that fetch has
    // begun (the batch starts once the trace is read, the job once MOUNT answers), the open's fetch is the
    // one and the batch waits for it, so it counts as fetched on open; either way it is fetched once.
    expect(m).toMatchObject({ prefetch: { trace: 13, traceFrom: 's3', failed: 0 }, bulk: null });
    expect([0, 1]).toContain(m.fetchedOnOpen.blobs);
    expect(m.fetchedOnOpen.bytes).toBe(m.fetchedOnOpen.blobs * (1536 << 10));
    expect(m.prefetched).toEqual({ blobs: 13 - m.fetchedOnOpen.blobs, bytes: 12 * 2048 + (1536 << 10) - m.fetchedOnOpen.bytes });
    expect(daemonLog(c)).toContain(`prefetch: ${mntC}: start-up batch (begun with the listing): 13 of the first 13 blobs (${12 * 2048} bytes and 1 large ones alongside)`);
    // Only those: the other blobs of the frames read were not kept (and neighbors are off in this suite).
    expect(Object.values(t.digest).filter((d) => inCas(c, d)).sort()).toEqual(order.map((f) => t.digest[f]!).sort());
    stopDaemon(c);
  });

  it('files whose blobs prefetch brought open without asking the daemon; one damaged since is still caught and fetched again', async () => {
    const t = saveTree('ci/prefetch-direct', 30);
    const order = ['f004.txt', 'f011.txt', 'f020.txt', 'f027.txt'];
    const cat = (mnt: string, files: string[]) => ['sh', '-c', files.map((f) => `cat '${mnt}/${f}'`).join(' && ')];
    const b = tempDir();
    startDaemon(b, env);
    const mntB = newMountPoint();
    expect(vrift(['run', '--mount', `${mntB}=ci/prefetch-direct`, '--', ...cat(mntB, order)], { home: b, env }).code).toBe(0);
    vrift(['unmount', mntB], { home: b, env });
    await until(() => daemonLog(b).includes(`trace: tree ${t.tree}: 4 blobs pushed to s3`), "B's trace push");
    stopDaemon(b);

    const c = tempDir();
    startDaemon(c, env);
    const fetches = () => fetchesAnswered(c);
    const mntC = newMountPoint();
    vriftJson(['mount', 'ci/prefetch-direct', mntC], { home: c, env });
    await until(() => mountOf(c, mntC).prefetch.state === 'done', 'the prefetch to end');
    expect(mountOf(c, mntC).prefetched).toEqual({ blobs: 4, bytes: 4 * 2048 });
    const want = (files: string[]) => files.map((f) => readFileSync(join(t.dir, f), 'utf8')).join('');
    const job = vrift(['run', '--mount', `${mntC}=ci/prefetch-direct`, '--', ...cat(mntC, order)], { home: c, env });
    expect(job.code, job.stderr).toBe(0);
    expect(job.stdout).toBe(want(order));
    expect(await fetches()).toBe(0);

    // A prefetched blob written to since (its ctime moved): the shim asks, the daemon re-hashes it,
    // quarantines it and fetches it again; the program reads the right bytes.
    const victim = join(c, 'cas', t.digest['f011.txt']!.slice(0, 2), t.digest['f011.txt']!);
    const bytes = readFileSync(victim);
    bytes[7] = bytes[7]! ^ 0x20;
    writeFileSync(victim, bytes);
    const again = vrift(['run', '--mount', `${mntC}=ci/prefetch-direct`, '--', ...cat(mntC, ['f011.txt'])], { home: c, env });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toBe(want(['f011.txt']));
    expect(await fetches()).toBe(1);
    expect(daemonLog(c)).toContain(`fetch: blob ${t.digest['f011.txt']} changed on disk and no longer matches its name: quarantined, fetching it again`);
    stopDaemon(c);
  });

  it('a mount counts the blobs the node already holds as local, whether its index holds fewer blobs than the tree or more', async () => {
    const t = saveTree('ci/prefetch-local', 40);
    const have = ['f001.txt', 'f017.txt', 'f039.txt'];
    // (fewer: the index is walked and each blob looked up in the tree; more: the tree's blobs are looked up in the index)
    for (const others of [0, 120]) {
      const home = tempDir();
      const src = tempDir('vrift-prefetch-have-');
      for (const f of have) writeFileSync(join(src, f), readFileSync(join(t.dir, f)));
      for (let i = 0; i < others; i++) writeFileSync(join(src, `other${i}`), `a blob of no tree here ${i}\n`);
      vrift(['ingest', src], { home, env });
      startDaemon(home, env);
      const mnt = newMountPoint();
      vriftJson(['mount', 'ci/prefetch-local', mnt], { home, env });
      await until(() => mountOf(home, mnt).prefetch.state !== 'starting', 'the count of local blobs');
      const m = mountOf(home, mnt);
      expect(m, `${others} other blobs`).toMatchObject({ treeBlobs: { blobs: 40, bytes: 40 * 2048 }, local: { blobs: 3, bytes: 3 * 2048 }, fetchedOnOpen: { blobs: 0, bytes: 0 } });
      stopDaemon(home);
    }
  });

  it("a start-up set read ahead with the listing stores only the trace's blobs that are the tree's, even one the tree's packs hold besides", async () => {
    // v2 drops secret.txt; its push reuses v1's pack (the ref's last tree in S3), which still holds it.
    const home = tempDir();
    const dir = tempDir('vrift-prefetch-ahead-');
    const digest: Record<string, string> = {};
    const write = (name: string, body: string) => {
      writeFileSync(join(dir, name), body.padEnd(2048, '.'));
      digest[name] = hashBuffer(readFileSync(join(dir, name)));
    };
    for (let i = 0; i < 30; i++) write(`f${String(i).padStart(3, '0')}.txt`, `ahead f${i}\n`);
    write('secret.txt', 'only in v1\n');
    vriftJson(['save', 'ci/prefetch-ahead', dir], { home, env });
    rmSync(join(dir, 'secret.txt'));
    const v2 = vriftJson<{ tree: string }>(['save', 'ci/prefetch-ahead', dir], { home, env }).tree;
    const manifest = JSON.parse(await (await s3.client().send(new GetObjectCommand({ Bucket: 'vrift-ci', Key: `trees/${v2}.json` }))).Body!.transformToString()) as { packs: { tree: string }[] };
    expect(manifest.packs.some((p) => p.tree !== v2), "v2's manifest reuses v1's pack").toBe(true);
    // Its trace (as a tier may hold it) names secret.txt first, then three of v2's files.
    const liar = RefSigner.fromPem(RefSigner.generatePem());
    const first = ['f003.txt', 'f017.txt', 'f025.txt'];
    const trace = encodeTraceBlob(v2, [digest['secret.txt']!, ...first.map((f) => digest[f]!)]);
    const put = (key: string, body: Buffer | string) => s3.client().send(new PutObjectCommand({ Bucket: 'vrift-ci', Key: key, Body: body }));
    await put(`blobs/${hashBuffer(trace)}`, trace);
    await put(`refs/vrift-trace/${v2}`, JSON.stringify(liar.record(`vrift-trace/${v2}`, hashBuffer(trace))));

    const c = tempDir();
    startDaemon(c, env);
    const mnt = newMountPoint();
    vriftJson(['mount', 'ci/prefetch-ahead', mnt], { home: c, env });
    await until(() => !['starting', 'running'].includes(mountOf(c, mnt).prefetch.state), 'prefetch to decide');
    expect(mountOf(c, mnt)).toMatchObject({ prefetched: { blobs: 3, bytes: 3 * 2048 }, prefetch: { trace: 3, traceFrom: 's3', failed: 0 } });
    for (const f of first) expect(inCas(c, digest[f]!), f).toBe(true);
    expect(inCas(c, digest['secret.txt']!), 'a blob of the pack the tree does not name').toBe(false);
    expect(daemonLog(c)).toContain(`trace: tree ${v2}: 1 entries of the trace in s3 were ignored (not blobs of the tree, or repeated)`);
    stopDaemon(c);
  });

  it('a trace from a tier that is not a trace of the tree, or names other blobs, or is huge, is ignored with one log line', async () => {
    const t = saveTree('ci/prefetch-lies', 12);
    const home = tempDir();
    startDaemon(home, env);
    const liar = RefSigner.fromPem(RefSigner.generatePem());
    const put = (key: string, body: Buffer | string) => s3.client().send(new PutObjectCommand({ Bucket: 'vrift-ci', Key: key, Body: body }));
    /** Points the tree's trace ref at `body`, mounts the tree, and returns the mount once prefetch has decided. */
    const mountWithTrace = async (body: Buffer): Promise<MountStatus> => {
      const d = hashBuffer(body);
      await put(`blobs/${d}`, body);
      // Signed, as any writer's refs are (by a key of its own: by default any key's verified signature is accepted).
      await put(`refs/vrift-trace/${t.tree}`, JSON.stringify(liar.record(`vrift-trace/${t.tree}`, d)));
      const mnt = newMountPoint();
      vriftJson(['mount', 'ci/prefetch-lies', mnt], { home, env });
      await until(() => !['starting', 'running'].includes(mountOf(home, mnt).prefetch.state), 'prefetch to decide');
      const m = mountOf(home, mnt);
      vrift(['unmount', mnt], { home, env });
      return m;
    };
    const other = (i: number) => hashBuffer(Buffer.from(`not in the tree ${i}`));
    const ignored = () => daemonLog(home).split('\n').filter((l) => l.includes(`trace: tree ${t.tree}:`) && l.includes('ignored'));

    const cases: [Buffer, RegExp][] = [
      [Buffer.from('garbage, not a trace'), /the trace in s3 was ignored: not a trace \(bad header\)/],
      [encodeTraceBlob('ab'.repeat(32), [t.digest['f001.txt']!]), /the trace in s3 was ignored: a trace of another tree \(abab/],
      [encodeTraceBlob(t.tree, [other(1), other(2), other(3)]), /the trace in s3 was ignored: none of its 3 entries is a blob of the tree/],
      [Buffer.alloc(MAX_TRACE_BLOB_BYTES + 1), /the trace in s3 was ignored: blob \w+ is \d+ bytes, more than \d+/],
    ];
    for (const [i, [body, line]] of cases.entries()) {
      const m = await mountWithTrace(body);
      expect(m.prefetch.state).toBe('no trace');
      expect(m.prefetched).toEqual({ blobs: 0, bytes: 0 });
      expect(ignored()).toHaveLength(i + 1);
      expect(ignored()[i]).toMatch(line);
    }
    // Partly lying: its blobs of the tree are still hints, the rest dropped (one line).
    const m = await mountWithTrace(encodeTraceBlob(t.tree, [other(4), t.digest['f005.txt']!, other(5), t.digest['f005.txt']!]));
    expect(ignored()).toHaveLength(cases.length + 1);
    expect(ignored().at(-1)).toMatch(/3 entries of the trace in s3 were ignored \(not blobs of the tree, or repeated\)/);
    expect(m.prefetch).toMatchObject({ trace: 1, traceFrom: 's3' });
    await until(() => inCas(home, t.digest['f005.txt']!), 'the one true hint');
    expect(Object.values(t.digest).filter((d) => inCas(home, d))).toEqual([t.digest['f005.txt']]);
    stopDaemon(home);
  });
});

describe('never slower than eager', () => {
  it('a job reading every file switches to the bulk pull once a quarter of the tree came one by one', async () => {
    const t = saveTree('ci/prefetch-all', 40);
    const home = tempDir();
    startDaemon(home, env);
    const mnt = newMountPoint();
    const r = vrift(['run', '--mount', `${mnt}=ci/prefetch-all`, '--', 'sh', '-c', `cat '${mnt}'/*.txt | sha256sum`], { home, env });
    expect(r.code, r.stderr).toBe(0);
    const all = Object.keys(t.digest).sort().map((f) => readFileSync(join(t.dir, f)));
    expect(r.stdout.split(' ')[0]).toBe(createHash('sha256').update(Buffer.concat(all)).digest('hex'));
    await until(() => mountOf(home, mnt).bulk?.state === 'done', 'the bulk pull');
    const m = mountOf(home, mnt);
    expect(m.bulk!.reason).toMatch(/programs and prefetch needed \d+ of its 40 blobs \(\d+%\) one by one/);
    expect(m.fetchedOnOpen.blobs).toBeGreaterThanOrEqual(10);
    expect(m.fetchedOnOpen.blobs).toBeLessThan(40);
    expect(m.prefetch.state).toBe('bulk');
    expect(Object.values(t.digest).every((d) => inCas(home, d))).toBe(true);
    expect(daemonLog(home).split('\n').filter((l) => l.includes(`vriftd: bulk: ${mnt}:`) && l.includes('pulling the rest'))).toHaveLength(1);
    expect(status(home).metrics).toMatchObject({ vrift_mount_bulk_switches_total: 1 });
    stopDaemon(home);
  });

  it('what the bulk pull brought is named local in the VDir: the files no program opened yet open without asking the daemon', async () => {
    const t = saveTree('ci/prefetch-named', 40);
    const home = tempDir();
    startDaemon(home, env);
    const mnt = newMountPoint();
    // The first 12 files one by one: past a quarter of the tree, so the rest comes in bulk.
    const first = Object.keys(t.digest).sort().slice(0, 12);
    const r = vrift(['run', '--mount', `${mnt}=ci/prefetch-named`, '--', 'sh', '-c', first.map((f) => `cat '${mnt}/${f}' > /dev/null`).join(' && ')], { home, env });
    expect(r.code, r.stderr).toBe(0);
    await until(() => mountOf(home, mnt).bulk?.state === 'done', 'the bulk pull');
    const named = /vriftd: bulk: .*: done, \d+ blobs \(\d+ bytes\); (\d+) files named local/.exec(daemonLog(home));
    expect(Number(named?.[1])).toBeGreaterThanOrEqual(40 - 12);
    // Every file, read again: the daemon is asked nothing (before, each open of a file the pull brought was a FETCH round trip).
    const before = await fetchesAnswered(home);
    const all = vrift(['run', '--mount', `${mnt}=ci/prefetch-named`, '--', 'sh', '-c', `cat '${mnt}'/*.txt | sha256sum`], { home, env });
    const want = Object.keys(t.digest).sort().map((f) => readFileSync(join(t.dir, f)));
    expect([all.code, all.stdout.split(' ')[0]]).toEqual([0, createHash('sha256').update(Buffer.concat(want)).digest('hex')]);
    expect(await fetchesAnswered(home)).toBe(before);
    stopDaemon(home);
  });

  it('a scan in tree order switches too; the same number of opens out of order does not', async () => {
    saveTree('ci/prefetch-scan', 48);
    const home = tempDir();
    const envS = { ...env, VRIFT_BULK_AFTER_PERCENT: '0', VRIFT_BULK_AFTER_SEQUENTIAL: '12' };
    startDaemon(home, envS);
    const mnt = newMountPoint();
    const names = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `'${mnt}/f${String(from + i).padStart(3, '0')}.txt'`);
    // Twenty files backwards: no run in tree order.
    const back = vrift(['run', '--mount', `${mnt}=ci/prefetch-scan`, '--', 'sh', '-c', `for f in ${names(0, 20).reverse().join(' ')}; do cat "$f"; done >/dev/null`], { home, env: envS });
    expect(back.code, back.stderr).toBe(0);
    expect(mountOf(home, mnt, envS)).toMatchObject({ fetchedOnOpen: { blobs: 20 }, bulk: null });
    // Then twelve forwards.
    const fwd = vrift(['run', '--mount', `${mnt}=ci/prefetch-scan`, '--', 'cat', ...names(20, 32).map((n) => n.slice(1, -1))], { home, env: envS });
    expect(fwd.code, fwd.stderr).toBe(0);
    await until(() => mountOf(home, mnt, envS).bulk?.state === 'done', 'the bulk pull');
    expect(mountOf(home, mnt, envS).bulk!.reason).toBe('programs opened 12 missing blobs in a row in tree order');
    stopDaemon(home);
  });
});
