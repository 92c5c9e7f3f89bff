// Bad input gets a one-line error naming the thing and the fix, and never
// damages what the store already holds.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, statSync, symlinkSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT, VRIFT_BIN, vrift, vriftAsync, vriftJson } from '../helpers/cli.js';
import { runWithoutOverride } from '../helpers/other-user.js';
import { tempDir } from '../helpers/tmp.js';
import { snapshotTree, treeMode, writeSampleTree } from '../helpers/trees.js';

/** A user error: non-zero exit, exactly one line on stderr starting "vrift: ", no stack trace. */
function expectOneLineError(r: { code: number; stderr: string }, pattern: RegExp): void {
  expect(r.code).not.toBe(0);
  expect(r.code).not.toBe(70); // 70 = a bug (unexpected error)
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^vrift: /);
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

function sampleDir(): string {
  const src = join(tempDir(), 'src');
  mkdirSync(src);
  writeSampleTree(src);
  return src;
}

/** Every file under cas/ is named by the digest of its bytes. */
function expectStoreHealthy(home: string): void {
  const r = vriftJson(['verify'], { home });
  expect(r.corrupt).toEqual([]);
}

describe('bad input', () => {
  it('a missing path: one line naming it', () => {
    const home = tempDir();
    expectOneLineError(vrift(['ingest', '/no/such/dir'], { home }), /\/no\/such\/dir: no such file or directory/);
    expectOneLineError(vrift(['materialize', 'nope', join(tempDir(), 'x')], { home }), /no tree or ref named "nope"/);
    expectOneLineError(vrift(['ls', 'f'.repeat(64)], { home }), /tree f{64} is not in the local store/);
    expectOneLineError(vrift(['ingest', join(ROOT, 'package.json')], { home }), /not a directory/);
  });

  it('an unreadable directory: one line naming it (run by a user it is closed to)', () => {
    const base = tempDir();
    const home = join(base, 'home');
    const src = join(base, 'src');
    mkdirSync(join(src, 'secret'), { recursive: true });
    writeFileSync(join(src, 'ok.txt'), 'ok');
    chownSync(join(src, 'secret'), 65534, 65534);
    chmodSync(join(src, 'secret'), 0o700); // nobody's, closed to others: root without its override cannot list it
    // Not run as nobody: that user may not be able to read the checkout (a clone under /root) to start vrift at all.
    const r = runWithoutOverride(process.execPath, [VRIFT_BIN, 'ingest', src], { ...process.env, VRIFT_HOME: home });
    expectOneLineError({ code: r.status ?? -1, stderr: r.stderr }, new RegExp(`${join(src, 'secret')}: permission denied`));
  });

  it('fifos, sockets and devices are skipped with a warning', async () => {
    const home = tempDir();
    const src = sampleDir();
    execFileSync('mkfifo', [join(src, 'a-fifo')]);
    execFileSync('mknod', [join(src, 'a-device'), 'c', '1', '3']);
    const server = createServer();
    await new Promise<void>((res) => server.listen(join(src, 'a-socket'), res));
    try {
      const r = vrift(['ingest', src, '--json'], { home });
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/warning: skipping fifo: .*a-fifo/);
      expect(r.stderr).toMatch(/warning: skipping socket: .*a-socket/);
      expect(r.stderr).toMatch(/warning: skipping character device: .*a-device/);
      const out = JSON.parse(r.stdout);
      expect(out.skipped).toHaveLength(3);
      const ls = vriftJson(['ls', out.tree], { home });
      expect(ls.entries.map((e: { path: string }) => e.path)).not.toContain('a-fifo');
    } finally {
      server.close();
    }
  });

  it('symlink loops are stored as symlinks; a looping root is a clean error', () => {
    const home = tempDir();
    const src = sampleDir();
    symlinkSync('loop-b', join(src, 'loop-a'));
    symlinkSync('loop-a', join(src, 'loop-b'));
    symlinkSync('self', join(src, 'self'));
    const { tree } = vriftJson(['ingest', src], { home });
    const out = join(tempDir(), 'out');
    vriftJson(['materialize', tree, out], { home });
    expect(snapshotTree(out, { mode: treeMode })).toEqual(snapshotTree(src, { mode: treeMode }));

    const loopRoot = join(tempDir(), 'root-loop');
    symlinkSync(loopRoot, loopRoot);
    expectOneLineError(vrift(['ingest', loopRoot], { home }), /too many levels of symbolic links/);
  });

  it('a file that keeps changing while it is read is refused, never stored under a wrong name', async () => {
    const home = tempDir();
    const src = join(tempDir(), 'src');
    mkdirSync(src);
    const file = join(src, 'hot.bin');
    writeFileSync(file, Buffer.alloc(64 << 20, 1));
    // A writer that rewrites bytes in place (same size) for as long as the ingest runs.
    const writer = spawn(process.execPath, [
      '-e',
      `const fs=require('fs');const fd=fs.openSync(${JSON.stringify(file)},'r+');let i=0;` +
        `setInterval(()=>{for(let k=0;k<50;k++){fs.writeSync(fd,Buffer.from([i++&255]),0,1,(i*7919)%(64<<20));}},1);`,
    ]);
    try {
      await new Promise((r) => setTimeout(r, 200));
      const r = await vriftAsync(['ingest', src], { home });
      expectOneLineError(r, /hot\.bin: file changed while it was being read/);
    } finally {
      writer.kill();
    }
    expectStoreHealthy(home);
    expect(vriftJson(['ref', 'list'], { home }).refs).toEqual([]);
    expect(readdirSync(join(home, 'tmp'))).toEqual([]);
  });

  it('a reader that closes the pipe early (`vrift ls | head -1`): exit 0, no stack trace', () => {
    const home = tempDir();
    vrift(['ingest', sampleDir(), '--ref', 'pipe'], { home });
    const r = spawnSync('bash', ['-c', `node ${JSON.stringify(join(ROOT, 'bin', 'vrift.js'))} ls pipe | head -1; echo "rc=\${PIPESTATUS[0]}"`], {
      env: { ...process.env, VRIFT_HOME: home },
      encoding: 'utf8',
      timeout: 120_000,
      killSignal: 'SIGKILL',
    });
    const [line, rc] = r.stdout.trimEnd().split('\n');
    expect(line).toMatch(/^0\d{3} (file|dir|symlink) /);
    expect(rc).toBe('rc=0');
    expect(r.stderr).toBe('');
  });

  it('a non-empty materialize target is refused without --force', () => {
    const home = tempDir();
    const { tree } = vriftJson(['ingest', sampleDir()], { home });
    const out = tempDir();
    writeFileSync(join(out, 'precious.txt'), 'keep me');
    expectOneLineError(vrift(['materialize', tree, out], { home }), /is not empty .*--force/);
    expect(existsSync(join(out, 'precious.txt'))).toBe(true);
    expect(vrift(['materialize', tree, out, '--force'], { home }).code).toBe(0);
    expect(existsSync(join(out, 'precious.txt'))).toBe(false);
    expect(existsSync(join(out, 'README.md'))).toBe(true);
  });

  it('a blob corrupted on disk is found by verify and never served by cat or materialize', () => {
    const home = tempDir();
    const src = sampleDir();
    const { tree } = vriftJson(['ingest', src, '--ref', 'r'], { home });
    const readme = vriftJson(['ls', tree], { home }).entries.find((e: { path: string }) => e.path === 'README.md');
    const blob = join(home, 'cas', readme.digest.slice(0, 2), readme.digest);
    // Flip bytes in place, keeping the size (what a stray write through a hard link would do).
    chmodSync(blob, 0o644);
    const fd = openSync(blob, 'r+');
    writeSync(fd, Buffer.from('#!'), 0);
    closeSync(fd);
    chmodSync(blob, 0o444);

    const cat = vrift(['cat', readme.digest], { home });
    expect(cat.stdout).toBe('');
    expectOneLineError(cat, new RegExp(`blob ${readme.digest} is corrupt`));

    // cat quarantined it; corrupt it again through a fresh ingest+write cycle for materialize.
    vriftJson(['ingest', src], { home });
    const fd2 = openSync(blob, 'r+');
    writeSync(fd2, Buffer.from('#!'), 0);
    closeSync(fd2);
    const out = join(tempDir(), 'out');
    expectOneLineError(vrift(['materialize', tree, out], { home }), /corrupt/);

    vriftJson(['ingest', src], { home });
    const fd3 = openSync(blob, 'r+');
    writeSync(fd3, Buffer.from('#!'), 0);
    closeSync(fd3);
    const v = vrift(['verify', '--json'], { home });
    expect(v.code).toBe(1);
    const report = JSON.parse(v.stdout);
    expect(report.corrupt.map((c: { digest: string }) => c.digest)).toEqual([readme.digest]);
    expect(existsSync(blob)).toBe(false);
    expect(readdirSync(join(home, 'quarantine')).length).toBeGreaterThan(0);

    // Re-ingesting heals the store; everything else was never touched.
    vriftJson(['ingest', src], { home });
    expectStoreHealthy(home);
    const out2 = join(tempDir(), 'out2');
    vriftJson(['materialize', 'r', out2], { home });
    expect(snapshotTree(out2, { mode: treeMode })).toEqual(snapshotTree(src, { mode: treeMode }));
  });

  it('two ingests of the same tree at once both succeed, one copy per blob', async () => {
    const home = tempDir();
    const src = sampleDir();
    const [a, b] = await Promise.all([vriftAsync(['ingest', src, '--json'], { home }), vriftAsync(['ingest', src, '--json'], { home })]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    expect(JSON.parse(a.stdout).tree).toBe(JSON.parse(b.stdout).tree);
    // 9 distinct contents (two files share one) + 1 exec twin + the tree blob + its times blob.
    const files = readdirSync(join(home, 'cas'), { recursive: true }).filter((n) => String(n).length > 3);
    expect(files).toHaveLength(12);
    expect(readdirSync(join(home, 'tmp'))).toEqual([]);
    expectStoreHealthy(home);
  });

  describe('a full disk', () => {
    let mnt: string | undefined;
    afterEach(() => {
      if (mnt) spawnSync('umount', ['-l', mnt]);
      mnt = undefined;
    });

    it('fails mid-ingest cleanly: no partial blob, LMDB opens, earlier data intact', () => {
      mnt = tempDir('vrift-full-');
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=12m', 'tmpfs', mnt]);
      const home = join(mnt, 'home');
      const small = sampleDir();
      const first = vriftJson(['ingest', small, '--ref', 'before'], { home });

      const big = join(tempDir(), 'big');
      mkdirSync(big);
      for (let i = 0; i < 8; i++) writeFileSync(join(big, `f${i}.bin`), Buffer.alloc(2 << 20, i + 1));
      const r = vrift(['ingest', big, '--ref', 'after'], { home });
      expectOneLineError(r, /disk full/);

      // The store still opens, the earlier tree is intact, nothing half-written has a real name.
      expect(vrift(['ref', 'get', 'after'], { home }).code).toBe(1);
      expect(vrift(['ref', 'get', 'before'], { home }).stdout.trim()).toBe(first.tree);
      expect(readdirSync(join(home, 'tmp'))).toEqual([]);
      expectStoreHealthy(home);
      const out = join(tempDir(), 'out');
      vriftJson(['materialize', 'before', out], { home });
      expect(snapshotTree(out, { mode: treeMode })).toEqual(snapshotTree(small, { mode: treeMode }));
      expect(statSync(home).isDirectory()).toBe(true);
    });
  });
});
