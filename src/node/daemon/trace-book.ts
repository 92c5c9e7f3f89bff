// The daemon's traces (store/trace.ts), per tree: what programs first
// opened in its lazy mounts, in order, merged over runs. Kept in memory
// while the tree is mounted, saved to LMDB a moment after a change, and
// pushed to the remote tiers (merged with what they hold, so runs on other
// nodes count too) a while after a change, when its last mount goes, and
// when the daemon stops.
import type { Digest } from '../../lib/digest.js';
import type { Resolver } from '../ops/resolver.js';
import type { Store } from '../store/store.js';
import { loadLocalTrace, MAX_TRACE_BLOBS, mergeTraces, saveLocalTrace } from '../store/trace.js';

/** A change is saved locally this soon (a daemon killed loses at most this much of a trace; partial-starts.ts's too). */
export const SAVE_AFTER_MS = 2_000;
/** … and pushed this soon, if its mounts are still there (one small write per tree per tier). */
const PUSH_AFTER_MS = 30_000;
/** A stopping daemon waits this long at most for its pushes (partial-starts.ts's too). */
export const STOP_PUSH_MS = 5_000;

interface TraceState {
  blobs: Digest[];
  seen: Set<Digest>;
  unsaved: boolean;
  unpushed: boolean;
  saveTimer?: NodeJS.Timeout;
  pushTimer?: NodeJS.Timeout;
}

export interface TraceBookOptions {
  store: Store;
  resolver: () => Resolver;
  /** Whether a digest is a blob of `tree` (a trace from a tier names nothing else). */
  isBlobOf(tree: Digest): (digest: Digest) => boolean;
  log: (line: string) => void;
}

export class TraceBook {
  private readonly traces = new Map<Digest, TraceState>();
  private readonly pending = new Set<Promise<void>>();

  constructor(private readonly opts: TraceBookOptions) {}

  /**
   * The trace to prefetch `tree` by: this node's, else the one the remote
   * tiers hold (checked; kept here as this node's from now on). undefined
   * when there is none, or none worth using (said in one log line).
   */
  async load(tree: Digest): Promise<{ blobs: Digest[]; from: string } | undefined> {
    const st = this.state(tree);
    if (st.blobs.length > 0) return { blobs: [...st.blobs], from: 'local' };
    let remote;
    try {
      remote = await this.opts.resolver().remoteTrace(tree, this.opts.isBlobOf(tree));
    } catch (e) {
      this.opts.log(`trace: tree ${tree}: reading its trace from the tiers failed: ${(e as Error).message}`);
      return undefined;
    }
    if (!remote) return undefined;
    if ('problem' in remote) {
      this.opts.log(`trace: tree ${tree}: the trace in ${remote.from} was ignored: ${remote.problem}`);
      return undefined;
    }
    if (remote.blobs.length === 0) {
      this.opts.log(`trace: tree ${tree}: the trace in ${remote.from} was ignored: none of its ${remote.ignored} entries is a blob of the tree`);
      return undefined;
    }
    if (remote.ignored > 0) this.opts.log(`trace: tree ${tree}: ${remote.ignored} entries of the trace in ${remote.from} were ignored (not blobs of the tree, or repeated)`);
    // Earlier runs first; what programs opened here since the mount stays after them.
    const mine = st.blobs;
    this.replace(st, mergeTraces(remote.blobs, mine));
    if (mine.length > 0) st.unpushed = true;
    this.schedule(tree, st);
    return { blobs: remote.blobs, from: remote.from };
  }

  /** A program opened `digest` (a blob of `tree`) and it was not local: appended unless the trace has it or is full. */
  note(tree: Digest, digest: Digest): void {
    const st = this.state(tree);
    if (st.seen.has(digest) || st.blobs.length >= MAX_TRACE_BLOBS) return;
    st.seen.add(digest);
    st.blobs.push(digest);
    st.unsaved = st.unpushed = true;
    this.schedule(tree, st);
  }

