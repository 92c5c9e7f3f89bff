// Keeping a failing tier from slowing everything down: bounded retries
// for transient errors, and a circuit breaker that skips a tier for a
// while once it keeps failing (then lets one call through to probe it).
import { isTransient } from './tier.js';

/** Failures that repeating the call cannot fix: they open the breaker at once. */
const PERMANENT = new Set(['ERR_VRIFT_TIER_AUTH', 'ERR_VRIFT_TIER_CONFIG']);

export interface BreakerOptions {
  /** Consecutive failures that open the breaker. */
  failures: number;
  /** How long an open breaker skips the tier before one probe call. */
  cooldownMs: number;
  now?: () => number;
}

export type BreakerState = 'closed' | 'open' | 'half-open';

export class CircuitBreaker {
  private consecutive = 0;
  private openedAt = 0;
  private probing = false;
  private readonly now: () => number;

  constructor(private readonly opts: BreakerOptions) {
    this.now = opts.now ?? Date.now;
  }

  get state(): BreakerState {
    if (this.consecutive < this.opts.failures) return 'closed';
    return this.now() - this.openedAt >= this.opts.cooldownMs ? 'half-open' : 'open';
  }

  /** May a call go to the tier now? In half-open state only one probe at a time. */
  allow(): boolean {
    const s = this.state;
    if (s === 'closed') return true;
    if (s === 'open' || this.probing) return false;
    this.probing = true;
    return true;
  }

  succeed(): void {
    this.consecutive = 0;
    this.probing = false;
  }

  /**
   * Records a failure. A permanent one (bad credentials, no such bucket)
   * opens the breaker at once: repeating the call cannot help.
   * Returns true when this failure opened the breaker.
   */
  fail(e: unknown): boolean {
    const wasOpen = this.consecutive >= this.opts.failures;
    const permanent = PERMANENT.has((e as { code?: string } | null)?.code ?? '');
    this.consecutive = permanent ? Math.max(this.consecutive + 1, this.opts.failures) : this.consecutive + 1;
    this.probing = false;
    if (this.consecutive >= this.opts.failures) {
      this.openedAt = this.now();
      return !wasOpen;
    }
    return false;
  }
}

export interface RetryOptions {
  /** Retries after the first attempt (0 = try once). */
  retries: number;
  /** First backoff; doubles each retry, with jitter. */
  baseDelayMs?: number;
  onRetry?: (attempt: number, e: unknown) => void;
  /** Checked before each retry: false gives up at once (e.g. the tier's breaker opened meanwhile). */
  canRetry?: () => boolean;
}

/** Runs `fn`, retrying transient failures a bounded number of times. */
export async function withRetry<T>(fn: () => Promise<T>, opts: RetryOptions): Promise<T> {
  const base = opts.baseDelayMs ?? 50;
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if (attempt >= opts.retries || !isTransient(e) || opts.canRetry?.() === false) throw e;
      opts.onRetry?.(attempt + 1, e);
      const delay = base * 2 ** attempt * (0.5 + Math.random());
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}
