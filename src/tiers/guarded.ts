// A tier behind a circuit breaker, with bounded retries of transient
// failures: a decorator, so the chain only ever sees Tiers (as
// Buildbarn's and bazel-remote's wrappers). Every call goes through
// `guard`: an open breaker refuses it without trying (with the failure
// that opened it: same code, same fix), a transient failure is retried a
// few times, and a failure is counted, kept (`lastFailure`, for the
// command's final message) and logged, once per breaker opening.
//
// A read (get, getRef, getInTree, getTreeBlob, getOutboard) may also have a
// deadline for its first answer (`hedgeAfterMs`, set by index.ts on every
// tier but the last): a tier that has not answered by then is given up on
// for this call — a failure like any other, so a tier that keeps missing
// it opens its breaker within a few calls — and the chain asks the next
// tier. Only the time to the answer is bounded: a blob body already
// flowing is the caller's to read (admission bounds it by size).
//
// Writes to such a tier are bounded too (`writeDeadline`), more loosely,
// since a write given up on is a copy the tier will not have (there is no
// next tier to take it instead) and its first call also loads the tier's
// SDK and connects: `has` (a push first asks what the tier lacks) and
// `setRef` within 4 x `hedgeAfterMs`, a `put` within that plus 1 ms per KiB
// (a floor of 1 MiB/s for its bytes). A write past its deadline is given up on: the tier does
// not get this save (the push to it stops at its first failure), the
// other tiers do, and the operation's one warning says so (the push result
// carries the error; the guard logs it only when the breaker opens). A
// tier's bulk push (S3 packs)
// and the last tier's writes keep the tier's own timeouts.
//
// A local problem met during a call (the disk is full, the store's
// permissions are wrong) is not the tier's fault: it passes through
// untouched and ends the operation.
import type { Digest } from '../lib/digest.js';
import { isVriftError, type VriftError } from '../lib/errors.js';
import { TIER_COUNTERS as M, TIER_REQUEST_SECONDS, type Metrics } from '../lib/metrics.js';
import { CircuitBreaker, withRetry } from './breaker.js';
import { TierDecorator } from './decorator.js';
import { isTierError, TierError, type ArchivePart, type BlobBody, type BlobSource, type LazyPart, type PrepareOptions, type PushResult, type RefInfo, type RefTarget, type Tier, type TierLog, type TreePush } from './tier.js';

export interface GuardOptions {
  retries: number;
  breakerFailures: number;
  breakerCooldownMs: number;
  /** A read not answered within this many ms is given up on (the chain asks the next tier); writes get it too (writeDeadline); absent or 0: no deadline. */
  hedgeAfterMs?: number;
}

/** Deadline of a write of `bytes` (0: has, setRef) to a tier whose reads have `hedgeAfterMs`: 4 times that, and 1 ms per KiB on top. */
export function writeDeadline(hedgeAfterMs: number, bytes = 0): number {
  return hedgeAfterMs > 0 ? 4 * hedgeAfterMs + Math.ceil(bytes / 1024) : 0;
}

/** Errors of this host, not of a tier: they end the operation instead of counting against the tier. */
export function isLocalError(e: unknown): e is VriftError {
  return isVriftError(e) && /^ERR_VRIFT_(FS|META|CAS)_/.test(e.code) && e.code !== 'ERR_VRIFT_CAS_DIGEST_MISMATCH';
}

export class GuardedTier extends TierDecorator {
  /** The last failure of this tier (for a command's final message), and when it happened. */
  lastFailure: VriftError | undefined;
  lastFailureAt = 0;
  private readonly breaker: CircuitBreaker;
  private readonly labels: { tier: string };

  constructor(
    inner: Tier,
    private readonly opts: GuardOptions,
    private readonly ctx: { metrics: Metrics; log: TierLog },
  ) {
    super(inner);
    this.labels = { tier: inner.name };
    this.breaker = new CircuitBreaker({ failures: opts.breakerFailures, cooldownMs: opts.breakerCooldownMs });
  }

  // Reading an archive part is the caller's: it reopens a broken one and reports the failure (`fail`) when it gives up.
  protected override fetchTreeOf(tree: Digest, want: ReadonlySet<Digest>): Promise<ArchivePart[] | undefined> {
    return this.guard('fetchTree', () => super.fetchTreeOf(tree, want));
  }

