// vrift up | down | status: the daemon's lifecycle.
import type { Command } from 'commander';
import { hasCode, VriftError } from '../../lib/errors.js';
import { ControlClient } from '../../node/control/client.js';
import { isDaemonAlive } from '../../node/daemon/lock.js';
import { resolveHome } from '../../node/store/home.js';
import { F, Msg } from '../../node/control/protocol.js';
import { plain, subcommand } from '../command.js';
import { daemonSocket, errorReport, spawnDaemon, startReporter, withDaemon } from '../daemon-client.js';
import type { Daemon } from '../../node/daemon/daemon.js';
import type { Output } from '../output.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function hello(): Promise<{ pid: number; home: string } | undefined> {
  try {
    return await withDaemon(async (c) => {
      const f = await c.request(Msg.HELLO);
      return { pid: f.u32(F.PID) ?? 0, home: f.str(F.HOME) ?? '' };
    });
  } catch (e) {
    if (hasCode(e, 'ERR_VRIFT_DAEMON_DOWN')) return undefined;
    throw e;
  }
}

async function runForeground(out: Output): Promise<void> {
  const report = startReporter(); // set when `vrift up --detach` started this process
  let daemon: Daemon;
  try {
    const { Daemon } = await import('../../node/daemon/daemon.js');
    daemon = new Daemon();
    await daemon.start();
  } catch (e) {
    report?.(errorReport(e));
    throw e;
  }
  report?.({ ok: true });
  if (!out.json) out.notice(`vriftd running (pid ${process.pid}); stop with Ctrl-C or \`vrift down\``);
  else out.result({ pid: process.pid, socket: daemon.socketPath, home: daemon.store.layout.root }, () => []);
  const onSignal = () => void daemon.stop();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  await daemon.stopped();
  // Everything is closed and flushed; libp2p leaves a debounce timer of up to 1 s behind: do not wait for it.
  setTimeout(() => process.exit(), 50).unref();
}

async function runDetached(out: Output): Promise<void> {
  const running = await hello();
  if (running) {
    throw new VriftError('ERR_VRIFT_DAEMON_RUNNING', `a vrift daemon is already running for ${running.home} (pid ${running.pid})`, {
      hint: 'use it, or stop it with `vrift down`',
    });
  }
  const { logPath } = await spawnDaemon();
  const h = await hello();
  if (!h) throw new VriftError('ERR_VRIFT_DAEMON_START', 'the daemon stopped right after it started', { hint: `see ${logPath}` });
  out.result({ pid: h.pid, socket: daemonSocket(), home: h.home, log: logPath }, () => `vriftd started (pid ${h.pid}), log: ${logPath}`);
}

export function register(program: Command): void {
  subcommand(program, 'up', 'start the daemon on embedded defaults (foreground unless --detach)')
    .option('--detach', 'run in the background; return once it answers')
    .action(plain(({ out, opts }) => (opts.detach ? runDetached(out) : runForeground(out))));

  subcommand(program, 'down', 'stop the daemon cleanly')
    .action(
      plain(async ({ out }) => {
        const h = await hello();
        if (!h) {
          out.result({ stopped: false, running: false }, () => 'vriftd is not running');
          return;
        }
        const c = await ControlClient.connect(daemonSocket());
        try {
          await c.request(Msg.SHUTDOWN);
        } finally {
          c.close();
        }
        for (let i = 0; i < 200 && isDaemonAlive(h.pid); i++) await sleep(50);
        if (isDaemonAlive(h.pid)) throw new VriftError('ERR_VRIFT_DAEMON_STOP', `the daemon (pid ${h.pid}) did not stop within 10 s`, { hint: `kill ${h.pid}` });
        out.result({ stopped: true, pid: h.pid }, () => `vriftd stopped (pid ${h.pid})`);
      }),
    );

  subcommand(program, 'status', "report the daemon: pid, addresses, mounts")
    .action(
      plain(async ({ out }) => {
        let status: any;
        try {
          status = await withDaemon(async (c) => JSON.parse((await c.request(Msg.STATUS)).str(F.JSON) ?? '{}'));
        } catch (e) {
          if (!hasCode(e, 'ERR_VRIFT_DAEMON_DOWN')) throw e;
          out.result({ running: false, home: resolveHome() }, () => `vriftd: not running (home ${resolveHome()})`);
          process.exitCode = 3;
          return;
        }
        out.result({ running: true, ...status }, () => [
          `vriftd: running (pid ${status.pid}, up ${status.uptimeSec}s, home ${status.home})`,
          ...Object.entries(status.addresses as Record<string, unknown>)
            .filter(([, v]) => v !== null)
            .map(([k, v]) => `  ${k}: ${Array.isArray(v) ? v.join(' ') : String(v)}`),
          ...(status.cluster?.enabled ? [`  cluster: peer ${status.cluster.peerId}, ${status.cluster.peers} peers${status.cluster.left ? ' (left the mesh)' : ''}`] : []),
          `  mounts: ${status.mounts.length}`,
          ...status.mounts.flatMap((m: any) => [`    ${m.path} <- ${m.tree} (${m.entries} entries, ${m.shmPath})`, ...lazyLine(m)]),
        ]);
      }),
    );
}

/** Where a mount's blobs came from (lazy mounts: docs/lazy.md), so lazy versus eager is never silent. */
function lazyLine(m: any): string[] {
  if (!m.treeBlobs) return [];
  const bulk = m.bulk ? `; bulk pull ${m.bulk.state} (${m.bulk.blobs} blobs)` : '';
  // (a partial mount counts files: it knows its tree by names only)
  const what = m.partial ? 'files (partial: from the lazy index)' : 'blobs';
  return [`      ${what}: ${m.treeBlobs.blobs}: ${m.local.blobs} local at mount, ${m.fetchedOnOpen.blobs} fetched on open, ${m.prefetched.blobs} prefetched (${m.prefetch.state})${bulk}`];
}
