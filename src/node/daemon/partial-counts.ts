// What `vrift status` shows of a partial mount (docs/lazy.md "Partial
// metadata"): it knows its tree by the names alone, so its counts are by
// file, not by distinct blob: each file once, at its first open or when a
// traced start published it, as local (its blob was here before the
// mount), prefetched (read ahead by the start-up set) or fetched on open.
// Once the mount reads its full listing it is counted as any lazy mount
// (lazy-mounts.ts), which carries these counts over.
import type { Amount } from './bulk-switch.js';
import type { LazyMountStatus } from './lazy-mounts.js';

export type PartialHow = 'local' | 'prefetched' | 'fetchedOnOpen';

export class PartialCounts {
  readonly status: LazyMountStatus;
  /** Files counted (by ordinal): each once. */
  private readonly counted = new Set<number>();

  /** `prefetch`: its start-up set runs (a trace), there is no trace, or prefetch is off. */
  constructor(files: number, bytes: number, prefetch: 'running' | 'no trace' | 'off') {
    const zero = (): Amount => ({ blobs: 0, bytes: 0 });
    this.status = {
      partial: true,
      treeBlobs: { blobs: files, bytes },
      local: zero(),
      fetchedOnOpen: zero(),
      prefetched: zero(),
      prefetch: { state: prefetch, trace: 0, traceFrom: null, queued: 0, failed: 0 },
      bulk: null,
    };
  }

  /** File `ordinal` (`bytes` long) was opened or published, its blob `how`. */
  count(ordinal: number, bytes: number, how: PartialHow): void {
    if (this.counted.has(ordinal)) return;
    this.counted.add(ordinal);
    this.status[how].blobs++;
    this.status[how].bytes += bytes;
  }

  /** Whether file `ordinal` was opened or published already. */
  has(ordinal: number): boolean {
    return this.counted.has(ordinal);
  }

  /** The start-up set is done (`traced`: the trace's length). */
  startupDone(traced: number): void {
    this.status.prefetch.state = 'done';
    this.status.prefetch.trace = traced;
  }
}
