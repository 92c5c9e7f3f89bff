// ingest → materialize reproduces a tree exactly; re-ingest is incremental;
// ls, cat, ref and --json behave as documented.
import { execFileSync, spawnSync } from 'node:child_process';
import { lstatSync, readdirSync, realpathSync, rmSync, statSync, utimesSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, vrift, vriftJson } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { snapshotTree, treeMode, writeSampleTree } from '../helpers/trees.js';

/** Sets a tree's files' mtimes back so they are not "racily clean" (changed within the last second). */
function ageTree(root: string): void {
  const old = new Date(Date.now() - 10_000);
  const walk = (d: string): void => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      const st = lstatSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) utimesSync(p, old, old);
    }
  };
  walk(root);
}

describe('ingest and materialize', () => {
  it('reproduces the sample tree exactly: contents, exec bits, symlinks (links are read-only)', () => {
    const home = tempDir();
    const src = join(tempDir(), 'src');
    mkdirSync(src);
    writeSampleTree(src);
    const r = vriftJson(['ingest', src], { home });
    expect(r.tree).toMatch(/^[0-9a-f]{64}$/);
    expect(r.summary.files).toBe(10);
    expect(r.summary.symlinks).toBe(3);

    const out = join(tempDir(), 'out');
    const m = vriftJson(['materialize', r.tree, out], { home });
    expect(m.linked).toBe(10);
    expect(snapshotTree(out, { mode: treeMode })).toEqual(snapshotTree(src, { mode: treeMode }));
    // Hard links into the store are read-only, with the exec bit where the tree says so.
    expect(statSync(join(out, 'run.sh')).mode & 0o777).toBe(0o555);
    expect(statSync(join(out, 'README.md')).mode & 0o777).toBe(0o444);
    expect(statSync(join(out, 'README.md')).nlink).toBeGreaterThan(1);
  });

  it('--copy gives writable files with the tree modes exactly', () => {
    const home = tempDir();
    const src = join(tempDir(), 'src');
    mkdirSync(src);
    writeSampleTree(src);
    const { tree } = vriftJson(['ingest', src], { home });
    const out = join(tempDir(), 'out');
    const m = vriftJson(['materialize', tree, out, '--copy'], { home });
    expect(m.copied).toBe(10);
    const snap = snapshotTree(out);
    expect(snap).toEqual(snapshotTree(src, { mode: treeMode }));
    expect(statSync(join(out, 'README.md')).nlink).toBe(1);
  });

  it('copies, with one notice, onto another filesystem than the store', () => {
    const home = tempDir();
    const src = join(tempDir(), 'src');
    mkdirSync(src);
    writeSampleTree(src);
    const { tree } = vriftJson(['ingest', src], { home });
    const mnt = tempDir('vrift-other-fs-');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', mnt]);
    try {
      const r = vrift(['materialize', tree, join(mnt, 'out'), '--json'], { home });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr.match(/on another filesystem than the store/g)).toHaveLength(1);
      expect(JSON.parse(r.stdout)).toMatchObject({ copied: 10, linked: 0 });
      expect(snapshotTree(join(mnt, 'out'))).toEqual(snapshotTree(src, { mode: treeMode }));
    } finally {
      execFileSync('umount', ['-l', mnt]);
    }
  });

  it('reproduces a real tree (the project node_modules) exactly', () => {
    const home = tempDir();
    const nm = realpathSync(join(ROOT, 'node_modules'));
    const { tree, summary } = vriftJson(['ingest', nm], { home });
    expect(summary.files).toBeGreaterThan(5000);
    const out = join(tempDir(), 'nm');
    vriftJson(['materialize', tree, out], { home });
    const want = snapshotTree(nm, { mode: treeMode });
    const got = snapshotTree(out, { mode: treeMode });
    expect(Object.keys(got).length).toBe(Object.keys(want).length);
    expect(got).toEqual(want);
  }, 240_000);

  it('gives the same tree id for the same directory in another store', () => {
    const src = join(tempDir(), 'src');
    mkdirSync(src);
    writeSampleTree(src);
    const a = vriftJson(['ingest', src], { home: tempDir() }).tree;
    const b = vriftJson(['ingest', src], { home: tempDir() }).tree;
    expect(a).toBe(b);
  });

  it('re-ingests incrementally: unchanged files are not read again', () => {
    const home = tempDir();
    const src = join(tempDir(), 'src');
    mkdirSync(src);
    writeSampleTree(src);
    ageTree(src);
    // ctime cannot be set back: wait out the racy window once.
    const until = Date.now() + 1100;
    while (Date.now() < until) {
      /* spin: keep the test synchronous */
    }
    const first = vriftJson(['ingest', src], { home });
    expect(first.hashed).toBe(10);
    const second = vriftJson(['ingest', src], { home });
    expect(second.tree).toBe(first.tree);
    expect(second.cached).toBe(10);
    expect(second.hashed).toBe(0);

    // Same size, different content: noticed through mtime/ctime.
    writeFileSync(join(src, 'README.md'), '# SAMPLE\n');
    const third = vriftJson(['ingest', src], { home });
    expect(third.hashed).toBe(1);
    expect(third.tree).not.toBe(first.tree);
  });

  it('ingests a directory materialize wrote without reading the files that are still links into the store', () => {
    const home = tempDir();
    const src = join(tempDir(), 'src');
    mkdirSync(src);
    writeSampleTree(src);
    const first = vriftJson(['ingest', src], { home });
    const out = join(tempDir(), 'out');
    vriftJson(['materialize', first.tree, out], { home });
    // A build replaces one file (a new inode) and adds another; the rest stay links.
    rmSync(join(out, 'README.md'));
    writeFileSync(join(out, 'README.md'), '# rebuilt\n');
    writeFileSync(join(out, 'new.txt'), 'new\n');
    const again = vriftJson(['ingest', out], { home });
    expect([again.hashed, again.cached]).toEqual([2, 9]); // 11 files: the 9 still linked are known
    // The same tree as ingesting that content from scratch, in another store.
    expect(again.tree).toBe(vriftJson(['ingest', out], { home: tempDir() }).tree);
    expect(again.tree).not.toBe(first.tree);
  });

  it('ls, cat and ref work on ids and refs', () => {
    const home = tempDir();
    const src = join(tempDir(), 'src');
    mkdirSync(src);
    writeSampleTree(src);
    const { tree } = vriftJson(['ingest', src, '--ref', 'ci/sample'], { home });

    expect(vrift(['ref', 'get', 'ci/sample'], { home }).stdout.trim()).toBe(tree);
    expect(vriftJson(['ref', 'list'], { home }).refs).toEqual([expect.objectContaining({ name: 'ci/sample', tree })]);

    const ls = vriftJson(['ls', 'ci/sample'], { home });
    expect(ls.entries.map((e: { path: string }) => e.path)).toContain('src/lib/deep/er/x.txt');
    expect(vrift(['ls', 'ci/sample', 'src/lib'], { home }).stdout).toMatch(/src\/lib\/util\.js/);

    expect(vrift(['cat', 'ci/sample:src/lib/util.js'], { home }).stdout).toBe('module.exports = 42;\n');
    expect(vrift(['cat', `${tree}:link-to-main`], { home }).stdout).toBe('src/main.c\n');
    const digest = ls.entries.find((e: { path: string }) => e.path === 'README.md').digest;
    expect(vrift(['cat', digest], { home }).stdout).toBe('# sample\n');

    vrift(['ref', 'set', 'other', 'ci/sample'], { home });
    expect(vrift(['ref', 'get', 'other'], { home }).stdout.trim()).toBe(tree);
    expect(vrift(['ref', 'rm', 'other'], { home }).code).toBe(0);
    const gone = vrift(['ref', 'get', 'other'], { home });
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/^vrift: no ref named "other"/);
  });

  it('shows a progress bar on a terminal and none in a pipe', () => {
    const home = tempDir();
    const src = join(tempDir(), 'src');
    mkdirSync(src);
    writeSampleTree(src);
    // script(1) gives the command a pseudo-terminal.
    const r = spawnSync('script', ['-qec', `node ${join(ROOT, 'bin', 'vrift.js')} ingest ${src}`, '/dev/null'], {
      env: { ...process.env, VRIFT_HOME: home },
      encoding: 'utf8',
      timeout: 120_000,
      killSignal: 'SIGKILL',
    });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/ingest .*%/);
    const piped = vrift(['ingest', src], { home });
    expect(piped.stderr).toBe('');
    expect(piped.stdout.trim()).toMatch(/^[0-9a-f]{64}$/);
  });
});
