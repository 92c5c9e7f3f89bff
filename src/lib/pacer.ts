// A byte-rate pacer for background transfers (prefetch): each transfer
// reserves its bytes before it starts and waits for its turn, so the rate
// averaged over transfers stays at or below `bytesPerSec` (the "virtual
// scheduling" form of a token bucket, with no burst beyond one transfer).
// One transfer's own speed is not limited: a pacer between blob downloads
// cannot slow a stream it does not own.
import { setTimeout as sleep } from 'node:timers/promises';

export class Pacer {
  /** When the next transfer may start (ms on the `now` clock). */
  private next = 0;

  constructor(
    private readonly bytesPerSec: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Reserves `bytes`; resolves when the transfer may start (rejects if `signal` aborts first). */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    const now = this.now();
    const start = Math.max(now, this.next);
    this.next = start + (bytes / this.bytesPerSec) * 1000;
    if (start > now) await sleep(start - now, undefined, { signal });
  }
}
