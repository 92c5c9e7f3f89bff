// A zstd bomb in S3: a pack of a few KiB whose one blob frame declares
// 1 GiB (the tree says a few bytes) and whose zstd data inflates to 1 GiB
// of zeros. Restore must fail with one line naming the pack and the blob,
// stay small in memory (decompression is bounded per step; the declared
// size is refused before anything is written), and store nothing wrong.
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { zstdCompress } from '../../src/lib/zstd.js';
import { ARCHIVE_MAGIC, ARCHIVE_VERSION, TAG_BLOB } from '../../src/node/archive/format.js';
import { ROOT, vrift, vriftJson } from '../helpers/cli.js';
import { startS3, tierEnv, type S3Server } from '../helpers/s3-server.js';
import { tempDir } from '../helpers/tmp.js';
import { writeSampleTree } from '../helpers/trees.js';

const BUCKET = 'vrift-bomb';
const GiB = 1 << 30;
/** Peak RSS allowed for the restoring process (a plain restore of the sample tree is ~100 MiB). */
const RSS_BOUND_KIB = 300 * 1024;

let s3: S3Server;
let env: Record<string, string>;
const rssEnv = (file: string) => ({ NODE_OPTIONS: `--import=${join(ROOT, 'test', 'helpers', 'report-rss.mjs')}`, VRIFT_TEST_RSS_FILE: file });
let tree: string;
let victim: { path: string; digest: string; size: number };

/** A vrift archive that starts one blob frame for `digest` declaring `declared` bytes, then `zeros` zero bytes, zstd-compressed. */
async function bombPack(digest: string, declared: number, zeros: number): Promise<Buffer> {
  const head = Buffer.alloc(16 + 41);
  ARCHIVE_MAGIC.copy(head, 0);
  head.writeUInt16BE(ARCHIVE_VERSION, 8);
  head[16] = TAG_BLOB;
  head.write(digest, 17, 32, 'hex');
  head.writeBigUInt64BE(BigInt(declared), 49);
  const zero = Buffer.alloc(1 << 20);
  async function* input(): AsyncGenerator<Buffer> {
    yield head;
    for (let n = 0; n < zeros; n += zero.length) yield zero;
  }
  const out: Buffer[] = [];
  await pipeline(Readable.from(input()), zstdCompress(19), async function* (src) {
    for await (const c of src) out.push(c as Buffer);
  });
  return Buffer.concat(out);
}

async function packKey(prefix = ''): Promise<string> {
  const r = await s3.client().send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${prefix}packs/` }));
  const packs = (r.Contents ?? []).map((o) => o.Key!).filter((k) => k.endsWith('.pack.zst'));
  expect(packs.length).toBe(1);
  return packs[0]!;
}

beforeAll(async () => {
  s3 = await startS3([BUCKET]);
  env = tierEnv({ s3 });
  const src = tempDir();
  writeSampleTree(src);
  const saver = tempDir();
  tree = vriftJson(['save', 'ci/bomb', src], { home: saver, env }).tree;
  const entries = vriftJson(['ls', tree], { home: saver }).entries as { path: string; digest?: string; size?: number }[];
  const e = entries.find((x) => x.path === 'src/main.c')!;
  victim = { path: e.path, digest: e.digest!, size: e.size! };
}, 120_000);
afterAll(async () => {
  await s3?.stop();
});

describe('a zstd bomb in a pack', () => {
  it('is refused in one line naming the pack and the blob, in bounded memory, storing nothing', async () => {
    const key = await packKey();
    const bomb = await bombPack(victim.digest, GiB, GiB);
    expect(bomb.length).toBeLessThan(64 << 10); // a few KiB that declare (and inflate to) 1 GiB
    await s3.client().send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: bomb }));
    const check = await s3.client().send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    expect((await check.Body!.transformToByteArray()).length).toBe(bomb.length);

    const home = tempDir();
    const out = join(tempDir(), 'out');
    const rssFile = join(tempDir(), 'rss');
    const r = vrift(['restore', 'ci/bomb', out], {
      home,
      env: { ...env, ...rssEnv(rssFile) },
      timeoutMs: 60_000,
    });
    const rssKiB = Number(readFileSync(rssFile, 'utf8'));
    console.log(`restore of a 1 GiB zstd bomb (${bomb.length} bytes): exit ${r.code}, peak RSS ${Math.round(rssKiB / 1024)} MiB\n${r.stderr}`);
    expect(r.code).toBe(1);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    // The tier's failure names the pack, the blob, what it declared and what the tree says.
    expect(r.stderr).toContain(`s3 pack ${key}: malformed archive: blob ${victim.digest} declares ${GiB} bytes but the tree says ${victim.size}`);
    expect(rssKiB).toBeLessThan(RSS_BOUND_KIB);
    // Nothing wrong is stored: the victim is absent, the store verifies clean.
    const v = vriftJson(['verify'], { home });
    expect([v.ok, v.corrupt.length]).toEqual([true, 0]);
    expect(existsSync(join(out, victim.path))).toBe(false);
  }, 120_000);

  it('stops inflating a pack at the size its manifest gives, even inside a blob nobody asked for', async () => {
    const benv = tierEnv({ s3, prefix: 'other/' });
    const src = tempDir();
    writeSampleTree(src);
    vriftJson(['save', 'ci/bomb', src], { home: tempDir(), env: benv });
    const key = await packKey('other/');
    // A blob no tree names, declaring (and holding) 1 GiB of zeros: the reader reads past it.
    await s3.client().send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: await bombPack('ab'.repeat(32), GiB, GiB) }));
    const home = tempDir();
    const rssFile = join(tempDir(), 'rss');
    const r = vrift(['restore', 'ci/bomb', join(tempDir(), 'out')], { home, env: { ...benv, ...rssEnv(rssFile) }, timeoutMs: 60_000 });
    const rssKiB = Number(readFileSync(rssFile, 'utf8'));
    console.log(`restore of a pack inflating past its manifest: exit ${r.code}, peak RSS ${Math.round(rssKiB / 1024)} MiB\n${r.stderr}`);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`pack ${key.slice('other/'.length)} decompresses to more than the \\d+ bytes it declares`));
    expect(rssKiB).toBeLessThan(RSS_BOUND_KIB);
    const v = vriftJson(['verify'], { home });
    expect([v.ok, v.corrupt.length]).toEqual([true, 0]);
  }, 120_000);
});
