// The one golden test of shim/vrift_layout.h: TypeScript (src/gen/layout.ts,
// Cas, the tree encoder), C++ (the addon's `layout`, its tree reader and
// link farm) and C (a probe compiled against the header, making paths as
// the shim does) name the same CAS files and read trees with the same
// constants, and all of them equal the literal values below. A change to
// the layout is a change to this file.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { LAYOUT } from '../../src/gen/layout.js';
import { loadNative } from '../../src/lib/native.js';
import { Cas } from '../../src/node/store/cas.js';
import { homeLayout } from '../../src/node/store/home.js';
import { Store } from '../../src/node/store/store.js';
import { encodeTree, treeId, type TreeEntry } from '../../src/node/store/tree.js';
import { ROOT } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

const GOLDEN_LAYOUT = {
  home: {
    cas: 'cas',
    tmp: 'tmp',
    upper: 'upper',
    upperIssued: '.issued',
    upperJournal: '.journal',
    farm: 'farm',
    quarantine: 'quarantine',
    meta: 'meta',
    run: 'run',
    socket: 'vriftd.sock',
    shimWarnedPrefix: 'shim-warned.',
  },
  blob: { digestHex: 64, shardHex: 2, execSuffix: '.x', mode: 0o444, execMode: 0o555, mtimeSec: 1 },
  tree: {
    header: 'vrift-tree 1\n',
    namesHeader: 'vrift-names 1\n',
    kindFile: 'f',
    kindDir: 'd',
    kindSymlink: 'l',
    modeFile: 0o644,
    modeExec: 0o755,
    modeDir: 0o755,
    modeSymlink: 0o777,
    noRef: '-',
    pathMax: 4095,
    nameMax: 255,
  },
};

const ABC = '6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85'; // BLAKE3("abc")
const HELLO = 'ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f'; // BLAKE3("hello")
const HOME = '/srv/vrift-home';
const GOLDEN_PLAIN = '/srv/vrift-home/cas/64/6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85';
const GOLDEN_EXEC = '/srv/vrift-home/cas/64/6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85.x';

// A fixed small tree: a directory, an executable, a plain file and a symlink.
const TREE: TreeEntry[] = [
  { path: 'readme', kind: 'file', mode: 0o644, size: 3, digest: ABC },
  { path: 'bin', kind: 'dir', mode: 0o755, size: 0 },
  { path: 'bin/tool', kind: 'file', mode: 0o755, size: 5, digest: HELLO },
  { path: 'link', kind: 'symlink', mode: 0o777, size: 6, target: 'readme' },
];
const GOLDEN_TREE =
  'vrift-tree 1\n' +
  'd 755 0 - bin\0' +
  `f 755 5 ${HELLO} bin/tool\0` +
  'l 777 6 - link\0readme\0' +
  `f 644 3 ${ABC} readme\0`;
const GOLDEN_TREE_ID = 'e69785a1a12900e1d68310dcb1db15062b6dbb3c8a057176dd97e039c3b37cdf';

interface ProbeOutput {
  home: object;
  blob: object;
  tree: object;
  paths: { plain: string; exec: string };
}

/** The C side: a probe built against shim/vrift_layout.h alone (-Werror, as the shim is warning-free). */
function cProbe(casRoot: string, digest: string): ProbeOutput {
  const bin = join(tempDir(), 'layout-probe');
  execFileSync('gcc', ['-std=c11', '-Wall', '-Wextra', '-Werror', '-I', join(ROOT, 'shim'), '-o', bin, join(ROOT, 'test', 'c', 'layout-probe.c')]);
  return JSON.parse(execFileSync(bin, [casRoot, digest], { encoding: 'utf8' })) as ProbeOutput;
}

describe('shim/vrift_layout.h: one layout for TypeScript, C++ and C', () => {
  let c: ProbeOutput;
  beforeAll(() => {
    c = cProbe(join(HOME, 'cas'), ABC);
  });

  it('every constant is the golden one in all three (src/gen/layout.ts is up to date: else `npm run build`)', () => {
    const { blobPath, ...native } = loadNative().layout;
    expect(typeof blobPath).toBe('function');
    expect(LAYOUT).toEqual(GOLDEN_LAYOUT);
    expect(native).toEqual(GOLDEN_LAYOUT);
    expect({ home: c.home, blob: c.blob, tree: c.tree }).toEqual(GOLDEN_LAYOUT);
  });

  it('a blob and its executable twin have the golden paths in all three', () => {
    const cas = new Cas(homeLayout(HOME));
    expect([cas.pathOf(ABC), cas.pathOf(ABC, true)]).toEqual([GOLDEN_PLAIN, GOLDEN_EXEC]);
    const { blobPath } = loadNative().layout;
    expect([blobPath(join(HOME, 'cas'), ABC, false), blobPath(join(HOME, 'cas'), ABC, true)]).toEqual([GOLDEN_PLAIN, GOLDEN_EXEC]);
    expect([c.paths.plain, c.paths.exec]).toEqual([GOLDEN_PLAIN, GOLDEN_EXEC]);
  });

  it('the fixed tree: TypeScript encodes the golden bytes, and the addon reads them onto the golden blob files', async () => {
    const encoded = encodeTree(TREE);
    expect(encoded.toString('utf8')).toBe(GOLDEN_TREE);
    expect(treeId(encoded)).toBe(GOLDEN_TREE_ID);

    // TypeScript stores the blobs: at the golden paths, with the golden mode and mtime.
    const home = join(tempDir(), 'home');
    const store = Store.open(home);
    store.cas.putBuffer(Buffer.from('abc'));
    store.cas.putBuffer(Buffer.from('hello'));
    store.cas.ensureExecTwin(HELLO);
    const rebase = (p: string) => p.replace(HOME, home);
    const readme = rebase(GOLDEN_PLAIN);
    const tool = join(home, 'cas', 'ea', `${HELLO}.x`);
    expect(statSync(readme).mode & 0o777).toBe(0o444);
    expect(statSync(tool).mode & 0o777).toBe(0o555);
    expect([statSync(readme).mtimeMs, statSync(tool).mtimeMs]).toEqual([1000, 1000]);

    // C++ parses the same bytes (header, letters, modes) and links each file from the same path.
    const { fastFs } = loadNative();
    const casDir = join(home, 'cas');
    expect(Array.from(await fastFs.checkTree(encoded, casDir, 1))).toEqual([]); // every blob present and untouched
    const dest = join(tempDir(), 'out');
    mkdirSync(dest);
    expect(await fastFs.linkTree(encoded, dest, casDir, 1)).toEqual({ dirs: 1, files: 2, symlinks: 1, failures: [] });
    expect(statSync(join(dest, 'readme')).ino).toBe(statSync(readme).ino);
    expect(statSync(join(dest, 'bin', 'tool')).ino).toBe(statSync(tool).ino);
    expect(readlinkSync(join(dest, 'link'))).toBe('readme');

    // The executable entry is the twin (".x"), not the plain blob: without it, C++ reports
    // entry 1 (bin/tool, in encoded order) missing (problem 1).
    rmSync(tool);
    expect(existsSync(join(home, 'cas', 'ea', HELLO))).toBe(true);
    expect(Array.from(await fastFs.checkTree(encoded, casDir, 1))).toEqual([1, 1]);
    // And another header is not a tree to it.
    await expect(fastFs.checkTree(Buffer.from(GOLDEN_TREE.replace('vrift-tree 1', 'vrift-tree 2')), casDir, 1)).rejects.toThrow(/bad header/);
    return store.close();
  });
});
