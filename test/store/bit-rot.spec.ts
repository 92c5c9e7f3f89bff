// Local bit rot (docs/security.md "Local bit rot"): a blob whose bytes
// change on disk while its size and mtime stay the same is never used
// unchecked. Materialize and restore compare each blob's inode change time
// with the one recorded when it was last known good; a changed blob is
// re-hashed, a bad one quarantined (restore fetches it again), re-ingest
// rewrites it, and a write through a materialized hard link is caught.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, truncateSync, mkdirSync, readFileSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/cluster.js';
import { hashBuffer } from '../../src/lib/digest.js';
import { vrift, vriftJson } from '../helpers/cli.js';
import { startS3, tierEnv, type S3Server } from '../helpers/s3-server.js';
import { startDaemon, stopDaemon, vdirLookup, vdirNameOf } from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';
import { snapshotTree, treeMode, writeSampleTree } from '../helpers/trees.js';

const same = (dir: string) => snapshotTree(dir, { mode: treeMode });
const blobPath = (home: string, digest: string) => join(home, 'cas', digest.slice(0, 2), digest);

/** Changes one byte of a file in place and puts its mtime back: size and mtime as before. */
function flipByte(path: string, at = 0): void {
  const st = statSync(path);
  const buf = readFileSync(path);
  buf[at] = buf[at]! ^ 0x20;
  writeFileSync(path, buf); // root: the 0444 mode does not stop it
  utimesSync(path, st.atime, st.mtime);
}

function digestOf(home: string, tree: string, path: string): string {
  const entries = vriftJson(['ls', tree], { home }).entries as { path: string; digest?: string }[];
  return entries.find((e) => e.path === path)!.digest!;
}

function ingested(): { home: string; src: string; tree: string; victim: string } {
  const home = tempDir();
  const src = join(tempDir(), 'src');
  mkdirSync(src);
  writeSampleTree(src);
  const { tree } = vriftJson(['ingest', src], { home });
  return { home, src, tree, victim: digestOf(home, tree, 'src/main.c') };
}

/** flipByte the way a user would: the mtime put back with `touch -d`. */
function flipByteTouch(path: string): void {
  const mtime = execFileSync('stat', ['-c', '%y', path], { encoding: 'utf8' }).trim();
  const buf = readFileSync(path);
  buf[0] = buf[0]! ^ 0x20;
  writeFileSync(path, buf);
  execFileSync('touch', ['-d', mtime, path]);
}

const quarantined = (home: string, digest: string) => readdirSync(join(home, 'quarantine')).some((n) => n.startsWith(digest));