  protected override pushTreeOf(push: TreePush): Promise<PushResult> {
    return this.guard('pushTree', () => super.pushTreeOf(push));
  }

  protected override getInTreeOf(tree: Digest, digest: Digest): Promise<BlobBody | undefined> {
    return this.guard('getInTree', () => super.getInTreeOf(tree, digest), true);
  }

  // No deadline for a first answer: a batch answers when its last range is in (what it brought stays either way).
  protected override getManyInTreeOf(tree: Digest, digests: readonly Digest[], onBlob: (digest: Digest, bytes: Buffer) => Promise<void>): Promise<void> {
    return this.guard('getManyInTree', () => super.getManyInTreeOf(tree, digests, onBlob));
  }

  protected override prepareTreeOf(tree: Digest, opts?: PrepareOptions): Promise<void> {
    return this.guard('prepareTree', () => super.prepareTreeOf(tree, opts));
  }

  protected override warmInTreeOf(tree: Digest, digests: readonly Digest[], maxBytes: number, blobMax: number): Promise<void> {
    return this.guard('warmInTree', () => super.warmInTreeOf(tree, digests, maxBytes, blobMax));
  }

  protected override getLazyPartOf(head: Digest, part: LazyPart): Promise<Buffer | undefined> {
    return this.guard('getLazyPart', () => super.getLazyPartOf(head, part), true);
  }

  protected override getLocatedOf(tree: Digest, digest: Digest, record: Buffer): Promise<BlobBody | undefined> {
    return this.guard('getLocated', () => super.getLocatedOf(tree, digest, record), true);
  }

  protected override getManyLocatedOf(tree: Digest, wants: readonly { digest: Digest; record: Buffer }[], onBlob: (digest: Digest, bytes: Buffer) => Promise<void>): Promise<void> {
    return this.guard('getManyLocated', () => super.getManyLocatedOf(tree, wants, onBlob));
  }

  protected override getTreeBlobOf(tree: Digest): Promise<BlobBody | undefined> {
    return this.guard('getTreeBlob', () => super.getTreeBlobOf(tree), true);
  }

  protected override getOutboardOf(digest: Digest): Promise<Buffer | undefined> {
    return this.guard('getOutboard', () => super.getOutboardOf(digest), true);
  }

  protected override getRangeOf(digest: Digest, offset: number, length: number): Promise<BlobBody | undefined> {
    return this.guard('getRange', () => super.getRangeOf(digest, offset, length), true);
  }

  /** One labels object per call name (every call of the tier observes its duration). */
  private opLabels(op: string): { tier: string; op: string } {
    let l = this.labelsByOp.get(op);
    if (!l) this.labelsByOp.set(op, (l = { tier: this.name, op }));
    return l;
  }
  private readonly labelsByOp = new Map<string, { tier: string; op: string }>();

  /** True while the breaker lets calls through. */
  get available(): boolean {
    return this.breaker.state !== 'open';
  }

  /**
   * Runs one call of the tier through the breaker, retrying transient
   * failures. A failure is rethrown as a TierError (a local one as it is).
   */
  async guard<T>(op: string, fn: () => Promise<T>, read = false, writeBytes?: number): Promise<T> {
    if (!this.breaker.allow()) {
      this.ctx.metrics.inc(M.skipped, this.labels);
      // Skipped: this operation failed on the tier too, for the reason that opened the breaker.
      this.lastFailure ??= new TierError(this.name, 'unavailable', 'skipped for now after repeated failures');
      this.lastFailureAt = Date.now();
      throw this.lastFailure;
    }
    const limit = read ? (this.opts.hedgeAfterMs ?? 0) : writeBytes !== undefined ? writeDeadline(this.opts.hedgeAfterMs ?? 0, writeBytes) : 0;
    let late = false;
    const started = performance.now();
    try {
      const call = withRetry(fn, {
        retries: this.opts.retries,
        onRetry: () => this.ctx.metrics.inc(M.retries, this.labels),
        // No retry once the caller has moved on: it would only wait again.
        canRetry: () => !late && this.breaker.state === 'closed',
      });
      const v = limit > 0 ? await withDeadline(call, limit, () => (late = true)) : await call;
      this.breaker.succeed();
      return v;
    } catch (e) {
      if (e === DEADLINE) {
        this.ctx.metrics.inc(M.hedged, this.labels);
        const hint = `check that ${this.name} is up and not overloaded (the deadline is chain.hedgeAfterMs, VRIFT_TIER_HEDGE_AFTER_MS)`;
        if (read) throw this.fail(new TierError(this.name, 'unavailable', `${op}: no answer within ${limit} ms; asking the next tier`, { hint }), op);
        // A write: the operation reports the tier it could not write (save: "not saved to …"), in one line.
        throw this.fail(new TierError(this.name, 'unavailable', `${op}: no answer within ${limit} ms; ${hint}`, { hint }), op, true);
      }
      throw this.fail(e, op);
    } finally {
      // How long the tier took to answer (a streamed body's bytes come after): per tier and call.
      this.ctx.metrics.observe(TIER_REQUEST_SECONDS, this.opLabels(op), (performance.now() - started) / 1000);
    }
  }

