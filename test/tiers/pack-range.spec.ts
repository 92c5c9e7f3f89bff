// One blob of a packed tree by a ranged GET (issue 12, "Lazy start"): a
// node that knows the tree reads the blob's bytes out of the S3 pack that
// holds it (the pack's index says where), not the pack. Real s3rver, real
// saves by the CLI; bytes are counted as they cross the network.
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { mkdirSync, openSync, readFileSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashBuffer, type Digest } from '../../src/lib/digest.js';
import { TIER_COUNTERS as M, Metrics } from '../../src/lib/metrics.js';
import { zstdCompress, zstdDecompress } from '../../src/lib/zstd.js';
import { loadNodeConfig } from '../../src/node/ops/node-config.js';
import { openResolver } from '../../src/node/ops/open-resolver.js';
import type { Resolver } from '../../src/node/ops/resolver.js';
import { Store } from '../../src/node/store/store.js';
import { saveLocalTrace } from '../../src/node/store/trace.js';
import { FRAME_TARGET, PackIndex } from '../../src/tiers/s3/pack-index.js';
import { S3Tier } from '../../src/tiers/s3/s3.js';
import { vriftJson } from '../helpers/cli.js';
import { startS3, S3_KEY, S3_SECRET, tierEnv, type S3Server } from '../helpers/s3-server.js';
import { tempDir } from '../helpers/tmp.js';

const BUCKET = 'vrift-packs';
let s3: S3Server;
let src: string;

interface Entry {
  path: string;
  digest: string;
  size: number;
}

beforeAll(async () => {
  s3 = await startS3([BUCKET]);
  // Many small source-like files (one pack, many frames), a few medium ones (a frame each), an empty one.
  src = tempDir('vrift-packed-');
  for (let i = 0; i < 600; i++) {
    const dir = join(src, `pkg${i % 13}`, i % 2 ? 'lib' : 'src');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `m${i}.js`), `// module ${i}\n${`export const v${i} = ${randomBytes(6).toString('hex')};\n`.repeat(10 + (i % 60))}`);
  }
  for (let i = 0; i < 3; i++) writeFileSync(join(src, `blob${i}.bin`), randomBytes(100_000 + i));
  writeFileSync(join(src, 'empty'), '');
});
afterAll(async () => {
  await s3?.stop();
});

/** Saves the tree under `prefix`; returns its id, its files and the one pack's key (without the prefix). */
function save(prefix: string, extra: Record<string, string> = {}): { tree: Digest; files: Entry[] } {
  const home = tempDir();
  const tree = vriftJson(['save', 'ci/packed', src], { home, env: { ...tierEnv({ s3, prefix }), ...extra } }).tree as Digest;
  const files = (vriftJson(['ls', tree, '--json'], { home }).entries as (Entry & { kind: string })[]).filter((e) => e.kind === 'file');
  return { tree, files };
}

async function keysUnder(prefix: string): Promise<string[]> {
  const r = await s3.client().send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
  return (r.Contents ?? []).map((o) => o.Key!).sort();
}

async function objectBytes(key: string): Promise<Buffer> {
  const r = await s3.client().send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  return Buffer.from(await r.Body!.transformToByteArray());
}

async function putObject(key: string, body: Buffer): Promise<void> {
  await s3.client().send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
}

async function zstd(bytes: Buffer, t: Transform): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from([bytes]), t, async function* (s) {
    for await (const c of s) out.push(c as Buffer);
  });
  return Buffer.concat(out);
}

/** The pack (and its index) a prefix holds: exactly one each. */
async function thePack(prefix: string): Promise<{ key: string; index: PackIndex; size: number }> {
  const keys = await keysUnder(`${prefix}packs/`);
  const key = keys.find((k) => /\.pack(\.zst)?$/.test(k))!;
  expect(keys).toEqual([key.replace(/\.pack(\.zst)?$/, '.idx'), key]);
  const index = PackIndex.decode(await objectBytes(key.replace(/\.pack(\.zst)?$/, '.idx')));
  return { key, index, size: (await objectBytes(key)).length };
}