  /** The last mount of `tree` went: save and push its trace now (in the background), then forget it. */
  release(tree: Digest): void {
    const st = this.traces.get(tree);
    if (!st) return;
    this.track(this.flush(tree, st, true).finally(() => {
      if (!st.unsaved && !st.unpushed && this.traces.get(tree) === st) this.traces.delete(tree);
    }));
  }

  /** Daemon stop: saves every trace, pushes what changed (waiting STOP_PUSH_MS at most). */
  async stop(): Promise<void> {
    for (const [tree, st] of this.traces) this.track(this.flush(tree, st, true));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), STOP_PUSH_MS)));
    const all = Promise.all([...this.pending]).then(() => 'done' as const);
    if ((await Promise.race([all, late])) === 'late') this.opts.log(`trace: pushes still running after ${STOP_PUSH_MS / 1000}s were abandoned`);
    clearTimeout(timer);
  }

  private state(tree: Digest): TraceState {
    let st = this.traces.get(tree);
    if (!st) {
      const blobs = loadLocalTrace(this.opts.store.meta, tree);
      st = { blobs, seen: new Set(blobs), unsaved: false, unpushed: false };
      this.traces.set(tree, st);
    }
    return st;
  }

  private replace(st: TraceState, blobs: Digest[]): void {
    st.blobs = blobs;
    st.seen = new Set(blobs);
    st.unsaved = true;
  }

  private schedule(tree: Digest, st: TraceState): void {
    if (st.unsaved && !st.saveTimer) st.saveTimer = setTimeout(() => this.track(this.flush(tree, st, false)), SAVE_AFTER_MS).unref();
    if (st.unpushed && !st.pushTimer) st.pushTimer = setTimeout(() => this.track(this.flush(tree, st, true)), PUSH_AFTER_MS).unref();
  }

  private async flush(tree: Digest, st: TraceState, push: boolean): Promise<void> {
    clearTimeout(st.saveTimer);
    st.saveTimer = undefined;
    if (st.unsaved) {
      st.unsaved = false;
      await saveLocalTrace(this.opts.store.meta, tree, st.blobs);
    }
    if (!push || !st.unpushed) return;
    clearTimeout(st.pushTimer);
    st.pushTimer = undefined;
    st.unpushed = false; // a note that comes during the push marks it again
    await this.push(tree, st);
  }

  /** Merges what the tiers hold (runs on other nodes) after this node's trace, then stores the result there. */
  private async push(tree: Digest, st: TraceState): Promise<void> {
    const resolver = this.opts.resolver();
    if (resolver.writableCount() === 0) return;
    const remote = await resolver.remoteTrace(tree, this.opts.isBlobOf(tree)).catch(() => undefined);
    const theirs = remote && 'blobs' in remote ? remote.blobs : [];
    const merged = mergeTraces(st.blobs, theirs);
    if (merged.length > st.blobs.length) {
      this.replace(st, merged);
      await saveLocalTrace(this.opts.store.meta, tree, merged);
      st.unsaved = false;
    }
    if (theirs.length === merged.length) return; // the tiers have all of it (same list, same blob)
    const results = await resolver.pushTrace(tree, merged);
    const ok = results.filter((r) => !r.error).map((r) => r.tier);
    const failed = results.filter((r) => r.error).map((r) => `${r.tier}: ${r.error}`);
    if (ok.length > 0) this.opts.log(`trace: tree ${tree}: ${merged.length} blobs pushed to ${ok.join(', ')}`);
    if (failed.length > 0) this.opts.log(`trace: tree ${tree}: pushing its trace failed (${failed.join('; ')}); it stays local`);
  }

  private track(p: Promise<void>): void {
    const q = p.catch((e: unknown) => this.opts.log(`trace: saving a trace failed: ${(e as Error).message}`)).finally(() => this.pending.delete(q));
    this.pending.add(q);
  }
}
