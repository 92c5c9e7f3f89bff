// Benchmark for verified streaming (src/lib/bao.ts, docs/bao.md): what an
// outboard costs to make and what verifying ranges costs, each against
// plain BLAKE3 hashing of the same bytes in the same run:
//   - hashBuffer (one thread) and hashFile (native threads, page cache),
//   - the outboard from memory (one thread) and from the file (threads),
//   - verifying: the blob as one range, every 16 KiB group alone, 1 MiB
//     ranges in random order, an in-order stream with the outboard and a
//     combined encoding (64 KiB pushes).
// Ratios are throughput / hashBuffer's (1.0 = as fast as plain hashing on
// one thread); "CPU vs hashBuffer" is CPU seconds / hashBuffer's (all
// threads: the work done, steadier than wall time on a busy machine).
// Run: node dist/bench/bao.js [--mib N] [--rounds N]
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BaoDecoder, BaoVerifier, baoEncode, baoEncodeCombined, baoGroupBytes, baoOutboardFile, baoVerifyRange } from '../src/lib/bao.js';
import { hashBuffer } from '../src/lib/digest.js';
import { hashFile } from '../src/node/store/cas.js';
import { median, printTable } from './lib.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) || dflt : dflt;
}

const MiB = 1 << 20;
const size = arg('--mib', 256) * MiB + 12345; // not a whole number of groups
const rounds = arg('--rounds', 5);
const G = baoGroupBytes();

const work = mkdtempSync(join(process.env.VRIFT_BENCH_DIR ?? tmpdir(), 'vrift-bench-bao-'));
try {
  const data = randomBytes(size);
  const path = join(work, 'blob');
  writeFileSync(path, data);
  const { outboard, digest } = baoEncode(data);
  const combined = baoEncodeCombined(data);

  function check(ok: boolean, what: string): void {
    if (!ok) throw new Error(`bench/bao: ${what} did not verify`);
  }

  // 1 MiB ranges (whole groups), in a fixed shuffled order.
  const ranges: number[] = [];
  for (let o = 0; o < size; o += MiB) ranges.push(o);
  for (let i = ranges.length - 1; i > 0; i--) {
    const j = (i * 7919) % (i + 1);
    [ranges[i], ranges[j]] = [ranges[j]!, ranges[i]!];
  }

  const ops: Record<string, () => unknown> = {
    hashBuffer: () => check(hashBuffer(data) === digest, 'hashBuffer'),
    hashFile: async () => check((await hashFile(path)) === digest, 'hashFile'),
    outboard: () => baoEncode(data),
    outboardFile: () => baoOutboardFile(path),
    verifyWhole: () => check(baoVerifyRange(digest, size, outboard, 0, data), 'the whole blob'),
    verifyGroups: () => {
      for (let o = 0; o < size; o += G) check(baoVerifyRange(digest, size, outboard, o, data.subarray(o, Math.min(size, o + G))), `group at ${o}`);
    },
    verify1MiBShuffled: () => {
      for (const o of ranges) check(baoVerifyRange(digest, size, outboard, o, data.subarray(o, Math.min(size, o + MiB))), `range at ${o}`);
    },
    stream64KiB: () => {
      const v = new BaoVerifier(digest, size, outboard);
      for (let o = 0; o < size; o += 64 << 10) v.push(data.subarray(o, Math.min(size, o + (64 << 10))));
      check(v.complete, 'the stream');
    },
    combined64KiB: () => {
      const d = new BaoDecoder(digest, size);
      for (let o = 0; o < combined.length; o += 64 << 10) d.push(combined.subarray(o, Math.min(combined.length, o + (64 << 10))));
      check(d.complete, 'the combined stream');
    },
  };
  // Round-robin (one warm-up round first), so a busy moment on a shared
  // machine falls on every operation alike; medians of wall and CPU time.
  const wall: Record<string, number[]> = {};
  const cpu: Record<string, number[]> = {};
  for (let r = -1; r < rounds; r++) {
    for (const [name, fn] of Object.entries(ops)) {
      const c = process.cpuUsage();
      const w = performance.now();
      await fn();
      const dw = (performance.now() - w) / 1000;
      const dc = process.cpuUsage(c);
      if (r < 0) continue;
      (wall[name] ??= []).push(dw);
      (cpu[name] ??= []).push((dc.user + dc.system) / 1e6);
    }
  }
  const t = Object.fromEntries(Object.entries(wall).map(([k, xs]) => [k, median(xs)]));
  const tc = Object.fromEntries(Object.entries(cpu).map(([k, xs]) => [k, median(xs)]));
  const gbps = (s: number): number => size / s / 1e9;
  const rows: (string | number)[][] = [['operation', 'GB/s', 'vs hashBuffer', 'vs hashFile', 'CPU s', 'CPU vs hashBuffer']];
  for (const [name, s] of Object.entries(t)) rows.push([name, gbps(s), t.hashBuffer! / s, t.hashFile! / s, tc[name]!, tc[name]! / tc.hashBuffer!]);
  printTable(`bao: ${(size / MiB).toFixed(1)} MiB, 16 KiB groups, outboard ${outboard.length} bytes, median of ${rounds} (wall; CPU = all threads)`, rows);
  const round3 = (x: number): number => Number(x.toFixed(3));
  const result = {
    bench: 'bao',
    bytes: size,
    gbps: Object.fromEntries(Object.entries(t).map(([k, s]) => [k, round3(gbps(s))])),
    vsHashBuffer: Object.fromEntries(Object.entries(t).map(([k, s]) => [k, round3(t.hashBuffer! / s)])),
    cpuVsHashBuffer: Object.fromEntries(Object.entries(tc).map(([k, s]) => [k, round3(s / tc.hashBuffer!)])),
  };
  console.log(`\nJSON ${JSON.stringify(result)}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
