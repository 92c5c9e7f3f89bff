// Running a program with less privilege than the tests (root) have. The
// checkout may be closed to other users (a clone under /root is 0700), so
// nothing run this way may need to read it: a program another user runs
// is copied into a world-readable temp dir first.
import { chmodSync, copyFileSync, existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { tempDir } from './tmp.js';

const copies = new Map<string, string>();

/** A copy of `program` that any user may execute (made once per test file). */
export function runnableByAnyone(program: string): string {
  let copy = copies.get(program);
  if (!copy || !existsSync(copy)) {
    const dir = tempDir('vrift-runnable-');
    chmodSync(dir, 0o755);
    copy = join(dir, basename(program));
    copyFileSync(program, copy);
    chmodSync(copy, 0o755);
    copies.set(program, copy);
  }
  return copy;
}

/** Runs `program` as `user` (runuser); throws if it could not even be started, so a refusal is never mistaken for the program's answer. */
export function runAs(user: string, program: string, args: string[], env?: NodeJS.ProcessEnv): SpawnSyncReturns<string> {
  const r = spawnSync('runuser', ['-u', user, '--', program, ...args], { encoding: 'utf8', env, timeout: 120_000, killSignal: 'SIGKILL' });
  if (r.error || /^runuser: /m.test(r.stderr)) throw new Error(`runuser -u ${user} ${program} did not start it: ${r.error?.message ?? r.stderr.trim()}`);
  return r;
}

/**
 * Runs `program` as root without the capabilities that override file
 * modes (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), and without any of
 * `alsoDrop` (e.g. net_bind_service): a directory another user owns and
 * keeps to itself is closed to it, while root's own files (the checkout,
 * wherever it is) stay open.
 */
export function runWithoutOverride(program: string, args: string[], env?: NodeJS.ProcessEnv, alsoDrop: string[] = []): SpawnSyncReturns<string> {
  const caps = ['dac_override', 'dac_read_search', ...alsoDrop].map((c) => `-${c}`).join(',');
  const r = spawnSync('setpriv', [`--inh-caps=${caps}`, `--bounding-set=${caps}`, '--', program, ...args], { encoding: 'utf8', env, timeout: 120_000, killSignal: 'SIGKILL' });
  if (r.error || /^setpriv: /m.test(r.stderr)) throw new Error(`setpriv did not start ${program}: ${r.error?.message ?? r.stderr.trim()}`);
  return r;
}
