// Restore and save speed against the usual CI way, measured in one run:
//
//   cold restore  vrift restore on an empty node, from S3 packs
//                 vs downloading a `tar --zstd` archive from the same S3 server and extracting it
//   warm restore  vrift restore with every blob local   vs   extracting that archive
//   save (95%)    vrift save of a tree 95% unchanged    vs   a fresh tar --zstd + upload
//
// Dataset: this project's node_modules, plus generated source-like files
// up to 20 500 files (node_modules alone has ~15 700). Each measurement
// runs ROUNDS times (VRIFT_BENCH_ROUNDS, default 3) in alternating order,
// each into fresh directories after a `sync`, and nothing is deleted until
// the end: on this ext4 (no journal) creating files right after a large
// `rm -rf` is several times slower, which would punish whichever side
// ran next. The table shows medians.
//
//   node scripts/build.mjs ts && node dist/bench/restore.js
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { appendFileSync, createReadStream, mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { addGeneratedFiles, download, flushDisk, median, rng, ROOT, run, runOut, startS3rver, timed, treeSize, VRIFT_BIN, type S3rver } from './lib.js';

const ROUNDS = Number(process.env.VRIFT_BENCH_ROUNDS ?? 3);
const BUCKET = 'vrift-bench';
const CHANGED = 0.05;

/** Seconds per round for each side, parts of the baseline, and bytes each side moved over the network. */
type Side = { vrift: number[]; base: number[]; parts: Record<string, number[]>; moved: { vrift: number[]; base: number[] } };
const side = (...parts: string[]): Side => ({ vrift: [], base: [], parts: Object.fromEntries(parts.map((p) => [p, []])), moved: { vrift: [], base: [] } });
const results: Record<'cold' | 'warm' | 'save' | 'saveInPlace', Side> = {
  cold: side('download', 'extract'),
  warm: side(),
  save: side('tar', 'upload'),
  saveInPlace: side(),
};

/** Runs the two sides of a comparison, in an order that alternates with the round. */
async function pair(round: number, vrift: () => Promise<void> | void, baseline: () => Promise<void> | void): Promise<void> {
  const settle = () => flushDisk(); // the other side's writeback must not land in this measurement
  if (round % 2 === 0) {
    settle();
    await vrift();
    settle();
    await baseline();
  } else {
    settle();
    await baseline();
    settle();
    await vrift();
  }
}

/** Appends a line to a share of the files (a different share each seed). */
function changeFiles(dir: string, share: number, seed: number): number {
  const rand = rng(seed);
  let n = 0;
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && rand() < share) {
        appendFileSync(p, `\n// changed in bench round ${seed}\n`);
        n++;
      }
    }
  };
  walk(dir);
  return n;
}

