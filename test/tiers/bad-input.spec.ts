// Bad input from outside: damaged S3 objects, a bad bucket, wrong
// credentials, a broken config. Each is one clear line (no stack), and
// nothing bad is admitted to the CAS.
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { existsSync, writeFileSync } from 'node:fs';
import { Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { zstdCompress, zstdDecompress } from '../../src/lib/zstd.js';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vrift, vriftJson, type RunResult } from '../helpers/cli.js';
import { startS3, tierEnv, type S3Server } from '../helpers/s3-server.js';
import { tempDir } from '../helpers/tmp.js';
import { snapshotTree, treeMode, writeSampleTree } from '../helpers/trees.js';

let s3: S3Server;
let src: string;
const same = (dir: string) => snapshotTree(dir, { mode: treeMode });

beforeAll(async () => {
  s3 = await startS3(['vrift-bad', 'vrift-other']);
  src = tempDir();
  writeSampleTree(src);
});
afterAll(async () => {
  await s3?.stop();
});

/** Saves the sample tree to S3 under its own prefix; returns that prefix's env and the tree id. */
function saveTo(prefix: string, extra: Record<string, string> = {}): { env: Record<string, string>; tree: string; home: string } {
  const env = { ...tierEnv({ s3, prefix }), ...extra };
  const home = tempDir();
  const tree = vriftJson(['save', 'ci/bad', src], { home, env }).tree as string;
  return { env, tree, home };
}

async function objectBytes(key: string): Promise<Buffer> {
  const r = await s3.client().send(new GetObjectCommand({ Bucket: 'vrift-bad', Key: key }));
  return Buffer.from(await r.Body!.transformToByteArray());
}

async function putObject(key: string, body: Buffer): Promise<void> {
  await s3.client().send(new PutObjectCommand({ Bucket: 'vrift-bad', Key: key, Body: body }));
}

/** Runs bytes through a (de)compressor. */
async function zstd(bytes: Buffer, t: Transform): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from([bytes]), t, async function* (src) {
    for await (const c of src) out.push(c as Buffer);
  });
  return Buffer.concat(out);
}

async function onlyPackKey(prefix: string): Promise<string> {
  const r = await s3.client().send(new ListObjectsV2Command({ Bucket: 'vrift-bad', Prefix: `${prefix}packs/` }));
  const packs = (r.Contents ?? []).map((o) => o.Key!).filter((k) => /\.pack(\.zst)?$/.test(k)); // beside each: its index (.idx)
  expect(packs.length).toBe(1);
  return packs[0]!;
}

/** A failed command: one line on stderr (after any warnings), no stack, and a clean store. */
function expectCleanFailure(r: RunResult, home: string, code: number, re: RegExp): void {
  expect(r.code).toBe(code);
  const lines = r.stderr.trim().split('\n');
  expect(lines[lines.length - 1]).toMatch(re);
  expect(r.stderr).not.toMatch(/\n\s+at |Error:/);
  const v = vriftJson(['verify'], { home });
  expect([v.ok, v.corrupt.length]).toEqual([true, 0]);
}

