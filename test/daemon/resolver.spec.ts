// The daemon as the node that resolves misses (issue 10): it runs the
// CLI's operations through its one resolver (one fetch per blob and per
// tree on the host), resolves the shim's misses through the tiers, and
// the CLI runs the same operations itself when no daemon runs. Real
// daemons, a real s3rver, real programs under the shim.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, vrift, vriftAsync, vriftJson } from '../helpers/cli.js';
import { startDaemon, stopDaemon } from '../helpers/daemon.js';
import { startS3, tierEnv, type S3Server } from '../helpers/s3-server.js';
import { tempDir } from '../helpers/tmp.js';
import { snapshotTree, treeMode, writeSampleTree } from '../helpers/trees.js';

let s3: S3Server;
let env: Record<string, string>;
const same = (dir: string) => snapshotTree(dir, { mode: treeMode });

beforeAll(async () => {
  s3 = await startS3(['vrift-ci']);
  env = tierEnv({ s3 });
});
afterAll(async () => {
  await s3?.stop();
});

/** `files` files of random (incompressible) bytes, `size` each, in a few directories. */
function randomTree(files: number, size: number): string {
  const dir = tempDir('vrift-random-');
  for (let i = 0; i < files; i++) {
    const sub = join(dir, `d${i % 7}`);
    mkdirSync(sub, { recursive: true });
    writeFileSync(join(sub, `f${i}.bin`), randomBytes(size));
  }
  return dir;
}

const wire = (metrics: Record<string, number>) => metrics['vrift_tier_wire_bytes_received_total{tier="s3"}'] ?? 0;
const daemonLog = (home: string) => readFileSync(join(home, 'run', 'vriftd.log'), 'utf8');

