// The control socket as a trust boundary (issue 13, hole 7): a client that
// never reads its replies costs the daemon a bounded amount of memory and is
// disconnected, while other clients are still served; the daemon refuses
// mounts at system paths itself (not only the CLI), and does not replay such
// a mount recorded in its store after a restart.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/node/control/client.js';
import { socketPathOf } from '../../src/node/control/paths.js';
import { encodeFrame, F, Msg } from '../../src/node/control/protocol.js';
import { vdirShmPath } from '../../src/node/mount/vdir-name.js';
import { Store } from '../../src/node/store/store.js';
import { vrift, vriftJson } from '../helpers/cli.js';
import { daemonPid, startDaemon, stopDaemon } from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';
import { writeSampleTree } from '../helpers/trees.js';

/** The daemon's resident set in bytes. */
function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

/**
 * What a flood of unread STATUS replies may add to the daemon's RSS: the
 * per-client bound (reply-bound.ts: 8 MiB), one 64 KiB read of requests decoded,
 * and room for V8's heap to breathe. Today's main grows by ~4.4 KB per
 * request (100 000 requests: ~450 MB).
 */
const RSS_GROWTH_BOUND = 64 << 20;
const FLOOD_REQUESTS = 100_000;

describe('a control client that never reads its replies', () => {
  let home: string;
  let sockPath: string;
  beforeAll(() => {
    home = tempDir();
    startDaemon(home);
    sockPath = socketPathOf(join(home, 'run'));
  });
  afterAll(() => stopDaemon(home));

  it(`is disconnected, the daemon's RSS grows by less than ${RSS_GROWTH_BOUND >> 20} MiB, and others are served`, async () => {
    const pid = daemonPid(home)!;
    const before = rssOf(pid);
    const flooder = connect(sockPath);
    flooder.pause(); // never read a reply
    let closed = false;
    flooder.on('close', () => (closed = true));
    flooder.on('error', () => undefined);
    await new Promise<void>((r) => flooder.once('connect', () => r()));
    const one = encodeFrame(Msg.STATUS, 1, []);
    const burst = Buffer.concat(Array.from({ length: 1000 }, () => one));
    for (let i = 0; i < FLOOD_REQUESTS / 1000; i++) flooder.write(burst);

    let peak = before;
    const deadline = Date.now() + 30_000;
    while (!closed && Date.now() < deadline) {
      peak = Math.max(peak, rssOf(pid));
      await sleep(50);
    }
    peak = Math.max(peak, rssOf(pid));
    flooder.destroy();
    expect(closed, 'the flooding client was not disconnected').toBe(true);
    expect(peak - before, `RSS ${before >> 20} MiB -> ${peak >> 20} MiB`).toBeLessThan(RSS_GROWTH_BOUND);
    expect(readFileSync(join(home, 'run', 'vriftd.log'), 'utf8')).toMatch(/control: disconnected client #\d+: \d+ bytes of replies unread/);

    // another client is served
    const c = await ControlClient.connect(sockPath);
    try {
      const status = JSON.parse((await c.request(Msg.STATUS)).str(F.JSON)!);
      expect(status.pid).toBe(pid);
    } finally {
      c.close();
    }
  }, 60_000);
});

describe('mount points the daemon refuses', () => {
  let home: string;
  let tree: string;
  let sockPath: string;
  beforeAll(() => {
    home = tempDir();
    const src = join(tempDir(), 'src');
    writeSampleTree(src);
    tree = vriftJson(['ingest', src, '--ref', 't'], { home }).tree;
    startDaemon(home);
    sockPath = socketPathOf(join(home, 'run'));
  });
  afterAll(() => stopDaemon(home));

  const bad = (home: string) => ['/', '/proc/self', '/proc', '/sys', '/dev', '/run', '/etc', '/usr', '/tmp', home, join(home, 'cas')];

  it('refuses MOUNT at each system path and at its own home, with one line naming the path and the fix', async () => {
    const c = await ControlClient.connect(sockPath);
    try {
      for (const path of bad(home)) {
        const err = await c.request(Msg.MOUNT, [[F.TREE, tree], [F.PATH, path]]).then(
          () => undefined,
          (e: { code: string; message: string; hint?: string }) => e,
        );
        expect(err, `MOUNT at ${path} was accepted`).toBeDefined();
        expect(err!.code).toBe('ERR_VRIFT_MOUNT_PATH');
        expect(err!.message).toContain(path);
        expect(err!.message).not.toContain('\n');
        expect(err!.hint).toMatch(/mount (at|somewhere)/);
      }
      const mounts = (await c.request(Msg.MOUNTS)).strs(F.MOUNT_ENTRY);
      expect(mounts).toEqual([]);
      // a mount at an ordinary directory is still fine
      const ok = join(tempDir(), 'm');
      await c.request(Msg.MOUNT, [[F.TREE, tree], [F.PATH, ok]]);
      await c.request(Msg.UNMOUNT, [[F.PATH, ok]]);
    } finally {
      c.close();
    }
  });

  it('does not replay a recorded mount at /proc/self or / after a restart, and says so in one log line each', async () => {
    stopDaemon(home);
    const good = join(tempDir(), 'good');
    const store = Store.open(home);
    try {
      for (const [path, name] of [['/proc/self', 'm-planted-proc'], ['/', 'm-planted-root'], [good, 'm-planted-good']] as const) {
        await store.meta.state.put(['mount', path], { path, tree, project: path, name, mountedAt: Date.now() });
      }
    } finally {
      await store.close();
    }
    writeFileSync(join(home, 'run', 'vriftd.log'), '');
    startDaemon(home);
    const status = vriftJson(['status'], { home });
    expect(status.mounts.map((m: { path: string }) => m.path)).toEqual([good]);
    const log = readFileSync(join(home, 'run', 'vriftd.log'), 'utf8');
    expect(log).toMatch(/mount: not restoring \/proc\/self: \/proc\/self is under \/proc/);
    expect(log).toMatch(/mount: not restoring \/: \/ is a system directory/);
    // the record is gone: a second restart has nothing to say about it
    stopDaemon(home);
    writeFileSync(join(home, 'run', 'vriftd.log'), '');
    startDaemon(home);
    expect(readFileSync(join(home, 'run', 'vriftd.log'), 'utf8')).not.toMatch(/not restoring/);
    // Unmounted, so its VDir does not outlive the test in /dev/shm.
    expect(vrift(['unmount', good], { home }).code).toBe(0);
    expect(existsSync(vdirShmPath('m-planted-good'))).toBe(false);
  });
});