  /** Counts and remembers a failure of this tier (a call's, or a stream's that broke midway); returns it as a TierError. `silent`: the caller reports it (logged only if it opens the breaker). */
  fail(e: unknown, op: string, silent = false): VriftError {
    if (isLocalError(e)) return e;
    const err = toTierError(this.name, e, op);
    this.ctx.metrics.inc(err.code === 'ERR_VRIFT_TIER_CORRUPT' ? M.mismatches : M.errors, this.labels);
    this.lastFailure = err;
    this.lastFailureAt = Date.now();
    // Calls already in flight when the breaker opened fail too: count them, say it once.
    const quiet = silent || this.breaker.state === 'open';
    if (this.breaker.fail(err)) {
      this.ctx.metrics.inc(M.breakerOpened, this.labels);
      this.ctx.log('warn', `${err.message}; skipping ${this.name} for ${Math.round(this.opts.breakerCooldownMs / 1000)}s`);
    } else if (!quiet) this.ctx.log('warn', err.message);
    return err;
  }

  override has(digests: readonly Digest[]): Promise<Set<Digest>> {
    // A push asks what the tier lacks: a write's deadline (a tier that does not answer gets nothing this time).
    return this.guard('has', () => this.inner.has(digests), false, 0);
  }

  override get(digest: Digest): Promise<BlobBody | undefined> {
    return this.guard('get', () => this.inner.get(digest), true);
  }

  override put(digest: Digest, source: BlobSource): Promise<void> {
    return this.guard('put', () => this.inner.put(digest, source), false, source.size);
  }

  override getRef(name: string): Promise<RefTarget | undefined> {
    return this.guard('getRef', () => this.inner.getRef(name), true);
  }

  override setRef(name: string, target: RefTarget): Promise<void> {
    return this.guard('setRef', () => this.inner.setRef(name, target), false, 0);
  }

  override listRefs(prefix: string, limit?: number): Promise<RefInfo[]> {
    return this.guard('listRefs', () => this.inner.listRefs(prefix, limit));
  }
}

/** Thrown by withDeadline when the call has not settled in time. */
const DEADLINE = Symbol('deadline');

/**
 * `call`, or DEADLINE thrown after `ms`. The call goes on behind (it cannot
 * be cancelled); whatever it brings is dropped, and a body it returns late
 * is destroyed so its connection is not left half read.
 */
function withDeadline<T>(call: Promise<T>, ms: number, onLate: () => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      onLate();
      reject(DEADLINE);
    }, ms);
    call.then(
      (v) => {
        if (!done) {
          done = true;
          clearTimeout(timer);
          resolve(v);
        } else (v as { stream?: { destroy?: () => void } } | undefined)?.stream?.destroy?.();
      },
      (e: unknown) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

/** Any error from a tier as a TierError: stream resets and other surprises count as "unavailable". */
export function toTierError(tier: string, e: unknown, op: string): TierError {
  if (isTierError(e)) return e;
  if (isVriftError(e)) {
    const failure = /ARCHIVE|DIGEST|TREE_MALFORMED|CORRUPT|ZSTD/.test(e.code) ? 'corrupt' : 'io';
    return new TierError(tier, failure, e.message, { hint: e.hint, cause: e });
  }
  const msg = (e as Error | undefined)?.message ?? String(e);
  return new TierError(tier, 'unavailable', `${op} failed: ${msg.split('\n')[0]}`, { cause: e });
}