/** Overwrites bytes of an object where s3rver keeps it (on its disk, behind its back). */
function damage(key: string, at: number, n: number): void {
  const parts = key.split('/');
  const file = join(s3.dir, BUCKET, ...parts.slice(0, -1), `${parts.at(-1)}._S3rver_object`);
  const fd = openSync(file, 'r+');
  const buf = Buffer.alloc(n);
  const was = readFileSync(file).subarray(at, at + n);
  for (let i = 0; i < n; i++) buf[i] = was[i]! ^ 0x5a;
  writeSync(fd, buf, 0, n, at);
  closeSync(fd);
}

/** An empty node reading `prefix`, in this process: its resolver, store and counters, and what it logged. */
function node(prefix: string) {
  const home = tempDir();
  const metrics = new Metrics();
  const store = Store.open(home, { metrics });
  const logs: string[] = [];
  const resolver: Resolver = openResolver({ store, config: loadNodeConfig({ home, env: tierEnv({ s3, prefix, bucket: BUCKET }) }), metrics, log: (_l, m) => logs.push(m) });
  const wire = () => metrics.get(M.wireIn, { tier: 's3' });
  const has = (d: string) => store.cas.has(d);
  const bytes = (d: string) => readFileSync(store.cas.pathOf(d));
  /** Bytes over the network while `fn` ran. */
  const moved = async (fn: () => Promise<unknown>) => {
    const before = wire();
    await fn();
    return wire() - before;
  };
  return { store, resolver, metrics, logs, wire, has, bytes, moved, close: async () => (await resolver.close(), await store.close()) };
}

const fileBytes = (e: Entry) => readFileSync(join(src, e.path));
const small = (files: Entry[]) => files.filter((e) => e.size > 0 && e.size < 4096);

