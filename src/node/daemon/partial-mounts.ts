// Mounts from a tree's lazy index, as the daemon runs them (docs/lazy.md
// "Partial metadata"): a program's first open of a file learns its digest
// (and brings its blob) from the index; a traced mount's start-up set and
// the trace's other files come ahead of any open (partial-starts.ts, the
// paced prefetch); `vrift status` counts their files (partial-counts.ts);
// once programs opened many files the mount reads its full listing and
// becomes a lazy mount like any other (lazy-mounts.ts).
import { resolve } from 'node:path';
import type { Digest } from '../../lib/digest.js';
import { VriftError } from '../../lib/errors.js';
import type { LazyConfig } from '../mount/lazy-config.js';
import type { MountManager, MountRecord } from '../mount/mounts.js';
import type { PartialFile, PartialTree } from '../ops/partial-tree.js';
import type { Resolver } from '../ops/resolver.js';
import type { Store } from '../store/store.js';
import { BulkSwitch, SCAN_GAP } from './bulk-switch.js';
import type { LazyMounts } from './lazy-mounts.js';
import { PartialCounts, type PartialHow } from './partial-counts.js';
import { PartialStarts } from './partial-starts.js';

/**
 * A partial mount reads its tree's full listing once programs opened this
 * many of its files: a start-up opens fewer (the node job: ~90), a job
 * that reads much of the tree more.
 */
const UPGRADE_AFTER_FILES = 256;

export interface PartialMountsOptions {
  store: Store;
  mounts: MountManager;
  lazy: LazyMounts;
  resolver: () => Resolver;
  /** The bulk switch's settings (bulk-switch.ts): a partial mount watches its opens by file. */
  config: Pick<LazyConfig, 'bulkAfterPercent' | 'bulkAfterSequential'>;
  log: (line: string) => void;
}

/** What a partial mount's programs opened, by file (its blobs are not listed yet): the upgrade's count and the bulk switch's signs. */
interface Opens {
  /** Files opened (learned). */
  files: number;
  /** Of those, fetched one by one. */
  fetched: { files: number; bytes: number };
  switch: BulkSwitch;
  switched: boolean;
}

export class PartialMounts {
  private readonly starts: PartialStarts;
  /** What programs opened, per partial mount. */
  private readonly opens = new Map<string, Opens>();
  /** Partial mounts reading their full listing now (upgrade), by path: one read each. */
  private readonly upgrading = new Map<string, Promise<void>>();

  constructor(private readonly opts: PartialMountsOptions) {
    this.starts = new PartialStarts({
      store: opts.store,
      resolver: opts.resolver,
      log: opts.log,
      reserve: (bytes) => opts.lazy.reservePrefetch(bytes),
      publish: (root, rel, digest, file, partial, wasLocal) => this.publishFile(root, rel, digest, file, partial, wasLocal),
    });
  }

  /** Daemon stop: the ordinal traces are saved and pushed. */
  stop(): Promise<void> {
    return this.starts.stop();
  }

  /** MOUNT made `rec` from `partial`; with a trace (`startup`), its start-up set runs once `answered` settles. */
  mounted(rec: MountRecord, partial: PartialTree, startup: number[] | undefined, answered: Promise<unknown>): void {
    this.counts(rec, partial, startup !== undefined);
    if (startup) void answered.then(() => this.startPartial(rec, partial, startup));
  }

  /** The mount at `path` (of `tree`) went. */
  unmounted(path: string, tree: Digest | undefined): void {
    this.opens.delete(resolve(path));
    if (tree && !this.opts.mounts.records().some((r) => r.tree === tree)) this.starts.release(tree);
  }

