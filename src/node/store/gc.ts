// `vrift gc [--max-size SIZE]`: evict blobs nothing needs, least recently
// used first. Kept: trees named by a ref or pinned by a mount, and what
// running operations rely on (leases.ts): the trees their leases name, and
// every blob admitted since the oldest of them began. Without --max-size
// every other blob goes; with it, eviction stops once the store fits.
//
// gc may run while operations run, in any process. It evicts in batches:
// one write transaction checks that no lease began or grew since gc decided
// what to keep (else it decides again), marks the batch in flight and drops
// the batch from the index; then the files are unlinked and the mark is
// cleared. leases.ts explains why an operation is then never broken.
import { lstatSync, readdirSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Digest } from '../../lib/digest.js';
import { isVriftError } from '../../lib/errors.js';
import type { Store } from './store.js';
import { keptPieceDigests, localLazyTree } from './lazy-index.js';
import { localTimes } from './times.js';
import { listCasFiles } from './verify.js';

export interface GcResult {
  evicted: number;
  freedBytes: number;
  kept: number;
  keptBytes: number;
  pinnedBytes: number;
  /** Bytes kept only because running operations rely on them (their leases). */
  leasedBytes: number;
  /** Operations running (live leases) when gc last decided what to keep. */
  leases: number;
  /** Pinned trees whose blob could not be read (their blobs are kept regardless). */
  unreadablePins: Digest[];
  tempFilesRemoved: number;
}

/** A temp file unchanged this long belongs to a writer that died. */
const STALE_TEMP_MS = 60 * 60 * 1000;
/**
 * A CAS file changed this long before the oldest lease began still counts
 * as admitted during it: inode times come from a coarse clock (a tick
 * behind Date.now()) and some filesystems keep whole seconds.
 */
export const LEASE_CTIME_MARGIN_MS = 2000;
/** Blobs dropped from the index per write transaction (then unlinked). */
const BATCH = 256;

export interface GcOptions {
  /** Evict only until the store fits in this many bytes. */
  maxSize?: number;
  /** Blobs to keep besides those of pinned trees (files written inside mounts, not in any tree yet). */
  keep?: Iterable<Digest>;
}

/** What gc keeps, as decided at one lease generation. */
export interface KeepSet {
  generation: number;
  pinned: Set<Digest>;
  /** Blobs of the trees live leases name. */
  leased: Set<Digest>;
  /** Files whose ctime is at or after this (ms) were admitted by a running operation; undefined without leases. */
  since: number | undefined;
  leases: number;
}

export interface OnDisk {
  digest: Digest;
  size: number;
  /** The latest ctime of the blob and its twin (ms). */
  ctimeMs: number;
  lastUse: number;
}

/**
 * What gc found: what to keep (at one lease generation) and the blobs it
 * may evict, least recently used first. `runGc` evicts them, deciding
 * again whenever a lease changed meanwhile.
 */
export interface GcPlan {
  keep: KeepSet;
  extra: Digest[];
  unreadable: Set<Digest>;
  files: Map<Digest, OnDisk>;
  candidates: OnDisk[];
  total: number;
  maxSize: number | undefined;
}

export async function gc(store: Store, opts: GcOptions = {}): Promise<GcResult> {
  return runGc(store, planGc(store, opts));
}

