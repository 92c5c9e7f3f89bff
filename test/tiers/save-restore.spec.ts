// CI round trips with the real CLI, a real redis-server and s3rver: save
// on one $VRIFT_HOME, restore on an empty one, identical tree.
import { appendFileSync, chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vrift, vriftJson } from '../helpers/cli.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { startS3, tierEnv, type S3Server } from '../helpers/s3-server.js';
import { tempDir } from '../helpers/tmp.js';
import { snapshotTree, treeMode, writeSampleTree } from '../helpers/trees.js';

let redis: RedisServer;
let s3: S3Server;
let env: Record<string, string>;
// Hard links from the CAS are read-only: compare the exec bit, content and structure.
const same = (dir: string) => snapshotTree(dir, { mode: treeMode });
/** The blob digest of one file of a directory (via a throwaway ingest). */
const snapshotBlob = (dir: string, rel: string): string =>
  vriftJson(['ls', vriftJson(['ingest', dir], { home: scratch }).tree, '--json'], { home: scratch }).entries.find((e: { path: string }) => e.path === rel).digest;
const scratch = tempDir();

beforeAll(async () => {
  [redis, s3] = await Promise.all([startRedis(), startS3(['vrift-ci'])]);
  env = tierEnv({ redis, s3 });
});
afterAll(async () => {
  await Promise.all([redis?.stop(), s3?.stop()]);
});