  /**
   * FETCH of file `rel` of the partial mount at `root` whose digest the VDir
   * does not have yet: its piece of the tree's lazy index (checked), then
   * its blob where the index places it (unless `later`: a blob kept on its
   * own, which the open fetches and may stream); the VDir names the digest
   * before FETCH goes on.
   */
  async learn(root: string, rel: string): Promise<{ digest: string; later: boolean }> {
    const rec = this.opts.mounts.recordOf(root);
    const partial = rec?.lazy === undefined ? undefined : await this.opts.resolver().partialTree(rec.tree, rec.lazy);
    const got = await partial?.fetchFile(rel);
    if (!rec || !partial || !got) throw new VriftError('ERR_VRIFT_MOUNTFS_ENOENT', `${rel} is no file of the lazy index of ${root}`, { exitCode: 1 });
    const later = got.loose && !this.opts.store.cas.has(got.digest);
    this.opts.mounts.learnDigest(rec.path, rel, got.digest, later);
    // (a blob left for the open (`later`) is fetched by it)
    const how: PartialHow = partial.prefetched.has(got.digest) ? 'prefetched' : got.wasLocal ? 'local' : 'fetchedOnOpen';
    const counts = this.counts(rec, partial);
    counts.count(got.file.ordinal, got.file.size, how);
    let opens = this.opens.get(rec.path);
    if (!opens) this.opens.set(rec.path, (opens = { files: 0, fetched: { files: 0, bytes: 0 }, switch: new BulkSwitch({ blobs: partial.head.files, bytes: partial.bytes }, this.opts.config), switched: false }));
    if (how !== 'prefetched') this.watchForBulk(rec, opens, got.file, counts, how === 'fetchedOnOpen');
    this.opts.lazy.tracePartial(rec.tree, got.digest, partial);
    this.starts.note(rec.tree, got.file.ordinal, partial.head.files);
    if (++opens.files === UPGRADE_AFTER_FILES) this.upgrade(rec, `${UPGRADE_AFTER_FILES} files opened`).catch(() => undefined);
    return { digest: got.digest, later };
  }

  /**
   * The bulk switch for a partial mount, as a listed mount has it
   * (bulk-switch.ts), by file: once programs scan the tree in order, or
   * needed a share of its files one by one, the mount reads its full
   * listing and pulls the rest in bulk, so a job that reads the whole tree
   * is not slower than restore-then-run. A scan counts every file opened
   * (`fetched` or not: one fetch brings a frame of neighbours, so a tar
   * finds most files here already, and would open 256 before 128 came one
   * by one); the volume, only those fetched.
   */
  private watchForBulk(rec: MountRecord, f: Opens, file: PartialFile, counts: PartialCounts, fetched: boolean): void {
    if (fetched) {
      f.fetched.files++;
      f.fetched.bytes += file.size;
    }
    // (files between two opens that were opened or published already, e.g. brought beside another, are no gap in a scan)
    const scan = f.switch.opened(file.ordinal, (a, b) => {
      let missing = 0;
      for (let o = a + 1; o < b && missing <= SCAN_GAP; o++) if (!counts.has(o)) missing++;
      return missing;
    });
    const volume = f.switch.byVolume({ blobs: f.fetched.files, bytes: f.fetched.bytes });
    const why = scan ?? (volume && `programs needed ${volume} one by one`);
    if (!why || f.switched) return;
    f.switched = true;
    this.upgrade(rec, why)
      .then(() => this.opts.lazy.switchToBulk(rec.path, why))
      .catch(() => undefined); // (logged; files still come on first open)
  }

  /** The size of file `rel` of the mount at `root` when that mount is partial (its names say it), so a large blob may stream. */
  async sizeOf(root: string, rel: string): Promise<number | undefined> {
    const rec = this.opts.mounts.recordOf(root);
    if (rec?.lazy === undefined || this.opts.store.hasTree(rec.tree)) return undefined;
    return (await this.opts.resolver().partialTree(rec.tree, rec.lazy))?.fileAt(rel)?.size;
  }

