// Kept modification times (issue 15): a tree carries its files' mtimes in a
// times blob beside it (the tree id, and so dedup, is unchanged); save
// records them, restore and materialize apply them. The real test is make:
// a C project built on one runner, its build/ saved to s3rver, restored on
// a cold runner into a fresh git checkout (sources with the times git gives
// them) must leave make nothing to do; a source edited afterwards rebuilds
// just its object.
import { spawnSync } from 'node:child_process';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeTimes, encodeTimes, planMtimes } from '../../src/node/store/times.js';
import { vrift, vriftJson } from '../helpers/cli.js';
import { startDaemon, stopDaemon } from '../helpers/daemon.js';
import { startS3, tierEnv, type S3Server } from '../helpers/s3-server.js';
import { tempDir } from '../helpers/tmp.js';

const MAKEFILE = `CC ?= cc
build/app: build/main.o build/util.o
\t$(CC) -o $@ $^
build/%.o: src/%.c src/util.h
\t@mkdir -p build
\t$(CC) -c -o $@ $<
`;

function run(cmd: string, args: string[], cwd: string): { code: number; out: string } {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: 60_000, env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', HOME: cwd } });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

function git(cwd: string, ...args: string[]): void {
  const r = run('git', ['-c', 'user.name=ci', '-c', 'user.email=ci@example.com', '-c', 'init.defaultBranch=main', ...args], cwd);
  if (r.code !== 0) throw new Error(`git ${args.join(' ')}: ${r.out}`);
}

/** Commands make would run (-n), one per line. */
const planned = (dir: string): string[] => run('make', ['-n'], dir).out.split('\n').filter((l) => l.startsWith('cc '));

let s3: S3Server;
let env: Record<string, string>;
let origin: string;
let built: Record<string, bigint>;

beforeAll(async () => {
  s3 = await startS3(['vrift-mtimes']);
  env = tierEnv({ s3 });
  // The project, in a repository the runners clone.
  origin = tempDir();
  mkdirSync(join(origin, 'src'));
  writeFileSync(join(origin, 'Makefile'), MAKEFILE);
  writeFileSync(join(origin, 'src/util.h'), 'int util(void);\n');
  writeFileSync(join(origin, 'src/util.c'), '#include "util.h"\nint util(void) { return 41; }\n');
  writeFileSync(join(origin, 'src/main.c'), '#include "util.h"\nint main(void) { return util() + 1; }\n');
  writeFileSync(join(origin, '.gitignore'), 'build/\n');
  git(origin, 'init', '-q');
  git(origin, 'add', '.');
  git(origin, 'commit', '-q', '-m', 'project');

  // Runner 1: a checkout, a build, a save.
  const ws1 = join(tempDir(), 'ws');
  git(tempDir(), 'clone', '-q', origin, ws1);
  const make = run('make', [], ws1);
  expect(make.code, make.out).toBe(0);
  built = Object.fromEntries(['app', 'main.o', 'util.o'].map((f) => [f, statSync(join(ws1, 'build', f), { bigint: true }).mtimeNs]));
  const saved = vriftJson(['save', 'ci/build/k1', join(ws1, 'build')], { home: tempDir(), env });
  expect(saved.times).toMatch(/^[0-9a-f]{64}$/);
  await new Promise((r) => setTimeout(r, 50)); // the next checkout is written strictly later than the build
}, 120_000);

afterAll(async () => {
  await s3?.stop();
});

/** Runner 2: a fresh clone (sources as git leaves them: written now, after the build) and a cold store. */
function freshCheckout(): string {
  const ws = join(tempDir(), 'ws');
  git(tempDir(), 'clone', '-q', origin, ws);
  return ws;
}

describe('restore --copy into a fresh checkout: make finds the build up to date', () => {
  for (const via of ['in the CLI', 'through a daemon'] as const) {
    it(`an exact hit (${via}): nothing to do; an edit rebuilds just its object and the link`, () => {
      const home = tempDir();
      if (via === 'through a daemon') startDaemon(home, env);
      try {
        const ws = freshCheckout();
        expect(planned(ws)).toHaveLength(3); // without the cache: a full build
        const r = vriftJson(['restore', 'ci/build/k1', join(ws, 'build'), '--copy'], { home, env });
        expect(r).toMatchObject({ hit: 'exact', materialized: { mtimes: 'now', copied: 3 } });
        expect(run('make', ['-q'], ws).code).toBe(0);
        expect(run('make', [], ws).out).toMatch(/is up to date|Nothing to be done/);
        // The outputs keep their order (the objects before the program linked from them).
        const t = (f: string) => statSync(join(ws, 'build', f), { bigint: true }).mtimeNs;
        expect(t('main.o') < t('app') && t('util.o') < t('app')).toBe(true);
        for (const src of ['src/main.c', 'src/util.c', 'src/util.h']) expect(statSync(join(ws, src), { bigint: true }).mtimeNs < t('main.o')).toBe(true);
        // An edit after the restore is newer than the outputs.
        writeFileSync(join(ws, 'src/util.c'), '#include "util.h"\nint util(void) { return 40; }\n');
        expect(planned(ws)).toEqual(['cc -c -o build/util.o src/util.c', 'cc -o build/app build/main.o build/util.o']);
      } finally {
        if (via === 'through a daemon') stopDaemon(home);
      }
    });
  }

  it('without the times (--mtimes none: files written in tree order, as before times were kept) make has work to do', () => {
    const ws = freshCheckout();
    const r = vriftJson(['restore', 'ci/build/k1', join(ws, 'build'), '--copy', '--mtimes', 'none'], { home: tempDir(), env });
    expect(r.materialized.mtimes).toBe('none');
    expect(run('make', ['-q'], ws).code).toBe(1);
    expect(planned(ws)).toContain('cc -o build/app build/main.o build/util.o'); // the program is written before its objects
  });

  it('--mtimes kept gives each file the nanosecond time it was saved with', () => {
    const ws = freshCheckout();
    vriftJson(['restore', 'ci/build/k1', join(ws, 'build'), '--copy', '--mtimes', 'kept'], { home: tempDir(), env });
    for (const [f, t] of Object.entries(built)) expect(statSync(join(ws, 'build', f), { bigint: true }).mtimeNs).toBe(t);
    // Older than this checkout's sources: make rebuilds (the rule in docs/ci.md).
    expect(run('make', ['-q'], ws).code).toBe(1);
  });

  it('a partial hit keeps the saved times (its outputs may predate this checkout), so make rebuilds what is older than the sources', () => {
    const ws = freshCheckout();
    const r = vriftJson(['restore', 'ci/build/k2', join(ws, 'build'), '--copy', '--restore-keys', 'ci/build/'], { home: tempDir(), env });
    expect(r).toMatchObject({ hit: 'partial', restored: 'ci/build/k1', materialized: { mtimes: 'kept' } });
    for (const [f, t] of Object.entries(built)) expect(statSync(join(ws, 'build', f), { bigint: true }).mtimeNs).toBe(t);
  });

  it('hard links keep the store inode time unless times are asked for, which makes copies', () => {
    const home = tempDir();
    const linked = join(tempDir(), 'linked');
    const a = vriftJson(['restore', 'ci/build/k1', linked], { home, env });
    expect(a.materialized).toMatchObject({ mtimes: 'none', linked: 3, copied: 0 });
    const timed = join(tempDir(), 'timed');
    const b = vrift(['restore', 'ci/build/k1', timed, '--mtimes', 'kept', '--json'], { home, env });
    expect(b.code, b.stderr).toBe(0);
    expect(JSON.parse(b.stdout).materialized).toMatchObject({ mtimes: 'kept', linked: 0, copied: 3 });
    expect(b.stderr).toMatch(/copying files instead of hard-linking them, so that each keeps its own modification time/);
    expect(statSync(join(timed, 'app'), { bigint: true }).mtimeNs).toBe(built.app);
    // The store's inode was not touched: the linked copy still has the store's time.
    expect(statSync(join(linked, 'app')).mtimeMs).toBe(1000);
  });
});

describe('ingest and materialize', () => {
  it('times do not change the tree id; ingest --no-mtimes records none; materialize --copy applies the last ingest', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'a'), 'same\n');
    const touch = (when: string) => spawnSync('touch', ['-d', when, join(dir, 'a')], { env: { ...process.env, TZ: 'UTC' } });
    touch('2001-02-03 04:05:06.987654321');
    const home = tempDir();
    const first = vriftJson(['ingest', dir], { home });
    touch('2011-02-03 04:05:06.5');
    const second = vriftJson(['ingest', dir], { home });
    expect(second.tree).toBe(first.tree);
    expect(second.times).not.toBe(first.times);
    expect(vriftJson(['ingest', dir, '--no-mtimes'], { home }).times).toBeUndefined();
    const out = join(tempDir(), 'out');
    vriftJson(['materialize', first.tree, out, '--copy'], { home });
    expect(statSync(join(out, 'a'), { bigint: true }).mtimeNs).toBe(BigInt(Date.parse('2011-02-03T04:05:06.5Z')) * 1_000_000n);
  });
});

