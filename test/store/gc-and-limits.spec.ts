// gc keeps what refs pin and evicts the rest least-recently-used first;
// a 4 GiB file is stored with bounded memory.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT, vrift, vriftJson } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { snapshotTree, treeMode } from '../helpers/trees.js';

function dirWith(files: Record<string, Buffer | string>): string {
  const d = join(tempDir(), 'src');
  mkdirSync(d);
  for (const [name, data] of Object.entries(files)) writeFileSync(join(d, name), data);
  return d;
}

describe('gc', () => {
  it('keeps trees pinned by refs and evicts everything else', () => {
    const home = tempDir();
    const kept = dirWith({ 'a.txt': 'kept\n', 'shared.txt': 'shared\n' });
    const dropped = dirWith({ 'b.txt': 'dropped\n', 'shared.txt': 'shared\n' });
    vriftJson(['ingest', kept, '--ref', 'keep'], { home });
    const gone = vriftJson(['ingest', dropped], { home }).tree;

    const r = vriftJson(['gc'], { home });
    expect(r.evicted).toBe(3); // b.txt's blob, the unpinned tree blob and its times blob
    expect(vrift(['ls', gone], { home }).code).toBe(1);
    const out = join(tempDir(), 'out');
    vriftJson(['materialize', 'keep', out], { home });
    expect(snapshotTree(out, { mode: treeMode })).toEqual(snapshotTree(kept, { mode: treeMode }));
    expect(vriftJson(['verify'], { home }).corrupt).toEqual([]);

    // Dropping the ref makes the tree collectable.
    vrift(['ref', 'rm', 'keep'], { home });
    expect(vriftJson(['gc'], { home }).kept).toBe(0);
  });

  it('--max-size evicts least recently used first and stops when the store fits', async () => {
    const home = tempDir();
    const MB = 1 << 20;
    const older = vriftJson(['ingest', dirWith({ 'old.bin': Buffer.alloc(MB, 1) })], { home }).tree;
    await new Promise((r) => setTimeout(r, 20));
    const newer = vriftJson(['ingest', dirWith({ 'new.bin': Buffer.alloc(MB, 2) })], { home }).tree;
    const r = vriftJson(['gc', '--max-size', '1.5M'], { home });
    expect(r.keptBytes).toBeLessThanOrEqual(1.5 * MB);
    // The newer tree still materializes; the older one lost its (least recently used) blob.
    expect(vrift(['materialize', newer, join(tempDir(), 'n')], { home }).code).toBe(0);
    const old = vrift(['materialize', older, join(tempDir(), 'o')], { home });
    expect(old.code).toBe(1);
    expect(old.stderr).toMatch(/is not in the local store/);
  });

  it('an unchanged directory ingested after gc evicted its blobs is stored again', async () => {
    const home = tempDir();
    const src = dirWith({ 'a.txt': 'a\n', 'b.txt': 'b\n' });
    await new Promise((r) => setTimeout(r, 1100)); // out of the racy window, so the fast path is armed
    const first = vriftJson(['ingest', src], { home });
    expect(vriftJson(['ingest', src], { home })).toMatchObject({ tree: first.tree, hashed: 0 }); // the "nothing changed" path
    expect(vriftJson(['gc'], { home }).evicted).toBeGreaterThan(0);
    const again = vriftJson(['ingest', src], { home });
    expect(again.tree).toBe(first.tree);
    expect(again.newBlobs).toBe(2);
    expect(vrift(['materialize', first.tree, join(tempDir(), 'out')], { home }).code).toBe(0);
  });

  it('leaves alone a temp file a writer is about to rename into the store (blob mtime, fresh ctime)', () => {
    const home = tempDir();
    vriftJson(['ingest', dirWith({ 'a.txt': 'a\n' })], { home });
    // A writer gives its temp file the canonical blob mtime (1970) just before the rename: its ctime is now.
    const writing = join(home, 'tmp', 'live-writer.tmp');
    writeFileSync(writing, 'almost a blob');
    utimesSync(writing, 1, 1);
    expect(vriftJson(['gc'], { home }).tempFilesRemoved).toBe(0);
    expect(existsSync(writing)).toBe(true);
  });

  it('rejects a malformed size', () => {
    const r = vrift(['gc', '--max-size', 'lots'], { home: tempDir() });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^vrift: invalid size "lots"/);
  });
});

describe('large files', () => {
  let mnt: string | undefined;
  afterEach(() => {
    if (mnt) spawnSync('umount', ['-l', mnt]);
    mnt = undefined;
  });

  it('a 4 GiB file is ingested with bounded memory and the right digest', () => {
    // tmpfs: the sparse source costs no memory and the store copy no disk.
    mnt = tempDir('vrift-big-');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=5g', 'tmpfs', mnt]);
    const src = join(mnt, 'src');
    mkdirSync(src);
    const big = join(src, 'four-gib.bin');
    execFileSync('truncate', ['-s', '4G', big]);
    writeFileSync(join(src, 'small.txt'), 'small\n');
    const rssFile = join(mnt, 'rss');
    const r = vrift(['ingest', src, '--json'], {
      home: join(mnt, 'home'),
      env: { NODE_OPTIONS: `--import=${join(ROOT, 'test', 'helpers', 'report-rss.mjs')}`, VRIFT_TEST_RSS_FILE: rssFile },
      timeoutMs: 300_000,
    });
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.summary.bytes).toBe(4 * 1024 ** 3 + 6);
    const ls = vriftJson(['ls', out.tree], { home: join(mnt, 'home') });
    // BLAKE3 of 4 GiB of zeros, computed independently (the Rust blake3 crate, streaming).
    const bigEntry = ls.entries.find((e: { path: string }) => e.path === 'four-gib.bin');
    expect(bigEntry.digest).toBe('7dde7c9fed144013fedbe2b0bbf2d82f004b60b589485851cdec29b27be408d7');
    const peakKiB = Number(readFileSync(rssFile, 'utf8'));
    expect(peakKiB).toBeLessThan(300 * 1024); // far below the file's 4 GiB
  }, 300_000);
});
