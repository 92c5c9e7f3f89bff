// The evictor: the daemon keeps the store under store.maxSize
// (VRIFT_MAX_SIZE; docs/configuration.md "store"). Every second it reads
// the index's blob count (O(1), LMDB's own count); when it changed (an
// admission, in the daemon or in a CLI process) or a minute passed, and at
// most every few seconds, it walks the index for the store's bytes. Over
// the cap, it runs gc (src/node/store/gc.ts) down to evictToPercent of the
// cap, least recently used first: gc keeps what refs and mounts pin (a
// mount pins its tree; files written inside a mount are kept too) and what
// running operations lease. Each round is counted
// (vrift_store_evicted_blobs_total, vrift_store_evicted_bytes_total) and
// logged in one line.
import { fmtBytes } from '../../lib/units.js';
import type { Metrics } from '../../lib/metrics.js';
import { overlayDigests } from '../mount/overlay.js';
import { gc } from '../store/gc.js';
import type { StoreConfig } from '../store/store-config.js';
import type { Store } from '../store/store.js';

export const EVICTED_BLOBS = 'vrift_store_evicted_blobs_total';
export const EVICTED_BYTES = 'vrift_store_evicted_bytes_total';

/** How often the blob count is read. */
const POLL_MS = 1000;
/** Walks of the index at least this far apart (a burst of admissions costs one walk). */
const MIN_WALK_GAP_MS = 2000;
/** A walk at least this often even when the count did not change (a blob replaced by another). */
const REFRESH_MS = 60_000;

export interface EvictorStatus {
  bytes: number;
  blobs: number;
  /** The cap (bytes); null: none. */
  maxSize: number | null;
  evictToPercent: number;
  evicted: { blobs: number; bytes: number; rounds: number };
}

export class Evictor {
  private timer: NodeJS.Timeout | undefined;
  private round: Promise<void> | undefined;
  private totals = { at: 0, blobs: 0, bytes: 0 };
  private lastCount = -1;
  /** After a round that could not get under the cap (pinned or leased content): no new round until the count changes or a minute passed. */
  private stuck: { count: number; at: number } | undefined;
  private readonly evicted = { blobs: 0, bytes: 0, rounds: 0 };

  constructor(private readonly opts: { store: Store; config: StoreConfig; metrics: Metrics; log: (line: string) => void }) {}

  start(): void {
    this.opts.metrics.declare(EVICTED_BLOBS);
    this.opts.metrics.declare(EVICTED_BYTES);
    if (this.opts.config.maxSize === undefined) return; // no cap: the totals are read only for status and /metrics
    this.refresh();
    this.tick();
    this.timer = setInterval(() => this.tick(), POLL_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.round;
  }

  /** The store's blobs and bytes as of the last walk (at most a few seconds old while a cap is set). */
  storeTotals(maxAgeMs = 30_000): { blobs: number; bytes: number } {
    if (Date.now() - this.totals.at > maxAgeMs) this.refresh();
    return { blobs: this.totals.blobs, bytes: this.totals.bytes };
  }

  status(): EvictorStatus {
    const { blobs, bytes } = this.storeTotals();
    return { bytes, blobs, maxSize: this.opts.config.maxSize ?? null, evictToPercent: this.opts.config.evictToPercent, evicted: { ...this.evicted } };
  }

  private refresh(): void {
    this.lastCount = this.opts.store.meta.blobCount();
    this.totals = { at: Date.now(), ...this.opts.store.meta.blobTotals() };
  }

  private tick(): void {
    if (this.round || this.timer === undefined) return;
    const now = Date.now();
    const count = this.opts.store.meta.blobCount();
    if (count === this.lastCount && now - this.totals.at < REFRESH_MS) return;
    if (now - this.totals.at < MIN_WALK_GAP_MS) return; // the next tick looks again
    this.refresh();
    const max = this.opts.config.maxSize!;
    if (this.totals.bytes <= max) return;
    if (this.stuck && this.stuck.count === count && now - this.stuck.at < REFRESH_MS) return;
    this.round = this.evict(max)
      .catch((e) => this.opts.log(`evict: round failed: ${(e as Error).message}`))
      .finally(() => {
        this.round = undefined;
      });
  }

  private async evict(max: number): Promise<void> {
    const { store, metrics, log, config } = this.opts;
    const before = this.totals.bytes;
    const target = Math.floor((max * config.evictToPercent) / 100);
    const r = await gc(store, { maxSize: target, keep: overlayDigests(store) });
    this.evicted.blobs += r.evicted;
    this.evicted.bytes += r.freedBytes;
    this.evicted.rounds++;
    metrics.inc(EVICTED_BLOBS, undefined, r.evicted);
    metrics.inc(EVICTED_BYTES, undefined, r.freedBytes);
    this.refresh();
    const over = r.keptBytes > max;
    this.stuck = over ? { count: this.lastCount, at: Date.now() } : undefined;
    const inUse = r.leasedBytes > 0 ? `, ${fmtBytes(r.leasedBytes)} in use by ${r.leases} running operation${r.leases === 1 ? '' : 's'}` : '';
    log(
      `evict: store at ${fmtBytes(before)} over maxSize ${fmtBytes(max)}: evicted ${r.evicted} blobs (${fmtBytes(r.freedBytes)}), least recently used first, down to ${fmtBytes(r.keptBytes)} (${fmtBytes(r.pinnedBytes)} pinned by refs and mounts${inUse})` +
        (over ? `; still over maxSize: pinned and in-use content alone exceeds it` : ''),
    );
  }
}