  /**
   * A traced partial mount's start-up set (partial-starts.ts), then the
   * trace's other files (large ones, or past the set's cap) by the paced
   * prefetch, in the background; one log line each.
   */
  private async startPartial(rec: MountRecord, partial: PartialTree, ordinals: number[]): Promise<void> {
    const counts = this.counts(rec, partial);
    try {
      const r = await this.starts.start(rec.path, partial, ordinals, this.opts.lazy.startupCaps);
      this.opts.log(`prefetch: ${rec.path}: start-up set (from the lazy index): ${r.files} of the first ${ordinals.length} files traced, ${r.bytes} bytes; large ones alone: ${r.large.files}, ${r.large.bytes} bytes; in ${r.ms} ms`);
      if (r.rest.length > 0 && this.opts.mounts.recordOf(rec.path) === rec) {
        await partial.loadPieces(r.rest);
        // (files by blob: one blob may be several files')
        const byDigest = new Map<Digest, (PartialFile & { rel: string })[]>();
        const places = r.rest.map((o) => partial.placeOf(o)).filter((p): p is NonNullable<typeof p> => p !== undefined);
        for (const p of places) byDigest.set(p.digest, [...(byDigest.get(p.digest) ?? []), p.file]);
        const t0 = Date.now();
        let files = 0;
        await this.opts.lazy.prefetchPartial(rec, places, (digest, wasLocal) => {
          if (!wasLocal) partial.prefetched.add(digest);
          for (const file of byDigest.get(digest) ?? []) {
            files++;
            if (!file.exec) this.publishFile(rec.path, file.rel, digest, file, partial, wasLocal);
          }
        });
        this.opts.log(`prefetch: ${rec.path}: the trace's other files (from the lazy index): ${files} of ${r.rest.length} in ${Date.now() - t0} ms`);
      }
    } catch (e) {
      this.opts.log(`prefetch: ${rec.path}: start-up set (from the lazy index) failed: ${(e as Error).message}`);
    } finally {
      counts.startupDone(ordinals.length);
    }
  }

  /** File `rel` of the partial mount at `root` names its blob `digest` (local now; `wasLocal` before this mount's reads), so it opens without a FETCH. */
  private publishFile(root: string, rel: string, digest: Digest, file: PartialFile, partial: PartialTree, wasLocal: boolean): void {
    const { mounts, store } = this.opts;
    mounts.learnDigest(root, rel, digest);
    const ctimeNs = store.meta.getBlob(digest)?.ctimeNs;
    if (ctimeNs !== undefined) mounts.renewBlobCtimes(root, [{ digest, rels: [rel], ctimeNs }]);
    // (what a traced start read itself, ahead or one by one, is prefetched)
    const rec = mounts.recordOf(root);
    if (rec) this.counts(rec, partial).count(file.ordinal, file.size, wasLocal && !partial.prefetched.has(digest) ? 'local' : 'prefetched');
  }

  /** The counts `vrift status` shows of a partial mount (made at its MOUNT, or at its first open after a restart). */
  private counts(rec: MountRecord, partial: PartialTree, traced = false): PartialCounts {
    const prefetch = traced ? 'running' : this.opts.lazy.prefetching ? 'no trace' : 'off';
    return this.opts.lazy.partialCounts(rec.path, () => new PartialCounts(partial.head.files, partial.bytes, prefetch));
  }

  /**
   * The partial mount at `root` is about to move or link files no program
   * opened yet: their digests are read first, from the full listing (the
   * lazy index finds a file by its path in the tree only, so once moved it
   * would find nothing). Throws when the listing cannot be read.
   */
  async nameAll(root: string): Promise<void> {
    const rec = this.opts.mounts.recordOf(root);
    if (rec?.lazy !== undefined) await this.upgrade(rec, 'files not opened yet move');
  }

  /**
   * A partial mount whose programs opened many files (or that moves files
   * not opened yet): the full listing is worth its bytes now (a job reading
   * much of the tree gets the bulk switch, prefetch and accounting, which
   * work on the listing). One read per mount at a time; a failure is logged
   * and thrown.
   */
  private upgrade(rec: MountRecord, why: string): Promise<void> {
    const running = this.upgrading.get(rec.path);
    if (running) return running;
    const read = (async () => {
      try {
        await this.opts.resolver().ensureListing(rec.tree);
      } catch (e) {
        this.opts.log(`lazy index: ${rec.path}: could not read the full listing: ${(e as Error).message} (files still come on first open)`);
        throw e;
      }
      if (this.opts.mounts.recordOf(rec.path) !== rec) return; // unmounted meanwhile
      const named = this.opts.mounts.upgradePartial(rec.path);
      this.opts.log(`lazy index: ${rec.path}: ${why}: read the full listing (${named} more files named); accounting, prefetch and the bulk switch from now on`);
      this.opts.lazy.attach(rec);
    })().finally(() => this.upgrading.delete(rec.path));
    this.upgrading.set(rec.path, read);
    return read;
  }
}