describe('the daemon runs the operations of the CLI', () => {
  it('save, restore, pull, push and materialize go through it, with the same results, errors and exit codes', () => {
    const src = tempDir();
    writeSampleTree(src);
    const a = tempDir();
    startDaemon(a, env);
    const saved = vriftJson(['save', 'ci/daemon', src], { home: a, env });
    expect(saved.tiers.map((t: { tier: string; ok: boolean }) => [t.tier, t.ok])).toEqual([['s3', true]]);
    expect(daemonLog(a)).toMatch(/save: done in \d+ ms \(ref ci\/daemon/);
    expect(vriftJson(['push', 'ci/daemon'], { home: a, env }).tiers[0].present).toBe(true);

    // Another node: its daemon brings the bytes in (its own counters show them), the CLI only asked.
    const b = tempDir();
    startDaemon(b, env);
    const out = join(tempDir(), 'out');
    const r = vriftJson(['restore', 'ci/daemon', out], { home: b, env });
    expect([r.tree, r.refFrom, r.local]).toEqual([saved.tree, 's3', 0]);
    expect(same(out)).toEqual(same(src));
    const status = vriftJson(['status'], { home: b, env });
    expect(r.times).toMatch(/^[0-9a-f]{64}$/);
    expect(status.metrics['vrift_admitted_blobs_total{source="s3"}']).toBe(r.fetched + 2); // and the tree blob, and its times blob
    expect(wire(status.metrics)).toBeGreaterThan(0);
    expect(wire(r.metrics)).toBe(wire(status.metrics)); // the result's counters are this operation's
    expect(daemonLog(b)).toMatch(/restore: done/);

    // A pull of a local tree moves nothing; materialize of it writes it out.
    expect(vriftJson(['pull', 'ci/daemon'], { home: b, env }).fetched).toBe(0);
    const copy = join(tempDir(), 'copy');
    expect(vriftJson(['materialize', saved.tree, copy, '--copy'], { home: b, env }).files).toBe(r.materialized.files);
    expect(same(copy)).toEqual(same(src));

    // The same exit codes and one-line errors as in-process: a miss is 1, a target in the way 2.
    const miss = vrift(['restore', 'ci/nothing-here', join(tempDir(), 'x')], { home: b, env });
    expect([miss.code, miss.stderr.trim().split('\n').length]).toEqual([1, 1]);
    expect(miss.stderr).toMatch(/^vrift: no ref "ci\/nothing-here" in local, s3 \(a cache miss/);
    const inTheWay = vrift(['restore', 'ci/daemon', out], { home: b, env });
    expect([inTheWay.code, inTheWay.stderr.trim()]).toEqual([2, `vrift: ${out} is not empty (choose an empty directory or pass --force to replace its contents)`]);
    const noDaemon = tempDir();
    const local = vrift(['restore', 'ci/nothing-here', join(tempDir(), 'x')], { home: noDaemon, env });
    expect([local.code, local.stderr]).toEqual([miss.code, miss.stderr]);
    stopDaemon(a);
    stopDaemon(b);
  });

  it('draws its progress on the terminal of the CLI that asked', () => {
    const src = randomTree(40, 256 << 10);
    vriftJson(['save', 'ci/bars', src], { home: tempDir(), env });
    const home = tempDir();
    startDaemon(home, env);
    // script(1) gives the command a pseudo-terminal.
    const cmd = `node ${join(ROOT, 'bin', 'vrift.js')} restore ci/bars ${join(tempDir(), 'o')}`;
    const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { env: { ...process.env, ...env, VRIFT_HOME: home }, encoding: 'utf8', timeout: 120_000, killSignal: 'SIGKILL' });
    expect(r.status, r.stdout).toBe(0);
    expect(r.stdout).toMatch(/download .*100%/);
    expect(daemonLog(home)).toMatch(/restore: done/);
    stopDaemon(home);
  });

  it('runs the operation in the CLI itself, and says so, when the shell is configured otherwise than the daemon', () => {
    const src = tempDir();
    writeSampleTree(src);
    vriftJson(['save', 'ci/elsewhere', src], { home: tempDir(), env });
    const home = tempDir();
    startDaemon(home, {}); // no S3: it could not find the ref
    const r = vrift(['restore', 'ci/elsewhere', join(tempDir(), 'o'), '--json'], { home, env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/the daemon runs with another configuration than this shell \(VRIFT_S3_BUCKET, VRIFT_S3_ENDPOINT, .*differ\): running restore in this process/);
    expect(JSON.parse(r.stdout).refFrom).toBe('s3');
    expect(daemonLog(home)).not.toMatch(/restore:/);
    stopDaemon(home);
  });
});

describe('one fetch per tree and per blob on a host', () => {
  it('8 concurrent restores of one ref move the tree over the network once', async () => {
    const src = randomTree(60, 512 << 10); // 30 MiB, incompressible
    vriftJson(['save', 'ci/crowd', src], { home: tempDir(), env });

    // One restore alone, for the bytes one restore moves.
    const alone = vriftJson(['restore', 'ci/crowd', join(tempDir(), 'alone')], { home: tempDir(), env });
    const one = wire(alone.metrics);
    expect(one).toBeGreaterThan(30 << 20);

    const home = tempDir();
    startDaemon(home, env);
    const outs = Array.from({ length: 8 }, (_, i) => join(tempDir(), `o${i}`));
    const runs = await Promise.all(outs.map((o) => vriftAsync(['restore', 'ci/crowd', o, '--json'], { home, env })));
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    for (const o of outs) expect(same(o)).toEqual(same(src));
    const results = runs.map((r) => JSON.parse(r.stdout));
    expect(results.filter((r) => r.joined).length + results.filter((r) => r.local === results[0].files).length).toBeGreaterThanOrEqual(7);
    const moved = wire(vriftJson(['status'], { home, env }).metrics);
    expect(moved).toBeLessThanOrEqual(one * 1.1);
    stopDaemon(home);
  });
});

describe('the shim\'s misses go through the resolver', () => {
  it('a mounted file whose blob is missing locally is fetched, verified and served; EIO only when no tier has it, with the reason in the log', () => {
    const src = tempDir();
    writeSampleTree(src);
    const saved = vriftJson(['save', 'ci/lazy', src], { home: tempDir(), env });

    const home = tempDir();
    // The tree and its blobs arrive, then two blobs leave the store behind the index's back.
    vriftJson(['pull', 'ci/lazy'], { home, env });
    const entries = vriftJson(['ls', saved.tree, '--json'], { home }).entries as { path: string; digest?: string }[];
    const digestOf = (p: string) => entries.find((e) => e.path === p)!.digest!;
    const gone = (d: string) => rmSync(join(home, 'cas', d.slice(0, 2), d), { force: true });
    gone(digestOf('src/main.c'));
    gone(digestOf('big.bin'));

    startDaemon(home, env);
    const mnt = join(tempDir(), 'mnt');
    mkdirSync(mnt);
    const run = (...cmd: string[]) => vrift(['run', '--mount', `${mnt}=${saved.tree}`, '--', ...cmd], { home, env });
    const cat = run('cat', join(mnt, 'src', 'main.c'));
    expect(cat.code, cat.stderr).toBe(0);
    expect(cat.stdout).toBe(readFileSync(join(src, 'src', 'main.c'), 'utf8'));
    const sum = run('sha256sum', join(mnt, 'big.bin'));
    expect(sum.stdout.split(' ')[0]).toBe(execFileSync('sha256sum', [join(src, 'big.bin')], { encoding: 'utf8' }).split(' ')[0]);
    expect(daemonLog(home)).toMatch(new RegExp(`fetch: blob ${digestOf('big.bin')} from s3`));
    stopDaemon(home);

    // A blob no tier holds: the program gets EIO (not other bytes), the daemon's log says why.
    const lonely = tempDir();
    writeFileSync(join(src, 'only-here.txt'), 'in no tier\n');
    const tree = vriftJson(['ingest', src], { home: lonely }).tree;
    const d = vriftJson(['ls', tree, '--json'], { home: lonely }).entries.find((e: { path: string }) => e.path === 'only-here.txt').digest;
    rmSync(join(lonely, 'cas', d.slice(0, 2), d));
    startDaemon(lonely, env);
    const r = vrift(['run', '--mount', `${mnt}=${tree}`, '--', 'cat', join(mnt, 'only-here.txt')], { home: lonely, env });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Input\/output error/);
    expect(daemonLog(lonely)).toMatch(new RegExp(`fetch: blob ${d} is in no reachable tier \\(tried local, s3\\)`));
    stopDaemon(lonely);
  });
});

describe('errors name the real cause', () => {
  let mnt: string | undefined;
  afterEach(() => {
    if (mnt) spawnSync('umount', ['-l', mnt]);
    mnt = undefined;
  });

  for (const how of ['in the CLI', 'through the daemon'] as const) {
    it(`a disk that fills during a restore says disk full (exit 2), not a miss (${how})`, () => {
      const src = randomTree(24, 1 << 20);
      vriftJson(['save', 'ci/full', src], { home: tempDir(), env });
      mnt = tempDir('vrift-full-');
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=12m', 'tmpfs', mnt]);
      const home = join(mnt, 'home');
      if (how === 'through the daemon') startDaemon(home, env);
      const r = vrift(['restore', 'ci/full', join(tempDir(), 'o')], { home, env });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/disk full/);
      expect(r.stderr).not.toMatch(/no reachable tier/);
      if (how === 'through the daemon') stopDaemon(home);
    });
  }
});

