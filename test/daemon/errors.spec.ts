// Errors name the real cause, daemon side: a cluster port another program
// holds, and a $VRIFT_HOME on a full disk, each come out of `vrift up`
// (foreground and --detach) as one line naming the thing and the fix, exit
// status 2, with nothing stored harmed; a running daemon outlives its disk
// filling up (a metadata commit failing used to end it).
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { VRIFT_BIN, vrift, vriftJson, type RunResult } from '../helpers/cli.js';
import { startDaemon, stopDaemon } from '../helpers/daemon.js';
import { runWithoutOverride } from '../helpers/other-user.js';
import { tempDir } from '../helpers/tmp.js';
import { snapshotTree, treeMode, writeSampleTree } from '../helpers/trees.js';

const SECRET = 'errors-spec-secret-0123456789abcdef';

/** The whole of stderr is one `vrift: …` line matching `re`. */
function oneLine(r: RunResult, re: RegExp): void {
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^vrift: /);
  expect(lines[0]).toMatch(re);
}

describe('a cluster port another program holds', () => {
  let holder: Server;
  let port: number;
  beforeAll(async () => {
    holder = createServer();
    port = await new Promise<number>((resolve) => holder.listen(0, '127.0.0.1', () => resolve((holder.address() as { port: number }).port)));
  });
  afterAll(() => new Promise<void>((r) => holder.close(() => r())));

  const cases = [
    { name: 'gRPC peer service', variable: 'VRIFT_GRPC_PORT', key: 'cluster.grpcPort' },
    { name: 'libp2p mesh', variable: 'VRIFT_P2P_PORT', key: 'cluster.p2pPort' },
    { name: 'bulk server', variable: 'VRIFT_BULK_PORT', key: 'cluster.bulkPort' },
  ];
  for (const c of cases) {
    it(`(${c.variable}) is one line naming the port, the host, the listener and the variable`, () => {
      const home = tempDir();
      const env = { VRIFT_CLUSTER_SECRET: SECRET, VRIFT_CLUSTER_HOST: '127.0.0.1', VRIFT_P2P_PORT: '0', VRIFT_GRPC_PORT: '0', VRIFT_BULK_PORT: '0', [c.variable]: String(port) };
      const expected = new RegExp(
        `^vrift: port ${port} on 127\\.0\\.0\\.1 is already in use: the cluster's ${c.name} cannot listen there \\(set ${c.variable}, or ${c.key.replace('.', '\\.')} in config\\.json, to a free port`,
      );
      for (const args of [['up', '--detach'], ['up']]) {
        const r = vrift(args, { home, env, timeoutMs: 30_000 });
        expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
        oneLine(r, expected);
        expect(vrift(['status'], { home }).code).toBe(3); // nothing left running
      }
    });
  }
});

/** The uid and gid of nobody (65534 on Debian). */
const NOBODY = Number(spawnSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).stdout.trim());

