// Which of a trace's first files a lazy mount's start-up set takes (docs/lazy.md
// "The start-up batch"), one rule for the listing path (daemon/startup-batch.ts)
// and for a partial mount (daemon/partial-starts.ts, and the early read of
// ops/partial-tree.ts that begins it before the mount exists).
import type { StartupCaps } from './resolver.js';

export interface StartupChoice<T> {
  /** Under `blobMax`: read together, up to `bytes` of them. */
  small: T[];
  /** `blobMax` or more, met before the small ones stopped: each fetched alone, up to `largeBytes`. */
  large: T[];
  /** Left for later: everything past the first small one that did not fit, and large ones past `largeBytes`. */
  rest: T[];
  bytes: number;
  largeBytes: number;
}

/**
 * The start-up set among `items` (the trace's first files, in its order):
 * the trace's first small files up to the byte cap, stopping at the first
 * that does not fit, and the large ones met before it (the job opens them
 * next: paced behind the set, it would fetch them itself).
 */
export function chooseStartup<T>(items: readonly T[], sizeOf: (item: T) => number, caps: StartupCaps): StartupChoice<T> {
  const out: StartupChoice<T> = { small: [], large: [], rest: [], bytes: 0, largeBytes: 0 };
  let full = false;
  for (const item of items) {
    const size = sizeOf(item);
    full ||= size < caps.blobMax && out.bytes + size > caps.bytes;
    if (full) out.rest.push(item);
    else if (size < caps.blobMax) (out.small.push(item), (out.bytes += size));
    else if (out.largeBytes + size <= caps.largeBytes) (out.large.push(item), (out.largeBytes += size));
    else out.rest.push(item);
  }
  return out;
}
