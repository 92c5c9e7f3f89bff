// Shared set-up for the shim tests: a store with a daemon, a sample tree
// made of real project content (node_modules packages, Python packages, C
// headers), the same tree mounted and materialized, and helpers to run
// programs on either side.
import { execFileSync } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { vdirNameOf } from '../helpers/daemon.js';
import { runBounded } from '../helpers/bounded.js';
import { ROOT, vrift, vriftJson } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

export const LIB = join(ROOT, 'shim', 'build', 'libvrift.so');
const NM = join(ROOT, 'node_modules');
const PYLIB = '/root/.pyenv/versions/3.11.7/lib/python3.11';

/** Packages copied from the project's node_modules (thousands of files, requireable). */
export const NODE_PACKAGES = ['zod', 'commander', '@aws-sdk', 'fast-check', 'pure-rand'];

export interface ShimWorld {
  home: string;
  src: string;
  /** The mount point (virtual) and the materialized copy of the same tree. */
  mnt: string;
  mat: string;
  tree: string;
  /** Runs `sh -c script` under `vrift run --mount mnt=tree`. */
  run(script: string, opts?: RunOpts): Result;
  /** Runs `sh -c script` without the shim. */
  plain(script: string, opts?: RunOpts): Result;
  vrift(args: string[]): Result;
}

export interface RunOpts {
  env?: Record<string, string | undefined>;
  timeoutMs?: number;
  cwd?: string;
}

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** The sample tree: real packages and sources, plus symlinks, scripts and odd names. */
export function writeSampleSource(src: string): void {
  mkdirSync(join(src, 'node_modules'), { recursive: true });
  for (const p of NODE_PACKAGES) cpSync(join(NM, p), join(src, 'node_modules', p), { recursive: true, verbatimSymlinks: true });
  mkdirSync(join(src, 'py'), { recursive: true });
  for (const p of ['json', 'email']) {
    cpSync(join(PYLIB, p), join(src, 'py', p), { recursive: true, filter: (s) => !s.includes('__pycache__') });
  }
  writeCProject(src);
  mkdirSync(join(src, 'bin'), { recursive: true });
  writeFileSync(join(src, 'bin', 'hello.sh'), '#!/bin/sh\necho "hello from $0 with $#: $*"\n');
  chmodSync(join(src, 'bin', 'hello.sh'), 0o755);
  symlinkSync('../inc/greet.h', join(src, 'app', 'greet-link.h'));
  symlinkSync('node_modules/zod', join(src, 'zod-link'));
  writeFileSync(join(src, 'name with spaces & ünïcödé.txt'), 'odd name\n');
  writeFileSync(join(src, 'empty'), '');
}

/** Headers in inc/ and a C program in app/ that includes them, with a Makefile that builds into app/out. */
function writeCProject(src: string): void {
  mkdirSync(join(src, 'inc', 'sub'), { recursive: true });
  writeFileSync(join(src, 'inc', 'greet.h'), '#define GREETING "hello from the mount"\n#include "sub/twice.h"\n');
  writeFileSync(join(src, 'inc', 'sub', 'twice.h'), 'static inline int twice(int x) { return 2 * x; }\n');
  mkdirSync(join(src, 'app'), { recursive: true });
  writeFileSync(join(src, 'app', 'main.c'), '#include <stdio.h>\n#include "greet.h"\nint main(void) { printf("%s %d\\n", GREETING, twice(21)); return 0; }\n');
  writeFileSync(
    join(src, 'app', 'Makefile'),
    'CFLAGS = -O0 -I../inc\nout/app: out/main.o\n\t$(CC) -o $@ out/main.o\nout/main.o: main.c | out\n\t$(CC) $(CFLAGS) -c -o $@ main.c\nout:\n\tmkdir -p out\n',
  );
}

/** A small tree for the write and safety tests: headers, a C program with a Makefile, a script. */
export function writeSmallSource(src: string): void {
  writeCProject(src);
  mkdirSync(join(src, 'data'), { recursive: true });
  for (let i = 0; i < 50; i++) writeFileSync(join(src, 'data', `f${i}.txt`), `file ${i}\n`.repeat(i + 1));
  writeFileSync(join(src, 'run.sh'), '#!/bin/sh\necho "run.sh says $*"\n');
  chmodSync(join(src, 'run.sh'), 0o755);
}

export function countFiles(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) n += e.isDirectory() ? countFiles(join(dir, e.name)) : 1;
  return n;
}

