// LMDB: the source of truth for metadata. One environment under
// $VRIFT_HOME/meta with one named database per kind of record. Safe for
// several processes at once (LMDB's own locking).
import { statfsSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type * as Lmdb from 'lmdb';
import type { Database, RootDatabase } from 'lmdb';
import type { Digest } from '../../lib/digest.js';
import { errnoOf, fsError, isVriftError, VriftError } from '../../lib/errors.js';
import type { TreeSummary } from './tree.js';

/** The blob index: what the CAS holds. */
export interface BlobRecord {
  size: number;
  /** Last time a tree using this blob was materialized, mounted or read (ms since epoch). */
  lastUse: number;
  /** An executable twin exists. */
  exec?: boolean;
  /**
   * The blob file's inode change time (ns) when it was last known good:
   * no user can set it, so a write into the blob (or through a hard link
   * to it) moves it. Absent in records of older stores (then the mtime check applies).
   */
  ctimeNs?: bigint;
  /** The same for the executable twin (its own inode). */
  twinCtimeNs?: bigint;
  /** When the scrub last re-hashed this blob (ms since epoch; 0: never). */
  checkedAt?: number;
}

/** The layout before ctimes were recorded (still read: such a blob gets the mtime check). */
const BLOB_RECORD_SIZE_V1 = 17;
const BLOB_RECORD_SIZE = 41;

/**
 * size f64 | lastUse f64 | flags u8 (bit 0: exec twin) | ctimeNs u64 |
 * twinCtimeNs u64 | checkedAt f64, little-endian; a ctime of 0 is none.
 */
function encodeBlob(r: BlobRecord): Buffer {
  const b = Buffer.allocUnsafe(BLOB_RECORD_SIZE);
  b.writeDoubleLE(r.size, 0);
  b.writeDoubleLE(r.lastUse, 8);
  b.writeUInt8(r.exec ? 1 : 0, 16);
  b.writeBigUInt64LE(r.ctimeNs ?? 0n, 17);
  b.writeBigUInt64LE(r.twinCtimeNs ?? 0n, 25);
  b.writeDoubleLE(r.checkedAt ?? 0, 33);
  return b;
}

function decodeBlob(b: Buffer): BlobRecord {
  const r: BlobRecord = { size: b.readDoubleLE(0), lastUse: b.readDoubleLE(8), exec: (b[16]! & 1) === 1 };
  if (b.length === BLOB_RECORD_SIZE) {
    const c = b.readBigUInt64LE(17);
    const t = b.readBigUInt64LE(25);
    if (c !== 0n) r.ctimeNs = c;
    if (t !== 0n) r.twinCtimeNs = t;
    r.checkedAt = b.readDoubleLE(33);
  }
  return r;
}

const STAT_RECORD_SIZE = 80;

/** dev ino size mtimeMs ctimeMs at (f64 LE each) | digest (32 raw bytes). */
function encodeStat(r: StatRecord): Buffer {
  const b = Buffer.allocUnsafe(STAT_RECORD_SIZE);
  b.writeDoubleLE(r.dev, 0);
  b.writeDoubleLE(r.ino, 8);
  b.writeDoubleLE(r.size, 16);
  b.writeDoubleLE(r.mtimeMs, 24);
  b.writeDoubleLE(r.ctimeMs, 32);
  b.writeDoubleLE(r.at, 40);
  b.write(r.digest, 48, 32, 'hex');
  return b;
}

function decodeStat(b: Buffer): StatRecord {
  return {
    dev: b.readDoubleLE(0),
    ino: b.readDoubleLE(8),
    size: b.readDoubleLE(16),
    mtimeMs: b.readDoubleLE(24),
    ctimeMs: b.readDoubleLE(32),
    at: b.readDoubleLE(40),
    digest: b.toString('hex', 48, 80),
  };
}

export interface TreeRecord extends TreeSummary {
  createdAt: number;
  /** Last materialize/mount/restore of the tree (ms since epoch). */
  lastUse?: number;
}

export interface RefRecord {
  tree: Digest;
  /** The blob of the tree's files' modification times (store/times.ts), when recorded. */
  times?: Digest;
  updatedAt: number;
  /** The signed record the ref was learned from (a shared tier's), kept so peers serve the writer's signature. */
  record?: string;
}

/** The re-ingest cache, as git's index: a file whose stat is unchanged keeps its digest. */
export interface StatRecord {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  digest: Digest;
  /** When the record was written; records of files changed in the second before are not trusted. */
  at: number;
}

/** Blob generations this process writes: unique across processes (pids are reused across containers). */
const generationPrefix = `${Date.now().toString(36)}.${process.pid}.${Math.random().toString(36).slice(2)}`;
let generationCounter = 0;

// Loaded with require: lmdb's CommonJS build loads in half the time of its ESM entry.
const { open } = createRequire(import.meta.url)('lmdb') as typeof Lmdb;

/**
 * lmdb-js's overlappingSync (its default here) flushes a commit after it
 * releases the write lock, holding a separate robust mutex shared by every
 * process of the store. A process that exits or dies during that flush
 * leaves the mutex "owner died"; the next process to commit a large
 * transaction takes it while its own transaction is open, and LMDB then
 * marks that process's environment fatal: every later transaction fails
 * ("No transaction to renew" at open; MDB_PANIC on commit). Measured with
 * five processes opening, writing and exiting in a loop: 5 failures in
 * ~3 600 runs with it, none in ~2 800 without. A daemon could be poisoned
 * so by a CLI killed with Ctrl-C. Without it the flush happens under the
 * write lock, whose owner-died recovery LMDB does cleanly.
 * (VRIFT_LMDB_OVERLAPPING_SYNC=1 restores it, for A/B measurements.)
 */
const OVERLAPPING_SYNC = process.env.VRIFT_LMDB_OVERLAPPING_SYNC === '1';

export class Meta {
  readonly root: RootDatabase;
  /** The blob index, in a fixed binary layout (see encodeBlob): read once per blob on every materialize. */
  private readonly blobs: Database<Buffer, string>;
  readonly trees: Database<TreeRecord, string>;
  readonly refs: Database<RefRecord, string>;
  /** The re-ingest cache, binary (see encodeStat): read for every file of every ingest. */
  private readonly statcache: Database<Buffer, string>;
  /** Trees pinned against GC for a reason other than a ref (a mount, an explicit pin): key [tree, reason]. */
  readonly pins: Database<{ at: number }, [string, string]>;
  /** Free-form records of other components (daemon mounts, peers …), key [component, name]. */
  readonly state: Database<unknown, [string, string]>;
  /** Per tree: its trace, the blobs programs first opened in its lazy mounts, in order (trace.ts). */
  readonly traces: Database<Buffer, string>;

  private constructor(root: RootDatabase, readonly path: string) {
    this.root = root;
    this.blobs = root.openDB({ name: 'blobs', encoding: 'binary' });
    this.trees = root.openDB({ name: 'trees' });
    this.refs = root.openDB({ name: 'refs' });
    this.statcache = root.openDB({ name: 'statcache', encoding: 'binary' });
    this.pins = root.openDB({ name: 'pins' });
    this.state = root.openDB({ name: 'state' });
    this.traces = root.openDB({ name: 'traces', encoding: 'binary' });
  }

  static open(path: string): Meta {
    assertRoomForLockFile(path);
    try {
      return new Meta(open({ path, maxDbs: 16, compression: false, overlappingSync: OVERLAPPING_SYNC }), path);
    } catch (e) {
      if (errnoOf(e)) throw fsError(e, path, 'opening the metadata database');
      throw new VriftError('ERR_VRIFT_META_OPEN', `${path}: cannot open the metadata database: ${(e as Error).message}`, {
        hint: 'check the disk and permissions of $VRIFT_HOME; `vrift verify` can check the store',
        cause: e,
      });
    }
  }

  /** Waits until every write issued so far is committed. */
  async flush(): Promise<void> {
    try {
      await this.root.committed;
    } catch (e) {
      throw metaWriteError(e, this.path);
    }
  }

  getBlob(digest: Digest): BlobRecord | undefined {
    const b = this.blobs.getBinaryFast(digest);
    // A record of another length is not ours (damaged): unknown, so re-checked.
    return b && (b.length === BLOB_RECORD_SIZE || b.length === BLOB_RECORD_SIZE_V1) ? decodeBlob(b) : undefined;
  }

  putBlob(digest: Digest, rec: BlobRecord): void {
    void this.blobs.put(digest, encodeBlob(rec));
  }

  hasBlob(digest: Digest): boolean {
    return this.blobs.doesExist(digest);
  }

  /**
   * Changes whenever a blob leaves the index (gc, quarantine, verify), so a
   * cached answer that assumed "every blob of tree T is here" can tell it
   * must look again.
   */
  blobGeneration(): string {
    return (this.state.get(['store', 'blob-generation']) as string | undefined) ?? '';
  }

  /**
   * Remembers that every blob of `tree` is in the index (`files` file
   * entries, `blobs` distinct blobs), until a blob leaves the index: a
   * warm restore then needs neither the tree's entries nor a lookup per
   * blob. (Materializing still checks every file it links.)
   */
  markTreeComplete(tree: Digest, counts: { files: number; blobs: number }): void {
    void this.state.put(['complete', tree], { ...counts, generation: this.blobGeneration() });
  }

  /** The counts markTreeComplete recorded, while no blob has left the index since. */
  treeComplete(tree: Digest): { files: number; blobs: number } | undefined {
    const rec = this.state.get(['complete', tree]) as { files: number; blobs: number; generation: string } | undefined;
    return rec && rec.generation === this.blobGeneration() ? { files: rec.files, blobs: rec.blobs } : undefined;
  }

  removeBlob(digest: Digest): void {
    // Bumped with every removal (not once per process: a daemon lives long,
    // and a reader must never see a removal without a new generation).
    this.bumpBlobGeneration();
    void this.blobs.remove(digest);
  }

  /**
   * Inside transact(): drops blobs from the index (and the tree records of
   * those that are trees), bumping the blob generation once.
   */
  dropBlobs(digests: Iterable<Digest>): void {
    this.bumpBlobGeneration();
    for (const d of digests) {
      void this.blobs.remove(d);
      void this.trees.remove(d);
    }
  }

  private bumpBlobGeneration(): void {
    void this.state.put(['store', 'blob-generation'], `${generationPrefix}.${++generationCounter}`);
  }

  /**
   * Runs `fn` in one write transaction, committed when this returns: it
   * reads the latest state (no other process commits meanwhile) and its
   * writes land together. Keep `fn` short: every writer waits for it.
   */
  transact<T>(fn: () => T): T {
    try {
      return this.root.transactionSync(fn);
    } catch (e) {
      // LMDB's own failures (a full disk or map) become one line; anything `fn` threw stays as it is.
      if (!isVriftError(e) && (errnoOf(e) || /MDB_|ENOSPC|No space left/.test(String((e as Error | undefined)?.message)))) throw metaWriteError(e, this.path);
      throw e;
    }
  }

  /** Reads through `fn` on the latest committed state (a plain read may see a snapshot from earlier in this task). */
  latest<T>(fn: () => T): T {
    return this.transact(fn);
  }

  /** Every blob record (the scrub orders them by when they were last checked). */
  *blobRecords(): Iterable<{ digest: Digest; rec: BlobRecord }> {
    for (const { key, value } of this.blobs.getRange()) {
      if (value.length === BLOB_RECORD_SIZE || value.length === BLOB_RECORD_SIZE_V1) yield { digest: key, rec: decodeBlob(value) };
    }
  }

  blobDigests(): Iterable<Digest> {
    return this.blobs.getKeys();
  }

  /** At most `limit` digests of the index in key order, from the first after `after` (all: undefined). */
  blobDigestsAfter(after: Digest | undefined, limit: number): Digest[] {
    const out: Digest[] = [];
    for (const key of this.blobs.getKeys(after === undefined ? { limit } : { start: after, limit: limit + 1 })) if (key !== after) out.push(key);
    return out.slice(0, limit);
  }

  getStat(absPath: string): StatRecord | undefined {
    const b = this.statcache.getBinaryFast(absPath);
    return b && b.length === STAT_RECORD_SIZE ? decodeStat(b) : undefined;
  }

  putStat(absPath: string, rec: StatRecord): void {
    void this.statcache.put(absPath, encodeStat(rec));
  }

  /** The times blobs refs name (store/times.ts). */
  refTimes(): Set<Digest> {
    const out = new Set<Digest>();
    for (const { value } of this.refs.getRange()) if (value.times !== undefined) out.add(value.times);
    return out;
  }

  /** How many blobs the index holds (O(1): LMDB's own count). */
  blobCount(): number {
    return (this.blobs.getStats() as { entryCount?: number }).entryCount ?? 0;
  }

  /** Marks a tree used now (gc's LRU order: a blob is as recent as the most recent tree using it). */
  touchTree(tree: Digest, now = Date.now()): void {
    const rec = this.trees.get(tree);
    if (rec && now - (rec.lastUse ?? 0) > 1000) void this.trees.put(tree, { ...rec, lastUse: now });
  }

  pinnedTrees(): Set<Digest> {
    const out = new Set<Digest>();
    for (const { value } of this.refs.getRange()) out.add(value.tree);
    for (const key of this.pins.getKeys()) out.add(key[0]);
    return out;
  }

  /** How many blobs the index lists, and their bytes (a walk of the index: for metrics, cached by the caller). */
  blobTotals(): { blobs: number; bytes: number } {
    let blobs = 0;
    let bytes = 0;
    for (const { value } of this.blobs.getRange()) {
      blobs++;
      if (value.length >= 8) bytes += value.readDoubleLE(0); // every record layout starts with the size
    }
    return { blobs, bytes };
  }

  async close(): Promise<void> {
    // lmdb-js 3.5 deadlocks in its native close (the environment's writing
    // lock still held) when it runs in the same event-loop turn as a
    // synchronous commit: four transact() calls and then close() hung a
    // process for ever (test/store/close.spec.ts). Let the turn end first.
    await new Promise((resolve) => setImmediate(resolve));
    await this.root.close();
  }
}

/** Free space LMDB needs to create its files (the lock file is 8 KiB, the data file starts with a few pages). */
const MIN_FREE_TO_CREATE = 256 << 10;

/**
 * LMDB maps its lock file into memory and writes it through the mapping:
 * on a full disk, touching a page of it that was never allocated kills the
 * process with SIGBUS, no error to catch. So a database whose lock file is
 * not there yet (or was never written) is opened only with room to spare.
 */
function assertRoomForLockFile(path: string): void {
  try {
    if (statSync(join(path, 'lock.mdb')).blocks > 0) return; // written before: its pages exist
  } catch {
    /* not there yet */
  }
  let free: number;
  try {
    const fs = statfsSync(path);
    free = fs.bavail * fs.bsize;
  } catch {
    return; // not a directory we can look at: LMDB's own error says why
  }
  if (free < MIN_FREE_TO_CREATE) {
    throw new VriftError('ERR_VRIFT_META_FULL', `${path}: disk full (${free} bytes free): cannot create the metadata database`, {
      hint: 'free space on that filesystem, or point VRIFT_HOME at another one',
    });
  }
}

export function metaWriteError(e: unknown, path: string): VriftError {
  const msg = (e as Error | undefined)?.message ?? String(e);
  if (errnoOf(e) === 'ENOSPC' || /ENOSPC|No space left|MDB_MAP_FULL/i.test(msg)) {
    return new VriftError('ERR_VRIFT_META_FULL', `${path}: disk full while writing metadata`, {
      hint: 'free space or run `vrift gc --max-size SIZE`; earlier data is intact',
      cause: e,
    });
  }
  return new VriftError('ERR_VRIFT_META_WRITE', `${path}: writing metadata failed: ${msg}`, { cause: e });
}
