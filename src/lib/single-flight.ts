// One piece of work per key at a time: a second caller asking for a key
// that is in flight waits for the first caller's result instead of doing
// the work again (Go's x/sync/singleflight). The key is forgotten once
// the work settles, so a later call does it afresh.

export class SingleFlight<K, V> {
  private readonly inflight = new Map<K, Promise<V>>();

  /** The result of `work` for `key`: started now, or the one already running. `joined` says which. */
  run(key: K, work: () => Promise<V>): { result: Promise<V>; joined: boolean } {
    const running = this.inflight.get(key);
    if (running) return { result: running, joined: true };
    const result = work().finally(() => this.inflight.delete(key));
    this.inflight.set(key, result);
    return { result, joined: false };
  }

  /** The work running for `key`, if any (to wait for it without starting it). */
  peek(key: K): Promise<V> | undefined {
    return this.inflight.get(key);
  }

  has(key: K): boolean {
    return this.inflight.has(key);
  }

  get size(): number {
    return this.inflight.size;
  }
}