describe('bad input from S3', () => {
  it('a truncated pack: keeps the blobs before the cut, admits nothing else, names what is missing', async () => {
    // Uncompressed, so the cut falls at a known place in the archive itself.
    const { env } = saveTo('trunc/', { VRIFT_S3_COMPRESSION: 'none' });
    const key = await onlyPackKey('trunc/');
    expect(key).toMatch(/\.pack$/);
    const pack = await objectBytes(key);
    await putObject(key, pack.subarray(0, pack.length - 30)); // cut inside the last blob or before the end frame
    const home = tempDir();
    const out = join(tempDir(), 'out');
    const r = vrift(['restore', 'ci/bad', out], { home, env });
    expect(r.stderr).toMatch(/s3: s3 pack \S+: truncated archive: the stream ended (inside blob [0-9a-f]{64}|before the end frame)/);
    expectCleanFailure(r, home, 1, /^vrift: \d+ of \d+ blobs of tree [0-9a-f]{64} are in no reachable tier \(first: .+\)/);
    expect(existsSync(out)).toBe(false);
    // What arrived whole was kept (verified): a second try asks only for the rest.
    expect(vriftJson(['verify'], { home }).checked).toBeGreaterThan(2);
  });

  it('a truncated compressed pack: a clean miss, nothing bad admitted', async () => {
    const { env } = saveTo('trunc-z/');
    const key = await onlyPackKey('trunc-z/');
    expect(key).toMatch(/\.pack\.zst$/);
    const pack = await objectBytes(key);
    await putObject(key, pack.subarray(0, pack.length - 30));
    const home = tempDir();
    const out = join(tempDir(), 'out');
    const r = vrift(['restore', 'ci/bad', out], { home, env });
    expect(r.stderr).toMatch(/s3: s3 pack \S+: truncated archive: the stream failed after \d+ blobs: zstd: the compressed stream is truncated/);
    expectCleanFailure(r, home, 1, /^vrift: \d+ of \d+ blobs of tree [0-9a-f]{64} are in no reachable tier \(first: .+\)/);
    expect(existsSync(out)).toBe(false);
  });

  it('a pack with a wrong blob inside: rejects that blob, keeps the others', async () => {
    const { env } = saveTo('wrong/');
    const key = await onlyPackKey('wrong/');
    expect(key).toMatch(/\.pack\.zst$/);
    const pack = await zstd(await objectBytes(key), zstdDecompress());
    // Walk the frames to the first non-empty blob and flip its first byte.
    let off = 16;
    let victim = '';
    while (pack[off] === 0x42) {
      const size = Number(pack.readBigUInt64BE(off + 33));
      if (size > 0) {
        victim = pack.toString('hex', off + 1, off + 33);
        pack[off + 41] = pack[off + 41]! ^ 0xff;
        break;
      }
      off += 41 + size;
    }
    await putObject(key, await zstd(pack, zstdCompress()));
    const home = tempDir();
    const r = vrift(['restore', 'ci/bad', join(tempDir(), 'out')], { home, env });
    expect(r.stderr).toContain(`s3: blob ${victim} in s3 pack ${key.slice('wrong/'.length)} rejected: its bytes do not hash to its name`);
    expectCleanFailure(r, home, 1, new RegExp(`^vrift: 1 of \\d+ blobs of tree [0-9a-f]{64} are in no reachable tier \\(first: \\S+ ${victim}\\)`));
    const res = vriftJson(['verify'], { home });
    expect(res.checked).toBeGreaterThan(5);
  });

  it('a truncated large object is rejected by its digest', async () => {
    const { env, tree, home: saver } = saveTo('loose/', { VRIFT_S3_LOOSE_BLOB: '1M' });
    const big = (vriftJson(['ls', tree], { home: saver }).entries as { path: string; digest: string }[]).find((e) => e.path === 'big.bin')!;
    const bytes = await objectBytes(`loose/blobs/${big.digest}`);
    await putObject(`loose/blobs/${big.digest}`, bytes.subarray(0, 1000));
    const home = tempDir();
    const r = vrift(['restore', 'ci/bad', join(tempDir(), 'out')], { home, env });
    expect(r.stderr).toMatch(new RegExp(`s3: blob ${big.digest} failed verification and was rejected`));
    expectCleanFailure(r, home, 1, new RegExp(`\\(first: big\\.bin ${big.digest}\\)`));
  });

  it('a corrupt ref object is an error naming the ref, not a crash', async () => {
    const { env } = saveTo('badref/');
    await putObject('badref/refs/ci/bad', Buffer.from('not json'));
    const home = tempDir();
    const r = vrift(['restore', 'ci/bad', join(tempDir(), 'out')], { home, env });
    expect(r.stderr).toContain('s3: ref "ci/bad" holds "not json", not a tree id');
    expectCleanFailure(r, home, 1, /^vrift: no ref "ci\/bad" in local, s3/);
  });
});

