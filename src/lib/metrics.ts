// Counters for the tiers, named and labelled the Prometheus way
// (`vrift_tier_hits_total{tier="redis"}`), so the daemon can expose them
// as they are and the CLI can print them with --json.

export type Labels = Record<string, string>;

/** The counters the chain keeps, per tier. */
export const TIER_COUNTERS = {
  hits: 'vrift_tier_hits_total',
  misses: 'vrift_tier_misses_total',
  errors: 'vrift_tier_errors_total',
  /** Blobs whose bytes did not hash to their name (rejected, never admitted). */
  mismatches: 'vrift_tier_mismatch_total',
  /** Calls not made because the tier's circuit breaker was open. */
  skipped: 'vrift_tier_skipped_total',
  breakerOpened: 'vrift_tier_breaker_open_total',
  retries: 'vrift_tier_retries_total',
  /** Reads given up on after the tier's deadline (chain.hedgeAfterMs): the next tier was asked. */
  hedged: 'vrift_tier_hedged_total',
  bytesIn: 'vrift_tier_bytes_received_total',
  bytesOut: 'vrift_tier_bytes_sent_total',
  blobsIn: 'vrift_tier_blobs_received_total',
  blobsOut: 'vrift_tier_blobs_sent_total',
  /** Bytes as they crossed the network (a compressed pack counts compressed), where a tier knows them. */
  wireIn: 'vrift_tier_wire_bytes_received_total',
  wireOut: 'vrift_tier_wire_bytes_sent_total',
  /** Opportunistic writes dropped because the write queue was full. */
  dropped: 'vrift_tier_queue_dropped_total',
} as const;

/** Histograms (seconds) the daemon exposes; the CLI observes nothing. */
export const TIER_REQUEST_SECONDS = 'vrift_tier_request_duration_seconds';
/** A program's FETCH (a lazy mount's first open of a blob), by how it ended. */
export const FETCH_SECONDS = 'vrift_fetch_duration_seconds';

function key(name: string, labels: Labels): string {
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}="${labels[k]!.replace(/["\\\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`))}"`);
  return parts.length > 0 ? `${name}{${parts.join(',')}}` : name;
}

const NO_LABELS: Labels = {};

/** Told of each duration observed (the daemon's histograms: src/node/daemon/metrics-server.ts). */
export type Observer = (name: string, labels: Labels, seconds: number) => void;

export class Metrics {
  private readonly counters = new Map<string, number>();
  /** Where durations go; none in the CLI (a one-shot process has no scraper). */
  observer: Observer | undefined;
  /**
   * Keys already built, per labels object: counters bumped per blob (tens
   * of thousands a restore) pass the same labels object each time, and
   * building the key string each time showed in profiles.
   */
  private readonly keys = new WeakMap<Labels, Map<string, string>>();

  private keyOf(name: string, labels: Labels): string {
    let byName = this.keys.get(labels);
    if (!byName) this.keys.set(labels, (byName = new Map()));
    let k = byName.get(name);
    if (k === undefined) byName.set(name, (k = key(name, labels)));
    return k;
  }

  inc(name: string, labels: Labels = NO_LABELS, n = 1): void {
    const k = this.keyOf(name, labels);
    this.counters.set(k, (this.counters.get(k) ?? 0) + n);
  }

  /**
   * Makes a counter exist at 0 until something counts: a scraper then sees
   * every series from the first scrape (rate() and alerts on a series that
   * appears only with the first error miss that error).
   */
  declare(name: string, labels: Labels = NO_LABELS): void {
    const k = this.keyOf(name, labels);
    if (!this.counters.has(k)) this.counters.set(k, 0);
  }

  /** A duration, in seconds, for a histogram named `name` (base unit, `_seconds`). */
  observe(name: string, labels: Labels, seconds: number): void {
    this.observer?.(name, labels, seconds);
  }

  get(name: string, labels: Labels = NO_LABELS): number {
    return this.counters.get(key(name, labels)) ?? 0;
  }

  /** Every counter, e.g. { 'vrift_tier_hits_total{tier="s3"}': 12 }. */
  snapshot(): Record<string, number> {
    return Object.fromEntries([...this.counters.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }

  /** Prometheus text exposition format. */
  render(): string {
    const byName = new Map<string, string[]>();
    for (const [k, v] of Object.entries(this.snapshot())) {
      const name = k.split('{')[0]!;
      if (!byName.has(name)) byName.set(name, [`# TYPE ${name} counter`]);
      byName.get(name)!.push(`${k} ${v}`);
    }
    return [...byName.values()].flat().join('\n') + (byName.size > 0 ? '\n' : '');
  }
}
