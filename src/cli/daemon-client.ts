// How CLI commands reach (and, when asked, start) the daemon of $VRIFT_HOME.
import { spawn } from 'node:child_process';
import { closeSync, constants as C, readFileSync, writeSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { foreignCode } from '../lib/error-codes.js';
import { hasCode, isVriftError, VriftError } from '../lib/errors.js';
import { ControlClient } from '../node/control/client.js';
import { logPathOf, socketPathOf } from '../node/control/paths.js';
import { ensureHome, homeLayout, resolveHome } from '../node/store/home.js';
import { openOwnFile } from '../node/store/home-trust.js';

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
 * The file descriptor on which a daemon started by spawnDaemon reports how
 * its start went: one JSON line, `{"ok":true}` or `{"error":{…}}`. A pipe,
 * not the log: the log may be on the very disk that is full.
 */
export const START_REPORT_FD_ENV = 'VRIFT_UP_REPORT_FD';
const REPORT_FD = 3;

export interface StartReport {
  ok?: boolean;
  error?: { code: string; message: string; hint: string | null; exitCode: number };
}

/**
 * Starts `vrift up` in the background (output appended to run/vriftd.log)
 * and waits until it answers on its socket (at most 15 s). A start that
 * fails throws the daemon's own error (the same line `vrift up` prints).
 */
/**
 * V8 flags of a daemon started in the background. With V8's default start
 * (an old space sized to the ~30 MB a daemon keeps live) a busy daemon ran
 * a full mark-compact every 250-500 ms, freeing ~1 MB each and pausing its
 * event loop 10-144 ms: in bench/swarm-crowd (6 daemons, 524 MB each) a
 * quarter of their CPU. Room for 128 MB before the first one: the swarm
 * 11.5 -> 9.2 s (CPU 20.6 -> 16.1 s), six pulls from S3 8.1 -> 5.9 s
 * (14.9 -> 10.5 s); 64 MB gained half as much, 256 MB no more.
 */
export const DAEMON_NODE_FLAGS = ['--initial-old-space-size=128'];

export async function spawnDaemon(): Promise<{ pid: number; logPath: string }> {
  const layout = homeLayout(resolveHome());
  ensureHome(layout);
  const logPath = logPathOf(layout.run);
  // never through a planted symlink (as root it would append to any file)
  const log = openOwnFile(logPath, C.O_WRONLY | C.O_APPEND | C.O_CREAT, 'opening the daemon log');
  const child = spawn(process.execPath, [...DAEMON_NODE_FLAGS, process.argv[1]!, 'up'], {
    detached: true,
    stdio: ['ignore', log, log, 'pipe'],
    env: { ...process.env, [START_REPORT_FD_ENV]: String(REPORT_FD) },
  });
  closeSync(log);
  let exited: number | null | undefined;
  child.once('exit', (code) => (exited = code));
  child.unref();
  let report: StartReport | undefined;
  const pipe = child.stdio[REPORT_FD] as Readable;
  let text = '';
  pipe.on('data', (d: Buffer) => {
    text += d.toString('utf8');
    const nl = text.indexOf('\n');
    if (nl >= 0 && report === undefined) {
      try {
        report = JSON.parse(text.slice(0, nl)) as StartReport;
      } catch {
        report = {};
      }
    }
  });
  pipe.on('error', () => undefined); // the daemon closed it: nothing more to say
  try {
    for (let i = 0; i < 300; i++) {
      if (report?.error) {
        const r = report.error;
        throw new VriftError(foreignCode(r.code), r.message, { hint: r.hint ?? `see ${logPath}`, exitCode: r.exitCode });
      }
      try {
        (await ControlClient.connect(daemonSocket())).close();
        return { pid: child.pid!, logPath };
      } catch (e) {
        if (!hasCode(e, 'ERR_VRIFT_DAEMON_DOWN')) throw e;
      }
      if (exited !== undefined && report === undefined) {
        await sleep(50); // a report written just before the exit may still be in the pipe
        if (report) continue;
        throw new VriftError('ERR_VRIFT_DAEMON_START', `the daemon exited during start-up (${exited}): ${lastLine(logPath)}`, { hint: `see ${logPath}` });
      }
      await sleep(50);
    }
    throw new VriftError('ERR_VRIFT_DAEMON_START', 'the daemon did not answer within 15 s', { hint: `see ${logPath}` });
  } finally {
    pipe.destroy();
  }
}

/** What a daemon that started from this process reports on the start-report pipe (when it was spawned with one). */
export function startReporter(): ((r: StartReport) => void) | undefined {
  const fd = Number(process.env[START_REPORT_FD_ENV]);
  if (!Number.isInteger(fd) || fd < 3) return undefined;
  delete process.env[START_REPORT_FD_ENV]; // not inherited by what the daemon runs
  let done = false;
  return (r) => {
    if (done) return;
    done = true;
    try {
      writeSync(fd, `${JSON.stringify(r)}\n`);
      closeSync(fd);
    } catch {
      /* the starter is gone: nobody to tell */
    }
  };
}

/** The start report of an error: the VriftError as it is, anything else as its first line. */
export function errorReport(e: unknown): StartReport {
  if (isVriftError(e)) return { error: { code: e.code, message: e.message, hint: e.hint ?? null, exitCode: e.exitCode } };
  const first = String((e as Error | undefined)?.stack ?? e).split('\n')[0] ?? '';
  return { error: { code: 'ERR_VRIFT_DAEMON_START', message: `the daemon failed during start-up: ${first}`, hint: null, exitCode: 70 } };
}

function lastLine(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim().split('\n').slice(-1)[0] ?? '';
  } catch {
    return '';
  }
}
