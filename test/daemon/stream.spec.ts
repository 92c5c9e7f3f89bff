// Large files stream (issue 12): a lazily mounted large file is readable
// before its blob has arrived; every byte handed out is verified against
// the blob's hash tree first. Real daemons, a real s3rver behind a slow
// link (a throttling TCP proxy), real programs under the shim.
import { randomBytes, createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnBounded } from '../helpers/bounded.js';
import { ROOT, VRIFT_BIN, vrift, vriftJson } from '../helpers/cli.js';
import { waitFor } from '../helpers/cluster.js';
import { crashDaemon, startDaemon, stopDaemon } from '../helpers/daemon.js';
import { freePort } from '../helpers/ports.js';
import { startS3, tierEnv, type S3Server } from '../helpers/s3-server.js';
import { serverProcess, type ServerProcess } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

const BIG = 24 << 20;
/** The slow link: the whole blob takes about 4 s; its first groups, milliseconds. */
const RATE = 6 << 20;

let s3: S3Server;
let slow: ServerProcess;
let slowEnv: Record<string, string>;
let src: string;
let bigDigest: string;
let streamTree: string;
let bigSha: string;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const status = (home: string) => vriftJson(['status'], { home, env: slowEnv });
const casHas = (home: string, digest: string) => existsSync(join(home, 'cas', digest.slice(0, 2), digest));
const log = (home: string) => readFileSync(join(home, 'run', 'vriftd.log'), 'utf8');

beforeAll(async () => {
  s3 = await startS3(['vrift-ci']);
  const port = await freePort();
  slow = serverProcess('throttle-proxy', process.execPath, [join(ROOT, 'test', 'helpers', 'throttle-proxy.mjs'), String(port), String(s3.port), String(RATE)], port, 10_000);
  await slow.start();
  slowEnv = { ...tierEnv({ s3 }), VRIFT_S3_ENDPOINT: `http://127.0.0.1:${port}`, VRIFT_PREFETCH: 'false', VRIFT_S3_NEIGHBORS: 'false' };
  src = tempDir();
  const big = randomBytes(BIG);
  writeFileSync(join(src, 'big.bin'), big);
  writeFileSync(join(src, 'small.txt'), 'small\n');
  bigSha = sha256(big);
  // Saved over the fast link: S3 gets the blob and its outboard.
  const saver = tempDir();
  vriftJson(['save', 'ci/stream', src], { home: saver, env: tierEnv({ s3 }) });
  const ls = vriftJson(['ls', 'ci/stream'], { home: saver });
  bigDigest = (ls.entries as { path: string; digest: string }[]).find((e) => e.path === 'big.bin')!.digest;
  streamTree = ls.tree as string;
}, 120_000);
afterAll(async () => {
  await slow?.stop();
  await s3?.stop();
});

function lazyRun(home: string, mnt: string, script: string, extra: Record<string, string> = {}) {
  return spawnBounded(process.execPath, [VRIFT_BIN, 'run', '--mount', `${mnt}=ci/stream`, '--', 'sh', '-c', script], {
    env: { ...process.env, VRIFT_HOME: home, ...slowEnv, ...extra },
    timeoutMs: 90_000,
  });
}

function freshNode(extra: Record<string, string> = {}): { home: string; mnt: string } {
  const home = tempDir();
  startDaemon(home, { ...slowEnv, ...extra });
  const mnt = join(tempDir(), 'mnt');
  mkdirSync(mnt);
  expect(status(home).streams.enabled, log(home)).toBe(true);
  return { home, mnt };
}

