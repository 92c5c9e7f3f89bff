// Partial mounts' traces and start-up sets (docs/lazy.md "Partial
// metadata"). Each partial mount notes the ordinals of the files its
// programs open (store/ordinal-trace.ts); the trace is saved in LMDB 2 s
// after a change and pushed to the remote tiers when the tree's mount goes
// and when the daemon stops (merged with the tiers' first). A later
// partial mount of the tree with such a trace reads the pieces of its
// first files' digests in few ranged GETs, then their blobs (one ranged
// GET per pack frame, the frame's other blobs admitted beside), each
// checked, and publishes each file with its digest and ctime: the program
// opens them without asking the daemon.
import { hashBuffer, type Digest } from '../../lib/digest.js';
import { mapLimit } from '../../lib/queue.js';
import type { PartialFile, PartialTree } from '../ops/partial-tree.js';
import type { Resolver, StartupCaps } from '../ops/resolver.js';
import { chooseStartup } from '../ops/startup-choice.js';
import { decodeOrdinalTrace, encodeOrdinalTrace, loadLocalOrdinals, MAX_ORDINALS, MAX_ORDINAL_TRACE_BYTES, ordinalTraceRefName, saveLocalOrdinals } from '../store/ordinal-trace.js';
import type { Store } from '../store/store.js';
import { SAVE_AFTER_MS, STOP_PUSH_MS } from './trace-book.js';

/** Start-up files fetched at once. */
const PARALLEL = 16;
/** Large start-up files fetched at once (each is one stream of its own). */
const LARGE_PARALLEL = 4;

interface Trace {
  ordinals: number[];
  seen: Set<number>;
  files: number;
  unsaved: boolean;
  unpushed: boolean;
  timer?: NodeJS.Timeout;
}

export interface PartialStartsOptions {
  store: Store;
  resolver: () => Resolver;
  log: (line: string) => void;
  /** Counts `bytes` against the host's prefetch rate (prefetcher.ts reserve). */
  reserve(bytes: number): Promise<void>;
  /** Publishes file `rel` of the mount at `root` with its blob `digest` (local now, `wasLocal` before this start), so it opens without a FETCH. */
  publish(root: string, rel: string, digest: Digest, file: PartialFile, partial: PartialTree, wasLocal: boolean): void;
}

export class PartialStarts {
  private readonly traces = new Map<Digest, Trace>();
  private readonly pending = new Set<Promise<unknown>>();

  constructor(private readonly opts: PartialStartsOptions) {}

  /** A program of a partial mount of `tree` (of `files` files) opened file `ordinal`. */
  note(tree: Digest, ordinal: number, files: number): void {
    let st = this.traces.get(tree);
    if (!st) {
      const ordinals = loadLocalOrdinals(this.opts.store.meta, tree).filter((o) => o < files);
      st = { ordinals, seen: new Set(ordinals), files, unsaved: false, unpushed: false };
      this.traces.set(tree, st);
    }
    if (st.seen.has(ordinal) || st.ordinals.length >= MAX_ORDINALS) return;
    st.seen.add(ordinal);
    st.ordinals.push(ordinal);
    st.unsaved = st.unpushed = true;
    if (!st.timer) {
      st.timer = setTimeout(() => {
        st.timer = undefined;
        this.track(this.save(tree, st));
      }, SAVE_AFTER_MS);
      st.timer.unref();
    }
  }

  /** The last partial mount of `tree` went: its trace is saved and pushed. */
  release(tree: Digest): void {
    const st = this.traces.get(tree);
    if (st) this.track(this.flush(tree, st));
  }

  /** Daemon stop: every trace saved, and pushed (waiting STOP_PUSH_MS at most). */
  async stop(): Promise<void> {
    for (const [tree, st] of this.traces) this.track(this.flush(tree, st));
    await Promise.race([Promise.allSettled([...this.pending]), new Promise((r) => setTimeout(r, STOP_PUSH_MS).unref())]);
  }

