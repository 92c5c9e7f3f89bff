// The daemon keeps the store under store.maxSize (VRIFT_MAX_SIZE): it
// evicts least-recently-used blobs, never what a ref or a mount pins, and
// counts what it evicted (status, /metrics, one log line per round).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { vrift, vriftJson } from '../helpers/cli.js';
import { startDaemon, stopDaemon } from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';

const MB = 1 << 20;
const ENV = { VRIFT_MAX_SIZE: '4M', VRIFT_METRICS_LISTEN: '127.0.0.1:0' };

function dirWith(name: string, fill: number): string {
  const d = join(tempDir(), 'src');
  mkdirSync(d);
  writeFileSync(join(d, name), Buffer.alloc(MB, fill));
  return d;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, fn: () => T | undefined, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

function materializes(home: string, tree: string): boolean {
  return vrift(['materialize', tree, join(tempDir(), 'out')], { home }).code === 0;
}

let home: string | undefined;
afterEach(() => {
  if (home) stopDaemon(home);
  home = undefined;
});

describe('the daemon keeps the store under maxSize', () => {
  it('evicts least recently used unpinned trees first, never a ref’s or a mount’s', async () => {
    home = tempDir();
    const h = home;
    // 2 MiB pinned: one tree by a ref, one by a mount.
    const kept = vriftJson(['ingest', dirWith('kept.bin', 1), '--ref', 'keep'], { home: h }).tree;
    const mounted = vriftJson(['ingest', dirWith('mounted.bin', 2)], { home: h }).tree;
    startDaemon(h, ENV);
    const mnt = join(tempDir(), 'mnt');
    mkdirSync(mnt);
    vriftJson(['mount', mounted, mnt], { home: h });
    const st0 = vriftJson(['status'], { home: h }).store;
    expect(st0).toMatchObject({ maxSize: 4 * MB, evictToPercent: 90, evicted: { blobs: 0, bytes: 0 } });

    // Four unpinned 1 MiB trees, oldest first: 6 MiB in all, over the 4 MiB cap.
    const unpinned: string[] = [];
    for (let i = 0; i < 4; i++) {
      unpinned.push(vriftJson(['ingest', dirWith(`u${i}.bin`, 10 + i)], { home: h }).tree);
      await sleep(50); // distinct last-use times
    }

    // Under the cap (down to 90% of it: the pinned 2 MiB plus one unpinned tree at most).
    const st = await until('an eviction round to get the store under the cap', () => {
      const s = vriftJson(['status'], { home: h, env: ENV }).store;
      return s.evicted.bytes >= 3 * MB && s.bytes <= 3.6 * MB ? s : undefined;
    });
    expect(st.evicted.blobs).toBeGreaterThanOrEqual(3); // three file blobs (and tree blobs of theirs, in LRU order)
    expect(st.evicted.bytes).toBeGreaterThanOrEqual(3 * MB);

    // Least recently used first: the three older unpinned trees went, the newest stayed.
    for (const t of unpinned.slice(0, 3)) expect(materializes(h, t)).toBe(false);
    expect(materializes(h, unpinned[3]!)).toBe(true);
    // Pinned by a ref, pinned by a mount: intact.
    expect(materializes(h, 'keep')).toBe(true);
    expect(materializes(h, kept)).toBe(true);
    expect(materializes(h, mounted)).toBe(true);
    expect(vriftJson(['verify'], { home: h }).corrupt).toEqual([]);

    // Counted: status, the metrics endpoint, one log line per round.
    const status = vriftJson(['status'], { home: h, env: ENV });
    expect(status.metrics['vrift_store_evicted_blobs_total']).toBe(st.evicted.blobs);
    expect(status.metrics['vrift_store_evicted_bytes_total']).toBe(st.evicted.bytes);
    const scrape = await (await fetch(status.metricsUrl)).text();
    expect(scrape).toMatch(new RegExp(`^vrift_store_evicted_blobs_total ${st.evicted.blobs}$`, 'm'));
    expect(scrape).toMatch(/^vrift_store_evicted_bytes_total \d+$/m);
    expect(scrape).toMatch(new RegExp(`^vrift_store_max_bytes ${4 * MB}$`, 'm'));
    const log = readFileSync(join(h, 'run', 'vriftd.log'), 'utf8');
    const rounds = log.split('\n').filter((l) => /evict: store at .* over maxSize 4\.0 ?Mi?B: evicted \d+ blobs/.test(l));
    expect(rounds.length).toBe(st.evicted.rounds);
    expect(rounds.length).toBeGreaterThan(0);
  }, 120_000);

  it('has no cap by default: nothing is evicted', async () => {
    home = tempDir();
    const h = home;
    startDaemon(h, { VRIFT_METRICS_LISTEN: 'off' });
    const trees = [0, 1, 2].map((i) => vriftJson(['ingest', dirWith(`f${i}.bin`, 20 + i)], { home: h }).tree);
    await sleep(2500);
    const st = vriftJson(['status'], { home: h }).store;
    expect(st).toMatchObject({ maxSize: null, evicted: { blobs: 0, bytes: 0, rounds: 0 } });
    expect(st.bytes).toBeGreaterThanOrEqual(3 * MB);
    for (const t of trees) expect(materializes(h, t)).toBe(true);
  }, 60_000);
});
