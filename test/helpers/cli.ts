// Runs the real `vrift` command (the compiled CLI, as users run it).
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

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

/** Runs `vrift <args>` to completion. */
export function vrift(args: string[], opts: RunOptions): RunResult {
  const r: SpawnSyncReturns<string> = spawnSync(process.execPath, [VRIFT_BIN, ...args], {
    env: envFor(opts),
    input: opts.input,
    cwd: opts.cwd,
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 120_000,
    maxBuffer: 256 << 20,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Runs `vrift <args>` asynchronously (for concurrent runs). */
export function vriftAsync(args: string[], opts: RunOptions): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [VRIFT_BIN, ...args], { env: envFor(opts), cwd: opts.cwd });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Runs `vrift <args> --json` and parses stdout; throws with stderr on failure. */
export function vriftJson<T = any>(args: string[], opts: RunOptions): T {
  const r = vrift([...args, '--json'], opts);
  if (r.code !== 0) throw new Error(`vrift ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}
