// Starting and stopping real vrift daemons for tests (each its own $VRIFT_HOME).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { ROOT, vrift, vriftJson } from './cli.js';
import { runAs, runnableByAnyone } from './other-user.js';

const homes = new Set<string>();

afterAll(() => {
  for (const home of homes) stopDaemon(home);
});

export function startDaemon(home: string, env?: Record<string, string>): { pid: number } {
  homes.add(home);
  return vriftJson(['up', '--detach'], { home, env });
}

export function stopDaemon(home: string): void {
  vrift(['down'], { home });
}

export function daemonPid(home: string): number | undefined {
  const f = join(home, 'run', 'vriftd.pid');
  return existsSync(f) ? Number(readFileSync(f, 'utf8').trim()) : undefined;
}

/** Kills the daemon like a crash would (no cleanup runs). */
export function crashDaemon(home: string): void {
  const pid = daemonPid(home);
  if (pid) {
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 100; i++) {
      try {
        process.kill(pid, 0);
      } catch {
        return;
      }
      execFileSync('sleep', ['0.05']);
    }
  }
}

const HAMMER = join(ROOT, 'shim', 'build', 'vdir-hammer');

/** Opens a VDir from C (optionally as another user); the exit status is the errno of a failed open. */
export function vdirProbe(name: string, asUser?: string): number {
  const r = asUser ? runAs(asUser, runnableByAnyone(HAMMER), ['probe', name]) : spawnSync(HAMMER, ['probe', name], { encoding: 'utf8', timeout: 60_000, killSignal: 'SIGKILL' });
  // The probe reports what open() said: without that line it did not run, and its status means nothing.
  const report = JSON.parse(r.stdout || 'null') as { open?: number } | null;
  if (typeof report?.open !== 'number') throw new Error(`vdir-hammer probe did not run (status ${r.status}): ${r.stderr}`);
  return r.status ?? -1;
}

/** Looks paths up in a VDir from C (the shim's reader): one JSON object per path. */
export function vdirLookup(name: string, paths: string[]): { rc: number; lines: any[]; status: number } {
  try {
    const out = execFileSync(HAMMER, ['lookup', name, ...paths], { encoding: 'utf8', timeout: 60_000, killSignal: 'SIGKILL' });
    return { rc: 0, status: 0, lines: out.trim().split('\n').map((l) => JSON.parse(l)) };
  } catch (e) {
    const err = e as { status: number; stdout: string };
    return { rc: -1, status: err.status, lines: (err.stdout ?? '').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) };
  }
}

/**
 * The VDir name of the mount at `mountPath` (random since issue 13: read
 * from the store's record, as the daemon replays it), or undefined.
 */
export function vdirNameOf(home: string, mountPath: string): string | undefined {
  const store = join(ROOT, 'dist', 'src', 'node', 'store', 'store.js');
  const script = `const { Store } = await import(${JSON.stringify(store)});
const s = Store.open(${JSON.stringify(home)});
const r = s.meta.state.get(['mount', ${JSON.stringify(mountPath)}]);
process.stdout.write(r?.name ?? '');
await s.close();`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000, killSignal: 'SIGKILL' });
  return out.length > 0 ? out : undefined;
}