describe('one blob of a packed tree by a ranged GET', () => {
  it('reads a blob of a compressed pack by the range of its frame, never the pack', async () => {
    const { tree, files } = save('z/');
    const pack = await thePack('z/');
    expect(pack.key).toMatch(/\.pack\.zst$/);
    expect(pack.index.frameCount).toBeGreaterThan(5);
    const n = node('z/');
    try {
      // The first read also brings the manifest and the index (once); then each read is its frame's range.
      const [first, second, ...others] = small(files);
      expect(await n.resolver.fetchBlob(first!.digest, { tree })).toBe('s3');
      const cold = n.wire();
      expect(cold).toBeLessThan(pack.size / 4);
      let ranged = 0;
      for (const e of [second!, ...others.slice(0, 20)]) {
        const at = pack.index.locate(e.digest)!;
        const wasHere = n.has(e.digest);
        const moved = await n.moved(() => n.resolver.fetchBlob(e.digest, { tree }));
        // one ranged GET: the frame that holds it, whose other blobs come along (nothing moves for them later)
        expect(moved).toBe(wasHere ? 0 : at.end - at.start);
        if (!wasHere) ranged++;
        expect(moved).toBeLessThan(FRAME_TARGET);
        expect(moved).toBeLessThan(pack.size / 20);
        expect(n.bytes(e.digest).equals(fileBytes(e))).toBe(true);
      }
      expect(ranged).toBeLessThan(21); // the blobs beside each one arrived with it
      // A blob with a frame of its own: the bytes moved are the blob's, and a few bytes of framing.
      for (const e of files.filter((f) => f.size >= 100_000)) {
        const moved = await n.moved(() => n.resolver.fetchBlob(e.digest, { tree }));
        expect(moved).toBeGreaterThanOrEqual(e.size);
        expect(moved).toBeLessThan(e.size + 256);
        expect(n.bytes(e.digest).equals(fileBytes(e))).toBe(true);
      }
      const empty = files.find((f) => f.size === 0)!;
      expect(await n.moved(() => n.resolver.fetchBlob(empty.digest, { tree }))).toBe(0);
      expect(n.has(empty.digest)).toBe(true);
      expect(n.metrics.get(M.mismatches, { tier: 's3' })).toBe(0);
    } finally {
      await n.close();
    }
  });

  it('reads exactly the blob\'s bytes from an uncompressed pack', async () => {
    const { tree, files } = save('raw/', { VRIFT_S3_COMPRESSION: 'none' });
    const pack = await thePack('raw/');
    expect(pack.key).toMatch(/\.pack$/);
    expect(pack.index.frameCount).toBe(0);
    const n = node('raw/');
    try {
      await n.resolver.fetchBlob(files[0]!.digest, { tree }); // manifest and index
      for (const e of files.slice(1, 30)) {
        expect(await n.moved(() => n.resolver.fetchBlob(e.digest, { tree }))).toBe(e.size);
        expect(n.bytes(e.digest).equals(fileBytes(e))).toBe(true);
      }
    } finally {
      await n.close();
    }
  });

  /** The `n` blobs nearest `victim` in the pack (other frames, and its own frame's other blobs), and the medium ones. */
  const around = (files: Entry[], index: PackIndex, victim: Entry, n = 40) => {
    const at = (e: Entry) => index.locate(e.digest)?.start ?? 0;
    const others = files.filter((f) => f.digest !== victim.digest);
    const near = others.sort((a, b) => Math.abs(at(a) - at(victim)) - Math.abs(at(b) - at(victim))).slice(0, n);
    return [...new Set([...near, ...others.filter((f) => f.size >= 100_000)])];
  };

  it('a damaged frame: that blob is rejected and reported, the blobs around it still arrive', async () => {
    const { tree, files } = save('dmg/');
    const pack = await thePack('dmg/');
    const victim = files.find((f) => f.size >= 100_000)!;
    const at = pack.index.locate(victim.digest)!;
    damage(pack.key, at.start + Math.floor((at.end - at.start) / 2), 64);
    const n = node('dmg/');
    try {
      expect(await n.resolver.fetchBlob(victim.digest, { tree })).toBeUndefined();
      expect(n.has(victim.digest)).toBe(false);
      expect(n.logs.join('\n')).toMatch(new RegExp(`s3: blob ${victim.digest} (failed verification and was rejected|in pack \\S+ is damaged)`));
      expect(n.metrics.get(M.mismatches, { tier: 's3' })).toBeGreaterThanOrEqual(1);
      for (const e of around(files, pack.index, victim)) {
        expect(await n.resolver.fetchBlob(e.digest, { tree }), e.path).toMatch(/^(s3|local)$/); // (local: it came beside another)
        expect(n.bytes(e.digest).equals(fileBytes(e))).toBe(true);
      }
    } finally {
      await n.close();
    }
  });

  it('a damaged small blob of an uncompressed pack: only it is rejected', async () => {
    const { tree, files } = save('dmg-raw/', { VRIFT_S3_COMPRESSION: 'none' });
    const pack = await thePack('dmg-raw/');
    const victim = small(files)[7]!;
    damage(pack.key, pack.index.locate(victim.digest)!.start, 1);
    const n = node('dmg-raw/');
    try {
      expect(await n.resolver.fetchBlob(victim.digest, { tree })).toBeUndefined();
      expect(n.logs.join('\n')).toContain(`s3: blob ${victim.digest} failed verification and was rejected`);
      for (const e of around(files, pack.index, victim)) expect(await n.resolver.fetchBlob(e.digest, { tree }), e.path).toBe('s3');
    } finally {
      await n.close();
    }
  });

  it('an index that points at the wrong bytes: the blob is rejected, reported, then read from the pack', async () => {
    const { tree, files } = save('lie/', { VRIFT_S3_COMPRESSION: 'none' });
    const pack = await thePack('lie/');
    const [other, victim] = small(files);
    // Rewrite the victim's entry to point at another blob's content (same length: the index stays well-formed).
    const idxKey = pack.key.replace(/\.pack$/, '.idx');
    const idx = await objectBytes(idxKey);
    const entry = idx.indexOf(Buffer.from(victim!.digest, 'hex'));
    idx.writeBigUInt64BE(BigInt(pack.index.locate(other!.digest)!.start), entry + 32);
    await putObject(idxKey, idx);
    const n = node('lie/');
    try {
      n.store.admitTree(tree, await objectBytes(`lie/blobs/${tree}`), 'test'); // a mount has its tree: the pack can be read as a stream
      expect(await n.resolver.fetchBlob(victim!.digest, { tree })).toBe('s3');
      expect(n.logs.join('\n')).toContain(`s3: blob ${victim!.digest} failed verification and was rejected`);
      expect(n.metrics.get(M.mismatches, { tier: 's3' })).toBe(1);
      expect(n.bytes(victim!.digest).equals(fileBytes(victim!))).toBe(true);
    } finally {
      await n.close();
    }
  });

  it('a tree pushed before packs had an index: its packs are streamed, up to the blob', async () => {
    const { tree, files } = save('old/');
    const pack = await thePack('old/');
    // What an older vrift wrote: a manifest without index, and the pack as one zstd stream.
    const manifestKey = `old/trees/${tree}.json`;
    const manifest = JSON.parse((await objectBytes(manifestKey)).toString()) as { packs: { index?: unknown }[] };
    for (const p of manifest.packs) delete p.index;
    await putObject(manifestKey, Buffer.from(JSON.stringify(manifest)));
    await s3.client().send(new DeleteObjectCommand({ Bucket: BUCKET, Key: pack.key.replace(/\.pack\.zst$/, '.idx') }));
    await putObject(pack.key, await zstd(await zstd(await objectBytes(pack.key), zstdDecompress()), zstdCompress()));

    const tier = new S3Tier({ bucket: BUCKET, endpoint: s3.endpoint, region: 'us-east-1', prefix: 'old/', accessKeyId: S3_KEY, secretAccessKey: S3_SECRET, forcePathStyle: true, partSize: 5 << 20, looseBlobBytes: 8 << 20, compression: 'zstd', neighbors: true, connectTimeoutMs: 2000, requestTimeoutMs: 10_000 });
    try {
      expect(await tier.getInTree(tree, files[0]!.digest)).toBeUndefined(); // nothing to read by range
    } finally {
      await tier.close();
    }
    const n = node('old/');
    try {
      n.store.admitTree(tree, await objectBytes(`old/blobs/${tree}`), 'test');
      const e = small(files)[3]!;
      expect(await n.resolver.fetchBlob(e.digest, { tree })).toBe('s3');
      expect(n.bytes(e.digest).equals(fileBytes(e))).toBe(true);
    } finally {
      await n.close();
    }
  });
});

