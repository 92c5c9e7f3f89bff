// vriftd's lifecycle, its mounts (one VDir each), restart after a crash,
// and what it does with bad requests and strangers.
import { execFileSync } from 'node:child_process';
import { connect } from 'node:net';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeFrame, F, FrameDecoder, Msg } from '../../src/node/control/protocol.js';
import { ROOT, vrift, vriftJson } from '../helpers/cli.js';
import { crashDaemon, daemonPid, startDaemon, stopDaemon, vdirLookup, vdirProbe } from '../helpers/daemon.js';
import { runAs } from '../helpers/other-user.js';
import { tempDir } from '../helpers/tmp.js';
import { writeSampleTree } from '../helpers/trees.js';

function sampleTree(home: string, ref: string): string {
  const src = join(tempDir(), 'src');
  mkdirSync(src);
  writeSampleTree(src);
  return vriftJson(['ingest', src, '--ref', ref], { home }).tree;
}

/** Sends raw bytes on the control socket; resolves with the replies decoded before the server closed or went quiet. */
function rawExchange(sock: string, bytes: Buffer, quietMs = 150): Promise<{ replies: { type: number; code?: string }[]; closed: boolean }> {
  return new Promise((resolve) => {
    const c = connect(sock);
    const d = new FrameDecoder();
    const replies: { type: number; code?: string }[] = [];
    let closed = false;
    let timer: NodeJS.Timeout;
    const done = () => {
      c.destroy();
      resolve({ replies, closed });
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(done, quietMs);
    };
    c.on('connect', () => {
      c.write(bytes);
      arm();
    });
    c.on('data', (chunk) => {
      for (const ev of d.push(chunk)) if ('frame' in ev) replies.push({ type: ev.frame.type, code: ev.frame.fields.str(F.ERR_CODE) });
      arm();
    });
    c.on('close', () => {
      closed = true;
      clearTimeout(timer);
      done();
    });
    c.on('error', () => undefined);
  });
}

