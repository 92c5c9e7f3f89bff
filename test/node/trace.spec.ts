// The pieces of traces and the bulk switch that need no daemon (docs/lazy.md):
// merging keeps the first-seen order, a trace blob from a tier is refused
// unless it is a trace of the tree, and the switch's two rules.
import { describe, expect, it } from 'vitest';
import { hashBuffer } from '../../src/lib/digest.js';
import { BulkSwitch } from '../../src/node/daemon/bulk-switch.js';
import { decodeTraceBlob, encodeTraceBlob, MAX_TRACE_BLOBS, mergeTraces } from '../../src/node/store/trace.js';

const d = (i: number) => hashBuffer(Buffer.from(`blob ${i}`));
const tree = d(-1);

describe('traces', () => {
  it('merge keeps the first-seen order, appends what is new, and stops at the bound', () => {
    expect(mergeTraces([d(3), d(1)], [d(1), d(2), d(3), d(4)])).toEqual([d(3), d(1), d(2), d(4)]);
    const many = Array.from({ length: MAX_TRACE_BLOBS }, (_, i) => i.toString(16).padStart(64, '0'));
    expect(mergeTraces(many, [d(1)])).toHaveLength(MAX_TRACE_BLOBS);
  });

  it('a trace blob round-trips; only blobs of the tree survive, once each', () => {
    const blob = encodeTraceBlob(tree, [d(1), d(9), d(2), d(1)]);
    expect(decodeTraceBlob(blob, tree, (x) => x !== d(9))).toEqual({ blobs: [d(1), d(2)], ignored: 2 });
  });

  it('refuses what is not a whole trace of this tree', () => {
    const good = encodeTraceBlob(tree, [d(1)]);
    const all = () => true;
    expect(decodeTraceBlob(Buffer.from('VRTRACE2' + 'x'.repeat(40)), tree, all)).toEqual({ problem: 'not a trace (bad header)' });
    expect(decodeTraceBlob(good.subarray(0, 20), tree, all)).toEqual({ problem: 'not a trace (bad header)' });
    expect(decodeTraceBlob(good, d(7), all)).toEqual({ problem: `a trace of another tree (${tree})` });
    expect(decodeTraceBlob(good.subarray(0, good.length - 1), tree, all)).toEqual({ problem: '31 bytes of entries, not whole digests' });
    const huge = Buffer.concat([good.subarray(0, 40), Buffer.alloc((MAX_TRACE_BLOBS + 1) * 32)]);
    expect(decodeTraceBlob(huge, tree, all)).toEqual({ problem: `${MAX_TRACE_BLOBS + 1} entries, more than the ${MAX_TRACE_BLOBS} a trace holds` });
  });
});

describe('bulk switch', () => {
  it('by volume: a share of the blobs or bytes, never under 8 blobs, never when set to 0', () => {
    const s = new BulkSwitch({ blobs: 100, bytes: 1000 }, { bulkAfterPercent: 25, bulkAfterSequential: 0 });
    expect(s.byVolume({ blobs: 24, bytes: 10 })).toBeUndefined();
    expect(s.byVolume({ blobs: 25, bytes: 10 })).toBe('25 of its 100 blobs (25%)');
    expect(s.byVolume({ blobs: 8, bytes: 250 })).toBe('250 of its 1000 bytes (25%)');
    expect(s.byVolume({ blobs: 7, bytes: 900 })).toBeUndefined();
    expect(new BulkSwitch({ blobs: 10, bytes: 10 }, { bulkAfterPercent: 0, bulkAfterSequential: 0 }).byVolume({ blobs: 10, bytes: 10 })).toBeUndefined();
  });

  it('by a scan: opens in tree order (skipping up to 8) run on; a step back starts again', () => {
    const s = new BulkSwitch({ blobs: 1000, bytes: 1000 }, { bulkAfterPercent: 0, bulkAfterSequential: 4 });
    expect([0, 1, 5, 2].map((i) => s.opened(i))).toEqual([undefined, undefined, undefined, undefined]);
    expect([3, 12, 22, 23, 24].map((i) => s.opened(i))).toEqual([undefined, undefined, undefined, undefined, undefined]); // 3 → 12 skips 8; 12 → 22 skips 9: a new run
    expect(s.opened(25)).toBe('programs opened 4 missing blobs in a row in tree order');
    // Blobs that arrived beside others (or were local) are no gap: 30 → 100 passes 69 blobs, all here now.
    const seq = new BulkSwitch({ blobs: 1000, bytes: 1000 }, { bulkAfterPercent: 0, bulkAfterSequential: 3 });
    const missing = new Set([150]);
    const stillMissing = (a: number, b: number) => Array.from({ length: b - a - 1 }, (_, k) => a + 1 + k).filter((i) => missing.has(i)).length;
    expect([30, 100].map((i) => seq.opened(i, stillMissing))).toEqual([undefined, undefined]);
    expect(seq.opened(200, stillMissing)).toBe('programs opened 3 missing blobs in a row in tree order');
    const off = new BulkSwitch({ blobs: 1000, bytes: 1000 }, { bulkAfterPercent: 0, bulkAfterSequential: 0 });
    expect(Array.from({ length: 50 }, (_, i) => off.opened(i)).every((x) => x === undefined)).toBe(true);
  });
});
