// A lazy mount from the tree's lazy index (docs/lazy.md "Partial
// metadata"): the names alone are published, each file's digest is read
// (and checked) when a program opens it, its blob by one ranged GET; the
// full listing never moves. A lying part falls back to the full listing
// with one log line. Real daemons, a real s3rver, real programs.
import { ListObjectsV2Command, PutObjectCommand, GetObjectCommand } from '@aws-sdk/client-s3';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { zstdCompressBuffer } from '../../src/lib/zstd.js';
import { parseRefRecord } from '../../src/lib/ref-signature.js';
import { ROOT, vrift, vriftJson } from '../helpers/cli.js';
import { startDaemon, stopDaemon, crashDaemon, daemonPid } from '../helpers/daemon.js';
import { startS3, tierEnv, type S3Server } from '../helpers/s3-server.js';
import { tempDir } from '../helpers/tmp.js';
import { writeOriginLibs, writeSampleTree } from '../helpers/trees.js';

const BUCKET = 'vrift-partial';
let s3: S3Server;
let src: string;

beforeAll(async () => {
  s3 = await startS3([BUCKET]);
  src = tempDir();
  writeSampleTree(src);
});
afterAll(async () => {
  await s3?.stop();
});

const envOf = (prefix: string) => ({ ...tierEnv({ s3, prefix }), VRIFT_PREFETCH: 'false', VRIFT_LAZY_INDEX: 'true' });

async function object(key: string): Promise<Buffer> {
  const r = await s3.client().send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  return Buffer.from(await r.Body!.transformToByteArray());
}
const put = (key: string, body: Buffer) => s3.client().send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));

/** Every blob file in a home's CAS (names, exec twins excluded). */
function casBlobs(home: string): string[] {
  const cas = join(home, 'cas');
  return readdirSync(cas)
    .filter((d) => /^[0-9a-f]{2}$/.test(d))
    .flatMap((d) => readdirSync(join(cas, d)).filter((n) => /^[0-9a-f]{64}$/.test(n)));
}

/** A new node (its own home, a daemon with `env`) and an empty mount point, for `fn`; the daemon is stopped after it. */
function onNode<T>(env: Record<string, string>, fn: (home: string, mnt: string) => T): T {
  const home = tempDir();
  startDaemon(home, env);
  try {
    const mnt = join(tempDir(), 'mnt');
    mkdirSync(mnt);
    return fn(home, mnt);
  } finally {
    stopDaemon(home);
  }
}

/** What `vrift status` shows of the mount at `mnt` (its blob counts, partial.ts / partial-counts.ts). */
type Amount = { blobs: number; bytes: number };
const mountStatus = (home: string, env: Record<string, string>, mnt: string) =>
  (vriftJson(['status'], { home, env }).mounts as { path: string; partial?: true; treeBlobs: Amount; local: Amount; fetchedOnOpen: Amount; prefetched: Amount; prefetch: { state: string } }[]).find(
    (m) => m.path === mnt,
  )!;
/** Files of the sample tree, and their bytes. */
const sampleFiles = () => {
  const sizes = execFileSync('find', [src, '-type', 'f', '-printf', '%s\n'], { encoding: 'utf8' }).trim().split('\n').map(Number);
  return { blobs: sizes.length, bytes: sizes.reduce((a, b) => a + b, 0) };
};
const sizeOf = (...paths: string[]) => paths.reduce((n, p) => n + readFileSync(join(src, p)).length, 0);

/** Saves the sample tree under `prefix`; its id and its files' digests (from a node that has it). */
function save(prefix: string): { tree: string; digest: (p: string) => string } {
  const home = tempDir();
  const tree = vriftJson(['save', 'ci/partial', src], { home, env: envOf(prefix) }).tree as string;
  const entries = vriftJson(['ls', tree, '--json'], { home }).entries as { path: string; digest?: string }[];
  return { tree, digest: (p) => entries.find((e) => e.path === p)!.digest! };
}

