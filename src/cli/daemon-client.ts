// How CLI commands reach (and, when asked, start) the daemon of $VRIFT_HOME.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { hasCode, VriftError } from '../lib/errors.js';
import { ControlClient } from '../node/control/client.js';
import { logPathOf, socketPathOf } from '../node/control/paths.js';
import { ensureHome, homeLayout, resolveHome } from '../node/store/home.js';

export function daemonSocket(): string {
  return socketPathOf(homeLayout(resolveHome()).run);
}

/** Runs `fn` with a connection to the daemon (ERR_VRIFT_DAEMON_DOWN when there is none). */
export async function withDaemon<T>(fn: (c: ControlClient) => Promise<T>): Promise<T> {
  const c = await ControlClient.connect(daemonSocket());
  try {
    return await fn(c);
  } finally {
    c.close();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts `vrift up` in the background (output appended to run/vriftd.log)
 * and waits until it answers on its socket (at most 15 s).
 */
export async function spawnDaemon(): Promise<{ pid: number; logPath: string }> {
  const layout = homeLayout(resolveHome());
  ensureHome(layout);
  const logPath = logPathOf(layout.run);
  const log = openSync(logPath, 'a', 0o600);
  const child = spawn(process.execPath, [process.argv[1]!, 'up'], { detached: true, stdio: ['ignore', log, log], env: process.env });
  closeSync(log);
  let exited: number | null | undefined;
  child.once('exit', (code) => (exited = code));
  child.unref();
  for (let i = 0; i < 300; i++) {
    try {
      (await ControlClient.connect(daemonSocket())).close();
      return { pid: child.pid!, logPath };
    } catch (e) {
      if (!hasCode(e, 'ERR_VRIFT_DAEMON_DOWN')) throw e;
    }
    if (exited !== undefined) {
      const tail = readFileSync(logPath, 'utf8').trim().split('\n').slice(-1)[0] ?? '';
      throw new VriftError('ERR_VRIFT_DAEMON_START', `the daemon exited during start-up (${exited}): ${tail}`, { hint: `see ${logPath}` });
    }
    await sleep(50);
  }
  throw new VriftError('ERR_VRIFT_DAEMON_START', 'the daemon did not answer within 15 s', { hint: `see ${logPath}` });
}
