// A $VRIFT_HOME another user prepared is refused (issue 13, hole 6): a part
// owned by someone else or writable by others stops `vrift up` and
// `vrift ingest` with one line naming the path and the fix; the daemon's log
// is never opened through a planted symlink; and a /dev/shm object planted
// under the name a mount's VDir used to get (a function of home and path)
// does not block the mount: names are random now.
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { vrift, vriftJson, type RunResult } from '../helpers/cli.js';
import { startDaemon, stopDaemon } from '../helpers/daemon.js';
import { runAs } from '../helpers/other-user.js';
import { tempDir } from '../helpers/tmp.js';
import { writeSampleTree } from '../helpers/trees.js';

const NOBODY = 65534;

/** The whole of stderr is one `vrift: …` line matching `re`. */
function oneLine(r: RunResult, re: RegExp): void {
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^vrift: /);
  expect(lines[0]).toMatch(re);
}

function sampleSource(): string {
  const src = join(tempDir(), 'src');
  writeSampleTree(src);
  return src;
}

describe('a home another user prepared', () => {
  it('with cas/ 0777 and owned by nobody: `vrift up` and `vrift ingest` refuse in one line, exit 1', () => {
    const home = tempDir();
    mkdirSync(join(home, 'cas'), { mode: 0o777 });
    chmodSync(join(home, 'cas'), 0o777);
    chownSync(join(home, 'cas'), NOBODY, NOBODY);
    for (const args of [['up'], ['up', '--detach'], ['ingest', sampleSource()]]) {
      const r = vrift(args, { home, timeoutMs: 60_000 });
      expect(r.code, `vrift ${args[0]}: ${r.stderr}`).toBe(1);
      oneLine(r, new RegExp(`${join(home, 'cas')} belongs to uid ${NOBODY}, not to this user .*chown`));
    }
    expect(existsSync(join(home, 'run', 'vriftd.pid'))).toBe(false);
  });

  it('with a part writable by others (but ours): the fix is chmod go-w', () => {
    const home = tempDir();
    mkdirSync(join(home, 'tmp'));
    chmodSync(join(home, 'tmp'), 0o777);
    const r = vrift(['ingest', sampleSource()], { home, timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(1);
    oneLine(r, new RegExp(`${join(home, 'tmp')} is writable by group or others \\(mode 0777\\).*chmod go-w ${join(home, 'tmp')}`));
  });

  it('with a part that is a symlink: refused', () => {
    const home = tempDir();
    const elsewhere = tempDir();
    chmodSync(elsewhere, 0o700);
    symlinkSync(elsewhere, join(home, 'meta'));
    const r = vrift(['ingest', sampleSource()], { home, timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(1);
    oneLine(r, new RegExp(`${join(home, 'meta')} is a symbolic link`));
  });

  it('does not follow a symlinked run/vriftd.log', () => {
    const home = tempDir();
    mkdirSync(join(home, 'run'), { recursive: true, mode: 0o700 });
    chmodSync(home, 0o700);
    const target = join(tempDir(), 'victim');
    writeFileSync(target, 'precious\n');
    symlinkSync(target, join(home, 'run', 'vriftd.log'));
    const r = vrift(['up', '--detach'], { home, timeoutMs: 60_000 });
    if (r.code === 0) stopDaemon(home);
    expect(r.code, r.stderr).toBe(1);
    oneLine(r, new RegExp(`${join(home, 'run', 'vriftd.log')} is a symbolic link`));
    expect(readFileSync(target, 'utf8')).toBe('precious\n');
  });
});

describe('a /dev/shm object planted by another user', () => {
  const planted: string[] = [];
  afterAll(() => {
    for (const p of planted) rmSync(p, { force: true });
  });

  it('under the name a mount would have had does not block the mount', () => {
    const home = tempDir();
    vriftJson(['ingest', sampleSource(), '--ref', 'a'], { home });
    startDaemon(home);
    try {
      const m = join(tempDir(), 'm');
      chmodSync(join(m, '..'), 0o755);
      // the name main computed: sha256(home \0 path), 20 hex
      const old = `m-${createHash('sha256').update(`${home}\0${m}`).digest('hex').slice(0, 20)}`;
      const squat = `/dev/shm/vrift.${process.getuid!()}.${old}`;
      planted.push(squat);
      const t = runAs('nobody', '/usr/bin/touch', [squat]);
      expect(t.status, t.stderr).toBe(0);
      const r = vrift(['mount', 'a', m, '--json'], { home, timeoutMs: 60_000 });
      expect(r.code, r.stderr).toBe(0);
      const mount = vriftJson(['status'], { home }).mounts.find((x: { path: string }) => x.path === m);
      expect(mount.name).not.toBe(old);
      expect(mount.name).toMatch(/^m-[0-9a-f]{24}$/);
      expect(mount.entries).toBeGreaterThan(1);
      vrift(['unmount', m], { home });
    } finally {
      stopDaemon(home);
    }
  });
});