describe('the times blob, as untrusted input', () => {
  const tree = 'ab'.repeat(32);
  it('round-trips, and is refused for another tree, a wrong count or a bad line', () => {
    const buf = encodeTimes(tree, [1n, -5n, 1700000000123456789n]);
    expect(decodeTimes(buf, tree, 3)).toEqual([1n, -5n, 1700000000123456789n]);
    expect(decodeTimes(buf, 'cd'.repeat(32), 3)).toMatchObject({ problem: /another tree/ });
    expect(decodeTimes(buf, tree, 2)).toMatchObject({ problem: /longer than 2 times|3 times for 2 files/ });
    expect(decodeTimes(Buffer.from(buf.toString().replace('-5', 'x5')), tree, 3)).toMatchObject({ problem: /line 4 is not a time/ });
    expect(decodeTimes(buf.subarray(0, buf.length - 1), tree, 3)).toMatchObject({ problem: /truncated/ });
  });

  it('"now" keeps the order and equal times equal, ending at the moment given', () => {
    const { sec, nsec } = planMtimes([30n, 10n, 30n, 20n], 'now', 5_000_000_000n);
    const ns = [...sec].map((s, i) => BigInt(s) * 1_000_000_000n + BigInt(nsec[i]!));
    expect(ns).toEqual([5_000_000_000n, 4_999_999_998n, 5_000_000_000n, 4_999_999_999n]);
  });

  it('a ref record whose times were swapped (or dropped) does not verify: the ref is refused', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'f'), 'x\n');
    vriftJson(['save', 'ci/tamper', dir], { home: tempDir(), env });
    const key = 'refs/ci/tamper';
    const body = await (await s3.client().send(new GetObjectCommand({ Bucket: 'vrift-mtimes', Key: key }))).Body!.transformToString();
    const record = JSON.parse(body) as { times?: string };
    expect(record.times).toMatch(/^[0-9a-f]{64}$/);
    for (const forged of [{ ...record, times: 'ee'.repeat(32) }, { ...record, times: undefined }]) {
      await s3.client().send(new PutObjectCommand({ Bucket: 'vrift-mtimes', Key: key, Body: JSON.stringify(forged) }));
      const r = vrift(['restore', 'ci/tamper', join(tempDir(), 'out'), '--copy'], { home: tempDir(), env });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/signature does not verify/);
    }
  });
});