function sh(script: string, env: NodeJS.ProcessEnv, opts: RunOpts, args: string[] = []): Result {
  return runBounded('/bin/sh', ['-c', script, ...args], { env, cwd: opts.cwd, timeoutMs: opts.timeoutMs ?? 60_000 });
}

/**
 * Builds the world once per test file: ingest, daemon up, mount (through
 * `vrift run`), materialize. The daemon is stopped after the file.
 * `homeName` names the store's directory (default "home").
 */
export function shimWorld(opts: { source?: (src: string) => void; homeName?: string } = {}): ShimWorld {
  const base = tempDir('vrift-shim-');
  const world = {
    home: join(base, opts.homeName ?? 'home'),
    src: join(base, 'src'),
    mnt: join(base, 'mnt'),
    mat: join(base, 'mat'),
    tree: '',
  } as ShimWorld;
  const baseEnv = (): NodeJS.ProcessEnv => {
    const env: NodeJS.ProcessEnv = { ...process.env, VRIFT_HOME: world.home, LC_ALL: 'C', TZ: 'UTC' };
    delete env.PYTHONDONTWRITEBYTECODE;
    delete env.LD_PRELOAD;
    return env;
  };
  world.vrift = (args) => vrift(args, { home: world.home, timeoutMs: 120_000 });
  world.plain = (script, o = {}) => sh(script, { ...baseEnv(), ...o.env }, o);
  world.run = (script, o = {}) => {
    const env = { ...baseEnv(), ...o.env };
    return runBounded(process.execPath, [join(ROOT, 'bin', 'vrift.js'), 'run', '--mount', `${world.mnt}=${world.tree}`, '--', '/bin/sh', '-c', script], {
      env,
      cwd: o.cwd,
      timeoutMs: o.timeoutMs ?? 60_000,
    });
  };
  beforeAll(() => {
    mkdirSync(world.src, { recursive: true });
    (opts.source ?? writeSampleSource)(world.src);
    world.tree = vriftJson<{ tree: string }>(['ingest', world.src], { home: world.home }).tree;
    const up = world.vrift(['up', '--detach']);
    if (up.code !== 0) throw new Error(`vrift up: ${up.stderr}`);
    const m = world.vrift(['materialize', world.tree, world.mat]);
    if (m.code !== 0) throw new Error(`materialize: ${m.stderr}`);
    const r = world.run('true');
    if (r.code !== 0) throw new Error(`vrift run: ${r.stderr}`);
  }, 180_000);
  afterAll(() => {
    world.vrift(['unmount', world.mnt]);
    world.vrift(['down']);
    removeVDirObject(world.home, world.mnt); // left behind if a test killed the daemon
    rmSync(world.home, { recursive: true, force: true });
  });
  return world;
}

/** Removes the shared-memory object of a mount (a daemon that was killed leaves it). */
export function removeVDirObject(home: string, mountPath: string): void {
  const name = vdirNameOf(home, mountPath);
  if (name) rmSync(`/dev/shm/vrift.${process.getuid!()}.${name}`, { force: true });
}

/** Builds a C helper from test/c/ once (cached by the output path). */
export function buildC(name: string, outDir: string, extra: string[] = []): string {
  const out = join(outDir, name);
  execFileSync('gcc', ['-O2', '-std=gnu11', '-Wall', '-o', out, join(ROOT, 'test', 'c', `${name}.c`), '-lpthread', ...extra]);
  return out;
}

/** `ls -laR` reduced to what a mount and a materialized copy share. */
export function lsComparable(out: string): string[] {
  const lines: string[] = [];
  for (const line of out.split('\n')) {
    if (line.startsWith('total ') || line === '') continue;
    if (!/^[-dlcbps][-rwxsStT]{9} /.test(line)) {
      lines.push(line); // "dir:" headers
      continue;
    }
    // mode links user group size X name [-> target]   (ls --time-style=+X)
    const f = line.split(/ +/);
    const name = f.slice(6).join(' ');
    // Hard links into the CAS are 0444/0555 on disk; trees say 0644/0755.
    const mode = f[0]!.replace(/^-r--r--r--/, '-rw-r--r--').replace(/^-r-xr-xr-x/, '-rwxr-xr-x');
    // Directory sizes and link counts are the filesystem's business.
    const size = mode.startsWith('d') ? '-' : f[4];
    lines.push(`${mode} ${size} ${name}`);
  }
  return lines;
}
