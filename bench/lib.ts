// Helpers for benchmarks: running programs with timing, an s3rver child
// process, a real dataset, medians. Benchmarks compare vrift with a
// baseline measured in the same run (ARCHITECTURE.md, "Ground rules").
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import { createWriteStream, mkdirSync, mkdtempSync, readdirSync, readFileSync, statfsSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { createServer, createConnection } from 'node:net';
import { dirname, join, relative } from 'node:path';
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

/** CPU seconds (user + system) a running process has used so far, from /proc (0 if it is gone). */
export function cpuSeconds(pid: number): number {
  try {
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}
/**
 * CPU seconds this process and the children it has waited for have used
 * (a spawnSync'd program counts once it has exited, with the programs it
 * waited for: tar's zstd, say).
 */
export function ownAndChildCpuSeconds(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / CLOCK_TICKS;
}
const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

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
  /** Its process (for cpuSeconds). */
  pid: number;
  stop(): Promise<void>;
}

/** s3rver in a child process (its own core, as a real server would be), with one bucket. */
/** The environment of a node whose one remote tier is `s3` (and `extra`), without the caller's LD_PRELOAD. */
export function s3NodeEnv(s3: S3rver, bucket: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    VRIFT_S3_BUCKET: bucket,
    VRIFT_S3_ENDPOINT: s3.endpoint,
    VRIFT_S3_ACCESS_KEY_ID: 'S3RVER',
    VRIFT_S3_SECRET_ACCESS_KEY: 'S3RVER',
    ...extra,
  };
  delete env.LD_PRELOAD;
  return env;
}

