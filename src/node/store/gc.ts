// `vrift gc [--max-size SIZE]`: evict blobs no pinned tree needs, least
// recently used first. Trees named by a ref, or pinned by a mount, keep
// their blobs. Without --max-size every unpinned blob goes; with it,
// eviction stops once the store fits.
import { readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Digest } from '../../lib/digest.js';
import { isVriftError } from '../../lib/errors.js';
import type { Store } from './store.js';
import { listCasFiles } from './verify.js';

export interface GcResult {
  evicted: number;
  freedBytes: number;
  kept: number;
  keptBytes: number;
  pinnedBytes: number;
  /** Pinned trees whose blob could not be read (their blobs are kept regardless). */
  unreadablePins: Digest[];
  tempFilesRemoved: number;
}

/** A temp file this old belongs to a writer that died. */
const STALE_TEMP_MS = 60 * 60 * 1000;

export interface GcOptions {
  /** Evict only until the store fits in this many bytes. */
  maxSize?: number;
  /** Blobs to keep besides those of pinned trees (files written inside mounts, not in any tree yet). */
  keep?: Iterable<Digest>;
}

export async function gc(store: Store, opts: GcOptions = {}): Promise<GcResult> {
  const res: GcResult = { evicted: 0, freedBytes: 0, kept: 0, keptBytes: 0, pinnedBytes: 0, unreadablePins: [], tempFilesRemoved: 0 };

  // 1. What pinned trees need: the tree blobs and every file blob in them.
  const live = new Set<Digest>();
  for (const tree of store.meta.pinnedTrees()) {
    live.add(tree);
    try {
      for (const e of store.getTree(tree).entries) if (e.kind === 'file') live.add(e.digest!);
    } catch (e) {
      if (!isVriftError(e)) throw e;
      res.unreadablePins.push(tree);
    }
  }

  // Blobs the caller keeps too (files written inside mounts, not in any tree yet).
  for (const d of opts.keep ?? []) live.add(d);

  // 2. Everything on disk, with its size and last use (files the index lost count as unused).
  const sizes = new Map<Digest, number>();
  for (const f of listCasFiles(store)) {
    let size = 0;
    try {
      size = statSync(f.path).size;
    } catch {
      continue;
    }
    sizes.set(f.digest, (sizes.get(f.digest) ?? 0) + size);
  }
  // A blob is as recently used as the most recently used tree that holds it.
  const treeUse = new Map<Digest, number>();
  for (const { key, value } of store.meta.trees.getRange()) {
    if (live.has(key) || !value.lastUse || !sizes.has(key)) continue;
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
  const candidates: { digest: Digest; size: number; lastUse: number }[] = [];
  for (const [digest, size] of sizes) {
    total += size;
    if (live.has(digest)) {
      res.pinnedBytes += size;
      continue;
    }
    candidates.push({ digest, size, lastUse: Math.max(store.meta.getBlob(digest)?.lastUse ?? 0, treeUse.get(digest) ?? 0) });
  }

  // 3. Evict least recently used first, until the store fits.
  candidates.sort((a, b) => a.lastUse - b.lastUse || (a.digest < b.digest ? -1 : 1));
  for (const c of candidates) {
    if (opts.maxSize !== undefined && total <= opts.maxSize) break;
    const freed = store.forgetBlob(c.digest);
    if (store.meta.trees.doesExist(c.digest)) void store.meta.trees.remove(c.digest);
    total -= c.size;
    res.evicted++;
    res.freedBytes += freed;
  }
  res.keptBytes = total;
  res.kept = sizes.size - res.evicted;

  // 4. Temp files of writers that crashed.
  const now = Date.now();
  for (const name of safeList(store.layout.tmp)) {
    const p = join(store.layout.tmp, name);
    try {
      if (now - statSync(p).mtimeMs > STALE_TEMP_MS) {
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

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