describe('vrift save / restore', () => {
  it('restores on an empty node exactly what another node saved', () => {
    const src = tempDir();
    writeSampleTree(src);
    const a = tempDir();
    const saved = vriftJson(['save', 'ci/sample', src], { home: a, env });
    expect(saved.tiers.map((t: { tier: string; ok: boolean }) => [t.tier, t.ok])).toEqual([
      ['redis', true],
      ['s3', true],
    ]);
    const b = tempDir();
    const out = join(tempDir(), 'restored');
    const r = vriftJson(['restore', 'ci/sample', out], { home: b, env });
    expect(r.tree).toBe(saved.tree);
    expect(r.refFrom).toBe('redis');
    expect(r.local).toBe(0);
    // Small blobs come from Redis; the 3 MiB file is over Redis's 1 MiB limit and comes from S3.
    expect(r.from.redis.blobs).toBeGreaterThan(0);
    expect(r.from.s3.blobs).toBe(1);
    expect(same(out)).toEqual(same(src));
    // The ref is now local too: a second restore needs no tier at all.
    const again = vriftJson(['restore', 'ci/sample', join(tempDir(), 'again')], { home: b, env: { ...env, VRIFT_TIERS: 'local' } });
    expect([again.refFrom, again.fetched]).toEqual(['local', 0]);
  });

  it('a warm restore skips the per-blob check, yet a blob gone behind the index\'s back is fetched again', () => {
    const src = tempDir();
    writeSampleTree(src);
    vriftJson(['save', 'ci/warm', src], { home: tempDir(), env: tierEnv({ s3 }) });
    const b = tempDir();
    const first = vriftJson(['restore', 'ci/warm', join(tempDir(), 'o1')], { home: b, env: tierEnv({ s3 }) });
    expect(first.fetched).toBeGreaterThan(0);
    // Warm: everything is local and recorded complete.
    const warm = vriftJson(['restore', 'ci/warm', join(tempDir(), 'o2')], { home: b, env: tierEnv({ s3 }) });
    expect([warm.fetched, warm.local, warm.files]).toEqual([0, first.fetched + first.local, first.files]);
    // A blob file deleted under the store (the index still lists it): materialize notices, it is fetched again.
    const digest = snapshotBlob(src, 'src/main.c');
    const file = join(b, 'cas', digest.slice(0, 2), digest);
    chmodSync(join(b, 'cas', digest.slice(0, 2)), 0o755);
    rmSync(file);
    const out = join(tempDir(), 'o3');
    const again = vrift(['restore', 'ci/warm', out, '--json'], { home: b, env: tierEnv({ s3 }) });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/fetching it again/);
    expect(JSON.parse(again.stdout).fetched).toBe(1);
    expect(same(out)).toEqual(same(src));
    expect(existsSync(file)).toBe(true);
  });

  it('restores from S3 alone (packs) when Redis is not configured', () => {
    const src = tempDir();
    writeSampleTree(src);
    const a = tempDir();
    vriftJson(['save', 'ci/s3only', src], { home: a, env });
    const out = join(tempDir(), 'out');
    const r = vriftJson(['restore', 'ci/s3only', out], { home: tempDir(), env: tierEnv({ s3 }) });
    expect(Object.keys(r.from)).toEqual(['s3']);
    expect(same(out)).toEqual(same(src));
  });

  it('counts the bytes that cross the network: a compressed pack counts compressed', () => {
    const src = tempDir();
    for (let i = 0; i < 40; i++) writeFileSync(join(src, `f${i}.txt`), `line ${i} of a very repetitive file\n`.repeat(2000));
    const saved = vriftJson(['save', 'ci/wire', src], { home: tempDir(), env: tierEnv({ s3 }) });
    const sent = saved.metrics['vrift_tier_wire_bytes_sent_total{tier="s3"}'];
    expect(saved.newBytes).toBeGreaterThan(2_000_000);
    expect(sent).toBeGreaterThan(0);
    expect(sent).toBeLessThan(saved.newBytes / 10);
    const r = vriftJson(['restore', 'ci/wire', join(tempDir(), 'out')], { home: tempDir(), env: tierEnv({ s3 }) });
    const received = r.metrics['vrift_tier_wire_bytes_received_total{tier="s3"}'];
    expect(received).toBeGreaterThan(0);
    expect(received).toBeLessThan(r.fetchedBytes / 10);
  });

  it('moves only new blobs when a saved tree changes a little', () => {
    const src = tempDir();
    writeSampleTree(src);
    for (let i = 0; i < 40; i++) writeFileSync(join(src, `f${i}.txt`), `file ${i}\n`.repeat(50));
    const a = tempDir();
    const first = vriftJson(['save', 'ci/delta', src], { home: a, env: tierEnv({ s3 }) });
    appendFileSync(join(src, 'f3.txt'), 'changed\n');
    mkdirSync(join(src, 'added'));
    writeFileSync(join(src, 'added', 'new.txt'), 'new file\n');
    const second = vriftJson(['save', 'ci/delta', src], { home: a, env: tierEnv({ s3 }) });
    expect(second.tree).not.toBe(first.tree);
    const s3res = second.tiers.find((t: { tier: string }) => t.tier === 's3');
    expect(s3res.base).toBe(first.tree); // the previous tree's packs were reused
    expect(s3res.blobs).toBe(2); // the changed file and the added one
    const out = join(tempDir(), 'out');
    vriftJson(['restore', 'ci/delta', out], { home: tempDir(), env: tierEnv({ s3 }) });
    expect(same(out)).toEqual(same(src));
  });

  it('derives the ref from lockfiles with --key-from, and a changed lockfile is a miss', () => {
    const work = tempDir();
    const src = join(work, 'node_modules');
    mkdirSync(src);
    writeFileSync(join(src, 'index.js'), 'module.exports = 1;\n');
    writeFileSync(join(work, 'package-lock.json'), '{"lockfileVersion": 3}\n');
    const saved = vriftJson(['save', 'ci/nm', 'node_modules', '--key-from', 'package-lock.json'], { home: tempDir(), env, cwd: work });
    expect(saved.ref).toMatch(/^ci\/nm\/[0-9a-f]{64}$/);
    expect(saved.key.platform).toBe(process.platform);
    const b = tempDir();
    const r = vriftJson(['restore', 'ci/nm', 'restored', '--key-from', 'package-lock.json'], { home: b, env, cwd: work });
    expect(r.ref).toBe(saved.ref);
    expect(same(join(work, 'restored'))).toEqual(same(src));
    writeFileSync(join(work, 'package-lock.json'), '{"lockfileVersion": 3, "changed": true}\n');
    const miss = vrift(['restore', 'ci/nm', 'other', '--key-from', 'package-lock.json'], { home: b, env, cwd: work });
    expect(miss.code).toBe(1);
    expect(existsSync(join(work, 'other'))).toBe(false);
  });

  it('a new lockfile key still uploads only what changed (the newest sibling ref is the base)', () => {
    const work = tempDir();
    const src = join(work, 'node_modules');
    mkdirSync(src);
    for (let i = 0; i < 30; i++) writeFileSync(join(src, `m${i}.js`), `module.exports = ${i};\n`.repeat(40));
    writeFileSync(join(work, 'package-lock.json'), '{"v": 1}\n');
    const e = tierEnv({ s3 });
    const first = vriftJson(['save', 'ci/sib', 'node_modules', '--key-from', 'package-lock.json'], { home: tempDir(), env: e, cwd: work });
    writeFileSync(join(work, 'package-lock.json'), '{"v": 2}\n');
    writeFileSync(join(src, 'added.js'), 'module.exports = "new";\n');
    // Another runner (empty home) saves the new key: only S3 knows the sibling.
    const second = vriftJson(['save', 'ci/sib', 'node_modules', '--key-from', 'package-lock.json'], { home: tempDir(), env: e, cwd: work });
    expect(second.ref).not.toBe(first.ref);
    const s3res = second.tiers.find((t: { tier: string }) => t.tier === 's3');
    expect([s3res.base, s3res.blobs]).toEqual([first.tree, 1]);
  });

  it('exits 1 with one line on an unknown ref, and leaves the target alone', () => {
    const out = join(tempDir(), 'never');
    const r = vrift(['restore', 'ci/unknown', out], { home: tempDir(), env });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([
      'vrift: no ref "ci/unknown" in local, redis, s3 (a cache miss: build the directory, then `vrift save` it)',
    ]);
    expect(existsSync(out)).toBe(false);
    const json = vrift(['restore', 'ci/unknown', out, '--json'], { home: tempDir(), env });
    expect(JSON.parse(json.stdout).error.code).toBe('ERR_VRIFT_RESTORE_MISS');
  });

  it('pushes and pulls trees and refs explicitly', () => {
    const src = tempDir();
    writeSampleTree(src);
    const a = tempDir();
    const tree = vriftJson(['ingest', src, '--ref', 'manual/x'], { home: a }).tree;
    const pushed = vriftJson(['push', 'manual/x'], { home: a, env });
    expect(pushed.tiers.every((t: { ok: boolean }) => t.ok)).toBe(true);
    expect(vriftJson(['push', 'manual/x'], { home: a, env }).tiers.find((t: { tier: string }) => t.tier === 's3').present).toBe(true);
    const b = tempDir();
    const pulled = vriftJson(['pull', tree], { home: b, env: tierEnv({ s3 }) });
    expect(pulled.fetched).toBeGreaterThan(0);
    const out = join(tempDir(), 'm');
    expect(vrift(['materialize', tree, out], { home: b }).code).toBe(0);
    expect(same(out)).toEqual(same(src));
    expect(vriftJson(['pull', 'manual/x'], { home: tempDir(), env }).tree).toBe(tree);
  });

  it('never loads the AWS SDK or ioredis for local work (ingest, a restore served locally)', () => {
    const src = tempDir();
    writeSampleTree(src);
    const home = tempDir();
    vriftJson(['save', 'ci/lazy', src], { home, env });
    // NODE_DEBUG=module traces every CommonJS load: both SDKs are CommonJS.
    const trace = { ...env, NODE_DEBUG: 'module' };
    const ingest = vrift(['ingest', src], { home, env: trace });
    const restore = vrift(['restore', 'ci/lazy', join(tempDir(), 'out')], { home, env: trace });
    for (const r of [ingest, restore]) {
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/MODULE/); // the trace works…
      expect(r.stderr).not.toMatch(/@aws-sdk|ioredis/); // …and neither SDK was loaded
    }
  });

  it('saves locally with a notice when no remote tier is configured', () => {
    const src = tempDir();
    writeFileSync(join(src, 'a'), 'a');
    const r = vrift(['save', 'ci/local-only', src], { home: tempDir() });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/no remote tier is configured/);
  });
});
