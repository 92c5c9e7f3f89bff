// Lazy start (issue 12): a job starts on a tree's listing alone; each file's
// blob arrives when a program first opens it. Real daemons, a real s3rver,
// real programs under the shim.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnBounded } from '../helpers/bounded.js';
import { VRIFT_BIN, vrift, vriftAsync, vriftJson } from '../helpers/cli.js';
import { waitFor } from '../helpers/cluster.js';
import { crashDaemon, startDaemon, stopDaemon } from '../helpers/daemon.js';
import { startS3, tierEnv, type S3Server } from '../helpers/s3-server.js';
import { tempDir } from '../helpers/tmp.js';
import { writeOriginLibs, writeSampleTree } from '../helpers/trees.js';

let s3: S3Server;
let env: Record<string, string>;
let src: string;
let saved: { tree: string };

beforeAll(async () => {
  s3 = await startS3(['vrift-ci']);
  // These tests count what opens fetch; a tree's trace, pushed by one test's daemon, would make
  // the next one prefetch (that is test/daemon/prefetch.spec.ts).
  // The listing path: what a mount does for a tree with no lazy index (pushed to Redis or a peer, or
  // by an older vrift); the lazy index's own path is partial-mount.spec.ts.
  env = { ...tierEnv({ s3 }), VRIFT_PREFETCH: 'false', VRIFT_LAZY_INDEX: 'false' };
  src = tempDir();
  writeSampleTree(src);
  saved = vriftJson(['save', 'ci/lazy-start', src], { home: tempDir(), env });
});
afterAll(async () => {
  await s3?.stop();
});

/** Every blob file in a home's CAS (names, exec twins excluded). */
function casBlobs(home: string): string[] {
  const cas = join(home, 'cas');
  return readdirSync(cas)
    .filter((d) => /^[0-9a-f]{2}$/.test(d))
    .flatMap((d) => readdirSync(join(cas, d)).filter((n) => /^[0-9a-f]{64}$/.test(n)));
}

/** The digest of `path` in the tree of `ref`, as the node at `home` lists it. */
const digestOf = (home: string, path: string, ref = 'ci/lazy-start'): string =>
  (vriftJson(['ls', ref, '--json'], { home }).entries as { path: string; digest?: string }[]).find((e) => e.path === path)!.digest!;

const sha = (file: string) => execFileSync('sha256sum', [file], { encoding: 'utf8' }).split(' ')[0];
const mountInfo = (home: string, mnt: string) =>
  (vriftJson(['status'], { home, env }).mounts as { path: string; fetchedOnOpen: { blobs: number; bytes: number } }[]).find((m) => m.path === mnt)!;