describe('getting ready to read a packed tree', () => {
  it('by locator record needs the manifest alone: prepareTree with indexes: false leaves the packs\' indexes unread', async () => {
    const { tree } = save('prep/');
    const n = node('prep/');
    try {
      const manifest = await n.moved(() => n.resolver.chain.prepareTree(tree, { indexes: false }));
      expect(manifest).toBeGreaterThan(0);
      expect(await n.moved(() => n.resolver.chain.prepareTree(tree, { indexes: false }))).toBe(0); // (kept)
      // the full preparation then reads only what the first left: the indexes
      expect(await n.moved(() => n.resolver.chain.prepareTree(tree))).toBeGreaterThan(0);
      expect(await n.moved(() => n.resolver.chain.prepareTree(tree))).toBe(0);
    } finally {
      await n.close();
    }
  });
});

describe('many blobs of a packed tree at once (a start-up batch)', () => {
  /** Every 7th small file and the medium ones: scattered over the pack, some sharing frames. */
  const scattered = (files: Entry[]) => [...small(files).filter((_, i) => i % 7 === 0), ...files.filter((f) => f.size >= 100_000)];

  it('reads them by few ranged GETs of their frames: each verified, nothing else kept', async () => {
    const { tree, files } = save('many/');
    const pack = await thePack('many/');
    const n = node('many/');
    try {
      n.store.admitTree(tree, await objectBytes(`many/blobs/${tree}`), 'test');
      await n.resolver.chain.prepareTree(tree); // manifest and index
      const want = scattered(files);
      // The frames they are in, each counted once: what one ranged GET per blob would have read at least.
      const frames = new Map(want.map((e) => pack.index.locate(e.digest)!).map((at) => [at.start, at.end - at.start]));
      const union = [...frames.values()].reduce((a, b) => a + b, 0);
      let got: Map<string, { from: string | undefined }> = new Map();
      const moved = await n.moved(async () => (got = await n.resolver.fetchBatch(tree, want)));
      for (const e of want) {
        expect(got.get(e.digest)?.from, e.path).toBe('s3');
        expect(n.bytes(e.digest).equals(fileBytes(e))).toBe(true);
      }
      // At least their frames; at most those and the gaps a batch reads through rather than ask again (32 KiB each), never more than the pack.
      expect(moved).toBeGreaterThanOrEqual(union);
      expect(moved).toBeLessThanOrEqual(Math.min(pack.size, union + (frames.size - 1) * (32 << 10)));
      // The other blobs of those frames crossed the network but were not kept.
      expect(files.filter((f) => f.size > 0 && n.has(f.digest)).length).toBe(new Set(want.map((e) => e.digest)).size);
      expect(n.metrics.get(M.mismatches, { tier: 's3' })).toBe(0);
      // Asked again: all local, nothing moves.
      expect(await n.moved(() => n.resolver.fetchBatch(tree, want))).toBe(0);
    } finally {
      await n.close();
    }
  });

  it('an uncompressed pack: the blobs\' records, read by range', async () => {
    const { tree, files } = save('many-raw/', { VRIFT_S3_COMPRESSION: 'none' });
    const n = node('many-raw/');
    try {
      n.store.admitTree(tree, await objectBytes(`many-raw/blobs/${tree}`), 'test');
      const want = scattered(files);
      const got = await n.resolver.fetchBatch(tree, want);
      for (const e of want) {
        expect(got.get(e.digest)?.from, e.path).toBe('s3');
        expect(n.bytes(e.digest).equals(fileBytes(e))).toBe(true);
      }
    } finally {
      await n.close();
    }
  });

  it('a blob whose bytes in the pack are wrong is rejected and counted; the others arrive; it is no tier\'s then', async () => {
    const { tree, files } = save('many-dmg/', { VRIFT_S3_COMPRESSION: 'none' });
    const pack = await thePack('many-dmg/');
    const [victim, ...rest] = small(files);
    damage(pack.key, pack.index.locate(victim!.digest)!.start, 1);
    const n = node('many-dmg/');
    try {
      n.store.admitTree(tree, await objectBytes(`many-dmg/blobs/${tree}`), 'test');
      const want = [victim!, ...rest.slice(0, 20)];
      const got = await n.resolver.fetchBatch(tree, want);
      expect(got.has(victim!.digest)).toBe(false); // not brought: the caller's to fetch alone
      expect(n.has(victim!.digest)).toBe(false);
      for (const e of rest.slice(0, 20)) {
        expect(got.get(e.digest)?.from).toBe('s3');
        expect(n.bytes(e.digest).equals(fileBytes(e))).toBe(true);
      }
      expect(n.metrics.get(M.mismatches, { tier: 's3' })).toBe(1);
      expect(n.logs.join('\n')).toContain(`s3: blob ${victim!.digest} read in a batch of tree ${tree} failed verification and was dropped`);
      expect(await n.resolver.fetchBlob(victim!.digest, { tree })).toBeUndefined();
    } finally {
      await n.close();
    }
  });
});