describe('local bit rot', () => {
  it('materialize detects a flipped byte with size and mtime kept, quarantines it and writes nothing wrong', () => {
    const { home, tree, victim } = ingested();
    flipByte(blobPath(home, victim));
    const out = join(tempDir(), 'out');
    const r = vrift(['materialize', tree, out], { home });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('is corrupt on disk');
    expect(r.stderr).toContain(victim);
    expect(r.stderr).toMatch(/vrift restore|ingest/);
    expect(quarantined(home, victim)).toBe(true);
    expect(existsSync(blobPath(home, victim))).toBe(false);
    expect(existsSync(join(out, 'src', 'main.c'))).toBe(false);
  });

  it('a blob only touched (same bytes) is re-hashed once, kept, and its record renewed', () => {
    const { home, tree, victim } = ingested();
    const p = blobPath(home, victim);
    const st = statSync(p);
    writeFileSync(p, readFileSync(p));
    utimesSync(p, st.atime, st.mtime);
    const out = join(tempDir(), 'out');
    expect(vrift(['materialize', tree, out], { home }).code).toBe(0);
    expect(quarantined(home, victim)).toBe(false);
    expect(hashBuffer(readFileSync(join(out, 'src', 'main.c')))).toBe(victim);
  });

  it('re-ingest of the same content rewrites a damaged blob', () => {
    const { home, src, tree, victim } = ingested();
    flipByte(blobPath(home, victim));
    const copy = join(tempDir(), 'copy');
    cpSync(src, copy, { recursive: true, verbatimSymlinks: true });
    const again = vriftJson(['ingest', copy], { home });
    expect(again.tree).toBe(tree);
    expect(hashBuffer(readFileSync(blobPath(home, victim)))).toBe(victim);
    expect(quarantined(home, victim)).toBe(true);
    const out = join(tempDir(), 'out');
    expect(vrift(['materialize', tree, out], { home }).code).toBe(0);
    expect(same(out)).toEqual(same(src));
  });

  it('a write through a materialized hard link (same size, mtime put back) is caught, never copied', () => {
    const { home, tree, victim } = ingested();
    const first = join(tempDir(), 'first');
    expect(vrift(['materialize', tree, first], { home }).code).toBe(0);
    // As root, through the materialized file: it is the blob's own inode.
    flipByte(join(first, 'src', 'main.c'));
    expect(hashBuffer(readFileSync(blobPath(home, victim)))).not.toBe(victim);
    const second = join(tempDir(), 'second');
    const r = vrift(['materialize', tree, second], { home });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(victim);
    expect(quarantined(home, victim)).toBe(true);
  });

  it('an append through a materialized hard link is caught', () => {
    const { home, tree, victim } = ingested();
    const first = join(tempDir(), 'first');
    expect(vrift(['materialize', tree, first], { home }).code).toBe(0);
    writeFileSync(join(first, 'src', 'main.c'), '\n', { flag: 'a' });
    const r = vrift(['materialize', tree, join(tempDir(), 'second')], { home });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(victim);
    expect(quarantined(home, victim)).toBe(true);
  });
});

describe('local bit rot under a mount', () => {
  it('with no tier to fetch it again, a flipped byte is EIO, never the wrong bytes', () => {
    const { home, src, tree, victim } = ingested();
    const noScrub = { VRIFT_SCRUB_BYTES_PER_SEC: '0' };
    startDaemon(home, noScrub);
    try {
      const mnt = join(tempDir(), 'mnt');
      mkdirSync(mnt);
      const file = `${mnt}/src/main.c`;
      const whole = readFileSync(join(src, 'src', 'main.c'), 'utf8');
      expect(vrift(['run', '--mount', `${mnt}=${tree}`, '--', 'cat', file], { home, env: noScrub }).stdout).toBe(whole);
      flipByteTouch(blobPath(home, victim));
      const cat = vrift(['run', '--mount', `${mnt}=${tree}`, '--', 'cat', file], { home, env: noScrub });
      expect(cat.code).not.toBe(0);
      expect(cat.stdout).toBe('');
      expect(cat.stderr).toMatch(/Input\/output error/);
      const py = vrift(['run', '--mount', `${mnt}=${tree}`, '--', 'python3', '-c', `open(${JSON.stringify(file)}).read()`], { home, env: noScrub });
      expect(py.code).not.toBe(0);
      expect(py.stderr).toContain('[Errno 5]');
      expect(quarantined(home, victim)).toBe(true);
    } finally {
      stopDaemon(home);
    }
  });

  it("a hard link (materialize) moves a blob's ctime: the open asks the daemon once, which renews the entry", () => {
    const { home, src, tree, victim } = ingested();
    startDaemon(home, { VRIFT_SCRUB_BYTES_PER_SEC: '0' });
    try {
      const mnt = join(tempDir(), 'mnt');
      mkdirSync(mnt);
      const file = `${mnt}/src/main.c`;
      const whole = readFileSync(join(src, 'src', 'main.c'), 'utf8');
      const ctimeOf = () => String(statSync(blobPath(home, victim), { bigint: true }).ctimeNs);
      const entryCtime = () => vdirLookup(vdirNameOf(home, mnt)!, ['src/main.c']).lines[0].ctime as string;
      expect(vrift(['run', '--mount', `${mnt}=${tree}`, '--', 'cat', file], { home }).stdout).toBe(whole);
      expect(entryCtime()).toBe(ctimeOf()); // the mount carries the recorded ctime: no FETCH needed
      const before = ctimeOf();
      expect(vrift(['materialize', tree, join(tempDir(), 'out')], { home }).code).toBe(0);
      expect(ctimeOf()).not.toBe(before);
      const cat = vrift(['run', '--mount', `${mnt}=${tree}`, '--', 'cat', file], { home });
      expect(cat.code, cat.stderr).toBe(0);
      expect(cat.stdout).toBe(whole);
      expect(quarantined(home, victim)).toBe(false);
      expect(entryCtime()).toBe(ctimeOf());
      // A new mount of the tree is not copied from the image cached before the link, with its stale ctimes.
      const mnt2 = join(tempDir(), 'mnt2');
      mkdirSync(mnt2);
      expect(vrift(['run', '--mount', `${mnt2}=${tree}`, '--', 'true'], { home }).code).toBe(0);
      expect(vdirLookup(vdirNameOf(home, mnt2)!, ['src/main.c']).lines[0].ctime).toBe(ctimeOf());
    } finally {
      stopDaemon(home);
    }
  });
});