describe('a job starts on the listing alone', () => {
  it('mounts a ref only S3 holds: the tree blob is fetched, then only the files programs open', () => {
    const home = tempDir();
    startDaemon(home, env);
    const mnt = join(tempDir(), 'mnt');
    mkdirSync(mnt);
    const run = (...cmd: string[]) => vrift(['run', '--mount', `${mnt}=ci/lazy-start`, '--', ...cmd], { home, env });

    // Listing, stat and the tree's shape need no file content.
    const ls = run('sh', '-c', `ls -A '${mnt}' | wc -l; stat -c %s '${mnt}/big.bin'; find '${mnt}' | wc -l`);
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stdout).toBe(`${readdirSync(src).length}\n${3 << 20}\n${execFileSync('find', [src], { encoding: 'utf8' }).trim().split('\n').length}\n`);
    expect(casBlobs(home)).toEqual([saved.tree]);
    expect(readFileSync(join(home, 'run', 'vriftd.log'), 'utf8')).toMatch(/mount: .* \(listing from s3; files on first open\)/);

    // Opening a file brings its blob, and that one only; an executable runs.
    const cat = run('sh', '-c', `cat '${mnt}/src/main.c' && '${mnt}/run.sh'`);
    expect(cat.code, cat.stderr).toBe(0);
    expect(cat.stdout).toBe(`${readFileSync(join(src, 'src', 'main.c'), 'utf8')}hi\n`);
    // the two files came, and the small files of their pack frame with them; never big.bin (a frame of its own)
    const here = new Set(casBlobs(home));
    for (const p of ['src/main.c', 'run.sh']) expect(here.has(digestOf(home, p))).toBe(true);
    expect(here.has(digestOf(home, 'big.bin'))).toBe(false);
    expect(mountInfo(home, mnt).fetchedOnOpen.blobs).toBeGreaterThanOrEqual(1);
    expect(mountInfo(home, mnt).fetchedOnOpen.bytes).toBeLessThan(4096);
    // The ref is known here now: a restart mounts it without the network.
    expect(vrift(['ref', 'list'], { home }).stdout).toMatch(/ci\/lazy-start/);
    stopDaemon(home);
  });

  it('vrift restore --lazy mounts the ref at the directory and returns; a later vrift run there reads it', () => {
    const home = tempDir();
    startDaemon(home, env);
    const dir = join(tempDir(), 'out');
    const r = vriftJson(['restore', 'ci/lazy-start', dir, '--lazy'], { home, env });
    expect([r.tree, r.lazy]).toEqual([saved.tree, true]);
    expect(casBlobs(home)).toEqual([saved.tree]);
    const cat = vrift(['run', '--mount', `${dir}=ci/lazy-start`, '--', 'cat', join(dir, 'src', 'lib', 'deep', 'er', 'x.txt')], { home, env });
    expect([cat.code, cat.stdout]).toEqual([0, 'deep\n']);
    expect(new Set(casBlobs(home)).has(digestOf(home, 'big.bin'))).toBe(false);
    stopDaemon(home);
  });

  it('six programs opening one large file at once wait on one fetch', async () => {
    const home = tempDir();
    startDaemon(home, env);
    const mnt = join(tempDir(), 'mnt');
    mkdirSync(mnt);
    const script = Array.from({ length: 6 }, () => `sha256sum '${mnt}/big.bin' &`).join(' ') + ' wait';
    const r = await vriftAsync(['run', '--mount', `${mnt}=${saved.tree}`, '--', 'sh', '-c', script], { home, env });
    expect(r.code, r.stderr).toBe(0);
    const sums = r.stdout.trim().split('\n').map((l) => l.split(' ')[0]);
    expect(sums).toEqual(Array(6).fill(sha(join(src, 'big.bin'))));
    expect(mountInfo(home, mnt).fetchedOnOpen).toEqual({ blobs: 1, bytes: 3 << 20 });
    stopDaemon(home);
  });

  it('a daemon restart during a lazy run: local files keep opening, a miss waits for the daemon to come back', async () => {
    const home = tempDir();
    startDaemon(home, env);
    const mnt = join(tempDir(), 'mnt');
    mkdirSync(mnt);
    // A file, not a FIFO: writing to a FIFO blocks this worker for ever if the script died before opening it.
    const gone = join(tempDir(), 'gone');
    // main.c is fetched before the daemon dies; util.js only while it is away.
    const script = `cat '${mnt}/src/main.c' >/dev/null && echo first && until [ -e '${gone}' ]; do sleep 0.05; done && cat '${mnt}/src/main.c' '${mnt}/src/lib/util.js'`;
    const run = spawnBounded(process.execPath, [VRIFT_BIN, 'run', '--mount', `${mnt}=ci/lazy-start`, '--', 'sh', '-c', script], {
      env: { ...process.env, VRIFT_HOME: home, ...env },
      timeoutMs: 90_000,
    });
    let out = '';
    run.child.stdout!.on('data', (d) => (out += d));
    let exited = false;
    const running = run.done.finally(() => (exited = true));
    await waitFor('main.c fetched and read before the crash', () => {
      if (exited) throw new Error('the run ended first');
      return out.includes('first') && casBlobs(home).length >= 2;
    }, 60_000).catch(async (e) => {
      run.kill();
      const r = await running;
      throw new Error(`${(e as Error).message}; the run said: ${r.stdout} ${r.stderr}`);
    });
    crashDaemon(home);
    writeFileSync(gone, 'go\n');
    await new Promise((r) => setTimeout(r, 1000));
    startDaemon(home, env); // no network needed to restore the mount: its listing and ref are local
    const r = await running;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`first\n${readFileSync(join(src, 'src', 'main.c'), 'utf8')}${readFileSync(join(src, 'src', 'lib', 'util.js'), 'utf8')}`);
    stopDaemon(home);
  });

  it('a library that finds its own libraries through $ORIGIN (the loader asks the daemon for them too)', () => {
    const dir = tempDir();
    writeOriginLibs(dir, 'hello from a lazy library');
    vriftJson(['save', 'ci/lazy-lib', dir], { home: tempDir(), env });
    const home = tempDir();
    startDaemon(home, env);
    const mnt = join(tempDir(), 'mnt');
    mkdirSync(mnt);
    const r = vrift(['run', '--mount', `${mnt}=ci/lazy-lib`, '--', 'python3', '-c', `import ctypes; ctypes.CDLL("${mnt}/lib/liba.so").run()`], { home, env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('hello from a lazy library\n');
    const here = new Set(casBlobs(home));
    for (const p of ['lib/liba.so', 'lib/libhello.so']) expect(here.has(digestOf(home, p, 'ci/lazy-lib'))).toBe(true);
    stopDaemon(home);
  });

  it('a ref no tier holds: one line naming it and the tiers asked, and no mount', () => {
    const home = tempDir();
    startDaemon(home, env);
    const mnt = join(tempDir(), 'mnt');
    mkdirSync(mnt);
    const r = vrift(['run', '--mount', `${mnt}=ci/never-saved`, '--', 'true'], { home, env });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/no tree or ref named "ci\/never-saved" here or in s3/);
    const t = vrift(['run', '--mount', `${mnt}=${'ab'.repeat(32)}`, '--', 'true'], { home, env });
    expect(t.code).toBe(1);
    expect(t.stderr).toMatch(/tree abab.* is in no reachable tier/);
    expect(vriftJson(['status'], { home, env }).mounts).toEqual([]);
    stopDaemon(home);
  });
});
