// The parts that keep a failing tier from hurting: breaker, retries, queue, metrics.
import { describe, expect, it } from 'vitest';
import { CircuitBreaker, withRetry } from '../../src/tiers/breaker.js';
import { Metrics } from '../../src/lib/metrics.js';
import { BoundedQueue, mapLimit } from '../../src/lib/queue.js';
import { TierError } from '../../src/tiers/tier.js';

const down = () => new TierError('redis', 'unavailable', 'down');

describe('circuit breaker', () => {
  it('opens after consecutive transient failures, probes once after the cooldown, closes on success', () => {
    let now = 0;
    const b = new CircuitBreaker({ failures: 3, cooldownMs: 1000, now: () => now });
    expect([b.fail(down()), b.fail(down())]).toEqual([false, false]);
    expect(b.allow()).toBe(true);
    expect(b.fail(down())).toBe(true);
    expect([b.state, b.allow()]).toEqual(['open', false]);
    now = 1000;
    expect(b.state).toBe('half-open');
    expect([b.allow(), b.allow()]).toEqual([true, false]); // one probe at a time
    b.succeed();
    expect([b.state, b.allow()]).toEqual(['closed', true]);
  });

  it('opens at once on a failure retrying cannot fix, and a success resets the count', () => {
    const b = new CircuitBreaker({ failures: 3, cooldownMs: 1000 });
    b.fail(down());
    b.fail(down());
    b.succeed();
    b.fail(down());
    expect(b.state).toBe('closed');
    expect(b.fail(new TierError('s3', 'auth', 'bad key'))).toBe(true);
    expect(b.state).toBe('open');
  });
});

describe('retries', () => {
  it('retries transient failures a bounded number of times, others not at all', async () => {
    let calls = 0;
    await expect(withRetry(async () => (++calls, Promise.reject(down())), { retries: 2, baseDelayMs: 1 })).rejects.toThrow('down');
    expect(calls).toBe(3);
    calls = 0;
    await expect(withRetry(async () => (++calls, Promise.reject(new TierError('s3', 'auth', 'no'))), { retries: 2, baseDelayMs: 1 })).rejects.toThrow('no');
    expect(calls).toBe(1);
    calls = 0;
    expect(await withRetry(async () => (++calls < 2 ? Promise.reject(down()) : 'ok'), { retries: 2, baseDelayMs: 1 })).toBe('ok');
    calls = 0;
    await expect(withRetry(async () => (++calls, Promise.reject(down())), { retries: 5, baseDelayMs: 1, canRetry: () => false })).rejects.toThrow();
    expect(calls).toBe(1);
  });
});

describe('bounded queue', () => {
  it('runs at most `concurrency` tasks, makes push wait when full, and drains', async () => {
    const q = new BoundedQueue({ concurrency: 2, capacity: 3 });
    let running = 0;
    let peak = 0;
    const release: (() => void)[] = [];
    const task = () =>
      new Promise<void>((r) => {
        running++;
        peak = Math.max(peak, running);
        release.push(() => {
          running--;
          r();
        });
      });
    for (let i = 0; i < 5; i++) await q.push(task); // 2 running + 3 waiting
    let sixthIn = false;
    const sixth = q.push(task).then(() => (sixthIn = true));
    await new Promise((r) => setTimeout(r, 10));
    expect([peak, q.size, sixthIn]).toEqual([2, 5, false]); // backpressure
    release.shift()!();
    await sixth;
    expect(sixthIn).toBe(true);
    const drained = q.drain();
    while (q.size > 0) {
      release.shift()?.();
      await new Promise((r) => setTimeout(r, 1));
    }
    await drained;
    expect(peak).toBe(2);
  });

  it('drops and counts an offer when full; records task errors', async () => {
    let dropped = 0;
    const q = new BoundedQueue({ concurrency: 1, capacity: 1, onDrop: () => dropped++ });
    let unblock!: () => void;
    expect(q.offer(() => new Promise<void>((r) => (unblock = r)))).toBe(true);
    expect(q.offer(() => Promise.reject(new Error('boom')))).toBe(true);
    expect(q.offer(async () => undefined)).toBe(false);
    expect([q.dropped, dropped]).toEqual([1, 1]);
    unblock();
    await q.drain();
    expect((q.errors[0] as Error).message).toBe('boom');
  });

  it('mapLimit keeps order and the limit', async () => {
    let inFlight = 0;
    let peak = 0;
    const out = await mapLimit([1, 2, 3, 4, 5], 2, async (n) => {
      peak = Math.max(peak, ++inFlight);
      await new Promise((r) => setTimeout(r, 5 - n));
      inFlight--;
      return n * 10;
    });
    expect(out).toEqual([10, 20, 30, 40, 50]);
    expect(peak).toBe(2);
  });
});

describe('metrics', () => {
  it('renders Prometheus counters with labels', () => {
    const m = new Metrics();
    m.inc('vrift_tier_hits_total', { tier: 'redis' });
    m.inc('vrift_tier_hits_total', { tier: 'redis' }, 2);
    m.inc('vrift_tier_hits_total', { tier: 's3' });
    expect(m.get('vrift_tier_hits_total', { tier: 'redis' })).toBe(3);
    expect(m.render()).toBe('# TYPE vrift_tier_hits_total counter\nvrift_tier_hits_total{tier="redis"} 3\nvrift_tier_hits_total{tier="s3"} 1\n');
  });
});
