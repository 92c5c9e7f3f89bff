// Large blobs a program reads while they arrive (docs/lazy.md "Large files
// stream"). A FETCH that allows it gets, instead of waiting for the whole
// blob, the path of the temp file the blob streams into: the file has its
// full size from the start, and the keeper (src/node/stream/hsm.ts) holds
// every read of it in the kernel until the bytes it asks for are verified
// against the blob's hash tree. The first byte of a 1 GiB file waits for
// its first 16 KiB group, not for the gigabyte.
import { closeSync, existsSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import type { Digest } from '../../lib/digest.js';
import type { Resolver } from '../ops/resolver.js';
import type { BlobWatch } from '../store/admission.js';
import type { Store } from '../store/store.js';
import { Hsm, keeperSocket, type HsmStream, type OrphanStream } from '../stream/hsm.js';

interface Partial {
  path: string;
  stream: HsmStream;
}

export class BlobStreams {
  private readonly partials = new Map<Digest, Partial>();
  private readonly waiting = new Map<Digest, Set<(path: string) => void>>();
  /** For `vrift status`: blobs read while they arrived, and streams abandoned (a tier sent wrong bytes, or none). */
  readonly counts = { streamed: 0, failed: 0 };

  private hsm: Hsm | undefined;
  /** The keeper being started (at the first large blob, or at start when one runs already). */
  private opening: Promise<Hsm | undefined> | undefined;
  /** Why streaming cannot work here, once known (said once in the log). */
  private unavailable: string | undefined;
  private stopped = false;

  constructor(
    private readonly deps: { store: Store; resolver: () => Resolver; log: (line: string) => void },
    private readonly opts: { enabled: boolean; minBytes: number },
  ) {}

  private get log(): (line: string) => void {
    return this.deps.log;
  }

  /**
   * A keeper left by the last daemon (it stopped or died while a blob
   * streamed) is joined now: the streams it left midway are finished, their
   * readers still wait. Otherwise the keeper starts with the first large
   * blob (most daemons never need one).
   */
  async start(): Promise<void> {
    if (this.opts.enabled && existsSync(keeperSocket(this.deps.store.layout.run))) await this.keeper();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const hsm = (await this.opening) ?? this.hsm;
    this.hsm = undefined;
    await hsm?.close();
  }

  /** The keeper, started (or joined) once; undefined when streaming cannot work here (the log said why, once). */
  private keeper(): Promise<Hsm | undefined> {
    this.opening ??= (async () => {
      const layout = this.deps.store.layout;
      const { hsm, reason } = await Hsm.open({ runDir: layout.run, probeDir: layout.tmp, log: this.log });
      if (!hsm || this.stopped) {
        this.unavailable = reason ?? 'the daemon stops';
        this.log(`stream: large files are fetched whole before they open (${this.unavailable})`);
        await hsm?.close();
        return undefined;
      }
      this.hsm = hsm;
      for (const o of hsm.orphans()) void this.finishOrphan(o);
      return hsm;
    })();
    return this.opening;
  }

  /**
   * A stream the last daemon left midway (it stopped or died): readers hold
   * its file and wait. The blob is fetched whole, as any other, and copied
   * into that file, the readers released as the copy passes them.
   */
  private async finishOrphan(o: OrphanStream): Promise<void> {
    const s = this.hsm!.resume(o);
    try {
      if ((await this.deps.resolver().fetchBlob(o.id, { size: o.size })) === undefined) throw new Error('no tier has it now');
      const src = openSync(this.deps.store.cas.pathOf(o.id), 'r');
      const dst = openSync(o.path, 'r+');
      try {
        const buf = Buffer.allocUnsafe(1 << 20);
        for (let pos = 0; pos < o.size; ) {
          const n = readSync(src, buf, 0, buf.length, pos);
          if (n === 0) throw new Error('the stored blob is shorter than its size');
          for (let w = 0; w < n; ) w += writeSync(dst, buf, w, n - w, pos + w);
          pos += n;
          s.progress(pos);
        }
      } finally {
        closeSync(src);
        closeSync(dst);
      }
      await s.complete();
      this.log(`stream: blob ${o.id}, left midway by the last daemon, finished for its readers`);
    } catch (e) {
      s.fail((e as Error).message);
      this.log(`stream: blob ${o.id}, left midway by the last daemon, could not be finished (${(e as Error).message}): its readers get EIO`);
    }
    try {
      unlinkSync(o.path); // a temp file: readers keep their descriptors
    } catch {
      /* gone already */
    }
  }

  /** For `vrift status --json`: whether large files stream here (and if not, why), and how many did. */
  status(): { enabled: boolean; keeper: boolean; unavailable?: string; streamed: number; failed: number; active: number } {
    return { enabled: this.enabled, keeper: this.hsm !== undefined, ...(this.unavailable ? { unavailable: this.unavailable } : {}), ...this.counts, active: this.partials.size };
  }

  /** Whether large files may stream here (the keeper starts with the first). */
  get enabled(): boolean {
    return this.opts.enabled && this.unavailable === undefined && !this.stopped;
  }

  /**
   * The watch to give the resolver for a blob a program waits for: only
   * for large blobs, and only where the kernel can hold the readers.
   */
  watchFor(digest: Digest): (size: number) => BlobWatch | undefined {
    return (size) => (this.enabled && size >= this.opts.minBytes ? this.watch(digest, size) : undefined);
  }

  /**
   * Resolves with the path readers may open once `digest` streams into a
   * partial file (at once if it does now). `cancel` forgets the wait (the
   * blob arrived whole, or the fetch failed).
   */
  whenPartial(digest: Digest): { partial: Promise<string>; cancel: () => void } {
    const now = this.partials.get(digest);
    if (now) return { partial: Promise.resolve(now.path), cancel: () => undefined };
    let resolve!: (path: string) => void;
    const partial = new Promise<string>((r) => (resolve = r));
    let set = this.waiting.get(digest);
    if (!set) this.waiting.set(digest, (set = new Set()));
    set.add(resolve);
    return {
      partial,
      cancel: () => {
        set!.delete(resolve);
        if (set!.size === 0 && this.waiting.get(digest) === set) this.waiting.delete(digest);
      },
    };
  }

  private watch(digest: Digest, size: number): BlobWatch {
    let stream: HsmStream | undefined;
    return {
      opened: async (tmp) => {
        try {
          const hsm = await this.keeper();
          if (!hsm) return; // readers wait for the whole blob
          stream = await hsm.watch(tmp, { id: digest, size });
        } catch (e) {
          // Not the tier's fault: the blob still arrives, and its readers wait for the whole of it.
          this.log(`stream: blob ${digest} cannot be read while it arrives (${(e as Error).message}); its opens wait for all of it`);
          return;
        }
        this.partials.set(digest, { path: tmp, stream });
        this.counts.streamed++;
        const set = this.waiting.get(digest);
        this.waiting.delete(digest);
        for (const wake of set ?? []) wake(tmp);
      },
      verified: (n) => stream?.progress(n),
      finished: (ok) => {
        const s = stream;
        if (!s) return;
        if (this.partials.get(digest)?.stream === s) this.partials.delete(digest);
        if (ok) {
          s.complete().catch((e) => this.log(`stream: blob ${digest}: the keeper did not confirm the end (${(e as Error).message})`));
        } else {
          this.counts.failed++;
          s.fail('the fetch failed');
          this.log(`stream: blob ${digest} abandoned midway: reads of what had not arrived fail (EIO); the next open fetches it again`);
        }
      },
    };
  }
}