describe('as a user without the rights', () => {
  /**
   * `vrift <args>` without the rights at stake: as root without the
   * capabilities that override file modes or bind low ports (the checkout,
   * root's own, stays readable wherever it is: even under a 0700 /root).
   */
  const unprivileged = (args: string[], env: Record<string, string>): RunResult => {
    const r = runWithoutOverride(process.execPath, [VRIFT_BIN, ...args], { ...process.env, ...env }, ['net_bind_service']);
    return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  };

  it('a $VRIFT_HOME it cannot create is one line', () => {
    const parent = tempDir();
    chownSync(parent, NOBODY, NOBODY); // another user's directory, writable only by it
    chmodSync(parent, 0o755);
    const home = join(parent, 'home');
    const r = unprivileged(['up'], { VRIFT_HOME: home });
    expect(r.code, r.stderr).toBe(2);
    oneLine(r, new RegExp(`^vrift: ${home}: permission denied while creating the vrift home \\(\\$VRIFT_HOME\\)`));
  });

  it('a privileged cluster port is one line naming the variable', () => {
    const dir = tempDir();
    chmodSync(dir, 0o777);
    // The default host (cluster.host): loopback.
    const r = unprivileged(['up', '--detach'], { VRIFT_HOME: join(dir, 'home'), VRIFT_CLUSTER_SECRET: SECRET, VRIFT_GRPC_PORT: '80', VRIFT_P2P_PORT: '0' });
    expect(r.code, r.stderr).toBe(2);
    oneLine(r, /port 80 on 127\.0\.0\.1 needs privileges this process lacks: the cluster's gRPC peer service cannot listen there \(set VRIFT_GRPC_PORT, or cluster\.grpcPort in config\.json, to a port above 1023\)$/);
  });
});

describe('$VRIFT_HOME on a full disk', () => {
  let mnt: string;
  const filler = (): string => join(mnt, 'filler');
  const fill = (): void => {
    // dd stops at ENOSPC: the disk is then full to the last block.
    spawnSync('dd', ['if=/dev/zero', `of=${filler()}`, 'bs=64k'], { stdio: 'ignore' });
  };
  beforeAll(() => {
    mnt = tempDir('vrift-full-');
    const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', mnt]);
    if (r.status !== 0) throw new Error(`mounting a tmpfs: ${r.stderr}`);
  });
  afterEach(() => rmSync(filler(), { force: true }));
  afterAll(() => {
    spawnSync('umount', ['-l', mnt]);
  });

  it('a fresh home: `vrift up` and `vrift ingest` say so in one line (no crash inside LMDB)', () => {
    const home = join(mnt, 'fresh');
    fill();
    for (const args of [['up'], ['up', '--detach']]) {
      const r = vrift(args, { home, timeoutMs: 30_000 });
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      oneLine(r, /disk full .*: the daemon cannot start there \(free at least 1\.0 MiB on that filesystem, e\.g\. with `vrift gc --max-size SIZE`, or point VRIFT_HOME at another one\)$/);
    }
    const src = join(tempDir(), 'src');
    mkdirSync(src);
    writeFileSync(join(src, 'a.txt'), 'a\n');
    const r = vrift(['ingest', src], { home });
    expect(r.code, r.stderr).toBe(2); // not killed by SIGBUS
    oneLine(r, /meta: disk full .*cannot create the metadata database/);
  });

  it('a home in use: `vrift up` and `vrift ingest` say so in one line, and what was stored stays intact', () => {
    const home = join(mnt, 'used');
    const src = join(tempDir(), 'src');
    mkdirSync(src);
    writeSampleTree(src);
    vriftJson(['ingest', src, '--ref', 'kept'], { home });
    startDaemon(home); // once, so the home has every file a daemon leaves behind
    stopDaemon(home);

    fill();
    for (const args of [['up'], ['up', '--detach']]) {
      const r = vrift(args, { home, timeoutMs: 30_000 });
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      oneLine(r, /disk full .*: the daemon cannot start there/);
    }
    const more = join(tempDir(), 'more');
    mkdirSync(more);
    writeFileSync(join(more, 'new.bin'), Buffer.alloc(1 << 20, 9));
    const r = vrift(['ingest', more], { home });
    expect(r.code, r.stderr).toBe(2);
    oneLine(r, /disk full while/);

    rmSync(filler());
    expect(vriftJson(['verify'], { home })).toMatchObject({ corrupt: [], missing: [] });
    const out = join(tempDir(), 'out');
    vriftJson(['materialize', 'kept', out], { home });
    expect(snapshotTree(out, { mode: treeMode })).toEqual(snapshotTree(src, { mode: treeMode }));
    expect(vrift(['status'], { home }).code).toBe(3);
  });

  it('a running daemon outlives its disk filling up', async () => {
    const home = join(mnt, 'running');
    const src = join(tempDir(), 'src');
    mkdirSync(src);
    writeSampleTree(src);
    const tree = vriftJson(['ingest', src], { home }).tree as string;
    startDaemon(home);
    try {
      fill();
      // A mount records itself in LMDB: that commit fails on the full disk.
      const at = join(tempDir(), 'mnt');
      mkdirSync(at);
      expect(vrift(['mount', tree, at], { home }).code).toBe(0);
      await sleep(300); // the failed commit comes back by now (it used to end the daemon)
      expect(vriftJson(['status'], { home }).mounts).toHaveLength(1);
      // Its log is on the same disk: the line about the failure waits for room.
      rmSync(filler());
      expect(vrift(['unmount', at], { home }).code).toBe(0);
      expect(vrift(['mount', tree, at], { home }).code).toBe(0);
      expect(vriftJson(['status'], { home }).mounts).toHaveLength(1);
    } finally {
      stopDaemon(home);
    }
  });
});