/** gc's first step: what to keep, what is on disk, the eviction order. Changes nothing. */
export function planGc(store: Store, opts: GcOptions = {}): GcPlan {
  const extra = [...(opts.keep ?? [])];
  const unreadable = new Set<Digest>();

  // 1. What to keep: pinned trees, the caller's blobs, what leases name.
  const keep = keepSet(store, extra, unreadable);

  // 2. Everything on disk, with its size, ctime and last use (files the index lost count as unused).
  const files = new Map<Digest, OnDisk>();
  for (const f of listCasFiles(store)) {
    let st;
    try {
      st = lstatSync(f.path);
    } catch {
      continue;
    }
    const d = files.get(f.digest);
    if (d) {
      d.size += st.size;
      d.ctimeMs = Math.max(d.ctimeMs, st.ctimeMs);
    } else files.set(f.digest, { digest: f.digest, size: st.size, ctimeMs: st.ctimeMs, lastUse: 0 });
  }
  // A blob is as recently used as the most recently used tree that holds it.
  const treeUse = new Map<Digest, number>();
  for (const { key, value } of store.meta.trees.getRange()) {
    if (keep.pinned.has(key) || !value.lastUse || !files.has(key)) continue;
    try {
      for (const e of store.getTree(key).entries) {
        if (e.kind === 'file' && (treeUse.get(e.digest!) ?? 0) < value.lastUse) treeUse.set(e.digest!, value.lastUse);
      }
    } catch (e) {
      if (!isVriftError(e)) throw e;
    }
    if ((treeUse.get(key) ?? 0) < value.lastUse) treeUse.set(key, value.lastUse);
  }

  let total = 0;
  const candidates: OnDisk[] = [];
  for (const f of files.values()) {
    total += f.size;
    if (keep.pinned.has(f.digest)) continue;
    f.lastUse = Math.max(store.meta.getBlob(f.digest)?.lastUse ?? 0, treeUse.get(f.digest) ?? 0);
    candidates.push(f);
  }
  candidates.sort((a, b) => a.lastUse - b.lastUse || (a.digest < b.digest ? -1 : 1));
  return { keep, extra, unreadable, files, candidates, total, maxSize: opts.maxSize };
}

/** gc's second step: evicts the plan's candidates in batches, until the store fits; sweeps stale temp files. */
export async function runGc(store: Store, plan: GcPlan): Promise<GcResult> {
  const res: GcResult = { evicted: 0, freedBytes: 0, kept: 0, keptBytes: 0, pinnedBytes: 0, leasedBytes: 0, leases: 0, unreadablePins: [], tempFilesRemoved: 0 };
  const { files, candidates, maxSize } = plan;
  let { keep, total } = plan;

  // 3. Evict least recently used first, in batches, until the store fits.
  const evicted = new Set<Digest>();
  const batchId = `${process.pid}.${randomBytes(6).toString('hex')}`;
  let next = 0;
  for (;;) {
    const batch: OnDisk[] = [];
    let j = next;
    let projected = total;
    for (; j < candidates.length && batch.length < BATCH; j++) {
      if (maxSize !== undefined && projected <= maxSize) break;
      const c = candidates[j]!;
      // With leases live, the ctime counts: look again (the file may have been replaced since the scan).
      if (keep.since !== undefined) restat(store, c);
      if (keep.pinned.has(c.digest) || kept(keep, c)) continue;
      batch.push(c);
      projected -= c.size;
    }
    if (batch.length === 0) break;
    const checked = store.meta.transact(() => {
      if (store.leases.generation() !== keep.generation) return false;
      store.leases.markGcBatch(batchId);
      store.meta.dropBlobs(batch.map((c) => c.digest));
      return true;
    });
    if (!checked) {
      // A lease began or named a tree since: decide again, and retry from the same place.
      keep = keepSet(store, plan.extra, plan.unreadable);
      continue;
    }
    try {
      // The index no longer lists them: now the files can go.
      for (const c of batch) {
        res.freedBytes += store.cas.remove(c.digest);
        total -= c.size;
        evicted.add(c.digest);
      }
    } finally {
      store.meta.transact(() => {
        // A writer that found a file just before it was unlinked may have indexed it again: the index must not lie.
        const relisted = batch.filter((c) => store.meta.hasBlob(c.digest) && !store.cas.has(c.digest)).map((c) => c.digest);
        if (relisted.length > 0) store.meta.dropBlobs(relisted);
        store.leases.clearGcBatch(batchId);
      });
    }
    next = j;
  }
  res.evicted = evicted.size;
  res.keptBytes = total;
  res.kept = files.size - evicted.size;
  res.leases = keep.leases;
  for (const f of files.values()) {
    if (keep.pinned.has(f.digest)) res.pinnedBytes += f.size;
    else if (!evicted.has(f.digest) && kept(keep, f)) res.leasedBytes += f.size;
  }
  res.unreadablePins = [...plan.unreadable];

  // 4. Temp files of writers that crashed. By ctime, not mtime: a writer
  // gives its temp file the canonical blob mtime (1970) just before it
  // renames it into cas/.
  const now = Date.now();
  for (const name of safeList(store.layout.tmp)) {
    const p = join(store.layout.tmp, name);
    try {
      if (now - lstatSync(p).ctimeMs > STALE_TEMP_MS) {
        rmSync(p, { force: true, recursive: true });
        res.tempFilesRemoved++;
      }
    } catch {
      /* raced with its owner; fine */
    }
  }
  await store.meta.flush();
  return res;
}

