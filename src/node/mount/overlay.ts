// The changes made inside a mount (by programs under the shim), kept as an
// overlay over the mount's base tree: one LMDB record per changed path in
// meta.state under ['ovl', '<vdir name>/<rel>'], either the path's new
// entry or a deletion mark. The daemon keeps a cache of each overlay in
// memory (the truth while it runs; LMDB writes are asynchronous and
// ordered), and a restarted daemon replays base + overlay into the VDir.
// `vrift snapshot` turns base + overlay into a new tree.
import type { Digest } from '../../lib/digest.js';
import type { Store } from '../store/store.js';
import { sortEntries, type TreeEntry } from '../store/tree.js';

export interface OverlayEntry {
  kind: 'file' | 'dir' | 'symlink';
  /** Tree mode: 0o644/0o755 for files, 0o755 dirs, 0o777 symlinks. */
  mode: number;
  size: number;
  digest?: Digest;
  /** A file in the mount's upper layer (upper.ts): its name there, 64 hex. No digest until a snapshot hashes it. */
  upper?: string;
  target?: string;
  mtimeSec: number;
}

export type OverlayValue = OverlayEntry | { deleted: true };

const caches = new WeakMap<Store, Map<string, Map<string, OverlayValue>>>();

function cacheOf(store: Store): Map<string, Map<string, OverlayValue>> {
  let c = caches.get(store);
  if (!c) caches.set(store, (c = new Map()));
  return c;
}

/** Reads an overlay straight from LMDB (no cache). */
export function readOverlay(store: Store, name: string): Map<string, OverlayValue> {
  const out = new Map<string, OverlayValue>();
  const prefix = `${name}/`;
  for (const { key, value } of store.meta.state.getRange({ start: ['ovl', prefix], end: ['ovl', `${name}0`] })) {
    const k = key[1];
    if (typeof k === 'string' && k.startsWith(prefix)) out.set(k.slice(prefix.length), value as OverlayValue);
  }
  return out;
}

/** The overlay of mount `name` (cached after the first read). */
export function overlayOf(store: Store, name: string): Map<string, OverlayValue> {
  const cache = cacheOf(store);
  let o = cache.get(name);
  if (!o) cache.set(name, (o = readOverlay(store, name)));
  return o;
}

// Records reach LMDB at once when changes are rare, and in batches under a
// stream of them: at most one write transaction (one fdatasync) per
// FLUSH_MS instead of one per change — a `tar -x` into a mount is one
// change per file. The in-memory overlay is the truth meanwhile; a daemon
// killed with SIGKILL during such a stream loses at most its last FLUSH_MS
// of records (those files stay in the upper directory, unnamed).
const FLUSH_MS = 20;
const unwritten = new WeakMap<Store, Map<string, OverlayValue>>();
const timers = new WeakMap<Store, NodeJS.Timeout>();
const lastFlush = new WeakMap<Store, number>();

/** Writes every overlay record not yet in LMDB (one transaction). */
export function flushOverlay(store: Store): void {
  const t = timers.get(store);
  if (t) clearTimeout(t);
  timers.delete(store);
  const batch = unwritten.get(store);
  if (!batch || batch.size === 0) return;
  unwritten.delete(store);
  lastFlush.set(store, Date.now());
  // puts issued in one event turn are one LMDB transaction
  for (const [key, value] of batch) void store.meta.state.put(['ovl', key], value);
}

/** Records one path's new state (an entry, or deleted). */
export function setOverlay(store: Store, name: string, rel: string, value: OverlayValue): void {
  overlayOf(store, name).set(rel, value);
  let batch = unwritten.get(store);
  if (!batch) unwritten.set(store, (batch = new Map()));
  batch.set(`${name}/${rel}`, value);
  if (timers.has(store)) return;
  const wait = (lastFlush.get(store) ?? 0) + FLUSH_MS - Date.now();
  if (wait <= 0) flushOverlay(store);
  else timers.set(store, setTimeout(() => flushOverlay(store), wait).unref());
}

/** Forgets every change of a mount (unmount, or a fresh mount at the same path). */
export function clearOverlay(store: Store, name: string): void {
  const batch = unwritten.get(store);
  if (batch) for (const key of [...batch.keys()]) if (key.startsWith(`${name}/`)) batch.delete(key);
  const o = readOverlay(store, name);
  for (const rel of o.keys()) void store.meta.state.remove(['ovl', `${name}/${rel}`]);
  cacheOf(store).delete(name);
}

/** Every blob digest any overlay refers to (kept by gc). */
export function overlayDigests(store: Store): Set<Digest> {
  const out = new Set<Digest>();
  for (const { value } of store.meta.state.getRange({ start: ['ovl', ''], end: ['ovl', '\uffff'] })) {
    const v = value as OverlayValue;
    if (!('deleted' in v) && v.digest) out.add(v.digest);
  }
  return out;
}

/**
 * The mount's current state: base tree entries with the overlay applied,
 * sorted (parents first), plus the mtime of each path the overlay set and
 * the upper-layer file of each path that has one (its entry's digest is
 * then a placeholder: the upper name, until a snapshot hashes the file).
 */
export function mergedEntries(
  base: TreeEntry[],
  overlay: Map<string, OverlayValue>,
): { entries: TreeEntry[]; mtimes: Map<string, number>; uppers: Map<string, string> } {
  const uppers = new Map<string, string>();
  if (overlay.size === 0) return { entries: base, mtimes: new Map(), uppers }; // a fresh mount: the tree as decoded (sorted, valid)
  const byPath = new Map<string, TreeEntry>();
  for (const e of base) byPath.set(e.path, e);
  const mtimes = new Map<string, number>();
  for (const [rel, v] of overlay) {
    if ('deleted' in v) {
      byPath.delete(rel);
      continue;
    }
    const e: TreeEntry = { path: rel, kind: v.kind, mode: v.mode, size: v.size };
    if (v.digest) e.digest = v.digest;
    if (v.upper) {
      e.digest = v.upper;
      uppers.set(rel, v.upper);
    }
    if (v.target !== undefined) e.target = v.target;
    byPath.set(rel, e);
    mtimes.set(rel, v.mtimeSec);
  }
  // A deleted directory takes anything left under it (defensive: the
  // daemon deletes children first, but a torn overlay must still be a tree).
  const entries = sortEntries([...byPath.values()]).filter((e) => {
    const slash = e.path.lastIndexOf('/');
    if (slash < 0) return true;
    const parent = byPath.get(e.path.slice(0, slash));
    if (parent?.kind === 'dir') return true;
    byPath.delete(e.path);
    return false;
  });
  return { entries, mtimes, uppers };
}
