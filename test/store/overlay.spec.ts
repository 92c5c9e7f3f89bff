// A mount's overlay (the changes programs made in it) as the daemon
// persists it: one record per burst of changes, replayed in order by the
// next daemon (a new Store here), compacted when records pile up, and
// records of the older one-per-path layout still read and folded in.
import { describe, expect, it } from 'vitest';
import { clearOverlay, flushOverlay, overlayDigests, overlayOf, readOverlay, setOverlay, type OverlayValue } from '../../src/node/mount/overlay.js';
import { Store } from '../../src/node/store/store.js';
import { tempDir } from '../helpers/tmp.js';

const file = (n: number): OverlayValue => ({ kind: 'file', mode: 0o644, size: n, digest: n.toString(16).padStart(64, '0'), mtimeSec: 1000 + n });

async function reopened(home: string, before: Store): Promise<Store> {
  flushOverlay(before);
  await before.meta.flush();
  await before.close();
  return Store.open(home);
}

describe('mount overlay persistence', () => {
  it('replays bursts of changes in order after a restart, the latest change of a path winning', async () => {
    const home = tempDir();
    let store = Store.open(home);
    for (let i = 0; i < 500; i++) setOverlay(store, 'm1', `d/f${i}`, file(i));
    flushOverlay(store);
    setOverlay(store, 'm1', 'd/f7', { deleted: true });
    setOverlay(store, 'm1', 'd/f8', file(9999));
    setOverlay(store, 'm2', 'other', file(1)); // another mount's changes stay its own
    store = await reopened(home, store);
    const o = readOverlay(store, 'm1');
    expect(o.size).toBe(500);
    expect(o.get('d/f7')).toEqual({ deleted: true });
    expect(o.get('d/f8')).toEqual(file(9999));
    expect(o.get('d/f499')).toEqual(file(499));
    expect([...readOverlay(store, 'm2').keys()]).toEqual(['other']);
    expect(overlayDigests(store).has((file(9999) as { digest: string }).digest)).toBe(true);
    await store.close();
  });

  it('compacts a mount whose records piled up into one, with the same content', async () => {
    const home = tempDir();
    let store = Store.open(home);
    for (let i = 0; i < 300; i++) {
      setOverlay(store, 'm', `f${i % 50}`, file(i));
      flushOverlay(store); // one record per change: the worst case
    }
    await store.meta.flush();
    const records = () => [...store.meta.state.getRange({ start: ['ovlb', 'm/'], end: ['ovlb', 'm0'] })].length;
    expect(records()).toBeLessThanOrEqual(257);
    const expected = new Map(overlayOf(store, 'm'));
    store = await reopened(home, store);
    expect(readOverlay(store, 'm')).toEqual(expected);
    expect(expected.get('f49')).toEqual(file(299));
    await store.close();
  });

  it('reads the one-record-per-path layout of earlier versions, folds it into a batch, and clears both', async () => {
    const home = tempDir();
    let store = Store.open(home);
    await store.meta.state.put(['ovl', 'old/a'], file(1));
    await store.meta.state.put(['ovl', 'old/b'], file(2));
    store = await reopened(home, store);
    expect(overlayOf(store, 'old')).toEqual(new Map([['a', file(1)], ['b', file(2)]]));
    setOverlay(store, 'old', 'b', { deleted: true });
    store = await reopened(home, store);
    expect([...store.meta.state.getRange({ start: ['ovl', 'old/'], end: ['ovl', 'old0'] })]).toEqual([]);
    expect(readOverlay(store, 'old')).toEqual(new Map<string, OverlayValue>([['a', file(1)], ['b', { deleted: true }]]));
    clearOverlay(store, 'old');
    store = await reopened(home, store);
    expect(readOverlay(store, 'old').size).toBe(0);
    await store.close();
  });

  it('keeps every kind of entry (upper files, lower files, directories, symlinks, deletions, non-ASCII paths) across a restart', async () => {
    const home = tempDir();
    let store = Store.open(home);
    const values: [string, OverlayValue][] = [
      ['dir', { kind: 'dir', mode: 0o755, size: 0, mtimeSec: 1_700_000_000 }],
      ['dir/upper.txt', { kind: 'file', mode: 0o755, size: 0, upper: 'ab'.repeat(32), mtimeSec: 1_700_000_001 }],
      ['dir/lower', { kind: 'file', mode: 0o644, size: 2 ** 40 + 3, digest: 'c0'.repeat(32), mtimeSec: 1_700_000_002 }],
      ['dir/link', { kind: 'symlink', mode: 0o777, size: 12, target: '../../é/目标', mtimeSec: 1_700_000_003 }],
      ['dir/名前 with space', { kind: 'file', mode: 0o644, size: 0, upper: '0f'.repeat(32), mtimeSec: 0 }],
      ['gone', { deleted: true }],
    ];
    for (const [rel, v] of values) setOverlay(store, 'k', rel, v);
    store = await reopened(home, store);
    const [record] = [...store.meta.state.getRange({ start: ['ovlb', 'k/'], end: ['ovlb', 'k0'] })];
    expect(record!.value).toBeInstanceOf(Uint8Array); // bytes, not a string lmdb-js re-encodes
    expect(readOverlay(store, 'k')).toEqual(new Map(values));
    await store.close();
  });

  it('still reads batches written as JSON text by earlier versions, and skips a damaged record alone', async () => {
    const home = tempDir();
    let store = Store.open(home);
    await store.meta.state.put(['ovlb', 'j/0000000000000001'], JSON.stringify([['a', file(1)], ['b', file(2)]]));
    await store.meta.state.put(['ovlb', 'j/0000000000000002'], Buffer.from('[["c", {"kind": "file"')); // damaged
    setOverlay(store, 'j', 'b', { deleted: true });
    setOverlay(store, 'j', 'd', file(4));
    store = await reopened(home, store);
    expect(readOverlay(store, 'j')).toEqual(new Map<string, OverlayValue>([['a', file(1)], ['b', { deleted: true }], ['d', file(4)]]));
    expect(overlayDigests(store).has((file(1) as { digest: string }).digest)).toBe(true);
    expect(overlayDigests(store).has((file(3) as { digest: string }).digest)).toBe(false);
    await store.close();
  });
});
