// Helpers for benchmarks: running programs with timing, an s3rver child
// process, a real dataset, medians. Benchmarks compare vrift with a
// baseline measured in the same run (ARCHITECTURE.md, "Ground rules").
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { createServer, createConnection } from 'node:net';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import type { Readable } from 'node:stream';

/** The repository root (dist/bench/lib.js → ../..). */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const VRIFT_BIN = join(ROOT, 'bin', 'vrift.js');

/** Runs a program to completion; throws with its stderr if it fails. Returns seconds taken. */
export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): number {
  return runOut(cmd, args, opts).secs;
}

/** Like `run`, with the program's stdout. */
export function runOut(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): { secs: number; stdout: string } {
  const t = performance.now();
  const r = spawnSync(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, encoding: 'utf8', maxBuffer: 64 << 20 });
  const secs = (performance.now() - t) / 1000;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}: ${r.stderr}`);
  return { secs, stdout: r.stdout };
}

export async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return (performance.now() - t) / 1000;
}

export function nowMs(): number {
  return performance.now();
}

/** Wall time of a synchronous function, in ms. */
export function timeSync(fn: () => void): number {
  const t = performance.now();
  fn();
  return performance.now() - t;
}

/** Prints rows as an aligned table (first row = header). */
export function printTable(title: string, rows: (string | number)[][]): void {
  const fmt = (n: number): string => (Number.isInteger(n) ? String(n) : Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 10 ? n.toFixed(1) : n.toFixed(2));
  const cells = rows.map((r) => r.map((c) => (typeof c === 'number' ? fmt(c) : c)));
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  console.log(`\n${title}`);
  for (const [i, r] of cells.entries()) {
    console.log(r.map((c, j) => (j === 0 ? c.padEnd(widths[j]!) : c.padStart(widths[j]!))).join('  '));
    if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Writes dirty pages back and pauses, so one measurement's writeback does not land in the next. */
export function flushDisk(): void {
  spawnSync('sync');
  spawnSync('sleep', ['0.5']);
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 300; i++) {
    const ok = await new Promise<boolean>((r) => {
      const c = createConnection({ host: '127.0.0.1', port });
      c.once('connect', () => (c.destroy(), r(true)));
      c.once('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`s3rver did not listen on ${port}`);
}

export interface S3rver {
  endpoint: string;
  stop(): Promise<void>;
}

/** s3rver in a child process (its own core, as a real server would be), with one bucket. */
export async function startS3rver(dir: string, bucket: string): Promise<S3rver> {
  const port = await freePort();
  const bin = join(ROOT, 'node_modules', 's3rver', 'bin', 's3rver.js');
  const p: ChildProcess = spawn(process.execPath, [bin, '-d', dir, '-p', String(port), '-a', '127.0.0.1', '-s', '--configure-bucket', bucket], {
    stdio: 'ignore',
  });
  await waitForPort(port);
  return {
    endpoint: `http://127.0.0.1:${port}`,
    stop: () => new Promise<void>((r) => (p.exitCode !== null ? r() : (p.once('exit', () => r()), p.kill('SIGTERM')))),
  };
}

/** Writes a stream to a file. */
export async function download(body: Readable, file: string): Promise<void> {
  await pipeline(body, createWriteStream(file));
}

/** Files and bytes under a directory (regular files only). */
export function treeSize(dir: string): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        files++;
        bytes += statSync(p).size;
      }
    }
  };
  walk(dir);
  return { files, bytes };
}

/** A small deterministic PRNG, so every run builds the same dataset. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = 'const let function return import export default async await module require class extends this new if else for while of in'.split(' ');

/** Adds `count` source-like files (compressible, 0.5–16 KiB) under dir/.generated, as a large JS project has. */
export function addGeneratedFiles(dir: string, count: number, seed = 1): void {
  const rand = rng(seed);
  for (let i = 0; i < count; i++) {
    const sub = join(dir, '.generated', `pkg-${i % 97}`, `lib-${i % 7}`);
    mkdirSync(sub, { recursive: true });
    const size = 512 + Math.floor(rand() * 16 * 1024);
    const parts: string[] = [`// generated file ${i}\n`];
    let n = 0;
    while (n < size) {
      const line = `${WORDS[Math.floor(rand() * WORDS.length)]} v${Math.floor(rand() * 1e6)} = ${Math.floor(rand() * 1e9)};\n`;
      parts.push(line);
      n += line.length;
    }
    writeFileSync(join(sub, `m${i}.js`), parts.join(''));
  }
}
