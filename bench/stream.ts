// A large file of a lazy mount read while its blob arrives (issue 12,
// "Large files stream"), against the same mount waiting for the whole blob
// (VRIFT_STREAM=false), in one run against the same s3rver:
//
//   first bytes   `head -c 65536` of the file, timed inside the mount's
//                 program (the mount itself is made before the clock runs)
//   read all      `sha256sum` of the whole file, the same way
//
// Every measure is on a new, empty node (its own home and daemon, started
// and its mount made before the clock runs). Rounds alternate which side
// goes first; medians and the min-max.
//
//   node dist/bench/stream.js [--rounds N] [--json]    (VRIFT_BENCH_BYTES, default 1G)
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSize } from '../src/lib/units.js';
import { median, printTable, s3NodeEnv, startS3rver, VRIFT_BIN, vriftAs } from './lib.js';

const arg = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1]! : dflt;
};
const ROUNDS = Number(arg('--rounds', '3'));
const JSON_ONLY = process.argv.includes('--json');
const BYTES = process.env.VRIFT_BENCH_BYTES ? parseSize(process.env.VRIFT_BENCH_BYTES) : 1 << 30;
const BUCKET = 'vrift-bench';
const say = (m: string) => process.stderr.write(`bench/stream: ${m}\n`);

async function main(): Promise<void> {
  const base = mkdtempSync(join(tmpdir(), 'vrift-bench-stream-'));
  const s3 = await startS3rver(join(base, 's3'), BUCKET);
  const env = s3NodeEnv(s3, BUCKET, { VRIFT_PREFETCH: 'false' });
  const vrift = (home: string, args: string[], extra: NodeJS.ProcessEnv = {}) => vriftAs(env, home, args, extra);
  const up = new Set<string>();
  try {
    // ---- one large random file, saved to S3 (not timed) ----
    const src = join(base, 'src');
    mkdirSync(src);
    const fd = openSync(join(src, 'big.bin'), 'w');
    const sha = createHash('sha256');
    for (let left = BYTES; left > 0; ) {
      const chunk = randomBytes(Math.min(left, 16 << 20));
      writeSync(fd, chunk);
      sha.update(chunk);
      left -= chunk.length;
    }
    closeSync(fd);
    const want = sha.digest('hex');
    vrift(join(base, 'origin'), ['save', 'bench/stream', src, '--json']);
    rmSync(join(base, 'origin'), { recursive: true, force: true });
    say(`${BYTES} random bytes saved to S3`);

    const times: Record<string, number[]> = {};
    const note = (k: string, ms: number) => (times[k] ??= []).push(ms);
    let n = 0;
    /** A new node with the tree mounted; the program's own clock times `cmd` on the file. */
    const measure = (side: 'whole' | 'stream', what: 'first' | 'all') => {
      const home = join(base, `node${n++}`);
      const extra = side === 'whole' ? { VRIFT_STREAM: 'false' } : {};
      vrift(home, ['up', '--detach'], extra);
      up.add(home);
      const mnt = join(base, `mnt${n}`);
      mkdirSync(mnt);
      vrift(home, ['mount', 'bench/stream', mnt], extra); // the listing arrives before the clock runs
      const file = join(mnt, 'big.bin');
      const cmd = what === 'first' ? `head -c 65536 '${file}' | wc -c` : `sha256sum '${file}' | cut -d' ' -f1`;
      const out = vrift(home, ['run', '--mount', `${mnt}=bench/stream`, '--', 'sh', '-c', `t0=$(date +%s%N); ${cmd}; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000 ))`], extra)
        .trim()
        .split('\n');
      const expect = what === 'first' ? '65536' : want;
      if (out[0] !== expect) throw new Error(`${side} ${what}: read ${out[0]}, expected ${expect}`);
      note(`${what}\t${side}`, Number(out[1]) / 1000);
      vrift(home, ['down'], extra);
      up.delete(home);
      rmSync(home, { recursive: true, force: true });
    };
    for (let r = 0; r < ROUNDS; r++) {
      const order: ('whole' | 'stream')[] = r % 2 === 0 ? ['whole', 'stream'] : ['stream', 'whole'];
      for (const what of ['first', 'all'] as const) for (const side of order) {
        say(`round ${r + 1}/${ROUNDS}: ${what === 'first' ? 'first 64 KiB' : 'read all'}, ${side}`);
        measure(side, what);
      }
    }

    const span = (xs: number[]) => `${Math.round(median(xs))} (${Math.round(Math.min(...xs))}-${Math.round(Math.max(...xs))})`;
    const results: Record<string, { whole_ms: number; stream_ms: number; ratio: number }> = {};
    const rows: (string | number)[][] = [['measure', 'whole blob first (ms)', 'streamed (ms)', 'ratio']];
    for (const [what, label] of [['first', 'first 64 KiB (head -c)'], ['all', 'read all (sha256sum)']] as const) {
      const w = times[`${what}\twhole`]!;
      const s = times[`${what}\tstream`]!;
      const ratio = median(w) / median(s);
      results[what] = { whole_ms: median(w), stream_ms: median(s), ratio };
      rows.push([label, span(w), span(s), ratio >= 1 ? `${ratio.toFixed(1)}x faster` : `${(1 / ratio).toFixed(2)}x slower`]);
    }
    if (!JSON_ONLY) printTable(`a ${(BYTES / 2 ** 30).toFixed(2)} GiB file of a lazy mount, only in S3; medians of ${ROUNDS} rounds, min-max`, rows);
    console.log(JSON.stringify({ bench: 'stream', rounds: ROUNDS, bytes: BYTES, results }));
  } finally {
    for (const home of up) spawnSync(process.execPath, [VRIFT_BIN, 'down'], { env: { ...env, VRIFT_HOME: home } });
    await s3.stop();
    rmSync(base, { recursive: true, force: true });
  }
}

void main().catch((e: unknown) => {
  console.error(`bench/stream: ${(e as Error).message}`);
  process.exit(1);
});
