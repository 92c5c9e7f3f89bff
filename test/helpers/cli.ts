// Runs the real `vrift` command (the compiled CLI, as users run it).
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runBounded, spawnBounded } from './bounded.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const VRIFT_BIN = join(ROOT, 'bin', 'vrift.js');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  home: string;
  env?: Record<string, string | undefined>;
  input?: string | Buffer;
  cwd?: string;
  timeoutMs?: number;
}

function envFor(opts: RunOptions): NodeJS.ProcessEnv {
  return { ...process.env, VRIFT_HOME: opts.home, ...opts.env };
}

/** Runs `vrift <args>` to completion (its whole process tree is killed after `timeoutMs`, default 120 s). */
export function vrift(args: string[], opts: RunOptions): RunResult {
  return runBounded(process.execPath, [VRIFT_BIN, ...args], {
    env: envFor(opts),
    input: opts.input,
    cwd: opts.cwd,
    timeoutMs: opts.timeoutMs ?? 120_000,
  });
}

/** Runs `vrift <args>` asynchronously (for concurrent runs), with the same deadline. */
export function vriftAsync(args: string[], opts: RunOptions): Promise<RunResult> {
  return spawnBounded(process.execPath, [VRIFT_BIN, ...args], { env: envFor(opts), cwd: opts.cwd, timeoutMs: opts.timeoutMs ?? 120_000 }).done;
}

/** Runs `vrift <args> --json` and parses stdout; throws with stderr on failure. */
export function vriftJson<T = any>(args: string[], opts: RunOptions): T {
  const r = vrift([...args, '--json'], opts);
  if (r.code !== 0) throw new Error(`vrift ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}
