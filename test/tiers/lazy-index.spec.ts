// `vrift save` to S3 writes the tree's lazy index beside its packs
// (docs/tree-format.md "Lazy index") and the signed ref names its head:
// the names blob reads back to the tree's listing without digests, each
// piece of the locator's digests verifies against the head, and each
// record says where its blob's bytes are (a ranged GET of its frames, or
// its own object). Real s3rver, real saves by the CLI.
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashBuffer, type Digest } from '../../src/lib/digest.js';
import { parseRefRecord, verifyRefRecord } from '../../src/lib/ref-signature.js';
import { zstdDecompress } from '../../src/lib/zstd.js';
import { decodeLazyHead, pieceRange, pieceVerifies, type LazyHead } from '../../src/node/store/lazy-index.js';
import { decodeNames } from '../../src/node/store/names.js';
import type { TreeEntry } from '../../src/node/store/tree.js';
import { decodeLocation, lazyKeys, RECORD } from '../../src/tiers/s3/locator.js';
import { parseManifest } from '../../src/tiers/s3/pack-manifest.js';
import { S3Tier } from '../../src/tiers/s3/s3.js';
import { vrift, vriftJson } from '../helpers/cli.js';
import { S3_KEY, S3_SECRET, startS3, tierEnv, type S3Server } from '../helpers/s3-server.js';
import { tempDir } from '../helpers/tmp.js';

const BUCKET = 'vrift-lazy-index';
let s3: S3Server;
let src: string;

beforeAll(async () => {
  s3 = await startS3([BUCKET]);
  src = tempDir('vrift-lazyidx-');
  for (let i = 0; i < 300; i++) {
    const dir = join(src, 'node_modules', `pkg ${i % 11}`, i % 2 ? 'lib' : 'dist');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `m${i}.js`), `module.exports = ${JSON.stringify(randomBytes(8 + (i % 200)).toString('hex'))};\n`);
  }
  writeFileSync(join(src, 'big.bin'), randomBytes(300_000)); // loose with VRIFT_S3_LOOSE_BLOB=256K
  writeFileSync(join(src, 'same-a'), 'twin\n');
  writeFileSync(join(src, 'same-b'), 'twin\n');
  writeFileSync(join(src, 'empty'), '');
});
afterAll(async () => {
  await s3?.stop();
});

async function object(key: string): Promise<Buffer> {
  const r = await s3.client().send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  return Buffer.from(await r.Body!.transformToByteArray());
}

async function range(key: string, start: number, end: number): Promise<Buffer> {
  const r = await s3.client().send(new GetObjectCommand({ Bucket: BUCKET, Key: key, Range: `bytes=${start}-${end - 1}` }));
  return Buffer.from(await r.Body!.transformToByteArray());
}

async function keysUnder(prefix: string): Promise<string[]> {
  const r = await s3.client().send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
  return (r.Contents ?? []).map((o) => o.Key!).sort();
}

async function unzstd(bytes: Buffer): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from([bytes]), zstdDecompress(), async function* (s) {
    for await (const c of s) out.push(c as Buffer);
  });
  return Buffer.concat(out);
}

const env = (prefix: string) => ({ ...tierEnv({ s3, prefix }), VRIFT_S3_LOOSE_BLOB: '256K' });

function save(prefix: string, ref: string, dir = src): { tree: Digest; entries: TreeEntry[]; home: string } {
  const home = tempDir();
  const tree = vriftJson(['save', ref, dir], { home, env: env(prefix) }).tree as Digest;
  const entries = vriftJson(['ls', tree, '--json'], { home }).entries as TreeEntry[];
  return { tree, entries, home };
}

/** The ref's signed record in S3, checked: its lazy field. */
async function lazyOf(prefix: string, ref: string, tree: Digest): Promise<Digest> {
  const rec = parseRefRecord((await object(`${prefix}refs/${ref}`)).toString());
  if (typeof rec === 'string') throw new Error(rec);
  expect(rec.tree).toBe(tree);
  expect(verifyRefRecord(ref, rec)).toBe(true);
  expect(rec.lazy).toMatch(/^[0-9a-f]{64}$/);
  return rec.lazy!;
}

async function headOf(prefix: string, lazy: Digest, tree: Digest): Promise<LazyHead> {
  const h = decodeLazyHead(await object(`${prefix}${lazyKeys(lazy).head}`), lazy, tree);
  if ('problem' in h) throw new Error(h.problem);
  return h;
}