  /**
   * The start-up set of a partial mount at `root` whose tree has trace
   * `ordinals`: the first files under `blobMax` bytes, up to `bytes` of
   * them, fetched together and published (see above); and the large files
   * among that part of the trace, up to `largeBytes`, fetched alongside,
   * each alone, at once (the job opens them next: paced behind the set, it
   * would wait for them itself, as numpy does for its 25 MB OpenBLAS).
   * Returns what it did, for the log, and the trace's files it left
   * (`rest`: large ones past `largeBytes`, or past the set's cap).
   */
  async start(
    root: string,
    partial: PartialTree,
    ordinals: readonly number[],
    caps: StartupCaps,
  ): Promise<{ files: number; bytes: number; large: { files: number; bytes: number }; ms: number; rest: number[] }> {
    const t0 = Date.now();
    const traced = ordinals.flatMap((o) => partial.fileOf(o) ?? []);
    const chosen = chooseStartup(traced, (f) => f.size, caps);
    const ordinalsOf = (fs: readonly PartialFile[]) => fs.map((f) => f.ordinal);
    const [picked, large, rest] = [ordinalsOf(chosen.small), ordinalsOf(chosen.large), ordinalsOf(chosen.rest)];
    const { bytes, largeBytes } = chosen;
    await partial.early; // (begun with the names: its pieces and blobs are not read twice)
    await partial.loadPieces([...picked, ...large]);
    // (counted against the prefetch rate, not waiting for it)
    if (largeBytes > 0) void this.opts.reserve(largeBytes).catch(() => undefined);
    let largeFiles = 0;
    const alone = mapLimit(large, LARGE_PARALLEL, async (o) => {
      if (await this.fetchLarge(root, partial, o)) largeFiles++;
    });
    // Their blobs together (one read per pack frame, only these kept), then one by one what that did not bring.
    const places = picked.map((o) => partial.placeOf(o)).filter((p): p is NonNullable<typeof p> => p !== undefined && !p.loose);
    await partial.fetchPlaced(places).catch(() => undefined);
    let files = 0;
    await mapLimit(picked, PARALLEL, async (o) => {
      const got = await partial.fetchOrdinal(o).catch(() => undefined);
      if (!got || got.file.exec || !this.opts.store.cas.has(got.digest)) return; // (an executable opens through its twin: FETCH makes it)
      this.opts.publish(root, got.rel, got.digest, got.file, partial, got.wasLocal);
      files++;
    });
    await alone;
    return { files, bytes, large: { files: largeFiles, bytes: largeBytes }, ms: Date.now() - t0, rest };
  }

  /**
   * Large file `ordinal` of a start: its blob fetched alone (one kept on its
   * own by its digest, as an open would: an open meanwhile joins this
   * fetch), then published. Whether it is here now.
   */
  private async fetchLarge(root: string, partial: PartialTree, ordinal: number): Promise<boolean> {
    const place = partial.placeOf(ordinal);
    if (!place) return false; // (its piece could not be read: the open fetches it)
    const { cas } = this.opts.store;
    const wasLocal = cas.has(place.digest);
    if (!wasLocal) {
      if (place.loose) await this.opts.resolver().fetchBlob(place.digest, { size: place.file.size, tree: partial.tree }).catch(() => undefined);
      else await partial.fetchOrdinal(ordinal).catch(() => undefined);
      if (!cas.has(place.digest)) return false;
      partial.prefetched.add(place.digest);
    }
    if (!place.file.exec) this.opts.publish(root, place.file.rel, place.digest, place.file, partial, wasLocal);
    return true;
  }

  private track(p: Promise<unknown>): void {
    const q = p.catch((e: unknown) => this.opts.log(`trace: partial mount: ${(e as Error).message}`)).finally(() => this.pending.delete(q));
    this.pending.add(q);
  }

  private async save(tree: Digest, st: Trace): Promise<void> {
    if (!st.unsaved) return;
    st.unsaved = false;
    await saveLocalOrdinals(this.opts.store.meta, tree, st.ordinals);
  }

  private async flush(tree: Digest, st: Trace): Promise<void> {
    if (st.timer) clearTimeout(st.timer);
    st.timer = undefined;
    await this.save(tree, st);
    if (!st.unpushed) return;
    st.unpushed = false;
    const chain = this.opts.resolver().chain;
    if (chain.writableCount() === 0) return;
    const theirs = await chain.fetchHint(ordinalTraceRefName(tree), MAX_ORDINAL_TRACE_BYTES).catch(() => undefined);
    const had = theirs && 'bytes' in theirs ? decodeOrdinalTrace(theirs.bytes, tree, st.files) : [];
    const theirSet = new Set(Array.isArray(had) ? had : []);
    if (st.ordinals.every((o) => theirSet.has(o))) return; // the tiers hold every file of it already
    // Ours first (this node's order), then what the tiers knew besides (other nodes' runs).
    const merged = [...st.ordinals];
    const seen = new Set(merged);
    for (const o of theirSet) if (!seen.has(o) && merged.length < MAX_ORDINALS) merged.push(o);
    const bytes = encodeOrdinalTrace(tree, merged);
    await chain.publishHint(ordinalTraceRefName(tree), hashBuffer(bytes), bytes);
  }
}