describe('the scrub', () => {
  it('finds a flipped byte by itself, quarantines it, logs it and counts it in status', async () => {
    const { home, victim } = ingested();
    flipByte(blobPath(home, victim), 3);
    startDaemon(home, { VRIFT_SCRUB_BYTES_PER_SEC: '100M' });
    try {
      await waitFor('the scrub to quarantine the flipped blob', () => quarantined(home, victim), 20_000);
      const status = vriftJson(['status'], { home });
      expect(status.scrub.bad).toBe(1);
      expect(status.scrub.checked).toBeGreaterThanOrEqual(1);
      expect(status.scrub.bytesPerSec).toBe(100 << 20);
      expect(readFileSync(join(home, 'run', 'vriftd.log'), 'utf8')).toContain(`scrub: blob ${victim} is corrupt on disk`);
    } finally {
      stopDaemon(home);
    }
  });
});

describe('the scrub of many small blobs', () => {
  it('counts each small blob as 256 KiB of its rate: an idle node does not re-hash hundreds of blobs a second', async () => {
    const home = tempDir();
    const src = tempDir();
    for (let i = 0; i < 400; i++) writeFileSync(join(src, `f${i}`), `small blob ${i}\n`);
    vriftJson(['save', 'ci/small', src], { home });
    // 1 MiB/s: at most 4 small blobs a second (by their bytes alone, all 400 in well under a second)
    startDaemon(home, { VRIFT_SCRUB_BYTES_PER_SEC: '1M' });
    try {
      const t0 = Date.now();
      await waitFor('the scrub to begin', () => (vriftJson(['status'], { home }).scrub.checked as number) >= 1, 20_000);
      await new Promise((r) => setTimeout(r, 1500));
      const checked = vriftJson(['status'], { home }).scrub.checked as number;
      const seconds = (Date.now() - t0) / 1000;
      expect(checked).toBeLessThanOrEqual(Math.ceil(seconds * 4) + 2);
    } finally {
      stopDaemon(home);
    }
  });
});

