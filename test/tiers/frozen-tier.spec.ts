// A tier that stops answering (redis-server under SIGSTOP: its port still
// accepts connections, no command is ever answered) must cost a bounded,
// small time: the chain hedges to the next tier after its deadline and the
// tier's breaker opens, instead of each request waiting out a 15 s timeout.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vrift, vriftJson } from '../helpers/cli.js';
import { daemonPid, startDaemon, stopDaemon } from '../helpers/daemon.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { startS3, tierEnv, type S3Server } from '../helpers/s3-server.js';
import { tempDir } from '../helpers/tmp.js';
import { snapshotTree, treeMode, writeSampleTree } from '../helpers/trees.js';

let redis: RedisServer;
let s3: S3Server;
let env: Record<string, string>;
let src: string;
const same = (dir: string) => snapshotTree(dir, { mode: treeMode });

/** The same restore with Redis stopped entirely (the first test measures it). */
let stoppedMs = 0;

/** One cold restore of the ref (a fresh home, or a daemon's empty one), timed; it must succeed from S3 alone. */
function timedRestore(home = tempDir(), inDaemon = false): number {
  const out = join(tempDir(), 'out');
  const t0 = Date.now();
  const r = vrift(['restore', 'ci/frozen', out, '--json'], { home, env, timeoutMs: 60_000 });
  const ms = Date.now() - t0;
  expect(r.code, r.stderr).toBe(0);
  if (inDaemon) expect(r.stderr).not.toContain('in this process'); // the daemon ran it, with its long-lived chain
  expect(Object.keys(JSON.parse(r.stdout).from)).toEqual(['s3']);
  expect(same(out)).toEqual(same(src));
  return ms;
}

beforeAll(async () => {
  [redis, s3] = await Promise.all([startRedis(), startS3(['vrift-frozen'])]);
  env = tierEnv({ redis, s3 });
  src = tempDir();
  writeSampleTree(src);
  vriftJson(['save', 'ci/frozen', src], { home: tempDir(), env }); // in Redis and in S3
});
afterAll(async () => {
  redis?.thaw();
  await Promise.all([redis?.stop(), s3?.stop()]);
});

describe('a frozen tier', () => {
  it('costs a restore about what a stopped one does, never a command timeout', async () => {
    // Redis holds the tree: frozen, it is asked (and must be given up on) for the ref, the tree and every blob.
    expect(await redis.client().exists('vrift:ref:ci/frozen')).toBe(1);
    redis.client().disconnect();
    redis.freeze();
    let frozen: number;
    try {
      frozen = timedRestore();
    } finally {
      redis.thaw();
    }
    await redis.stop();
    let stopped: number;
    try {
      stopped = timedRestore();
    } finally {
      await redis.start();
    }
    console.log(`restore with redis frozen: ${frozen} ms, stopped: ${stopped} ms`);
    stoppedMs = stopped;
    expect(frozen).toBeLessThan(stopped + 2000);
    expect(frozen).toBeLessThan(10_000);
  }, 150_000);

  it('costs a restore through a daemon the same bound when Redis freezes while the daemon runs', async () => {
    expect(stoppedMs).toBeGreaterThan(0);
    const home = tempDir();
    startDaemon(home, env); // connected to Redis (tiers warm at start), then Redis freezes
    expect(daemonPid(home)).toBeDefined();
    redis.freeze();
    let frozen: number;
    try {
      frozen = timedRestore(home, true);
    } finally {
      redis.thaw();
      stopDaemon(home);
    }
    console.log(`restore through a daemon with redis frozen: ${frozen} ms (stopped, in process: ${stoppedMs} ms)`);
    expect(frozen).toBeLessThan(stoppedMs + 2000);
  }, 150_000);

  it('costs a save about what a stopped Redis does, with one warning naming Redis, and S3 still gets the tree and the ref', async () => {
    const save = (ref: string) => {
      const dir = tempDir();
      writeSampleTree(dir);
      writeFileSync(join(dir, 'unique.txt'), `${ref} ${Date.now()}\n`); // new blobs: every tier is written
      const t0 = Date.now();
      const r = vrift(['save', ref, dir, '--json'], { home: tempDir(), env, timeoutMs: 60_000 });
      return { ms: Date.now() - t0, r };
    };
    redis.client().disconnect();
    redis.freeze();
    let frozen: ReturnType<typeof save>;
    try {
      frozen = save('ci/frozen-save');
    } finally {
      redis.thaw();
    }
    await redis.stop();
    let stopped: ReturnType<typeof save>;
    try {
      stopped = save('ci/stopped-save');
    } finally {
      await redis.start();
    }
    console.log(`save with redis frozen: ${frozen.ms} ms, stopped: ${stopped.ms} ms`);
    // The save succeeds (S3 holds it) and says once, in one line, that Redis did not answer and what to check.
    expect(frozen.r.code, frozen.r.stderr).toBe(0);
    const warnings = frozen.r.stderr.split('\n').filter((l) => /redis/i.test(l));
    expect(warnings, frozen.r.stderr).toHaveLength(1);
    expect(warnings[0]).toMatch(/no answer within \d+ ms/);
    expect(warnings[0]).toMatch(/VRIFT_TIER_HEDGE_AFTER_MS/);
    const tiers = JSON.parse(frozen.r.stdout).tiers as { tier: string; ok: boolean }[];
    expect(tiers.find((t) => t.tier === 's3')?.ok).toBe(true);
    expect(tiers.find((t) => t.tier === 'redis')?.ok).toBe(false);
    expect(frozen.ms).toBeLessThan(stopped.ms + 3000); // a write waits 4 x chain.hedgeAfterMs (2 s) at most
    expect(frozen.ms).toBeLessThan(10_000);
    const out = join(tempDir(), 'out');
    expect(vrift(['restore', 'ci/frozen-save', out], { home: tempDir(), env: { ...env, VRIFT_TIERS: 's3' } }).code).toBe(0);
  }, 150_000);
});
