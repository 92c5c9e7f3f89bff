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

  it('grows the descriptor table over its own numbers at start, so a threaded program never grows it later', () => {
    // The shim keeps its descriptors from 1000 up. Growing the table of a
    // process whose threads share it waits for an RCU grace period (8-20 ms
    // each here): node has threads before it first touches a mount, and paid
    // that twice on every run. FDSize (/proc/<pid>/status) is the table's size.
    const fdSize = `Number(/FDSize:\\s+(\\d+)/.exec(require('fs').readFileSync('/proc/self/status', 'utf8'))[1])`;
    const script = `const before = ${fdSize}; require('fs').readFileSync(process.argv[1]); console.log(before, ${fdSize})`;
    const r = w.run(`'${process.execPath}' -e "${script}" '${w.mnt}/data/f3.txt'`);
    expect(r.stderr).toBe('');
    const [before, after] = r.stdout.trim().split(' ').map(Number);
    expect(before).toBeGreaterThanOrEqual(1024 + 128);
    expect(after).toBe(before);
    // Without the shim node's own table stays far below: it is the shim that grew it.
    expect(Number(w.plain(`'${process.execPath}' -e "console.log(${fdSize})"`).stdout)).toBeLessThan(1024);
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