describe('the pack index', () => {
  it('lists every small blob once, where the archive has it', async () => {
    const { files } = save('ix/', { VRIFT_S3_COMPRESSION: 'none' });
    const pack = await thePack('ix/');
    const archive = await objectBytes(pack.key);
    const unique = new Map(files.map((f) => [f.digest, f]));
    expect(pack.index.blobCount).toBe(unique.size);
    for (const [digest, f] of unique) {
      const at = pack.index.locate(digest)!;
      expect(at.size).toBe(f.size);
      // The frame header before the content names the blob.
      expect(archive.toString('hex', at.start - 40, at.start - 8)).toBe(digest);
      expect(hashBuffer(archive.subarray(at.start, at.end))).toBe(digest);
    }
    expect(pack.index.locate(hashBuffer(Buffer.from('not in the pack')))).toBeUndefined();
  });

  it('puts the blobs a trace of the tree lists first, in its order: a cold start reads the front of the pack', async () => {
    const home = tempDir();
    const tree = vriftJson(['ingest', src], { home }).tree as Digest;
    const files = (vriftJson(['ls', tree, '--json'], { home }).entries as (Entry & { kind: string })[]).filter((e) => e.kind === 'file' && e.size > 0);
    // Three blobs from the end of the tree's order, as lazy runs would have opened them.
    const trace = [files.at(-1)!.digest, files.at(-300)!.digest, files.at(-150)!.digest];
    const store = Store.open(home);
    await saveLocalTrace(store.meta, tree, trace);
    await store.close();
    vriftJson(['save', 'ci/traced', src], { home, env: { ...tierEnv({ s3, prefix: 'traced/' }), VRIFT_S3_COMPRESSION: 'none' } });
    const { index } = await thePack('traced/');
    const starts = trace.map((d) => index.locate(d)!.start);
    expect(starts).toEqual([...starts].sort((a, b) => a - b));
    const others = files.filter((f) => !trace.includes(f.digest)).map((f) => index.locate(f.digest)!.start);
    expect(Math.max(...starts)).toBeLessThan(Math.min(...others));
  });
});