describe('local bit rot with a shared tier', () => {
  let s3: S3Server;
  let env: Record<string, string>;
  beforeAll(async () => {
    s3 = await startS3(['vrift-rot']);
    env = tierEnv({ s3, bucket: 'vrift-rot' });
  });
  afterAll(async () => {
    await s3?.stop();
  });

  it('restore fetches a blob damaged in place (size and mtime kept) from S3 again', () => {
    const home = tempDir();
    const src = tempDir();
    writeSampleTree(src);
    const { tree } = vriftJson(['save', 'ci/rot', src], { home, env });
    const victim = digestOf(home, tree, 'src/main.c');
    flipByte(blobPath(home, victim));
    const out = join(tempDir(), 'out');
    const r = vrift(['restore', 'ci/rot', out, '--json'], { home, env });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(victim);
    expect(same(out)).toEqual(same(src));
    expect(hashBuffer(readFileSync(blobPath(home, victim)))).toBe(victim);
    expect(quarantined(home, victim)).toBe(true);
  });

  it('a truncated blob is never served under `vrift run --mount`: the shim sees the size, the daemon fetches it again', () => {
    const home = tempDir();
    const src = tempDir();
    writeSampleTree(src);
    const { tree } = vriftJson(['save', 'ci/rot-mount', src], { home, env });
    const victim = digestOf(home, tree, 'src/main.c');
    const whole = readFileSync(join(src, 'src', 'main.c'));
    const p = blobPath(home, victim);
    const st = statSync(p);
    truncateSync(p, Math.floor(whole.length / 2));
    utimesSync(p, st.atime, st.mtime);
    const noScrub = { ...env, VRIFT_SCRUB_BYTES_PER_SEC: '0' }; // the shim's check, not the scrub, must find it
    startDaemon(home, noScrub);
    try {
      const mnt = join(tempDir(), 'mnt');
      mkdirSync(mnt);
      const r = vrift(['run', '--mount', `${mnt}=ci/rot-mount`, '--', 'cat', `${mnt}/src/main.c`], { home, env: noScrub });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe(whole.toString());
      expect(quarantined(home, victim)).toBe(true);
      expect(readFileSync(join(home, 'run', 'vriftd.log'), 'utf8')).toContain(`fetch: blob ${victim} changed on disk`);
    } finally {
      stopDaemon(home);
    }
  });

  it('a byte flipped (size and mtime kept) while a mount serves the blob is never served: the shim compares the ctime, the daemon fetches it again', () => {
    const home = tempDir();
    const src = tempDir();
    writeSampleTree(src);
    const { tree } = vriftJson(['save', 'ci/rot-live', src], { home, env });
    const victim = digestOf(home, tree, 'src/main.c');
    const whole = readFileSync(join(src, 'src', 'main.c'), 'utf8');
    const noScrub = { ...env, VRIFT_SCRUB_BYTES_PER_SEC: '0' }; // the shim's check, not the scrub, must find it
    startDaemon(home, noScrub);
    try {
      const mnt = join(tempDir(), 'mnt');
      mkdirSync(mnt);
      const file = `${mnt}/src/main.c`;
      const first = vrift(['run', '--mount', `${mnt}=ci/rot-live`, '--', 'cat', file], { home, env: noScrub });
      expect(first.stdout, first.stderr).toBe(whole);
      flipByteTouch(blobPath(home, victim));
      // The mount outlives the command: the next programs open the same VDir entry.
      const cat = vrift(['run', '--mount', `${mnt}=ci/rot-live`, '--', 'cat', file], { home, env: noScrub });
      expect(cat.code, cat.stderr).toBe(0);
      expect(cat.stdout).toBe(whole);
      expect(quarantined(home, victim)).toBe(true);
      expect(readFileSync(join(home, 'run', 'vriftd.log'), 'utf8')).toContain(`fetch: blob ${victim} changed on disk`);
      flipByteTouch(blobPath(home, victim)); // the fetched copy, damaged again
      const py = vrift(['run', '--mount', `${mnt}=ci/rot-live`, '--', 'python3', '-c', `import sys; sys.stdout.write(open(${JSON.stringify(file)}).read())`], { home, env: noScrub });
      expect(py.code, py.stderr).toBe(0);
      expect(py.stdout).toBe(whole);
      expect(hashBuffer(readFileSync(blobPath(home, victim)))).toBe(victim);
    } finally {
      stopDaemon(home);
    }
  });

  it('restore after an append through a materialized link gets the right bytes', () => {
    const home = tempDir();
    const src = tempDir();
    writeSampleTree(src);
    vriftJson(['save', 'ci/rot2', src], { home, env });
    const first = join(tempDir(), 'first');
    expect(vrift(['restore', 'ci/rot2', first], { home, env }).code).toBe(0);
    writeFileSync(join(first, 'src', 'main.c'), 'oops\n', { flag: 'a' });
    const second = join(tempDir(), 'second');
    const r = vrift(['restore', 'ci/rot2', second], { home, env });
    expect(r.code).toBe(0);
    expect(same(second)).toEqual(same(src));
  });
});
