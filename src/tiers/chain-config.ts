// Settings of the chain itself (not of any one tier): which tiers to use,
// retries, the circuit breaker, the write queue. Section "chain" of the
// config; every key has a default, so nobody has to write it.
import { bool, defaults, int, list, object, type ConfigSection } from '../node/config/schema.js';

export interface ChainConfig {
  /** Restrict the chain to these tiers (default: every configured tier). */
  tiers?: string[];
  /** Retries of a transient failure, per call. */
  retries: number;
  /** Consecutive failures that open a tier's circuit breaker. */
  breakerFailures: number;
  /** How long an open breaker skips its tier. */
  breakerCooldownMs: number;
  /**
   * A read (get, a ref, one blob of a tree) that a remote tier has not
   * answered within this many ms is given up on and the next tier asked;
   * not applied to the last tier (there is no next one). Writes to the
   * same tiers get 4 times this, plus 1 ms per KiB of a put (guarded.ts
   * writeDeadline). 0: no deadline.
   */
  hedgeAfterMs: number;
  /** Remote writes waiting at most (backpressure beyond). */
  queueCapacity: number;
  /** Remote writes in flight at most. */
  uploadConcurrency: number;
  /** Also copy a blob found in a slower remote tier into the faster ones (e.g. S3 → Redis). */
  writeBack: boolean;
}

export const chainSection: ConfigSection<ChainConfig> = {
  key: 'chain',
  schema: defaults(
    object(
      {
        tiers: list({ example: 'local,redis,s3' }).optional(),
        retries: int({ example: '2', min: 0, max: 10 }).default(2),
        breakerFailures: int({ example: '3', min: 1, max: 1000 }).default(3),
        breakerCooldownMs: int({ example: '30000', min: 0, max: 3_600_000 }).default(30_000),
        hedgeAfterMs: int({ example: '500', min: 0, max: 600_000 }).default(500),
        queueCapacity: int({ example: '256', min: 1, max: 1_000_000 }).default(256),
        uploadConcurrency: int({ example: '8', min: 1, max: 256 }).default(8),
        writeBack: bool().default(false),
      },
      { absent: 'defaults' },
    ),
  ),
  env: {
    VRIFT_TIERS: 'tiers',
    VRIFT_TIER_RETRIES: 'retries',
    VRIFT_TIER_BREAKER_FAILURES: 'breakerFailures',
    VRIFT_TIER_BREAKER_COOLDOWN_MS: 'breakerCooldownMs',
    VRIFT_TIER_HEDGE_AFTER_MS: 'hedgeAfterMs',
    VRIFT_TIER_QUEUE_CAPACITY: 'queueCapacity',
    VRIFT_TIER_UPLOAD_CONCURRENCY: 'uploadConcurrency',
    VRIFT_TIER_WRITE_BACK: 'writeBack',
  },
};
