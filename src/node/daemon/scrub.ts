// The scrub: the daemon re-hashes stored blobs in the background, at a
// bounded rate (mount.scrubBytesPerSec, VRIFT_SCRUB_BYTES_PER_SEC; 0: off;
// a small blob counts as BLOB_MIN_COST bytes),
// the least recently checked first. It finds what the cheap checks cannot
// (a blob changed while a mount serves it, a flipped bit on the disk
// itself): a corrupt blob is quarantined (the index forgets it, so the next
// open or restore fetches it again), with one log line; a good one has its
// record renewed (docs/security.md "Local bit rot").
import type { Digest } from '../../lib/digest.js';
import { recordGood, statBlob } from '../store/blob-check.js';
import { hashFile } from '../store/cas.js';
import type { Store } from '../store/store.js';

/** Pause between passes over the whole store. */
const PASS_PAUSE_MS = 60_000;
/** Blobs taken from the index per pass at most (a pass is rebuilt after them). */
const PASS_BLOBS = 100_000;
/**
 * Each blob costs at least this many bytes of the rate: its fixed work (opens, stats, an index write
 * and its commit) outweighs the bytes of a small one. Charged by bytes alone, a store of 90 000
 * blobs of ~10 KB was scrubbed at ~190 a second at 4 MB/s: 13 % of a core and 190 fdatasyncs a
 * second on an idle node.
 */
const BLOB_MIN_COST = 256 << 10;

export interface ScrubStatus {
  checked: number;
  bad: number;
  bytesPerSec: number;
}

export class Scrub {
  private readonly abort = new AbortController();
  private running: Promise<void> | undefined;
  private checked = 0;
  private bad = 0;

  constructor(
    private readonly opts: { store: Store; bytesPerSec: number; log: (line: string) => void },
  ) {}

  start(): void {
    if (this.opts.bytesPerSec <= 0) return;
    this.running = this.loop().catch((e) => {
      if (!this.abort.signal.aborted) this.opts.log(`scrub: stopped: ${(e as Error).message}`);
    });
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.running;
  }

  status(): ScrubStatus {
    return { checked: this.checked, bad: this.bad, bytesPerSec: this.opts.bytesPerSec };
  }

  private async loop(): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      for (const digest of this.pass()) {
        if (signal.aborted) return;
        const bytes = await this.check(digest);
        // The rate: a blob's bytes (at least BLOB_MIN_COST) cost bytes / rate seconds, slept after it.
        if (bytes > 0) await sleep((Math.max(bytes, BLOB_MIN_COST) / this.opts.bytesPerSec) * 1000, signal);
      }
      await sleep(PASS_PAUSE_MS, signal);
    }
  }

  /** The blobs of one pass, least recently checked first. */
  private pass(): Digest[] {
    const all: { digest: Digest; at: number }[] = [];
    for (const { digest, rec } of this.opts.store.meta.blobRecords()) all.push({ digest, at: rec.checkedAt ?? 0 });
    all.sort((a, b) => a.at - b.at);
    return all.slice(0, PASS_BLOBS).map((b) => b.digest);
  }

  /** Re-hashes one blob (and its twin); returns the bytes read. */
  private async check(digest: Digest): Promise<number> {
    const { store, log } = this.opts;
    let read = 0;
    const before = statBlob(store.cas, digest);
    if (!before) return 0; // gone (gc): nothing to check
    for (const exec of [false, true]) {
      let actual: Digest;
      try {
        actual = await hashFile(store.cas.pathOf(digest, exec));
      } catch {
        continue; // no twin, or removed meanwhile
      }
      read += before.size;
      if (actual !== digest) {
        store.quarantineBlob(digest);
        this.checked++;
        this.bad++;
        log(`scrub: blob ${digest}${exec ? ' (executable copy)' : ''} is corrupt on disk: quarantined (it is fetched again when next used)`);
        return read;
      }
    }
    this.checked++;
    const after = statBlob(store.cas, digest);
    const rec = store.meta.getBlob(digest);
    if (!rec || !after) return read;
    // Unchanged while it was read: these ctimes are known good now; else only the time of the check moves.
    if (after.ctimeNs === before.ctimeNs && after.size === before.size) recordGood(store.cas, store.meta, digest, rec.size, { checkedAt: Date.now() });
    else store.meta.putBlob(digest, { ...rec, checkedAt: Date.now() });
    return read;
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