describe('a lazy mount from the lazy index', () => {
  it('publishes every name, reads a file\'s digest and blob on open, never the listing', () => {
    const saved = save('a/');
    const env = envOf('a/');
    onNode(env, (home, mnt) => {
      const run = (...cmd: string[]) => vrift(['run', '--mount', `${mnt}=ci/partial`, '--', ...cmd], { home, env });
      const ls = run('sh', '-c', `ls -A '${mnt}' | wc -l; stat -c %s '${mnt}/big.bin'; find '${mnt}' | wc -l`);
      expect(ls.code, ls.stderr).toBe(0);
      expect(ls.stdout).toBe(`${readdirSync(src).length}\n${3 << 20}\n${execFileSync('find', [src], { encoding: 'utf8' }).trim().split('\n').length}\n`);
      const log = () => readFileSync(join(home, 'run', 'vriftd.log'), 'utf8');
      expect(log()).toMatch(/mount: .* \(listing from the lazy index; files on first open\)/);
      // Neither the tree blob nor any file: only the lazy index's head and names.
      expect(casBlobs(home)).not.toContain(saved.tree);
      expect(casBlobs(home)).toHaveLength(2);
      // Never silent: status counts its files (by file: it knows its tree by names only).
      const none = { blobs: 0, bytes: 0 };
      expect(mountStatus(home, env, mnt)).toMatchObject({ partial: true, treeBlobs: sampleFiles(), local: none, fetchedOnOpen: none, prefetched: none, prefetch: { state: 'off' } });

      // A file, an executable (through its twin), and a large one (fetched by digest, whole or streamed).
      const cat = run('sh', '-c', `cat '${mnt}/src/main.c' && '${mnt}/run.sh' && sha256sum < '${mnt}/big.bin'`);
      expect(cat.code, cat.stderr).toBe(0);
      const bigSha = execFileSync('sha256sum', [join(src, 'big.bin')], { encoding: 'utf8' }).split(' ')[0];
      expect(cat.stdout).toBe(`${readFileSync(join(src, 'src', 'main.c'), 'utf8')}hi\n${bigSha}  -\n`);
      const here = new Set(casBlobs(home));
      for (const p of ['src/main.c', 'run.sh', 'big.bin']) expect(here.has(saved.digest(p))).toBe(true);
      expect(here.has(saved.tree)).toBe(false);
      // Each opened file counted once: fetched by its open, or local when a neighbour's frame read brought it first.
      const st = mountStatus(home, env, mnt);
      expect({ blobs: st.fetchedOnOpen.blobs + st.local.blobs, bytes: st.fetchedOnOpen.bytes + st.local.bytes }).toEqual({ blobs: 3, bytes: sizeOf('src/main.c', 'run.sh', 'big.bin') });
      expect(st.fetchedOnOpen.bytes).toBeGreaterThanOrEqual(sizeOf('src/main.c', 'big.bin')); // (in frames of their own)
      // Opened again: from the CAS, no FETCH (the VDir names the digest and ctime now).
      const again = run('cat', join(mnt, 'src', 'main.c'));
      expect(again.stdout).toBe(readFileSync(join(src, 'src', 'main.c'), 'utf8'));
      expect(log()).not.toMatch(/lazy index: .*mounting from the full listing/);
      // A second mount of the tree on this node: from the lazy index again (kept here), its opened file local.
      const mnt2 = join(tempDir(), 'mnt2');
      mkdirSync(mnt2);
      const other = vrift(['run', '--mount', `${mnt2}=ci/partial`, '--', 'cat', join(mnt2, 'src', 'main.c')], { home, env });
      expect([other.code, other.stdout], other.stderr).toEqual([0, readFileSync(join(src, 'src', 'main.c'), 'utf8')]);
      expect(casBlobs(home)).not.toContain(saved.tree);
      expect(mountStatus(home, env, mnt2)).toMatchObject({ partial: true, local: { blobs: 1, bytes: sizeOf('src/main.c') }, fetchedOnOpen: { blobs: 0, bytes: 0 } });
    });
  });

  it('a daemon killed and restarted serves the mount from what it kept, without the network', () => {
    save('b/');
    const env = envOf('b/');
    const home = tempDir();
    startDaemon(home, env);
    const mnt = join(tempDir(), 'mnt');
    mkdirSync(mnt);
    try {
      expect(vriftJson(['mount', 'ci/partial', mnt], { home, env }).tree).toBeDefined();
      const first = vrift(['run', '--mount', `${mnt}=ci/partial`, '--', 'cat', join(mnt, 'src', 'main.c')], { home, env });
      expect(first.code, first.stderr).toBe(0);
      expect(readFileSync(join(home, 'run', 'vriftd.log'), 'utf8')).toMatch(/\(listing from the lazy index; files on first open\)/);
      // gc keeps what the mount needs: its lazy index and the blobs it named (the tree is pinned, not here).
      const gc = vrift(['gc', '--json'], { home, env });
      expect(gc.code, gc.stderr).toBe(0);
      expect(gc.stderr).not.toMatch(/could not be read/);
      crashDaemon(home);
      // The bucket is unreachable now: only what the node kept can serve the mount.
      startDaemon(home, { ...env, VRIFT_S3_ENDPOINT: 'http://127.0.0.1:9' });
      const again = vrift(['run', '--mount', `${mnt}=ci/partial`, '--', 'sh', '-c', `cat '${mnt}/src/main.c'; ls '${mnt}/src' | wc -l`], { home, env: { ...env, VRIFT_S3_ENDPOINT: 'http://127.0.0.1:9' } });
      expect(again.code, again.stderr).toBe(0);
      expect(again.stdout).toBe(`${readFileSync(join(src, 'src', 'main.c'), 'utf8')}${readdirSync(join(src, 'src')).length}\n`);
      // (its blob was here before this daemon's first open of it)
      expect(mountStatus(home, env, mnt)).toMatchObject({ partial: true, local: { blobs: 1, bytes: sizeOf('src/main.c') }, fetchedOnOpen: { blobs: 0, bytes: 0 } });
      vrift(['unmount', mnt], { home, env });
    } finally {
      stopDaemon(home);
    }
  });

  it('a file written in the mount, then a snapshot: the snapshot reads the full listing then, and is the tree plus the file', () => {
    const saved = save('s/');
    const env = envOf('s/');
    onNode(env, (home, mnt) => {
      const w = vrift(['run', '--mount', `${mnt}=ci/partial`, '--', 'sh', '-c', `echo new > '${mnt}/src/new.txt' && cat '${mnt}/src/new.txt'`], { home, env });
      expect([w.code, w.stdout], w.stderr).toEqual([0, 'new\n']);
      expect(casBlobs(home)).not.toContain(saved.tree);
      const snap = vriftJson(['snapshot', mnt], { home, env }).tree as string;
      const entries = vriftJson(['ls', snap, '--json'], { home }).entries as { path: string; digest?: string }[];
      expect(entries.find((e) => e.path === 'src/main.c')!.digest).toBe(saved.digest('src/main.c'));
      expect(entries.find((e) => e.path === 'src/new.txt')).toBeDefined();
      expect(casBlobs(home)).toContain(saved.tree);
    });
  });

  it('files renamed, moved with their directory or hard-linked before their first open: they open at their new paths, and a snapshot names their blobs', () => {
    const saved = save('r/');
    const env = envOf('r/');
    onNode(env, (home, mnt) => {
      const script = [
        'mv src/main.c src/moved.c',
        'mv src/lib src/lib2',
        'ln src/dup-a.txt hard.txt',
        'cat src/moved.c src/lib2/util.js src/lib2/deep/er/x.txt hard.txt',
        'test ! -e src/main.c && test ! -e src/lib',
      ].join(' && ');
      const r = vrift(['run', '--mount', `${mnt}=ci/partial`, '--', 'sh', '-c', `cd '${mnt}' && ${script}`], { home, env });
      const want = ['src/main.c', 'src/lib/util.js', 'src/lib/deep/er/x.txt', 'src/dup-a.txt'].map((p) => readFileSync(join(src, p), 'utf8')).join('');
      expect([r.code, r.stdout, r.stderr]).toEqual([0, want, '']);
      const snap = vriftJson(['snapshot', mnt], { home, env }).tree as string;
      const entries = vriftJson(['ls', snap, '--json'], { home }).entries as { path: string; digest?: string }[];
      const digestAt = (p: string) => entries.find((e) => e.path === p)?.digest;
      expect([digestAt('src/moved.c'), digestAt('src/lib2/util.js'), digestAt('hard.txt'), digestAt('src/dup-a.txt')]).toEqual([
        saved.digest('src/main.c'),
        saved.digest('src/lib/util.js'),
        saved.digest('src/dup-a.txt'),
        saved.digest('src/dup-a.txt'),
      ]);
      expect([digestAt('src/main.c'), digestAt('src/lib/util.js')]).toEqual([undefined, undefined]);
    });
  });

  /** 600 small files in 7 directories, saved as ci/many under `prefix`: the directory and the tree. */
  function saveMany(prefix: string): { many: string; tree: string } {
    const many = tempDir();
    for (let i = 0; i < 600; i++) {
      mkdirSync(join(many, `d${i % 7}`), { recursive: true });
      writeFileSync(join(many, `d${i % 7}`, `f${i}.txt`), `file ${i}\n`);
    }
    return { many, tree: vriftJson(['save', 'ci/many', many], { home: tempDir(), env: envOf(prefix) }).tree as string };
  }

  it('a job that opens many files: the mount reads the full listing then, names every file\'s digest, and goes on as any lazy mount', () => {
    const { many, tree } = saveMany('m/');
    // (the bulk switch off: its scan and volume signs come first, next test)
    const env = { ...envOf('m/'), VRIFT_BULK_AFTER_SEQUENTIAL: '0', VRIFT_BULK_AFTER_PERCENT: '0' };
    onNode(env, (home, mnt) => {
      const r = vrift(['run', '--mount', `${mnt}=ci/many`, '--', 'sh', '-c', `cd '${mnt}' && find . -type f | sort | xargs cat | sha256sum`], { home, env });
      const want = execFileSync('sh', ['-c', `cd '${many}' && find . -type f | sort | xargs cat | sha256sum`], { encoding: 'utf8' });
      expect([r.code, r.stdout], r.stderr).toEqual([0, want]);
      const log = readFileSync(join(home, 'run', 'vriftd.log'), 'utf8');
      expect(log).toMatch(/\(listing from the lazy index; files on first open\)/);
      expect(log.match(/lazy index: .*: 256 files opened: read the full listing/g)).toHaveLength(1);
      expect(casBlobs(home)).toContain(tree);
      // (the files not opened by then: at most 600 - 256, fewer when opens went on while the listing came)
      const named = Number(/read the full listing \((\d+) more files named\)/.exec(log)?.[1]);
      expect(named).toBeGreaterThan(0);
      expect(named).toBeLessThanOrEqual(600 - 256);
    });
  });

  describe('the bulk switch, by file: the mount reads the full listing and pulls the rest in bulk', () => {
    // 160 files of 70 KB (one S3 pack frame each: each comes by its own fetch), in two directories
    let wide: string;
    beforeAll(() => {
      wide = tempDir();
      for (let i = 0; i < 160; i++) {
        mkdirSync(join(wide, `d${i % 2}`), { recursive: true });
        const body = Buffer.alloc(70_000);
        for (let j = 0; j < body.length; j += 4) body.writeUInt32LE((((i + 1) * 2654435761) ^ (j * 40503)) >>> 0, j);
        writeFileSync(join(wide, `d${i % 2}`, `f${i}.bin`), body);
      }
    });
    const readAll = (dir: string, order: string) => `cd '${dir}' && find . -type f | ${order} | xargs cat | sha256sum`;
    const bulkRun = (prefix: string, settings: Record<string, string>, order: string) => {
      const tree = vriftJson(['save', 'ci/wide', wide], { home: tempDir(), env: envOf(prefix) }).tree as string;
      const env = { ...envOf(prefix), ...settings };
      return onNode(env, (home, mnt) => {
        const r = vrift(['run', '--mount', `${mnt}=ci/wide`, '--', 'sh', '-c', readAll(mnt, order)], { home, env });
        const want = execFileSync('sh', ['-c', readAll(wide, 'LC_ALL=C sort')], { encoding: 'utf8' });
        expect([r.code, r.stdout], r.stderr).toEqual([0, want]);
        const status = () => mountStatus(home, env, mnt) as ReturnType<typeof mountStatus> & { bulk: { state: string; reason: string } | null };
        for (let i = 0; i < 100 && status().bulk?.state !== 'done'; i++) execFileSync('sleep', ['0.1']);
        expect(casBlobs(home)).toContain(tree);
        return { log: readFileSync(join(home, 'run', 'vriftd.log'), 'utf8'), status: status() };
      });
    };

    it('a scan in tree order (paths sorted by their bytes), long before the 256th file', () => {
      const { log, status } = bulkRun('bs/', { VRIFT_BULK_AFTER_SEQUENTIAL: '32', VRIFT_BULK_AFTER_PERCENT: '0' }, 'LC_ALL=C sort');
      expect(log).toMatch(/lazy index: .*: programs opened 32 missing blobs in a row in tree order: read the full listing/);
      expect(log).toMatch(/bulk: .*: programs opened 32 missing blobs in a row in tree order: pulling the rest of tree/);
      expect(status.bulk).toMatchObject({ state: 'done' });
      expect(status.fetchedOnOpen.blobs).toBeLessThan(160);
    });

    it('a share of the files one by one, in any order', () => {
      const { log, status } = bulkRun('bv/', { VRIFT_BULK_AFTER_SEQUENTIAL: '0', VRIFT_BULK_AFTER_PERCENT: '20' }, 'shuf --random-source=/dev/zero');
      expect(log).toMatch(/bulk: .*: programs needed 32 of its 160 blobs \(20%\) one by one: pulling the rest of tree/);
      expect(status.bulk).toMatchObject({ state: 'done' });
    });
  });

  it('a library found through $ORIGIN whose blob is kept on its own (large): the loader gets it whole', () => {
    const dir = tempDir();
    // (libhello 64 KiB larger: above the 32 KiB loose-blob size set below, so S3 keeps its blob on its own)
    writeOriginLibs(dir, 'hello from a large lazy library', 65536);
    const env = { ...envOf('lib/'), VRIFT_S3_LOOSE_BLOB: '32K' };
    vriftJson(['save', 'ci/partial-lib', dir], { home: tempDir(), env });
    onNode(env, (home, mnt) => {
      const r = vrift(['run', '--mount', `${mnt}=ci/partial-lib`, '--', 'python3', '-c', `import ctypes; ctypes.CDLL("${mnt}/lib/liba.so").run()`], { home, env });
      expect([r.code, r.stdout], r.stderr).toEqual([0, 'hello from a large lazy library\n']);
      expect(readFileSync(join(home, 'run', 'vriftd.log'), 'utf8')).toMatch(/\(listing from the lazy index; files on first open\)/);
    });
  });

  it('a program the shim cannot see (static): its namespace farm reads the full listing first, and the program reads the files', () => {
    const saved = save('x/');
    const env = envOf('x/');
    const sfs = join(tempDir(), 'static-fs');
    execFileSync('gcc', ['-static', '-O2', '-Wall', '-o', sfs, join(ROOT, 'test', 'c', 'static-fs.c')]);
    onNode(env, (home, mnt) => {
      const r = vrift(['run', '--mount', `${mnt}=ci/partial`, '--', sfs, `cat:${join(mnt, 'src', 'main.c')}`], { home, env });
      expect([r.code, r.stdout], r.stderr).toEqual([0, readFileSync(join(src, 'src', 'main.c'), 'utf8')]);
      const log = readFileSync(join(home, 'run', 'vriftd.log'), 'utf8');
      expect(log).toMatch(/\(listing from the lazy index; files on first open\)/);
      expect(casBlobs(home)).toContain(saved.tree);
    });
  });

  it('a second node gets the first one\'s opens as file ordinals: its mount fetches and publishes them before the program asks', async () => {
    const saved = save('t/');
    const prefetching = { ...envOf('t/'), VRIFT_PREFETCH: 'true' };
    // (big.bin, 3 MiB, is over the start-up set's 1 MiB per blob: it is fetched alone, alongside the set)
    const files = ['src/main.c', 'src/lib/util.js', 'run.sh', 'big.bin'];
    const a = tempDir();
    startDaemon(a, envOf('t/'));
    try {
      const mnt = join(tempDir(), 'mnt');
      mkdirSync(mnt);
      const r = vrift(['run', '--mount', `${mnt}=ci/partial`, '--', 'sh', '-c', files.map((f) => `cat '${mnt}/${f}' >/dev/null`).join(' && ')], { home: a, env: envOf('t/') });
      expect(r.code, r.stderr).toBe(0);
    } finally {
      stopDaemon(a); // (pushes the trace)
    }
    const keys = await s3.client().send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 't/refs/vrift-otrace/' }));
    expect(keys.Contents?.length).toBe(1);
    const b = tempDir();
    startDaemon(b, prefetching);
    try {
      const mnt = join(tempDir(), 'mnt');
      mkdirSync(mnt);
      vriftJson(['mount', 'ci/partial', mnt], { home: b, env: prefetching });
      const log = () => readFileSync(join(b, 'run', 'vriftd.log'), 'utf8');
      for (let i = 0; i < 100 && !/start-up set \(from the lazy index\)/.test(log()); i++) await new Promise((r) => setTimeout(r, 100));
      expect(log()).toMatch(/\(listing from the lazy index; files on first open\)/);
      // main.c and util.js are published (run.sh is executable: its open makes its twin, through the daemon); big.bin came alone
      expect(log()).toMatch(new RegExp(`start-up set \\(from the lazy index\\): 2 of the first 4 files traced, \\d+ bytes; large ones alone: 1, ${3 << 20} bytes; in \\d+ ms`));
      expect(log()).not.toMatch(/the trace's other files/); // (nothing was left for the paced prefetch)
      for (const f of files) expect(casBlobs(b)).toContain(saved.digest(f));
      expect(casBlobs(b)).not.toContain(saved.tree);
      const r = vrift(['run', '--mount', `${mnt}=ci/partial`, '--', 'sh', '-c', `cat '${mnt}/src/main.c' '${mnt}/src/lib/util.js'; sha256sum < '${mnt}/big.bin'`], { home: b, env: prefetching });
      const bigSha = execFileSync('sha256sum', [join(src, 'big.bin')], { encoding: 'utf8' }).split(' ')[0];
      expect([r.code, r.stdout], r.stderr).toEqual([0, readFileSync(join(src, 'src', 'main.c'), 'utf8') + readFileSync(join(src, 'src', 'lib', 'util.js'), 'utf8') + `${bigSha}  -\n`]);
      expect(log()).not.toMatch(/vriftd: fetch: /); // no open failed or fetched on its own
      expect(mountStatus(b, prefetching, mnt)).toMatchObject({
        partial: true,
        prefetched: { blobs: 3, bytes: sizeOf('src/main.c', 'src/lib/util.js', 'big.bin') },
        fetchedOnOpen: { blobs: 0, bytes: 0 },
        prefetch: { state: 'done' },
      });
    } finally {
      stopDaemon(b);
    }
  });

  it('with prefetch off, a tree with a trace in the tiers still mounts from its lazy index (the trace would prefetch nothing)', () => {
    const saved = save('noprefetch/');
    const env = envOf('noprefetch/');
    onNode(env, (home, mnt) => {
      const r = vrift(['run', '--mount', `${mnt}=ci/partial`, '--', 'cat', `${mnt}/src/main.c`], { home, env });
      expect(r.code, r.stderr).toBe(0);
    }); // (its stop pushes the tree's traces)
    onNode(env, (home, mnt) => {
      vriftJson(['mount', 'ci/partial', mnt], { home, env });
      expect(readFileSync(join(home, 'run', 'vriftd.log'), 'utf8')).toMatch(/\(listing from the lazy index; files on first open\)/);
      expect(casBlobs(home)).not.toContain(saved.tree);
    });
  });

  it('a trace longer than the start-up set: its first files come together, the rest by the paced prefetch, all before the program asks', async () => {
    // Ten files of 1000 KiB (each under the set's 1 MiB per blob): eight fill the set's 8 MiB, the last two are left to the prefetch.
    const tree = tempDir();
    const names = Array.from({ length: 10 }, (_, i) => `f${i}.bin`);
    names.forEach((n, i) => writeFileSync(join(tree, n), Buffer.alloc(1000 << 10, i + 1)));
    const env = envOf('long/');
    vriftJson(['save', 'ci/long', tree], { home: tempDir(), env });
    const a = tempDir();
    // (the first node traces every file: its bulk switch off, or it would pull the rest in bulk, untraced, once 25 % came one by one)
    startDaemon(a, { ...env, VRIFT_BULK_AFTER_PERCENT: '0', VRIFT_BULK_AFTER_SEQUENTIAL: '0' });
    try {
      const mnt = join(tempDir(), 'mnt');
      mkdirSync(mnt);
      const r = vrift(['run', '--mount', `${mnt}=ci/long`, '--', 'sh', '-c', names.map((n) => `cat '${mnt}/${n}' >/dev/null`).join(' && ')], { home: a, env });
      expect(r.code, r.stderr).toBe(0);
    } finally {
      stopDaemon(a); // (pushes the trace)
    }
    const prefetching = { ...env, VRIFT_PREFETCH: 'true' };
    const b = tempDir();
    startDaemon(b, prefetching);
    try {
      const mnt = join(tempDir(), 'mnt');
      mkdirSync(mnt);
      vriftJson(['mount', 'ci/long', mnt], { home: b, env: prefetching });
      const log = () => readFileSync(join(b, 'run', 'vriftd.log'), 'utf8');
      for (let i = 0; i < 100 && !/the trace's other files \(from the lazy index\)/.test(log()); i++) await new Promise((r) => setTimeout(r, 100));
      expect(log()).toMatch(`start-up set (from the lazy index): 8 of the first 10 files traced, ${8 * (1000 << 10)} bytes; large ones alone: 0, 0 bytes;`);
      expect(log()).toMatch(/the trace's other files \(from the lazy index\): 2 of 2 in \d+ ms/);
      const r = vrift(['run', '--mount', `${mnt}=ci/long`, '--', 'sh', '-c', `cat ${names.map((n) => `'${mnt}/${n}'`).join(' ')} | sha256sum`], { home: b, env: prefetching });
      const want = execFileSync('sh', ['-c', `cat ${names.map((n) => `'${join(tree, n)}'`).join(' ')} | sha256sum`], { encoding: 'utf8' });
      expect([r.code, r.stdout], r.stderr).toEqual([0, want]);
      expect(mountStatus(b, prefetching, mnt)).toMatchObject({ prefetched: { blobs: 10, bytes: 10 * (1000 << 10) }, fetchedOnOpen: { blobs: 0, bytes: 0 }, prefetch: { state: 'done' } });
    } finally {
      stopDaemon(b);
    }
  });

  describe('a lying part is refused with one log line and the mount reads the full listing', () => {
    const lie = async (prefix: string, part: (lazy: string) => { key: string; edit: (b: Buffer) => Buffer }) => {
      const saved = save(prefix);
      const rec = parseRefRecord((await object(`${prefix}refs/ci/partial`)).toString());
      if (typeof rec === 'string') throw new Error(rec);
      const { key, edit } = part(rec.lazy!);
      await put(`${prefix}${key}`, edit(await object(`${prefix}${key}`)));
      const env = envOf(prefix);
      return onNode(env, (home, mnt) => {
        const r = vrift(['run', '--mount', `${mnt}=ci/partial`, '--', 'cat', join(mnt, 'src', 'main.c')], { home, env });
        return { r, log: readFileSync(join(home, 'run', 'vriftd.log'), 'utf8'), saved, home };
      });
    };

    it('a head that is not the one the ref names', async () => {
      const { r, log, saved, home } = await lie('h/', (lazy) => ({ key: `lazy/${lazy}`, edit: (b) => Buffer.concat([b, Buffer.alloc(32)]) }));
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe(readFileSync(join(src, 'src', 'main.c'), 'utf8'));
      expect(log.match(/lazy index: .*its head was refused: its bytes do not hash .*; mounting from the full listing/g)).toHaveLength(1);
      expect(casBlobs(home)).toContain(saved.tree);
    });

    it('names that are not the head\'s', async () => {
      // Well-formed names of another tree, compressed as the real ones are.
      const other = await zstdCompressBuffer(Buffer.from('vrift-names 1\nd 755 0 src\0f 644 3 src/main.c\0'));
      const { r, log, saved, home } = await lie('n/', (lazy) => ({ key: `lazy/${lazy}.names.zst`, edit: () => other }));
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe(readFileSync(join(src, 'src', 'main.c'), 'utf8'));
      expect(log.match(/lazy index: .*its names blob was refused: it does not hash to the head's; mounting from the full listing/g)).toHaveLength(1);
      expect(casBlobs(home)).toContain(saved.tree);
    });

    it('a piece of the locator whose digests are not the head\'s: that open fails, nothing unverified is used', async () => {
      const { r, log } = await lie('p/', (lazy) => ({
        key: `lazy/${lazy}.loc`,
        edit: (b) => {
          const out = Buffer.from(b);
          for (let i = 0; i < out.length; i += 64) out[i] = out[i]! ^ 0xff; // every digest
          return out;
        },
      }));
      // The head and names are good: the mount is partial, and the open whose piece lies gets EIO.
      expect(r.code).not.toBe(0);
      expect(log).toMatch(/piece 0 of the lazy index of tree .* was refused: its digests are not the ones the signed head names/);
    });
  });

  it('a tree the tiers hold a trace of by digest only: a prefetching node reads the full listing, and drops the VDir it began from the names', () => {
    const saved = save('d/');
    // A node that mounts from the full listing pushes the trace by digest (no file ordinals) when it stops.
    const full = { ...envOf('d/'), VRIFT_LAZY_INDEX: 'false' };
    onNode(full, (home, mnt) => {
      const r = vrift(['run', '--mount', `${mnt}=ci/partial`, '--', 'cat', join(mnt, 'src', 'main.c')], { home, env: full });
      expect(r.code, r.stderr).toBe(0);
      vrift(['unmount', mnt], { home, env: full });
    });
    const env = { ...envOf('d/'), VRIFT_PREFETCH: 'true' };
    onNode(env, (home, mnt) => {
      const r = vrift(['run', '--mount', `${mnt}=ci/partial`, '--', 'cat', join(mnt, 'src', 'main.c')], { home, env });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe(readFileSync(join(src, 'src', 'main.c'), 'utf8'));
      const log = readFileSync(join(home, 'run', 'vriftd.log'), 'utf8');
      expect(log).toMatch(/mount: .* \(listing from s3; files on first open\)/);
      expect(casBlobs(home)).toContain(saved.tree);
      // The VDir built from the names beside their check was closed: the daemon maps its one mount's VDir only.
      const pid = daemonPid(home)!;
      const mapped = new Set(readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').flatMap((l) => /\/dev\/shm\/(vrift\.\S+)/.exec(l)?.[1] ?? []));
      const name = (vriftJson(['status'], { home, env }).mounts as { path: string; name: string }[]).find((m) => m.path === mnt)!.name;
      expect([...mapped]).toEqual([expect.stringContaining(name)]);
      vrift(['unmount', mnt], { home, env });
    });
  });

  it('without VRIFT_LAZY_INDEX, or for a ref without a lazy index, the mount reads the full listing', async () => {
    const saved = save('o/');
    const env = { ...envOf('o/'), VRIFT_LAZY_INDEX: 'false' };
    onNode(env, (home, mnt) => {
      const r = vrift(['run', '--mount', `${mnt}=ci/partial`, '--', 'cat', join(mnt, 'src', 'main.c')], { home, env });
      expect(r.code, r.stderr).toBe(0);
      expect(casBlobs(home)).toContain(saved.tree);
    });
    const keys = await s3.client().send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'o/lazy/' }));
    expect(keys.Contents?.length).toBe(3);
  });
});
