// Restore and save speed against the usual CI way, measured in one run:
//
//   cold restore  vrift restore on an empty node, from S3 packs
//                 vs downloading a `tar --zstd` archive from the same S3 server and extracting it
//   warm restore  vrift restore with every blob local   vs   extracting that archive
//   save, unchanged (in place)   vrift save of the tree it saved before, nothing changed
//                                vs a fresh tar --zstd + upload
//   save, unchanged (restored)   vrift save of a directory it has just restored (hard links),
//                                nothing changed, vs tar --zstd + upload of the extracted copy
//   save (95%)    vrift save of a tree 95% unchanged    vs   a fresh tar --zstd + upload
//                 (node_modules dataset only: a copy of the whole tree per round)
//
// Two datasets (VRIFT_BENCH_DATASET):
//   node_modules  (default) this project's node_modules, plus generated
//                 source-like files up to 20 500 files (node_modules alone
//                 has ~15 700), ~210 MB.
//   project       a generated tree of 100 000 entries / ~1 GB
//                 (VRIFT_BENCH_FILES, VRIFT_BENCH_BYTES; writeProjectTree in
//                 lib.ts): ~95 000 small source-like files (128 B–16 KiB),
//                 4 000 medium ones (16–256 KiB, half text, half
//                 incompressible), 60 large incompressible binaries, 0.5%
//                 symlinks, in ~1 700 packages of very different sizes.
//
// Each measurement runs ROUNDS times (VRIFT_BENCH_ROUNDS, default 3) in
// alternating order, each into fresh directories after a `sync`, and
// nothing is deleted until the end: on this ext4 (no journal) creating
// files right after a large `rm -rf` is several times slower, which would
// punish whichever side ran next. The table shows medians and the spread
// (min–max over rounds) of both sides. vrift runs in-process (no daemon);
// bench/crowd.ts compares that with a daemon.
//
//   node scripts/build.mjs ts && node dist/bench/restore.js
//   VRIFT_BENCH_DATASET=project node dist/bench/restore.js
//
// Both work in a scratch filesystem (makeScratch in lib.ts) of at most
// ~25 GB (project) or ~7 GB (node_modules) with the defaults.
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { appendFileSync, createReadStream, mkdirSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { parseSize } from '../src/lib/units.js';
import { addGeneratedFiles, cpuSeconds, download, flushDisk, loadNow, makeScratch, median, ownAndChildCpuSeconds, rng, ROOT, run, runOut, startS3rver, timed, treeSize, VRIFT_BIN, writeProjectTree, type S3rver } from './lib.js';

const ROUNDS = Number(process.env.VRIFT_BENCH_ROUNDS ?? 3);
const DATASET = process.env.VRIFT_BENCH_DATASET ?? 'node_modules';
if (DATASET !== 'node_modules' && DATASET !== 'project') throw new Error(`VRIFT_BENCH_DATASET: node_modules or project, not ${JSON.stringify(DATASET)}`);
const PROJECT_FILES = Number(process.env.VRIFT_BENCH_FILES ?? 100_000);
const PROJECT_BYTES = process.env.VRIFT_BENCH_BYTES ? parseSize(process.env.VRIFT_BENCH_BYTES) : 1e9;
/** The 95%-unchanged saves copy the whole tree each round: on the node_modules dataset only. */
const CHANGED_SAVES = DATASET === 'node_modules';
const BUCKET = 'vrift-bench';
const CHANGED = 0.05;

/**
 * Per round, for each side: seconds, parts, bytes moved over the network, and CPU seconds: the
 * side's own processes (vrift; tar and zstd plus this process's S3 SDK for the baseline), and
 * s3rver's meanwhile.
 */
type Side = {
  vrift: number[];
  base: number[];
  parts: Record<string, number[]>;
  vparts: Record<string, number[]>;
  moved: { vrift: number[]; base: number[] };
  cpu: { vrift: number[]; base: number[] };
  s3cpu: { vrift: number[]; base: number[] };
};
const side = (vparts: string[], ...parts: string[]): Side => ({
  vrift: [],
  base: [],
  parts: Object.fromEntries(parts.map((p) => [p, []])),
  vparts: Object.fromEntries(vparts.map((p) => [p, []])),
  moved: { vrift: [], base: [] },
  cpu: { vrift: [], base: [] },
  s3cpu: { vrift: [], base: [] },
});

/** The s3rver process, for its CPU time. */
let s3pid = 0;

/** Runs one side of a comparison, recording the CPU time it used and s3rver used meanwhile. */
async function withCpu(side: Side, which: 'vrift' | 'base', fn: () => Promise<void> | void): Promise<void> {
  const c0 = ownAndChildCpuSeconds();
  const s0 = cpuSeconds(s3pid);
  await fn();
  side.cpu[which].push(ownAndChildCpuSeconds() - c0);
  side.s3cpu[which].push(cpuSeconds(s3pid) - s0);
}
const RESTORE = ['fetch', 'materialize'];
const SAVE = ['ingest', 'push'];
const results = {
  cold: side(RESTORE, 'download', 'extract'),
  warm: side(RESTORE),
  saveSame: side(SAVE, 'tar', 'upload'),
  saveRestored: side(SAVE, 'tar', 'upload'),
  save: side(SAVE, 'tar', 'upload'),
  saveInPlace: side(SAVE, 'tar', 'upload'),
};

/** Runs the two sides of a comparison, in an order that alternates with the round. */
async function pair(round: number, side: Side, vrift: () => Promise<void> | void, baseline: () => Promise<void> | void): Promise<void> {
  const settle = () => flushDisk(); // the other side's writeback must not land in this measurement
  const v = () => withCpu(side, 'vrift', vrift);
  const b = () => withCpu(side, 'base', baseline);
  for (const step of round % 2 === 0 ? [v, b] : [b, v]) {
    settle();
    await step();
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

/** A vrift --json result, as far as this bench reads it. */
interface VriftResult {
  tree?: string;
  metrics?: Record<string, number>;
  timings?: Record<string, number>;
  hashed?: number;
}

async function main(): Promise<void> {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  // Per round: a home with the tree's blobs, two extracted copies, archives (downloaded, created, uploaded).
  const treeBytes = DATASET === 'project' ? PROJECT_BYTES : 250e6;
  const scratch = makeScratch('vrift-bench-', treeBytes * (5 + 6 * ROUNDS) + 2e9);
  const work = scratch.dir;
  log(`working in ${scratch.what}`);
  let s3: S3rver | undefined;
  try {
    // --- the dataset ---------------------------------------------------
    const base = join(work, 'data', 'base');
    mkdirSync(base, { recursive: true });
    const t0 = performance.now();
    let note: string;
    if (DATASET === 'node_modules') {
      run('cp', ['-a', `${realpathSync(join(ROOT, 'node_modules'))}/.`, base]);
      const nm = treeSize(base);
      const generated = Math.max(0, 20_500 - nm.files);
      addGeneratedFiles(base, generated);
      note = `node_modules: ${nm.files} files, ${mb(nm.bytes)}; + ${generated} generated files`;
    } else {
      const made = writeProjectTree(base, { files: PROJECT_FILES, bytes: PROJECT_BYTES, medium: Math.round(PROJECT_FILES / 25), large: Math.max(2, Math.round(PROJECT_FILES / 1700)), seed: 3 });
      note = `generated project tree: ${made.files} files + ${made.symlinks} symlinks in ${made.dirs} directories`;
    }
    const size = treeSize(base);
    if (DATASET === 'node_modules' && (size.files < 20_000 || size.bytes < 100e6)) throw new Error(`dataset too small: ${size.files} files, ${size.bytes} bytes`);
    log(`dataset: ${size.files} files, ${mb(size.bytes)} (${note}), written in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    // --- servers and clients --------------------------------------------
    s3 = await startS3rver(join(work, 's3'), BUCKET);
    s3pid = s3.pid;
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
    /** Runs a vrift command with --json; records its time (and the parts its result names) into `side`, returns its result. */
    const vriftJson = (into: Side | number[], home: string, ...args: string[]): VriftResult => {
      const r = runOut(process.execPath, [VRIFT_BIN, ...args, '--json'], { env: { ...env, VRIFT_HOME: home } });
      const res = JSON.parse(r.stdout) as VriftResult;
      if (Array.isArray(into)) into.push(r.secs);
      else {
        into.vrift.push(r.secs);
        for (const [k, xs] of Object.entries(into.vparts)) xs.push(res.timings?.[k] ?? NaN);
      }
      return res;
    };
    const sizeOf = (file: string) => statSync(file).size;
    /** Bytes the command moved over the network to or from S3, as stored there (compressed packs count compressed). */
    const wire = (r: VriftResult, dir: 'received' | 'sent') => r.metrics?.[`vrift_tier_wire_bytes_${dir}_total{tier="s3"}`] ?? 0;
    const tarCreate = (dir: string, file: string) => run('tar', ['--zstd', '-cf', file, '-C', dir, '.']);
    const tarExtract = (file: string, dir: string) => (mkdirSync(dir, { recursive: true }), run('tar', ['--zstd', '-xf', file, '-C', dir]));
    /** The usual CI save: a fresh archive, uploaded. */
    const tarUpload = async (s: Side, dir: string, key: string) => {
      const file = join(work, `${key.replace(/\//g, '-')}`);
      const t = tarCreate(dir, file);
      const u = await timed(() => upload(file, key));
      s.parts.tar!.push(t);
      s.parts.upload!.push(u);
      s.base.push(t + u);
      s.moved.base.push(sizeOf(file));
    };

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
      loads.push(loadNow());
      log(`round ${r + 1}/${ROUNDS} (load ${loads.at(-1)})`);
      const homeB = join(work, `home-b${r}`);
      const dl = join(work, `dl${r}.tar.zst`);
      const out = (tag: string) => join(work, `out-${tag}-${r}`);

      // Cold: an empty node restores the tree.
      await pair(
        r,
        results.cold,
        () => void results.cold.moved.vrift.push(wire(vriftJson(results.cold, homeB, 'restore', 'bench/base', out('vc')), 'received')),
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
        results.warm,
        () => void vriftJson(results.warm, homeB, 'restore', 'bench/base', out('vw')),
        () => void results.warm.base.push(tarExtract(dl, out('tw'))),
      );

      // Save, nothing changed, two ways, against one baseline (a fresh archive of the tree, uploaded),
      // in an order that alternates with the round:
      //   in place: the tree this node saved before, its files as they were;
      //   just restored: the directory the warm restore wrote (a CI job that restored, built, and saves at its end).
      const same = () => void results.saveSame.moved.vrift.push(wire(vriftJson(results.saveSame, homeA, 'save', 'bench/base', base), 'sent'));
      const restored = () => void results.saveRestored.moved.vrift.push(wire(vriftJson(results.saveRestored, homeB, 'save', 'bench/base', out('vw')), 'sent'));
      const order: ((() => void) | 'tar')[] = r % 2 === 0 ? [same, 'tar', restored] : [restored, 'tar', same];
      for (const step of order) {
        flushDisk();
        if (step === same) await withCpu(results.saveSame, 'vrift', same);
        else if (step === restored) await withCpu(results.saveRestored, 'vrift', restored);
        else {
          await withCpu(results.saveSame, 'base', () => tarUpload(results.saveSame, base, `tar/same-${r}.tar.zst`));
          const last = (xs: number[]) => xs.at(-1)!;
          const [from, to] = [results.saveSame, results.saveRestored];
          to.base.push(last(from.base));
          for (const k of ['tar', 'upload']) to.parts[k]!.push(last(from.parts[k]!));
          to.moved.base.push(last(from.moved.base));
          to.cpu.base.push(last(from.cpu.base));
          to.s3cpu.base.push(last(from.s3cpu.base));
        }
      }

      if (!CHANGED_SAVES) continue;
      // Save: a fresh copy of the tree (new inodes, as after `npm ci`) with 5% of its files changed,
      // under a ref whose previous value is the base tree (so 95% of it is already in S3).
      vrift(homeA, 'ref', 'set', 'bench/main', baseTree);
      const v2 = join(work, 'data', `v2-${r}`);
      run('cp', ['-a', base, v2]);
      const changed = changeFiles(v2, CHANGED, 100 + r);
      await pair(
        r,
        results.save,
        () => void results.save.moved.vrift.push(wire(vriftJson(results.save, homeA, 'save', 'bench/main', v2), 'sent')),
        () => tarUpload(results.save, v2, `tar/v2-${r}.tar.zst`),
      );

      // Save again after changing 5% more in place (the re-ingest cache skips unchanged files;
      // the ref's previous value is the tree just saved).
      changeFiles(v2, CHANGED, 200 + r);
      await pair(
        r,
        results.saveInPlace,
        () => void results.saveInPlace.moved.vrift.push(wire(vriftJson(results.saveInPlace, homeA, 'save', 'bench/main', v2), 'sent')),
        () => tarUpload(results.saveInPlace, v2, `tar/v2b-${r}.tar.zst`),
      );
      log(`  changed ${changed} files`);
    }
    report(size, { vrift: firstSave, tar: firstTar, upload: firstUpload });
  } finally {
    await s3?.stop();
    scratch.remove();
  }
}

function report(size: { files: number; bytes: number }, first: { vrift: number; tar: number; upload: number }): void {
  const m = (xs: number[]) => median(xs);
  const range = (xs: number[]) => `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}`;
  const goals = DATASET === 'project' ? { cold: 2, warm: 10, save: 5 } : { cold: 1, warm: 10, save: 5 };
  const row = (name: string, side: Side, baseLabel: string, goal: number) => {
    const v = m(side.vrift);
    const b = m(side.base);
    const parts = (ps: Record<string, number[]>) =>
      Object.entries(ps)
        .map(([k, xs]) => `${k} ${m(xs).toFixed(2)}`)
        .join(' + ');
    const ratio = b / v;
    // The ratio of each round (its two sides ran back to back), for the spread.
    const perRound = side.vrift.map((x, i) => side.base[i]! / x);
    const moved = side.moved.vrift.length > 0 ? `${mb(m(side.moved.vrift))} vs ${mb(m(side.moved.base))}` : '-';
    const vtext = `${sec(v)} (${range(side.vrift)}) ${parts(side.vparts) ? `[${parts(side.vparts)}]` : ''}`;
    const btext = `${sec(b)} (${range(side.base)}) ${baseLabel}${parts(side.parts) ? ` [${parts(side.parts)}]` : ''}`;
    const text = `${name.padEnd(32)} ${vtext.padEnd(48)} ${btext.padEnd(74)} ${`${ratio.toFixed(2)}×`.padStart(6)} ${`(${range(perRound)})`.padEnd(13)} ≥ ${`${goal}×`.padEnd(4)} ${(ratio >= goal ? 'met' : 'MISSED').padEnd(7)} ${moved}`;
    const cpu = { vrift: m(side.cpu.vrift), s3rverDuringVrift: m(side.s3cpu.vrift), baseline: m(side.cpu.base), s3rverDuringBaseline: m(side.s3cpu.base) };
    return {
      name,
      v,
      b,
      ratio,
      goal,
      cpu,
      spread: { vrift: [Math.min(...side.vrift), Math.max(...side.vrift)], baseline: [Math.min(...side.base), Math.max(...side.base)], ratio: [Math.min(...perRound), Math.max(...perRound)] },
      moved: { vrift: m(side.moved.vrift), baseline: m(side.moved.base) },
      text,
    };
  };
  const rows = [
    row('cold restore (S3 packs)', results.cold, 'download + extract', goals.cold),
    row('warm restore (blobs local)', results.warm, 'tar extract', goals.warm),
    row('save, unchanged (in place)', results.saveSame, 'tar --zstd + upload', goals.save),
    row('save, unchanged (just restored)', results.saveRestored, 'tar --zstd + upload', goals.save),
    ...(CHANGED_SAVES
      ? [row('save, 95% unchanged (copy)', results.save, 'tar --zstd + upload', goals.save), row('save, 95% unchanged (in place)', results.saveInPlace, 'tar --zstd + upload', goals.save)]
      : []),
  ];
  console.log(`\n${DATASET}: ${size.files} files, ${mb(size.bytes)}; medians of ${ROUNDS} rounds (min–max); [parts: vrift's own timings, the baseline's steps]; ratio = baseline / vrift (higher is better)`);
  console.log(loadText());
  console.log(`initial save (no goal): vrift ${sec(first.vrift)}; tar --zstd ${sec(first.tar)} + upload ${sec(first.upload)}\n`);
  console.log(`${'measurement'.padEnd(32)} ${'vrift'.padEnd(48)} ${'baseline'.padEnd(74)} ${'ratio'.padStart(6)} ${'(per round)'.padEnd(13)} goal        bytes over the network (vrift vs baseline)`);
  for (const r of rows) console.log(r.text);
  // On 2 cores, a side's CPU time bounds how fast it can be: the other side's CPU time over it is the best ratio it could reach.
  console.log(`\nCPU seconds, medians (user + system; the side's processes, then s3rver's meanwhile)`);
  console.log(`${'measurement'.padEnd(32)} ${'vrift'.padEnd(22)} ${'baseline'.padEnd(22)} ratio of CPU`);
  for (const r of rows) {
    const c = r.cpu;
    const cell = (own: number, s3: number) => `${own.toFixed(2)} + ${s3.toFixed(2)} s3rver`;
    console.log(`${r.name.padEnd(32)} ${cell(c.vrift, c.s3rverDuringVrift).padEnd(22)} ${cell(c.baseline, c.s3rverDuringBaseline).padEnd(22)} ${((c.baseline + c.s3rverDuringBaseline) / (c.vrift + c.s3rverDuringVrift)).toFixed(2)}×`);
  }
  const json = Object.fromEntries(rows.map((r) => [r.name, { vrift: round(r.v), baseline: round(r.b), ratio: round(r.ratio), goal: r.goal, met: r.ratio >= r.goal, spread: r.spread, moved: r.moved, cpu: r.cpu }]));
  console.log(JSON.stringify({ bench: 'restore', dataset: DATASET, files: size.files, bytes: size.bytes, rounds: ROUNDS, load: loads, initialSave: first, results: json, raw: results }));
}

const round = (x: number) => Math.round(x * 1000) / 1000;
/** The 1-minute load average at the start of each round (other work on this shared machine). */
const loads: number[] = [];
const loadText = () => `load average (1 min) at each round's start: ${loads.join(', ')} on ${availableParallelism()} CPUs`;
const sec = (x: number) => `${x.toFixed(2)} s`;
const mb = (n: number) => `${(n / 1e6).toFixed(0)} MB`;
const log = (s: string) => process.stderr.write(`bench: ${s}\n`);

await main();