/** Kept for a running operation: a blob of a leased tree, or admitted since the oldest lease began. */
function kept(keep: KeepSet, f: OnDisk): boolean {
  return keep.leased.has(f.digest) || (keep.since !== undefined && f.ctimeMs >= keep.since);
}

/** Refreshes a candidate's ctime from disk (blob and twin). */
function restat(store: Store, f: OnDisk): void {
  for (const exec of [false, true]) {
    const st = store.cas.statOf(f.digest, exec);
    if (st) f.ctimeMs = Math.max(f.ctimeMs, st.ctimeMs);
  }
}

/** Decides what to keep, on the latest state of the leases (removing those of dead processes). */
function keepSet(store: Store, extra: Digest[], unreadable: Set<Digest>): KeepSet {
  const { generation, leases } = store.meta.transact(() => store.leases.snapshotForGc());
  const pinned = new Set<Digest>(extra);
  const pinnedTrees = store.meta.pinnedTrees();
  addTrees(store, pinnedTrees, pinned, unreadable);
  // The times blobs beside them (store/times.ts): those refs name, and the last ingest's of each tree kept.
  for (const t of store.meta.refTimes()) pinned.add(t);
  addTimes(store, pinnedTrees, pinned);
  const leased = new Set<Digest>();
  // A leased tree not readable (yet): an operation may name a tree before it has fetched it.
  const leasedTrees = leases.flatMap((l) => l.trees);
  addTrees(store, leasedTrees, leased, undefined);
  addTimes(store, leasedTrees, leased);
  const oldest = leases.reduce((m, l) => Math.min(m, l.startedAt), Infinity);
  return { generation, pinned, leased, since: leases.length > 0 ? oldest - LEASE_CTIME_MARGIN_MS : undefined, leases: leases.length };
}

/** Adds each tree blob and every file blob in it. */
function addTrees(store: Store, trees: Iterable<Digest>, into: Set<Digest>, unreadable: Set<Digest> | undefined): void {
  for (const tree of new Set(trees)) {
    into.add(tree);
    try {
      for (const e of store.getTree(tree).entries) if (e.kind === 'file') into.add(e.digest!);
    } catch (e) {
      if (!isVriftError(e)) throw e;
      // Known here only from its lazy index (a partial mount, docs/lazy.md): the index and what it named so far.
      const lazy = localLazyTree(store.meta, tree);
      if (!lazy) {
        unreadable?.add(tree);
        continue;
      }
      into.add(lazy.lazy).add(lazy.names);
      for (const d of keptPieceDigests(store.meta, lazy.lazy)) into.add(d);
    }
  }
}

/** Adds the times blob the last ingest here recorded for each tree. */
function addTimes(store: Store, trees: Iterable<Digest>, into: Set<Digest>): void {
  for (const tree of trees) {
    const t = localTimes(store.meta, tree);
    if (t !== undefined) into.add(t);
  }
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