describe('vriftd', () => {
  it('up / status / down, and one daemon per home', () => {
    const home = tempDir();
    const up = startDaemon(home);
    expect(up.pid).toBeGreaterThan(0);
    const st = vriftJson(['status'], { home });
    expect(st).toMatchObject({ running: true, pid: up.pid, home, mounts: [] });
    expect(st.addresses.control).toBe(join(home, 'run', 'vriftd.sock'));
    expect(statSync(st.addresses.control).mode & 0o777).toBe(0o600);
    expect(statSync(join(home, 'run')).mode & 0o777).toBe(0o700);
    // Started with room in its old space: V8's default made a busy daemon run a full GC every few hundred ms.
    expect(readFileSync(`/proc/${up.pid}/cmdline`, 'utf8').split('\0')).toContain('--initial-old-space-size=128');

    const again = vrift(['up', '--detach'], { home });
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(new RegExp(`^vrift: a vrift daemon is already running for .* \\(pid ${up.pid}\\)`));
    const fg = vrift(['up'], { home, timeoutMs: 20_000 });
    expect(fg.code).toBe(2);
    expect(fg.stderr).toMatch(/already running/);

    expect(vriftJson(['down'], { home })).toMatchObject({ stopped: true, pid: up.pid });
    const down = vrift(['status', '--json'], { home });
    expect(down.code).toBe(3);
    expect(JSON.parse(down.stdout).running).toBe(false);
    expect(existsSync(join(home, 'run', 'vriftd.pid'))).toBe(false);
  });

  it('replaces the stale pid file and socket of a crashed daemon, and serves its mounts again', () => {
    const home = tempDir();
    const treeA = sampleTree(home, 'a');
    const treeB = vriftJson(['ingest', join(ROOT, 'shim'), '--ref', 'b'], { home }).tree;
    startDaemon(home);
    const mntA = join(tempDir(), 'proj-a', 'node_modules');
    const mntB = join(tempDir(), 'proj-b', 'src');
    vriftJson(['mount', 'a', mntA], { home });
    vriftJson(['mount', treeB, mntB, '--project', 'b'], { home });
    const before = vriftJson(['status'], { home });
    expect(before.mounts).toHaveLength(2);
    // Multi-project: each mount its own VDir object.
    const names = before.mounts.map((m: { name: string }) => m.name);
    expect(new Set(names).size).toBe(2);

    crashDaemon(home);
    expect(existsSync(join(home, 'run', 'vriftd.pid'))).toBe(true); // left behind by the crash
    expect(existsSync(join(home, 'run', 'vriftd.sock'))).toBe(true);
    expect(vrift(['status'], { home }).code).toBe(3);

    const up = startDaemon(home);
    expect(daemonPid(home)).toBe(up.pid);
    const after = vriftJson(['status'], { home });
    expect(after.mounts.map((m: { path: string; tree: string }) => [m.path, m.tree]).sort()).toEqual(
      [
        [mntA, treeA],
        [mntB, treeB],
      ].sort(),
    );
    for (const m of after.mounts) expect(m.entries).toBeGreaterThan(3);
    // The restored VDirs answer lookups from C (the shim's reader).
    const a = after.mounts.find((m: { path: string }) => m.path === mntA);
    const r = vdirLookup(a.name, ['src/lib/util.js', 'run.sh', 'missing']);
    expect(r.lines[0]).toMatchObject({ rc: 0, size: 21, mode: 0o100644 });
    expect(r.lines[1]).toMatchObject({ rc: 0, mode: 0o100755 });
    expect(r.lines[2].rc).toBe(-2);
    const b = after.mounts.find((m: { path: string }) => m.path === mntB);
    expect(vdirLookup(b.name, ['vrift_proto.h']).lines[0].rc).toBe(0);

    // Unmount one project; the other stays.
    vriftJson(['unmount', mntA], { home });
    expect(vriftJson(['status'], { home }).mounts.map((m: { path: string }) => m.path)).toEqual([mntB]);
    expect(vdirLookup(a.name, ['run.sh']).status).not.toBe(0);
    stopDaemon(home);
  });

  it('refuses bad mounts with a clear message', () => {
    const home = tempDir();
    sampleTree(home, 'a');
    startDaemon(home);
    const m = join(tempDir(), 'm');
    expect(vrift(['mount', 'nope', m], { home }).stderr).toMatch(/^vrift: no tree or ref named "nope"/);
    vriftJson(['mount', 'a', m], { home });
    expect(vrift(['mount', 'a', m], { home }).stderr).toMatch(/is already mounted/);
    expect(vrift(['mount', 'a', join(m, 'sub')], { home }).stderr).toMatch(/overlaps the mount/);
    expect(vrift(['mount', 'a', join(home, 'x')], { home }).stderr).toMatch(/overlaps the vrift store/);
    expect(vrift(['unmount', join(tempDir(), 'never')], { home }).stderr).toMatch(/is not mounted/);
    stopDaemon(home);
  });

  it('answers malformed and oversized frames with errors and stays up (fuzzed)', async () => {
    const home = tempDir();
    const { pid } = startDaemon(home);
    const sock = join(home, 'run', 'vriftd.sock');

    const big = encodeFrame(Msg.HELLO, 1);
    big.writeUInt32LE((1 << 20) + 1, 12);
    const tooBig = await rawExchange(sock, big);
    expect(tooBig.replies[0]).toMatchObject({ type: Msg.ERROR, code: 'ERR_VRIFT_PROTO_TOO_LARGE' });
    expect(tooBig.closed).toBe(true);

    const garbage = await rawExchange(sock, Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    expect(garbage.replies[0]).toMatchObject({ type: Msg.ERROR, code: 'ERR_VRIFT_PROTO_MAGIC' });

    const unknown = await rawExchange(sock, encodeFrame(999, 5));
    expect(unknown.replies[0]).toMatchObject({ type: Msg.ERROR, code: 'ERR_VRIFT_PROTO_TYPE' });
    const missing = await rawExchange(sock, encodeFrame(Msg.MOUNT, 6));
    expect(missing.replies[0]).toMatchObject({ type: Msg.ERROR, code: 'ERR_VRIFT_PROTO_FIELD' });

    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ minLength: 1, maxLength: 64 }).map((b) => Buffer.from(b)),
          fc
            .tuple(
              fc.integer({ min: 0, max: 20 }),
              fc.array(fc.tuple(fc.integer({ min: 0, max: 30 }), fc.oneof(fc.string({ maxLength: 40 }), fc.uint8Array({ maxLength: 12 }))), { maxLength: 4 }),
            )
            .filter(([type]) => type !== Msg.SHUTDOWN)
            .map(([type, fields]) => encodeFrame(type, 1, fields.map(([t, v]) => [t, v]))),
        ),
        async (bytes) => {
          const r = await rawExchange(sock, bytes, 60);
          for (const rep of r.replies) expect([Msg.OK, Msg.ERROR]).toContain(rep.type);
        },
      ),
      { numRuns: 150 },
    );
    // Still the same daemon, still answering.
    expect(vriftJson(['status'], { home }).pid).toBe(pid);
    stopDaemon(home);
  });

  it('another user cannot connect to the socket or open a VDir', () => {
    const base = tempDir();
    const home = join(base, 'home');
    mkdirSync(home);
    sampleTree(home, 'a');
    startDaemon(home);
    const m = join(tempDir(), 'm');
    vriftJson(['mount', 'a', m], { home });
    const { name, shmPath } = vriftJson(['status'], { home }).mounts[0];
    const sock = join(home, 'run', 'vriftd.sock');
    execFileSync('chmod', ['755', base, home]); // let nobody reach run/ itself: only its own mode protects it
    const r = runAs('nobody', process.execPath, [
      '-e',
      `require('net').connect(${JSON.stringify(sock)}).on('error', e => { console.log(e.code); process.exit(0) }).on('connect', () => { console.log('CONNECTED'); process.exit(0) })`,
    ]);
    expect(r.stdout.trim()).toBe('EACCES');
    expect(vdirProbe(shmPath, 'nobody')).toBe(13); // EACCES (a name would resolve to nobody's own uid)
    expect(vdirProbe(name)).toBe(0);
    expect(vdirLookup(name, ['run.sh']).lines[0].rc).toBe(0);
    stopDaemon(home);
  });
});
