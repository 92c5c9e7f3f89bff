// A file made and unlinked again within one batch of a mount's journal is
// no change (src/node/mount/short-lived.ts): the pair is left out, and
// everything else stays, in order. End to end (real journal files and the
// daemon) in test/shim/writes.spec.ts "files made and unlinked again …".
import { describe, expect, it } from 'vitest';
import { Change, type Announcement } from '../../src/node/mount/journal.js';
import { withoutShortLived } from '../../src/node/mount/short-lived.js';

let seq = 0;
const rec = (change: number, rel: string): Announcement => ({ seq: ++seq, change, rel, mode: 0o644 });
const FILE = (rel: string) => rec(Change.FILE, rel);
const GONE = (rel: string) => rec(Change.GONE, rel);
const DIR = (rel: string) => rec(Change.DIR, rel);
/** The records left, as "<change> <path>". */
const left = (list: Announcement[], present: string[] = []): string[] =>
  withoutShortLived(list, (rel) => !present.includes(rel)).map((a) => `${a.change === Change.FILE ? 'FILE' : a.change === Change.GONE ? 'GONE' : 'DIR'} ${a.rel}`);

describe('withoutShortLived', () => {
  it("leaves out sqlite's journal file, made and unlinked by every transaction, and keeps the rest in order", () => {
    const list = [DIR('d'), FILE('db'), FILE('db-journal'), GONE('db-journal'), FILE('d/a'), FILE('db-journal'), GONE('db-journal'), FILE('db-journal')];
    expect(left(list)).toEqual(['DIR d', 'FILE db', 'FILE d/a', 'FILE db-journal']);
  });

  it('returns the same list when nothing pairs', () => {
    const list = [FILE('a'), FILE('b'), GONE('c')];
    expect(withoutShortLived(list, () => true)).toBe(list);
  });

  it('keeps a pair whose path had an entry before the batch (its GONE may remove that entry)', () => {
    expect(left([FILE('x'), GONE('x')], ['x'])).toEqual(['FILE x', 'GONE x']);
  });

  it('keeps a pair after another record of its path that stays', () => {
    // (the GONE before the FILE removes an earlier file: the FILE's path was not as it was before the batch)
    expect(left([GONE('x'), FILE('x'), GONE('x')])).toEqual(['GONE x', 'FILE x', 'GONE x']);
    expect(left([DIR('x'), FILE('x'), GONE('x')])).toEqual(['DIR x', 'FILE x', 'GONE x']);
  });

  it('pairs only a FILE with the next record of its path, and only when that is its GONE', () => {
    expect(left([FILE('x'), DIR('x'), GONE('x')])).toEqual(['FILE x', 'DIR x', 'GONE x']);
    expect(left([FILE('x'), FILE('y'), GONE('y'), GONE('x')])).toEqual([]);
    expect(left([GONE('x')])).toEqual(['GONE x']);
  });
});