/** Runs `vrift <args>` as the node at `home` with `env` (+ `extra`); its stdout, or throws with its stderr. */
export function vriftAs(env: NodeJS.ProcessEnv, home: string, args: string[], extra: NodeJS.ProcessEnv = {}): string {
  const r = spawnSync(process.execPath, [VRIFT_BIN, ...args], { env: { ...env, ...extra, VRIFT_HOME: home }, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`vrift ${args.join(' ')}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Until the node at `home` (run with `env`) sees the peer `holder` announce that it holds `tree` (30 s at most). */
export async function waitForHolder(env: NodeJS.ProcessEnv, home: string, holder: string, tree: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    const peers = JSON.parse(vriftAs(env, home, ['node', 'peers', '--tree', tree, '--json'])).peers as { id: string; hasTree?: boolean }[];
    if (peers.some((p) => p.id === holder && p.hasTree)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`node ${home} never saw ${holder} holding ${tree}`);
}

export async function startS3rver(dir: string, bucket: string): Promise<S3rver> {
  const port = await freePort();
  const bin = join(ROOT, 'node_modules', 's3rver', 'bin', 's3rver.js');
  const p: ChildProcess = spawn(process.execPath, [bin, '-d', dir, '-p', String(port), '-a', '127.0.0.1', '-s', '--configure-bucket', bucket], {
    stdio: 'ignore',
  });
  await waitForPort(port);
  return {
    endpoint: `http://127.0.0.1:${port}`,
    pid: p.pid!,
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

/** The shape of a generated project tree (see writeProjectTree). */
export interface ProjectShape {
  /** Entries to write: regular files and symlinks. */
  files: number;
  /** Total bytes of the regular files to aim for (the large files are scaled to reach it). */
  bytes: number;
  /** How many of the files are medium (16–256 KiB) and how many large (binaries, about 1–16 MiB before scaling). */
  medium: number;
  large: number;
  seed: number;
}

/** Identifiers a source-like line is made of (deterministic, a few hundred distinct). */
function vocabulary(rand: () => number): string[] {
  const syl = 'ba be bi bo bu ca ce co cu da de di do fa fe fi fo ga ge go ha he hi ho ka ke ki ko la le li lo ma me mi mo na ne ni no pa pe pi po ra re ri ro sa se si so ta te ti to va ve vi vo za ze zi zo'.split(' ');
  const out: string[] = [];
  for (let i = 0; i < 600; i++) {
    let w = '';
    const n = 2 + Math.floor(rand() * 3);
    for (let j = 0; j < n; j++) w += syl[Math.floor(rand() * syl.length)]!;
    out.push(i % 3 === 0 ? w : i % 3 === 1 ? `${w}${syl[i % syl.length]!.toUpperCase()}x` : `get${w[0]!.toUpperCase()}${w.slice(1)}`);
  }
  return out;
}

/**
 * Source-like text of about `size` bytes: code lines from a vocabulary and
 * small numbers, indented, each file different. zstd shrinks it about 3–4×,
 * as it does real JavaScript/TypeScript; across files it does not repeat
 * more than real source does (no shared corpus the archive could dedup).
 */
function sourceText(rand: () => number, vocab: string[], size: number, header: string): string {
  const parts: string[] = [header];
  let n = header.length;
  const w = () => vocab[Math.floor(rand() * vocab.length)]!;
  while (n < size) {
    const indent = '  '.repeat(Math.floor(rand() * 4));
    const k = rand();
    const line =
      k < 0.25
        ? `${indent}const ${w()} = ${w()}.${w()}(${w()}, ${Math.floor(rand() * 1000)});\n`
        : k < 0.45
          ? `${indent}if (${w()} !== ${w()}) return ${w()}(${w()});\n`
          : k < 0.6
            ? `${indent}export function ${w()}(${w()}: ${w()}, ${w()}?: number): ${w()} {\n`
            : k < 0.72
              ? `${indent}// ${w()} ${w()} ${w()} the ${w()} of ${w()}\n`
              : k < 0.85
                ? `${indent}${w()}: '${w()}-${Math.floor(rand() * 100)}',\n`
                : k < 0.93
                  ? `${indent}}\n`
                  : `${indent}import { ${w()}, ${w()} } from './${w()}.js';\n`;
    parts.push(line);
    n += line.length;
  }
  return parts.join('').slice(0, size);
}

/** `size` incompressible bytes (AES-CTR of zeros under a key from the PRNG: deterministic, fast). */
function binaryBytes(rand: () => number, size: number): Buffer {
  const key = Buffer.alloc(16);
  const iv = Buffer.alloc(16);
  for (let i = 0; i < 16; i += 4) {
    key.writeUInt32LE((rand() * 2 ** 32) >>> 0, i);
    iv.writeUInt32LE((rand() * 2 ** 32) >>> 0, i);
  }
  return createCipheriv('aes-128-ctr', key, iv).update(Buffer.alloc(size));
}

/** A few contents many packages share word for word (licence texts, empty index files, ignore files). */
const COMMON = [
  'MIT License\n\nPermission is hereby granted, free of charge, to any person obtaining a copy of this software…\n'.repeat(8),
  "'use strict';\nmodule.exports = require('./lib');\n",
  '',
  '*.log\nnode_modules/\ncoverage/\n',
  'export * from "./index.js";\n',
  '{\n  "extends": "../../tsconfig.json"\n}\n',
];

/**
 * Writes a deterministic tree shaped like a real monorepo with its
 * dependencies: packages of very different sizes (a few big ones), each
 * with src/, lib/, dist/, test/, types/, assets/, bin/ directories;
 *   - small source-like files (128 B–16 KiB, log-uniform: most a few KiB),
 *     about 3% of them word-for-word copies of a few common contents;
 *   - medium files (16–256 KiB): half bundles/JSON/source maps (text),
 *     half images/wasm (incompressible);
 *   - a few large binaries (incompressible; scaled so the tree reaches
 *     `bytes`), a third of them executable;
 *   - 0.5% symlinks (as in node_modules/.bin) and 2% executable scripts.
 * Returns what it wrote.
 */
export function writeProjectTree(dir: string, shape: ProjectShape): { files: number; bytes: number; symlinks: number; dirs: number } {
  const rand = rng(shape.seed);
  const vocab = vocabulary(rand);
  const logUniform = (min: number, max: number) => Math.round(min * Math.pow(max / min, rand()));
  const small = shape.files - shape.medium - shape.large;
  // Sizes first, so the large files can be scaled to reach the total.
  type Plan = { kind: 'small' | 'text' | 'binary' | 'large' | 'link'; size: number };
  const plan: Plan[] = [];
  for (let i = 0; i < small; i++) plan.push(rand() < 0.005 ? { kind: 'link', size: 0 } : { kind: 'small', size: logUniform(128, 16 << 10) });
  for (let i = 0; i < shape.medium; i++) plan.push({ kind: rand() < 0.5 ? 'text' : 'binary', size: logUniform(16 << 10, 256 << 10) });
  const large: Plan[] = [];
  for (let i = 0; i < shape.large; i++) large.push({ kind: 'large', size: logUniform(1 << 20, 16 << 20) });
  const rest = plan.reduce((a, p) => a + p.size, 0);
  const want = Math.max(shape.large * (256 << 10), shape.bytes - rest);
  const scale = want / Math.max(1, large.reduce((a, p) => a + p.size, 0));
  for (const p of large) p.size = Math.max(256 << 10, Math.round(p.size * scale));
  plan.push(...large);
  // Shuffle (deterministically) so each package gets a mix.
  for (let i = plan.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [plan[i], plan[j]] = [plan[j]!, plan[i]!];
  }

  const packages = Math.max(1, Math.round(shape.files / 60));
  const subdirs: Record<Plan['kind'], string[]> = {
    small: ['src', 'src/util', 'src/components', 'lib', 'lib/internal', 'test', 'types', 'src/api/v1'],
    text: ['dist', 'dist/esm', 'dist/cjs'],
    binary: ['assets', 'assets/img', 'wasm'],
    large: ['bin', 'native', 'prebuilds/linux-x64'],
    link: ['.bin'],
  };
  const ext: Record<Plan['kind'], string[]> = {
    small: ['.ts', '.js', '.js', '.d.ts', '.json', '.md', '.mjs'],
    text: ['.js', '.js.map', '.json'],
    binary: ['.png', '.wasm', '.woff2'],
    large: ['.node', '.so', ''],
    link: [''],
  };
  const made = new Set<string>();
  const written: string[] = [];
  let files = 0;
  let bytes = 0;
  let symlinks = 0;
  for (const [i, p] of plan.entries()) {
    // Package sizes are skewed: a few hold many files.
    const pkg = Math.floor(Math.pow(rand(), 2) * packages);
    const scope = pkg % 5 === 0 ? `@scope-${pkg % 23}/` : '';
    const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)]!;
    const sub = join(dir, 'packages', `${scope}pkg-${pkg}`, pick(subdirs[p.kind]));
    if (!made.has(sub)) {
      mkdirSync(sub, { recursive: true });
      made.add(sub);
    }
    const file = join(sub, `${vocab[i % vocab.length]}-${i}${pick(ext[p.kind])}`);
    if (p.kind === 'link') {
      if (written.length === 0) continue;
      symlinkSync(relative(sub, written[Math.floor(rand() * written.length)]!), file);
      symlinks++;
      continue;
    }
    let data: string | Buffer;
    if (p.kind === 'small' && rand() < 0.03) data = COMMON[Math.floor(rand() * COMMON.length)]!;
    else if (p.kind === 'small' || p.kind === 'text') data = sourceText(rand, vocab, p.size, `// ${file.slice(dir.length)}\n`);
    else data = binaryBytes(rand, p.size);
    writeFileSync(file, data, { mode: p.kind === 'large' ? (i % 3 === 0 ? 0o755 : 0o644) : p.kind === 'small' && rand() < 0.02 ? 0o755 : 0o644 });
    written.push(file);
    files++;
    bytes += typeof data === 'string' ? Buffer.byteLength(data) : data.length;
  }
  return { files, bytes, symlinks, dirs: made.size };
}

/** A directory for a benchmark's files, and how to remove it. */
export interface Scratch {
  dir: string;
  /** What it is, for the log ("a loop-mounted ext4 image …" or "a directory in /tmp"). */
  what: string;
  /** Removes everything (once; also runs if the process exits early). */
  remove(): void;
}

/**
 * Where a benchmark that writes many files works. This VM's root
 * filesystem is ext4 without a journal, mounted with `discard`: every
 * extent freed by a delete is discarded synchronously, so `rm -rf` of a
 * tree of small files runs at ~500 files/s (a 100 000-file round took 12
 * minutes to remove) and file creation right after it is slow too.
 * As root, the benchmark therefore works in a sparse ext4 image (no
 * journal, as the root filesystem; no online discard) on a loop device
 * with direct I/O (no second page cache), in /tmp on the same disk;
 * removing it is one unmount and one file. Measured on this VM, `tar -x`
 * of 100 000 files runs at the same speed there as on the root
 * filesystem. VRIFT_BENCH_SCRATCH=tmp (or not being root) uses a plain
 * directory in /tmp instead.
 */
export function makeScratch(prefix: string, maxBytes: number, opts: { bytesPerInode?: number } = {}): Scratch {
  const free = statfsSync(tmpdir());
  const avail = free.bavail * free.bsize;
  if (avail < maxBytes + 2e9) {
    throw new Error(`${tmpdir()} has ${(avail / 1e9).toFixed(1)} GB free; this benchmark needs up to ${(maxBytes / 1e9).toFixed(0)} GB (fewer rounds need less)`);
  }
  const base = mkdtempSync(join(tmpdir(), prefix));
  const plain = (why: string): Scratch => {
    let done = false;
    const remove = () => {
      if (done) return;
      done = true;
      const t = performance.now();
      spawnSync('rm', ['-rf', base]);
      process.stderr.write(`bench: removed ${base} in ${((performance.now() - t) / 1000).toFixed(0)} s\n`);
    };
    process.once('exit', remove);
    return { dir: base, what: `a directory in ${tmpdir()} (${why})`, remove };
  };
  if (process.env.VRIFT_BENCH_SCRATCH === 'tmp') return plain('VRIFT_BENCH_SCRATCH=tmp');
  if (process.getuid?.() !== 0) return plain('not root: no loop mount');
  const img = join(base, 'scratch.img');
  const mnt = join(base, 'fs');
  const sh = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${(r.stderr || r.error?.message || '').trim()}`);
    return r.stdout.trim();
  };
  let dev: string | undefined;
  let mounted = false;
  let done = false;
  const remove = () => {
    if (done) return;
    done = true;
    if (mounted) spawnSync('umount', ['-l', mnt]); // lazy: a process still holding a file does not keep the mount
    if (dev) spawnSync('losetup', ['-d', dev]); // detaches now, or when the last user lets go
    spawnSync('rm', ['-rf', base]);
  };
  process.once('exit', remove);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));
  try {
    mkdirSync(mnt);
    sh('truncate', ['-s', String(Math.ceil(maxBytes / 4096) * 4096), img]);
    // (-i: benches that keep many small trees side by side need more inodes than ext4's default one per 16 KiB)
    sh('mkfs.ext4', ['-q', '-F', '-m', '0', '-O', '^has_journal', '-E', 'nodiscard,lazy_itable_init=1', ...(opts.bytesPerInode ? ['-i', String(opts.bytesPerInode)] : []), img]);
    dev = sh('losetup', ['--find', '--show', '--direct-io=on', img]);
    sh('mount', ['-o', 'nodiscard', dev, mnt]);
    mounted = true;
    return { dir: mnt, what: `a ${(maxBytes / 1e9).toFixed(0)} GB sparse ext4 image (no journal, no discard) on ${dev}, in ${base}`, remove };
  } catch (e) {
    process.stderr.write(`bench: no loop-mounted scratch filesystem (${(e as Error).message}); using ${base}\n`);
    remove();
    mkdirSync(base, { recursive: true });
    return plain('the loop mount failed');
  }
}

/** The machine's 1-minute load average now and its CPU count: other work on a shared machine shows in a benchmark's spread. */
export function loadNow(): number {
  return Math.round(loadavg()[0]! * 100) / 100;
}

/** Files of pseudo-random bytes (no two alike, incompressible), sizes spread between `min` and `max`, `total` bytes in all. */
export function writeRandomDataset(dir: string, total: number, min: number, max: number, seed: number): { files: number; bytes: number } {
  mkdirSync(dir, { recursive: true });
  const rand = rng(seed);
  let bytes = 0;
  let files = 0;
  while (bytes < total) {
    // Log-uniform sizes: many small files, most bytes in larger ones (as in real build trees).
    const size = Math.min(total - bytes, Math.round(min * Math.pow(max / min, rand())));
    const buf = Buffer.allocUnsafe(size);
    let s = (rand() * 2 ** 32) >>> 0 || 1;
    for (let i = 0; i + 4 <= size; i += 4) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      buf.writeUInt32LE(s >>> 0, i);
    }
    const sub = join(dir, `d${files % 64}`);
    mkdirSync(sub, { recursive: true });
    writeFileSync(join(sub, `f${files}.bin`), buf);
    bytes += size;
    files++;
  }
  return { files, bytes };
}