/** Reads the blob a record locates, as a lazy mount would (one ranged GET of its frames, or its own object). */
async function readLocated(prefix: string, loc: ReturnType<typeof decodeLocation>, digest: Digest): Promise<Buffer> {
  if (loc.kind === 'loose') return object(`${prefix}blobs/${digest}`);
  if (loc.kind !== 'pack') throw new Error('not located');
  const { pack, range: r } = loc;
  const bytes = await range(`${prefix}${pack.key}`, r.start, r.end);
  const decoded = r.compressed ? await unzstd(bytes) : bytes;
  expect(decoded.length).toBe(r.decoded);
  return decoded.subarray(r.skip, r.skip + r.size);
}

describe('the lazy index in S3', () => {
  it('save writes it and the signed ref names its head; names, pieces and places all check out', async () => {
    const { tree, entries } = save('a/', 'ci/lazy');
    const lazy = await lazyOf('a/', 'ci/lazy', tree);
    const h = await headOf('a/', lazy, tree);
    const files = entries.filter((e) => e.kind === 'file');
    expect(h.files).toBe(files.length);

    // The names: the listing without digests, smaller than the listing compressed.
    const names = await unzstd(await object(`a/${lazyKeys(lazy).names}`));
    expect(hashBuffer(names)).toBe(h.names);
    expect(names.length).toBe(h.namesBytes);
    expect(decodeNames(names)).toEqual(entries.map(({ digest: _d, ...rest }) => rest));
    expect((await object(`a/${lazyKeys(lazy).names}`)).length).toBeLessThan((await object(`a/trees/${tree}.zst`)).length / 2);

    // The locator: 64 bytes a file; every piece verifies; every record finds its blob.
    const locator = await object(`a/${lazyKeys(lazy).locator}`);
    expect(locator.length).toBe(RECORD * files.length);
    const manifest = parseManifest(tree, (await object(`a/trees/${tree}.json`)).toString());
    for (let k = 0; k < h.pieces.length; k++) {
      const { first, end } = pieceRange(h, k);
      // (a reader fetches just these bytes)
      const piece = await range(`a/${lazyKeys(lazy).locator}`, first * RECORD, end * RECORD);
      const digests = Array.from({ length: end - first }, (_, i) => piece.subarray(i * RECORD, i * RECORD + 32));
      expect(pieceVerifies(h, k, digests)).toBe(true);
    }
    const kinds: Record<string, number> = {};
    for (const [n, e] of files.entries()) {
      const loc = decodeLocation(locator, n * RECORD, e.size, manifest.packs);
      kinds[loc.kind] = (kinds[loc.kind] ?? 0) + 1;
      expect(locator.toString('hex', n * RECORD, n * RECORD + 32)).toBe(e.digest);
      if (e.size === 0) continue;
      expect(hashBuffer(await readLocated('a/', loc, e.digest!))).toBe(e.digest);
    }
    expect(kinds).toEqual({ pack: files.length - 1, loose: 1 }); // big.bin is its own object
  });

  it('a second save of the same tree names the same head and rewrites nothing', async () => {
    const first = save('b/', 'ci/lazy');
    const keys = await keysUnder('b/lazy/');
    expect(keys).toHaveLength(3);
    const second = save('b/', 'ci/lazy-again');
    expect(second.tree).toBe(first.tree);
    expect(await lazyOf('b/', 'ci/lazy-again', first.tree)).toBe(await lazyOf('b/', 'ci/lazy', first.tree));
    expect(await keysUnder('b/lazy/')).toEqual(keys);
  });

  it('a tree saved on top of another locates the blobs it shares in the base\'s pack', async () => {
    const base = save('c/', 'ci/grow');
    const dir = tempDir('vrift-lazyidx2-');
    vrift(['materialize', base.tree, dir, '--copy'], { home: base.home });
    writeFileSync(join(dir, 'node_modules', 'new.js'), 'module.exports = "new";\n');
    const home = base.home; // the same node: the ref's previous tree is the base
    const tree = vriftJson(['save', 'ci/grow', dir], { home, env: env('c/') }).tree as Digest;
    const entries = vriftJson(['ls', tree, '--json'], { home }).entries as TreeEntry[];
    const lazy = await lazyOf('c/', 'ci/grow', tree);
    await headOf('c/', lazy, tree);
    const manifest = parseManifest(tree, (await object(`c/trees/${tree}.json`)).toString());
    expect(manifest.packs).toHaveLength(2); // the new blob's pack, then the base's
    const locator = await object(`c/${lazyKeys(lazy).locator}`);
    const packOf = new Map<string, number>();
    for (const [n, e] of entries.filter((x) => x.kind === 'file').entries()) {
      const loc = decodeLocation(locator, n * RECORD, e.size, manifest.packs);
      if (loc.kind === 'pack') packOf.set(e.path, manifest.packs.indexOf(loc.pack));
      if (e.size > 0) expect(hashBuffer(await readLocated('c/', loc, e.digest!))).toBe(e.digest);
    }
    expect(packOf.get('node_modules/new.js')).toBe(0);
    expect([...packOf.values()].filter((p) => p === 1).length).toBeGreaterThan(250);
  });

  it('a record whose place lies (wrong size, pack, or an inflating range) is read as unknown, not trusted', async () => {
    const { tree, entries } = save('d/', 'ci/lazy');
    const lazy = await lazyOf('d/', 'ci/lazy', tree);
    const locator = await object(`d/${lazyKeys(lazy).locator}`);
    const manifest = parseManifest(tree, (await object(`d/trees/${tree}.json`)).toString());
    const n = entries.filter((x) => x.kind === 'file').findIndex((e) => e.size > 100 && e.size < 1000);
    const e = entries.filter((x) => x.kind === 'file')[n]!;
    expect(decodeLocation(locator, n * RECORD, e.size, manifest.packs).kind).toBe('pack');
    expect(decodeLocation(locator, n * RECORD, e.size + 1, manifest.packs).kind).toBe('none');
    const edit = (at: number, v: number) => {
      const b = Buffer.from(locator);
      b.writeUInt32BE(v, n * RECORD + at);
      return decodeLocation(b, n * RECORD, e.size, manifest.packs).kind;
    };
    expect(edit(32, 7)).toBe('none'); // no such pack
    expect(edit(52, 1 << 30)).toBe('none'); // frames that would inflate to 1 GiB
    expect(edit(36, 1 << 20)).toBe('none'); // a skip past what the frames hold
  });

  it('a batch of many files (a start-up set) reads each run of frames that follow each other by one ranged GET, and hands on each blob whole', async () => {
    // 300 files of 16 KiB that do not compress: about 75 frames of 64 KiB in one pack, in tree order.
    const dir = tempDir('vrift-lazyidx-many-');
    for (let i = 0; i < 300; i++) writeFileSync(join(dir, `f${String(i).padStart(3, '0')}`), randomBytes(16 << 10));
    const { tree, entries } = save('m/', 'ci/many', dir);
    const lazy = await lazyOf('m/', 'ci/many', tree);
    const locator = await object(`m/${lazyKeys(lazy).locator}`);
    const manifest = parseManifest(tree, (await object(`m/trees/${tree}.json`)).toString());
    const files = entries.filter((e) => e.kind === 'file');
    // Two groups of neighbours, far apart: files 10-109 and 200-219.
    const picked = [...files.keys()].filter((n) => (n >= 10 && n < 110) || (n >= 200 && n < 220));
    const wants = picked.map((n) => ({ digest: files[n]!.digest!, record: locator.subarray(n * RECORD, (n + 1) * RECORD) }));
    const frames = new Set(
      picked.map((n) => {
        const loc = decodeLocation(locator, n * RECORD, files[n]!.size, manifest.packs);
        if (loc.kind !== 'pack') throw new Error(`file ${n} is not in a pack`);
        return loc.range.start;
      }),
    );
    expect(frames.size).toBeGreaterThan(20);

    const tier = new S3Tier({ bucket: BUCKET, endpoint: s3.endpoint, region: 'us-east-1', prefix: 'm/', accessKeyId: S3_KEY, secretAccessKey: S3_SECRET, forcePathStyle: true, partSize: 5 << 20, looseBlobBytes: 8 << 20, compression: 'zstd', neighbors: true, connectTimeoutMs: 2000, requestTimeoutMs: 10_000 });
    const packGets: string[] = [];
    const getRange = tier.objects.getRange.bind(tier.objects);
    tier.objects.getRange = (rel, start, end) => (rel.includes('packs/') && packGets.push(`${start}-${end}`), getRange(rel, start, end));
    const got = new Map<Digest, Buffer>();
    try {
      await tier.getManyLocated(tree, wants, async (digest, bytes) => void got.set(digest, Buffer.from(bytes)));
    } finally {
      await tier.close();
    }
    expect([...got.keys()].sort()).toEqual(wants.map((w) => w.digest).sort());
    for (const [digest, bytes] of got) expect(hashBuffer(bytes)).toBe(digest);
    expect(packGets).toHaveLength(2); // one per group, not one per frame
  });
});
