// The prefetch scheduler alone (src/node/daemon/prefetcher.ts): how wide it
// runs while programs wait, and where it goes on when a program is ahead of
// it on the trace. Its fetches are held open by the test to see them.
import { describe, expect, it } from 'vitest';
import { Prefetcher, type FetchOutcome, type PrefetchItem, type PrefetchJob } from '../../src/node/daemon/prefetcher.js';

const digest = (i: number) => i.toString(16).padStart(64, '0');

function harness(n: number) {
  const started: number[] = [];
  const release: (() => void)[] = [];
  const items: PrefetchItem[] = Array.from({ length: n }, (_, i) => ({ digest: digest(i), size: 1 }));
  const p = new Prefetcher({
    bytesPerSec: 1e12,
    concurrency: 3,
    fetch: (d) =>
      new Promise<FetchOutcome>((resolve) => {
        started.push(parseInt(d, 16));
        release.push(() => resolve({ from: 's3', joined: false }));
      }),
  });
  let ended: string | undefined;
  const job: PrefetchJob = { name: 'm', tree: digest(999), items, isLocal: () => false, onFetched: () => undefined, onFailed: () => undefined, onEnd: (how) => (ended = how) };
  const settle = () => new Promise((r) => setTimeout(r, 10));
  return { p, job, started, release, settle, ended: () => ended };
}

describe('prefetch while programs wait', () => {
  it('a program waiting for a blob off the trace narrows prefetch to one fetch', async () => {
    const h = harness(10);
    const done = h.p.demandBegins(digest(500)); // not in the trace
    h.p.add(h.job);
    await h.settle();
    expect(h.started).toEqual([0]);
    done();
    await h.settle();
    expect(h.started).toEqual([0, 1, 2]);
    h.p.stop();
  });

  it('a program that opens a blob further on in the trace: prefetch goes on from there, at full width, then comes back for what it passed', async () => {
    const h = harness(10);
    h.p.add(h.job);
    await h.settle();
    expect(h.started).toEqual([0, 1, 2]);
    h.p.demandBegins(digest(6)); // the program is ahead: 3, 4, 5 and 6 are behind it
    h.release.shift()!();
    h.release.shift()!();
    await h.settle();
    expect(h.started).toEqual([0, 1, 2, 7, 8]);
    for (const r of h.release.splice(0)) r();
    await h.settle();
    expect(h.started).toEqual([0, 1, 2, 7, 8, 9, 3, 4]);
    for (const r of h.release.splice(0)) r();
    await h.settle();
    expect(h.started).toEqual([0, 1, 2, 7, 8, 9, 3, 4, 5]);
    for (const r of h.release.splice(0)) r();
    await h.settle();
    expect(h.ended()).toBe('done');
  });
});
