// Runs a program with a deadline that holds for the whole process tree.
//
// spawnSync's own `timeout` kills only the child it started, and then waits
// for the pipes to close: a grandchild that hangs (a program under the shim,
// a shell's background job) keeps them open, so the test worker blocks for
// ever and vitest's test timeout, which needs the worker's event loop, never
// fires. coreutils' `timeout` puts the command in a process group of its own
// and signals the whole group, so a hang becomes a failing test instead.
import { spawn, spawnSync, type ChildProcess, type SpawnSyncOptionsWithStringEncoding } from 'node:child_process';

export interface BoundedResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The exit status `timeout` gives a command it had to stop (124: TERM was enough; 137: it took KILL). */
const TIMED_OUT = new Set([124, 137]);

function timedOut(ms: number): string {
  return `\n[test harness] killed: still running after ${ms} ms (the process group was signalled)\n`;
}

/** Runs `file args` to completion, or kills its whole process group after `timeoutMs`. */
export function runBounded(file: string, args: string[], opts: Omit<SpawnSyncOptionsWithStringEncoding, 'encoding' | 'timeout'> & { timeoutMs: number }): BoundedResult {
  const { timeoutMs, ...rest } = opts;
  const secs = (timeoutMs / 1000).toFixed(1);
  const r = spawnSync('timeout', ['--kill-after=5', secs, file, ...args], {
    maxBuffer: 256 << 20,
    ...rest,
    encoding: 'utf8',
    // a backstop, should `timeout` itself be stuck
    timeout: timeoutMs + 15_000,
  });
  const code = r.status ?? -1;
  const stderr = (r.stderr ?? '') + (TIMED_OUT.has(code) || r.status === null ? timedOut(timeoutMs) : '');
  return { code, stdout: r.stdout ?? '', stderr };
}

/**
 * Starts `file args` in a process group of its own; `kill()` (and the
 * deadline) signal the whole group. `done` resolves when it has exited and
 * its output is closed.
 */
export function spawnBounded(
  file: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs: number },
): { child: ChildProcess; done: Promise<BoundedResult>; kill: () => void } {
  const child = spawn(file, args, { env: opts.env, cwd: opts.cwd, detached: true });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const kill = () => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    kill();
  }, opts.timeoutMs);
  const done = new Promise<BoundedResult>((resolve) =>
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr: stderr + (expired ? timedOut(opts.timeoutMs) : '') });
    }),
  );
  return { child, done, kill };
}