describe('bad settings', () => {
  it('an invalid bucket name: one line naming the variable, before anything is touched', () => {
    const home = tempDir();
    const r = vrift(['restore', 'ci/x', join(home, 'out')], { home, env: { ...tierEnv({ s3 }), VRIFT_S3_BUCKET: 'Bad_Bucket!' } });
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(
      'vrift: invalid configuration: VRIFT_S3_BUCKET: "Bad_Bucket!" is not a valid bucket name: 3-63 characters of a-z, 0-9, "." and "-", starting and ending with a letter or digit (e.g. vrift-cache) (fix the environment variable or ' +
        `${home}/config.json; docs/configuration.md lists every setting)`,
    );
  });

  it('a bucket that does not exist', () => {
    const home = tempDir();
    const env = { ...tierEnv({ s3 }), VRIFT_S3_BUCKET: 'no-such-bucket' };
    const r = vrift(['restore', 'ci/x', join(home, 'out')], { home, env });
    expectCleanFailure(r, home, 2, /^vrift: no ref "ci\/x" in local, s3; s3: bucket "no-such-bucket" does not exist at http:\/\/127\.0\.0\.1:\d+ \(create the bucket, or fix VRIFT_S3_BUCKET/);
    const s = vrift(['save', 'ci/x', src], { home, env });
    expect(s.code).toBe(2);
    expect(s.stderr.trim().split('\n').pop()).toMatch(/^vrift: saved ci\/x locally \([0-9a-f]{64}\) but no remote tier took it: s3: bucket "no-such-bucket" does not exist/);
  });

  it('wrong credentials', () => {
    const home = tempDir();
    const env = { ...tierEnv({ s3 }), VRIFT_S3_ACCESS_KEY_ID: 'WRONGKEY' };
    const r = vrift(['restore', 'ci/x', join(home, 'out')], { home, env });
    expectCleanFailure(r, home, 2, /s3: the access key "WRONGKEY" is not known at http:\/\/127\.0\.0\.1:\d+ bucket vrift-bad .*\(check VRIFT_S3_ACCESS_KEY_ID and VRIFT_S3_SECRET_ACCESS_KEY/);
    const s = vrift(['save', 'ci/x', src], { home, env });
    expect(s.code).toBe(2);
    expect(s.stderr).toMatch(/no remote tier took it: s3: the access key "WRONGKEY" is not known/);
  });

  it('an S3 endpoint where nothing listens: a miss (exit 1) that says so', async () => {
    const home = tempDir();
    const r = vrift(['restore', 'ci/x', join(home, 'out')], { home, env: { ...tierEnv({ s3 }), VRIFT_S3_ENDPOINT: 'http://127.0.0.1:9' } });
    expectCleanFailure(r, home, 1, /^vrift: no ref "ci\/x" in local, s3; s3: http:\/\/127\.0\.0\.1:9 bucket vrift-bad \(opening the bucket\): unreachable .*ECONNREFUSED.*start the S3 server, or check VRIFT_S3_ENDPOINT/);
  });

  it('a save while S3 is down: kept locally, each warning said once, then one error line', () => {
    const home = tempDir();
    const src = tempDir();
    writeFileSync(join(src, 'a.txt'), 'a\n');
    const r = vrift(['save', 'ci/down', src], { home, env: { ...tierEnv({ s3 }), VRIFT_S3_ENDPOINT: 'http://127.0.0.1:9' } });
    expect(r.code).not.toBe(0);
    expect(r.code).not.toBe(70);
    const lines = r.stderr.trim().split('\n');
    expect(new Set(lines).size, r.stderr).toBe(lines.length);
    expect(lines[lines.length - 1]).toMatch(/^vrift: saved ci\/down locally \([0-9a-f]{64}\) but no remote tier took it: s3: .*ECONNREFUSED/);
    expect(vriftJson(['ref', 'get', 'ci/down', '--json'], { home }).tree).toMatch(/^[0-9a-f]{64}$/);
  });

  it('several mistakes: one line each, naming where each came from', () => {
    const home = tempDir();
    writeFileSync(join(home, 'config.json'), JSON.stringify({ s3: { bucket: 'ok-bucket', bukcet: 'typo', partSize: '1K' }, redis: { url: 'redis://x:6379' } }));
    const r = vrift(['pull', 'ci/x'], { home, env: { VRIFT_S3_ENDPOINT: 'not a url', VRIFT_REDIS_MAX_BLOB: 'lots' } });
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual([
      'vrift: invalid configuration: 4 problems:',
      '  VRIFT_REDIS_MAX_BLOB: not a size (e.g. 1M, or a number of bytes)',
      '  VRIFT_S3_ENDPOINT: not a URL (e.g. http://127.0.0.1:9000)',
      `  ${home}/config.json: s3.partSize: 1024 bytes is below the minimum of 5242880`,
      `  ${home}/config.json: s3.bukcet: unknown key (known: bucket, endpoint, region, prefix, accessKeyId, secretAccessKey, sessionToken, forcePathStyle, partSize, looseBlobBytes, compression, neighbors, connectTimeoutMs, requestTimeoutMs) (fix the environment variable or ${home}/config.json; docs/configuration.md lists every setting)`,
    ]);
  });

  it('a config file that is not JSON', () => {
    const home = tempDir();
    writeFileSync(join(home, 'config.json'), '{ "s3": ');
    const r = vrift(['pull', 'ci/x'], { home });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(new RegExp(`^vrift: ${home}/config.json: not valid JSON \\(.+\\) \\(the config file is one JSON object`));
  });
});

describe('the same tree from another S3 prefix still restores', () => {
  it('identical tree after all of the above', () => {
    const { env } = saveTo('fine/');
    const out = join(tempDir(), 'out');
    vriftJson(['restore', 'ci/bad', out], { home: tempDir(), env });
    expect(same(out)).toEqual(same(src));
  });
});
