// A map that forgets its least recently used entries once their total
// weight passes a bound (a long-lived daemon decodes trees of every
// restore: without a bound their entries would pile up in memory).

export class LruMap<K, V> {
  private readonly map = new Map<K, { value: V; weight: number }>();
  private total = 0;

  /** @param maxWeight the bound; the newest entry is kept even if it alone is heavier. */
  constructor(
    private readonly maxWeight: number,
    private readonly weigh: (v: V) => number = () => 1,
  ) {}

  get(key: K): V | undefined {
    const e = this.map.get(key);
    if (!e) return undefined;
    // Most recently used last (Map keeps insertion order).
    this.map.delete(key);
    this.map.set(key, e);
    return e.value;
  }

  has(key: K): boolean {
    return this.map.has(key);
  }

  set(key: K, value: V): void {
    const old = this.map.get(key);
    if (old) {
      this.total -= old.weight;
      this.map.delete(key);
    }
    const weight = this.weigh(value);
    this.map.set(key, { value, weight });
    this.total += weight;
    for (const [k, e] of this.map) {
      if (this.total <= this.maxWeight || k === key) break;
      this.map.delete(k);
      this.total -= e.weight;
    }
  }

  delete(key: K): void {
    const e = this.map.get(key);
    if (!e) return;
    this.total -= e.weight;
    this.map.delete(key);
  }

  get size(): number {
    return this.map.size;
  }
}