async function main(): Promise<void> {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const work = mkdtempSync(join(tmpdir(), 'vrift-bench-'));
  let s3: S3rver | undefined;
  try {
    // --- the dataset ---------------------------------------------------
    const base = join(work, 'data', 'base');
    mkdirSync(base, { recursive: true });
    run('cp', ['-a', `${realpathSync(join(ROOT, 'node_modules'))}/.`, base]);
    const nm = treeSize(base);
    const generated = Math.max(0, 20_500 - nm.files);
    addGeneratedFiles(base, generated);
    const size = treeSize(base);
    if (size.files < 20_000 || size.bytes < 100e6) throw new Error(`dataset too small: ${size.files} files, ${size.bytes} bytes`);
    log(`dataset: ${size.files} files, ${mb(size.bytes)} (node_modules: ${nm.files} files, ${mb(nm.bytes)}; + ${generated} generated files)`);

    // --- servers and clients --------------------------------------------
    s3 = await startS3rver(join(work, 's3'), BUCKET);
    const creds = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
    // The baseline uses the same SDK with the same settings vrift uses.
    const client = new S3Client({
      endpoint: s3.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: creds,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    const upload = (file: string, key: string) =>
      new Upload({ client, params: { Bucket: BUCKET, Key: key, Body: createReadStream(file) }, partSize: 8 << 20, queueSize: 4 }).done();
    const env = {
      ...process.env,
      VRIFT_S3_BUCKET: BUCKET,
      VRIFT_S3_ENDPOINT: s3.endpoint,
      VRIFT_S3_ACCESS_KEY_ID: creds.accessKeyId,
      VRIFT_S3_SECRET_ACCESS_KEY: creds.secretAccessKey,
      VRIFT_TIERS: 'local,s3',
    };
    const vrift = (home: string, ...args: string[]) => run(process.execPath, [VRIFT_BIN, ...args], { env: { ...env, VRIFT_HOME: home } });
    /** Runs a vrift command with --json; records its time and returns its result. */
    const vriftJson = (into: number[], home: string, ...args: string[]) => {
      const r = runOut(process.execPath, [VRIFT_BIN, ...args, '--json'], { env: { ...env, VRIFT_HOME: home } });
      into.push(r.secs);
      return JSON.parse(r.stdout) as { tree?: string; metrics?: Record<string, number> };
    };
    const sizeOf = (file: string) => statSync(file).size;
    /** Bytes the command moved over the network to or from S3, as stored there (compressed packs count compressed). */
    const wire = (r: { metrics?: Record<string, number> }, dir: 'received' | 'sent') => r.metrics?.[`vrift_tier_wire_bytes_${dir}_total{tier="s3"}`] ?? 0;
    const tarCreate = (dir: string, file: string) => run('tar', ['--zstd', '-cf', file, '-C', dir, '.']);
    const tarExtract = (file: string, dir: string) => (mkdirSync(dir, { recursive: true }), run('tar', ['--zstd', '-xf', file, '-C', dir]));

    // --- the initial save, both ways (reported, no goal) -----------------
    const homeA = join(work, 'home-a');
    const first: number[] = [];
    const baseTree = vriftJson(first, homeA, 'save', 'bench/base', base).tree!;
    const firstSave = first[0]!;
    const arc = join(work, 'base.tar.zst');
    const firstTar = tarCreate(base, arc);
    const firstUpload = await timed(() => upload(arc, 'tar/base.tar.zst'));
    log(`initial save: vrift ${firstSave.toFixed(2)} s; tar --zstd ${firstTar.toFixed(2)} s + upload ${firstUpload.toFixed(2)} s`);

    for (let r = 0; r < ROUNDS; r++) {
      log(`round ${r + 1}/${ROUNDS}`);
      const homeB = join(work, `home-b${r}`);
      const dl = join(work, `dl${r}.tar.zst`);
      const out = (tag: string) => join(work, `out-${tag}-${r}`);

      // Cold: an empty node restores the tree.
      await pair(
        r,
        () => void results.cold.moved.vrift.push(wire(vriftJson(results.cold.vrift, homeB, 'restore', 'bench/base', out('vc')), 'received')),
        async () => {
          const d = await timed(async () => {
            const o = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'tar/base.tar.zst' }));
            await download(o.Body as Readable, dl);
          });
          const x = tarExtract(dl, out('tc'));
          results.cold.parts.download!.push(d);
          results.cold.parts.extract!.push(x);
          results.cold.base.push(d + x);
          results.cold.moved.base.push(sizeOf(dl));
        },
      );

      // Warm: every blob is local (vrift), the archive is local (tar).
      await pair(
        r,
        () => void results.warm.vrift.push(vrift(homeB, 'restore', 'bench/base', out('vw'))),
        () => void results.warm.base.push(tarExtract(dl, out('tw'))),
      );

      // Save: a fresh copy of the tree (new inodes, as after `npm ci`) with 5% of its files changed,
      // under a ref whose previous value is the base tree (so 95% of it is already in S3).
      vrift(homeA, 'ref', 'set', 'bench/main', baseTree);
      const v2 = join(work, 'data', `v2-${r}`);
      run('cp', ['-a', base, v2]);
      const changed = changeFiles(v2, CHANGED, 100 + r);
      const arc2 = join(work, `v2-${r}.tar.zst`);
      await pair(
        r,
        () => void results.save.moved.vrift.push(wire(vriftJson(results.save.vrift, homeA, 'save', 'bench/main', v2), 'sent')),
        async () => {
          const t = tarCreate(v2, arc2);
          const u = await timed(() => upload(arc2, `tar/v2-${r}.tar.zst`));
          results.save.parts.tar!.push(t);
          results.save.parts.upload!.push(u);
          results.save.base.push(t + u);
          results.save.moved.base.push(sizeOf(arc2));
        },
      );

      // Save again after changing 5% more in place (the re-ingest cache skips unchanged files;
      // the ref's previous value is the tree just saved).
      changeFiles(v2, CHANGED, 200 + r);
      await pair(
        r,
        () => void results.saveInPlace.moved.vrift.push(wire(vriftJson(results.saveInPlace.vrift, homeA, 'save', 'bench/main', v2), 'sent')),
        async () => {
          const t = tarCreate(v2, `${arc2}.b`);
          results.saveInPlace.base.push(t + (await timed(() => upload(`${arc2}.b`, `tar/v2b-${r}.tar.zst`))));
          results.saveInPlace.moved.base.push(sizeOf(`${arc2}.b`));
        },
      );
      log(`  changed ${changed} files`);
    }
    report(size);
  } finally {
    await s3?.stop();
    log(`removing ${work}`);
    rmSync(work, { recursive: true, force: true });
  }
}

