// One blob of a packed tree (issue 12, "Lazy start"): read by a ranged GET
// of its bytes in the S3 pack, found through the pack's index, against
// downloading the pack, in one run against the same s3rver.
//
//   tree       10 000 source-like files (0.5–16 KiB, addGeneratedFiles in
//              lib.ts), saved by `vrift save`: one zstd pack and its index
//   range      an empty node fetches one blob of the tree it knows
//              (Resolver.fetchBlob(digest, { tree }): by digest first, then
//              by range), admitted (hashed) into its store
//                cold: a new node (its first request: bucket probe,
//                      manifest, index, then the range)
//                warm: the same node, the next blob (manifest and index cached)
//   baseline   downloading the pack object whole (GetObject, read to the end)
//                cold: a new client; warm: the same client again
//
// ROUNDS rounds (VRIFT_BENCH_ROUNDS, default 7), alternating which side
// goes first, each with other blobs; medians. Bytes are those that crossed
// the network (the tier's wire counter; the pack's Content-Length).
//
//   node scripts/build.mjs ts && node dist/bench/pack-range.js
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Digest } from '../src/lib/digest.js';
import { TIER_COUNTERS as M, Metrics } from '../src/lib/metrics.js';
import { loadNodeConfig } from '../src/node/ops/node-config.js';
import { openResolver } from '../src/node/ops/open-resolver.js';
import { Store } from '../src/node/store/store.js';
import { addGeneratedFiles, median, printTable, rng, runOut, startS3rver, timed, VRIFT_BIN, type S3rver } from './lib.js';

const ROUNDS = Number(process.env.VRIFT_BENCH_ROUNDS ?? 7);
const FILES = 10_000;
const BUCKET = 'vrift-bench';
const CREDS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

interface Side {
  secs: number[];
  bytes: number[];
}
const side = (): Side => ({ secs: [], bytes: [] });
const results = { rangeCold: side(), rangeWarm: side(), packCold: side(), packWarm: side() };

async function main(): Promise<void> {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'; // the SDK's notice about its own future plans
  const work = mkdtempSync(join(process.env.VRIFT_BENCH_DIR ?? tmpdir(), 'vrift-bench-range-'));
  let s3: S3rver | undefined;
  try {
    const src = join(work, 'src');
    addGeneratedFiles(src, FILES);
    s3 = await startS3rver(join(work, 's3'), BUCKET);
    const env = { ...process.env, VRIFT_S3_BUCKET: BUCKET, VRIFT_S3_ENDPOINT: s3.endpoint, VRIFT_S3_ACCESS_KEY_ID: CREDS.accessKeyId, VRIFT_S3_SECRET_ACCESS_KEY: CREDS.secretAccessKey, VRIFT_TIERS: 'local,s3' };
    const vrift = (...args: string[]) => JSON.parse(runOut(process.execPath, [VRIFT_BIN, ...args, '--json'], { env: { ...env, VRIFT_HOME: join(work, 'saver') } }).stdout);
    const tree = vrift('save', 'bench/packed', src).tree as Digest;
    const blobs = (vrift('ls', tree).entries as { kind: string; digest: Digest; size: number }[]).filter((e) => e.kind === 'file');

    const client = (): S3Client => new S3Client({ endpoint: s3!.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CREDS, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' });
    const lister = client();
    const { Contents } = await lister.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'packs/' }));
    const packs = (Contents ?? []).filter((o) => /\.pack(\.zst)?$/.test(o.Key!));
    if (packs.length !== 1) throw new Error(`expected one pack, found ${packs.length}`);
    const pack = packs[0]!;
    const index = (Contents ?? []).find((o) => o.Key!.endsWith('.idx'));
    log(`tree: ${blobs.length} blobs; pack ${pack.Key} ${kb(pack.Size!)}, index ${kb(index?.Size ?? 0)}`);

    /** Downloads the pack whole with `c`; its bytes. */
    const download = async (c: S3Client): Promise<number> => {
      const o = await c.send(new GetObjectCommand({ Bucket: BUCKET, Key: pack.Key! }));
      let n = 0;
      for await (const chunk of o.Body as Readable) n += (chunk as Buffer).length;
      return n;
    };
    const rand = rng(7);
    const pick = () => blobs[Math.floor(rand() * blobs.length)]!;
    const warmClient = client();
    await download(warmClient); // a connection, and s3rver's file in the page cache

    for (let r = 0; r < ROUNDS; r++) {
      const rangeSide = async () => {
        const home = join(work, `node-${r}`);
        const metrics = new Metrics();
        const store = Store.open(home, { metrics });
        const resolver = openResolver({ store, config: loadNodeConfig({ home, env }), metrics, log: () => undefined });
        const wire = () => metrics.get(M.wireIn, { tier: 's3' });
        try {
          for (const s of [results.rangeCold, results.rangeWarm]) {
            const b = pick();
            const before = wire();
            let from: string | undefined;
            s.secs.push(await timed(async () => (from = await resolver.fetchBlob(b.digest, { tree }))));
            if (from !== 's3') throw new Error(`blob ${b.digest} came from ${from ?? 'nowhere'}`);
            s.bytes.push(wire() - before);
          }
        } finally {
          await resolver.close();
          await store.close();
        }
      };
      const packSide = async () => {
        const fresh = client();
        let n = 0;
        results.packCold.secs.push(await timed(async () => (n = await download(fresh))));
        results.packCold.bytes.push(n);
        fresh.destroy();
        results.packWarm.secs.push(await timed(async () => (n = await download(warmClient))));
        results.packWarm.bytes.push(n);
      };
      for (const step of r % 2 === 0 ? [rangeSide, packSide] : [packSide, rangeSide]) await step();
    }
    report(blobs.length, pack.Size!, index?.Size ?? 0);
  } finally {
    await s3?.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

function report(files: number, packBytes: number, indexBytes: number): void {
  const m = median;
  const row = (name: string, v: Side, b: Side) => [name, m(v.secs) * 1000, m(b.secs) * 1000, m(b.secs) / m(v.secs), kb(m(v.bytes)), kb(m(b.bytes)), m(b.bytes) / m(v.bytes)];
  const rows = [
    ['one blob of the tree', 'range ms', 'pack ms', 'time ratio', 'range bytes', 'pack bytes', 'bytes ratio'],
    row('cold (new node / new client)', results.rangeCold, results.packCold),
    row('warm (index cached / same client)', results.rangeWarm, results.packWarm),
  ];
  printTable(`${files} blobs in one pack (${kb(packBytes)}, index ${kb(indexBytes)}); medians of ${ROUNDS} rounds; ratio = pack / range (higher is better)`, rows);
  const ratios = (v: Side, b: Side) => ({ range: { ms: m(v.secs) * 1000, bytes: m(v.bytes) }, pack: { ms: m(b.secs) * 1000, bytes: m(b.bytes) }, timeRatio: m(b.secs) / m(v.secs), bytesRatio: m(b.bytes) / m(v.bytes) });
  console.log(JSON.stringify({ bench: 'pack-range', files, packBytes, indexBytes, rounds: ROUNDS, cold: ratios(results.rangeCold, results.packCold), warm: ratios(results.rangeWarm, results.packWarm), raw: results }));
}

const kb = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
const log = (s: string) => process.stderr.write(`bench: ${s}\n`);

await main();