describe('a large file is read while it arrives', () => {
  it('S3 keeps an outboard beside a large blob', async () => {
    const keys = readdirSync(join(s3.dir, 'vrift-ci'), { recursive: true }).map(String);
    expect(keys.some((k) => k.includes(`outboards/${bigDigest}`) || k.includes(`outboards%2F${bigDigest}`)), keys.join('\n')).toBe(true);
  });

  it('the first bytes come before the blob is whole; all of it reads right; status counts the stream', async () => {
    const { home, mnt } = freshNode();
    const casPath = join(home, 'cas', bigDigest.slice(0, 2), bigDigest);
    const r = await lazyRun(home, mnt, `head -c 100000 '${mnt}/big.bin' | wc -c; test -e '${casPath}' && echo whole || echo arriving; sha256sum '${mnt}/big.bin'`).done;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`100000\narriving\n${bigSha}  ${mnt}/big.bin\n`);
    expect(casHas(home, bigDigest)).toBe(true);
    expect(status(home).streams).toMatchObject({ enabled: true, streamed: 1, failed: 0 });
    stopDaemon(home);
  });

  it('a partial mount (from the lazy index, which knows the file\'s size by its name) streams it too', async () => {
    const partial = { VRIFT_LAZY_INDEX: 'true' };
    // (a tree another node traced is mounted from its full listing, for the trace's prefetch: docs/lazy.md)
    await s3.client().send(new DeleteObjectCommand({ Bucket: 'vrift-ci', Key: `refs/vrift-trace/${streamTree}` }));
    const { home, mnt } = freshNode(partial);
    const casPath = join(home, 'cas', bigDigest.slice(0, 2), bigDigest);
    const r = await lazyRun(home, mnt, `head -c 100000 '${mnt}/big.bin' | wc -c; test -e '${casPath}' && echo whole || echo arriving; sha256sum '${mnt}/big.bin'`, partial).done;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`100000\narriving\n${bigSha}  ${mnt}/big.bin\n`);
    expect(log(home)).toMatch(/\(listing from the lazy index; files on first open\)/);
    expect(status(home).streams).toMatchObject({ enabled: true, streamed: 1, failed: 0 });
    stopDaemon(home);
  });

  it('a daemon killed mid-stream: the reader waits, and the restarted daemon finishes the file for it', async () => {
    const { home, mnt } = freshNode();
    const run = lazyRun(home, mnt, `sha256sum '${mnt}/big.bin'`);
    await waitFor('the stream to begin', () => status(home).streams.active === 1, 30_000);
    crashDaemon(home);
    await new Promise((r) => setTimeout(r, 500));
    startDaemon(home, slowEnv);
    const r = await run.done;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${bigSha}  ${mnt}/big.bin\n`);
    expect(log(home)).toMatch(/left midway by the last daemon, finished for its readers/);
    stopDaemon(home);
  });

  it('a tier that sends wrong bytes: what was verified reads, the rest fails with EIO, nothing wrong is stored', async () => {
    // The blob in S3, damaged 20 MiB in (its outboard is still right).
    const bad = readFileSync(join(src, 'big.bin'));
    bad[20 << 20] = bad[20 << 20]! ^ 0xff;
    await s3.client().send(new PutObjectCommand({ Bucket: 'vrift-ci', Key: `blobs/${bigDigest}`, Body: bad }));
    try {
      const { home, mnt } = freshNode();
      const py = `
import os
f = open("${mnt}/big.bin", "rb")
head = f.read(1 << 20)
print("head", len(head))
try:
    f.read()
    print("read all")
except OSError as e:
    print("rest", e.errno)
`;
      const r = await lazyRun(home, mnt, `python3 -c '${py}'`).done;
      expect(r.stdout, r.stderr).toBe('head 1048576\nrest 5\n');
      expect(casHas(home, bigDigest)).toBe(false);
      expect(log(home)).toMatch(new RegExp(`blob ${bigDigest}.*(failed verification|abandoned)`));
      stopDaemon(home);
    } finally {
      await s3.client().send(new PutObjectCommand({ Bucket: 'vrift-ci', Key: `blobs/${bigDigest}`, Body: readFileSync(join(src, 'big.bin')) }));
    }
  });

  it('VRIFT_STREAM=false: the open waits for the whole blob, as before', async () => {
    const home = tempDir();
    startDaemon(home, { ...slowEnv, VRIFT_STREAM: 'false' });
    const mnt = join(tempDir(), 'mnt');
    mkdirSync(mnt);
    const casPath = join(home, 'cas', bigDigest.slice(0, 2), bigDigest);
    const r = vrift(['run', '--mount', `${mnt}=ci/stream`, '--', 'sh', '-c', `head -c 10 '${mnt}/big.bin' | wc -c; test -e '${casPath}' && echo whole`], { home, env: { ...slowEnv, VRIFT_STREAM: 'false' } });
    expect([r.code, r.stdout], r.stderr).toEqual([0, '10\nwhole\n']);
    expect(status(home).streams.enabled).toBe(false);
    stopDaemon(home);
  });
});
