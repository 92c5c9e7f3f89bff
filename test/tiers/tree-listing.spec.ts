// A tree's listing (its blob) from S3 in its compressed form,
// `trees/<tree>.zst` (issue 12: a lazy mount moves the listing first, and
// for a large tree the listing is most of what it moves). Real s3rver,
// real saves by the CLI, a node in this process whose bytes are counted as
// they cross the network. What the compressed form decompresses to is
// verified like any tree blob; trees saved before it existed still mount.
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashBuffer, type Digest } from '../../src/lib/digest.js';
import { TIER_COUNTERS as M, Metrics } from '../../src/lib/metrics.js';
import { zstdCompressBuffer } from '../../src/lib/zstd.js';
import { loadNodeConfig } from '../../src/node/ops/node-config.js';
import { openResolver } from '../../src/node/ops/open-resolver.js';
import { Store } from '../../src/node/store/store.js';
import { vriftJson } from '../helpers/cli.js';
import { startS3, tierEnv, type S3Server } from '../helpers/s3-server.js';
import { tempDir } from '../helpers/tmp.js';

const BUCKET = 'vrift-listing';
let s3: S3Server;
let src: string;

beforeAll(async () => {
  s3 = await startS3([BUCKET]);
  // Many entries in a few deep directories, as a node_modules is: the listing compresses well.
  src = tempDir('vrift-listing-');
  for (let i = 0; i < 800; i++) {
    const dir = join(src, 'node_modules', `pkg-${i % 40}`, i % 3 ? 'lib' : 'dist');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `module-${i}.js`), `module.exports = ${i};\n`);
  }
});
afterAll(async () => {
  await s3?.stop();
});

async function objectBytes(key: string): Promise<Buffer | undefined> {
  try {
    const r = await s3.client().send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    return Buffer.from(await r.Body!.transformToByteArray());
  } catch (e) {
    if ((e as { name?: string }).name === 'NoSuchKey') return undefined;
    throw e;
  }
}

const putObject = (key: string, body: Buffer) => s3.client().send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));

function save(prefix: string, dir = src, extra: Record<string, string> = {}): Digest {
  return vriftJson(['save', 'ci/listing', dir], { home: tempDir(), env: { ...tierEnv({ s3, prefix }), ...extra } }).tree as Digest;
}

/** An empty node reading `prefix` fetches the listing alone (the chain's fetchTreeBlob, what a lazy mount does first); what it moved and logged. */
async function listingOf(prefix: string, tree: Digest) {
  const home = tempDir();
  const metrics = new Metrics();
  const store = Store.open(home, { metrics });
  const logs: string[] = [];
  const resolver = openResolver({ store, config: loadNodeConfig({ home, env: tierEnv({ s3, prefix, bucket: BUCKET }) }), metrics, log: (_l, m) => logs.push(m) });
  try {
    let from: string | undefined;
    await resolver.chain.fetchTreeBlob(tree, (t) => (from = t));
    return {
      from,
      wire: metrics.get(M.wireIn, { tier: 's3' }),
      mismatches: metrics.get(M.mismatches, { tier: 's3' }),
      entries: store.getTree(tree).entries.length,
      stored: hashBuffer(store.readTreeBlob(tree)),
      logs,
    };
  } finally {
    await resolver.close();
    await store.close();
  }
}

describe('the listing of a tree in S3, compressed', () => {
  it('save writes trees/<tree>.zst beside the plain blob; a cold node reads it and moves a fraction of the listing', async () => {
    const tree = save('z/');
    const plain = (await objectBytes(`z/blobs/${tree}`))!;
    const packed = (await objectBytes(`z/trees/${tree}.zst`))!;
    expect(hashBuffer(plain)).toBe(tree);
    expect(packed.length).toBeLessThan(plain.length / 2);
    const got = await listingOf('z/', tree);
    expect(got.from).toBe('s3');
    expect(got.stored).toBe(tree);
    expect(got.entries).toBeGreaterThan(800);
    expect(got.wire).toBeLessThan(plain.length / 2); // the compressed form, not the blob
    expect(got.mismatches).toBe(0);
  });

  it('a tree saved before the compressed form existed mounts from its plain blob', async () => {
    const tree = save('old/');
    await s3.client().send(new DeleteObjectCommand({ Bucket: BUCKET, Key: `old/trees/${tree}.zst` }));
    const plain = (await objectBytes(`old/blobs/${tree}`))!;
    const got = await listingOf('old/', tree);
    expect(got.stored).toBe(tree);
    expect(got.wire).toBeGreaterThanOrEqual(plain.length);
    expect(got.mismatches).toBe(0);
  });

  it('no compressed form without compression (VRIFT_S3_COMPRESSION=none)', async () => {
    const tree = save('raw/', src, { VRIFT_S3_COMPRESSION: 'none' });
    expect(await objectBytes(`raw/trees/${tree}.zst`)).toBeUndefined();
    expect((await listingOf('raw/', tree)).stored).toBe(tree);
  });

  it('a compressed form holding another tree is rejected and counted; the plain blob is read instead', async () => {
    const tree = save('lie/');
    const other = tempDir('vrift-listing-other-');
    writeFileSync(join(other, 'a'), 'another tree\n');
    const otherTree = save('lie-other/', other);
    // A valid listing, well compressed, of the wrong tree: it decodes, but does not hash to the id.
    await putObject(`lie/trees/${tree}.zst`, await zstdCompressBuffer((await objectBytes(`lie-other/blobs/${otherTree}`))!));
    const got = await listingOf('lie/', tree);
    expect(got.stored).toBe(tree);
    expect(got.entries).toBeGreaterThan(800);
    expect(got.mismatches).toBe(1);
    expect(got.logs.join('\n')).toMatch(/tree [0-9a-f]{64} was rejected/);
  });

  it('a compressed form that does not decompress is a corrupt tier; the plain blob is read instead', async () => {
    const tree = save('bad/');
    const packed = (await objectBytes(`bad/trees/${tree}.zst`))!;
    for (let i = 8; i < packed.length; i += 7) packed[i]! ^= 0x5a;
    await putObject(`bad/trees/${tree}.zst`, packed);
    const got = await listingOf('bad/', tree);
    expect(got.stored).toBe(tree);
    expect(got.entries).toBeGreaterThan(800);
    expect(got.mismatches).toBe(1);
  });
});