describe('gc never breaks a running operation', () => {
  // The operation code is the same in the daemon and in the CLI; gc runs in another process either way.
  for (const how of ['in the CLI'] as const) {
    it(`restore and save succeed while vrift gc runs in a loop beside them (${how})`, async () => {
      const home = tempDir();
      let stop = false;
      const gcFailures: string[] = [];
      let gcRuns = 0;
      const looping = (async () => {
        while (!stop) {
          const r = await vriftAsync(['gc'], { home, env });
          gcRuns++;
          if (r.code !== 0) gcFailures.push(r.stderr);
        }
      })();
      try {
        for (let round = 0; round < 3; round++) {
          // A tree saved elsewhere, restored here while gc evicts everything unpinned.
          const src = randomTree(300, 16 << 10);
          vriftJson(['save', `ci/gc-${how.length}-${round}`, src], { home: tempDir(), env });
          const out = join(tempDir(), `out${round}`);
          const r = await vriftAsync(['restore', `ci/gc-${how.length}-${round}`, out, '--json'], { home, env });
          expect(r.code, r.stderr).toBe(0);
          expect(r.stderr).toBe('');
          expect(same(out)).toEqual(same(src));
          expect(vrift(['ref', 'rm', `ci/gc-${how.length}-${round}`], { home, env }).code).toBe(0); // gc may take it all now

          // A tree saved from here while gc runs: another node restores it whole.
          const mine = randomTree(300, 16 << 10);
          const s = await vriftAsync(['save', `ci/gc-mine-${how.length}-${round}`, mine, '--json'], { home, env });
          expect(s.code, s.stderr).toBe(0);
          expect(vrift(['ref', 'rm', `ci/gc-mine-${how.length}-${round}`], { home, env }).code).toBe(0);
          const back = join(tempDir(), `back${round}`);
          vriftJson(['restore', `ci/gc-mine-${how.length}-${round}`, back], { home: tempDir(), env });
          expect(same(back)).toEqual(same(mine));
        }
      } finally {
        stop = true;
        await looping;
      }
      expect(gcFailures).toEqual([]);
      expect(gcRuns).toBeGreaterThan(2);
    }, 240_000);
  }
});
