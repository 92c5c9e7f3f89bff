// The shim opens CAS blobs relative to a descriptor of the CAS directory it
// keeps open (shim/open.c): reads must survive everything a program can do
// to that descriptor, and a store whose path has unusual characters.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/tmp.js';
import { buildC, shimWorld, writeSmallSource } from './harness.js';

// spaces, quotes, a shell metacharacter, non-ASCII: the CAS path is <home>/cas
const w = shimWorld({ source: writeSmallSource, homeName: `st ore 'q' $x ü` });
const bin = tempDir('vrift-shim-bin-');

describe('the CAS descriptor', () => {
  const probe = buildC('shim-probe', bin);

  it('reads right from a store whose path has spaces, quotes and non-ASCII', () => {
    const r = w.run(`'${probe}' read '${w.mnt}' && cat '${w.mnt}/data/f3.txt'`);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(`ok\n${'file 3\n'.repeat(4)}`);
  });

  it('survives close loops, close_range, a raw close with another directory on its number, fork and exec', () => {
    const r = w.run(`'${probe}' casfd '${w.mnt}'`);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('ok\n');
  });

  it('serves a second mount of the same tree (a copy of the image the daemon cached) the same way', () => {
    const again = join(tempDir('vrift-shim-again-'), 'mnt');
    const r = w.vrift(['run', '--mount', `${again}=${w.tree}`, '--', probe, 'casfd', again]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('ok\n');
    const ls = (dir: string) => w.vrift(['run', '--mount', `${dir}=${w.tree}`, '--', 'ls', '-lAR', '--time-style=+', dir]).stdout.replaceAll(dir, '@');
    expect(ls(again)).toBe(ls(w.mnt));
    expect(w.vrift(['unmount', again]).code).toBe(0);
  });
});