function report(size: { files: number; bytes: number }): void {
  const m = (xs: number[]) => median(xs);
  const row = (name: string, side: Side, baseLabel: string, goal: number) => {
    const v = m(side.vrift);
    const b = m(side.base);
    const parts = Object.entries(side.parts)
      .map(([k, xs]) => `${k} ${m(xs).toFixed(2)}`)
      .join(' + ');
    const ratio = b / v;
    const moved = side.moved.vrift.length > 0 ? `${mb(m(side.moved.vrift))} vs ${mb(m(side.moved.base))}` : '-';
    const text = `${name.padEnd(31)} ${sec(v).padStart(7)}   ${`${sec(b)} ${baseLabel}${parts ? ` (${parts})` : ''}`.padEnd(58)} ${`${ratio.toFixed(2)}×`.padStart(6)}  ≥ ${`${goal}×`.padEnd(4)} ${(ratio >= goal ? 'met' : 'MISSED').padEnd(7)} ${moved}`;
    return { name, v, b, ratio, goal, moved: { vrift: m(side.moved.vrift), baseline: m(side.moved.base) }, text };
  };
  const rows = [
    row('cold restore (S3 packs)', results.cold, 'download + extract', 1),
    row('warm restore (blobs local)', results.warm, 'tar extract', 10),
    row('save, 95% unchanged (copy)', results.save, 'tar --zstd + upload', 5),
    row('save, 95% unchanged (in place)', results.saveInPlace, 'tar --zstd + upload', 5),
  ];
  console.log(`\n${size.files} files, ${mb(size.bytes)}; medians of ${ROUNDS} rounds; ratio = baseline / vrift (higher is better)\n`);
  console.log(`${'measurement'.padEnd(31)} ${'vrift'.padStart(7)}   ${'baseline'.padEnd(58)} ${'ratio'.padStart(6)}  goal        bytes over the network (vrift vs baseline)`);
  for (const r of rows) console.log(r.text);
  const json = Object.fromEntries(rows.map((r) => [r.name, { vrift: round(r.v), baseline: round(r.b), ratio: round(r.ratio), goal: r.goal, moved: r.moved }]));
  console.log(JSON.stringify({ bench: 'restore', files: size.files, bytes: size.bytes, rounds: ROUNDS, results: json, raw: results }));
}

const round = (x: number) => Math.round(x * 1000) / 1000;
const sec = (x: number) => `${x.toFixed(2)} s`;
const mb = (n: number) => `${(n / 1e6).toFixed(0)} MB`;
const log = (s: string) => process.stderr.write(`bench: ${s}\n`);

await main();
