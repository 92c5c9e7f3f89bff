// The changes made inside a mount (by programs under the shim), kept as an
// overlay over the mount's base tree: per changed path, its new entry or a
// deletion mark, recorded in meta.state (see "Persistence" below). The daemon keeps a cache of each overlay in
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

// Persistence. One LMDB record per flush of a mount's changes, key
// ['ovlb', '<vdir name>/<seq>'] (seq: 16 digits, increasing), value: the
// JSON of [[rel, value], ...] in the order they were made, as UTF-8 bytes
// (see encodeBatch). One put per
// burst instead of one per path: under `tar -x` into a mount (a change per
// file), per-path records were most of the daemon's CPU. Reading replays
// the batches in order; a mount whose batches pile up is compacted into
// one. Vrift before this wrote one record per path, ['ovl', '<name>/<rel>']:
// still read (first), and folded in at the next compaction.
const BATCHES = 'ovlb';
const LEGACY = 'ovl';
/** A mount with more batch records than this is compacted into one (at read, or when it reaches it). */
const COMPACT_AFTER = 256;

interface Persisted {
  /** Batch record keys of each mount, oldest first (known since its overlay was read). */
  keys: Map<string, string[]>;
  /** Legacy per-path keys of each mount, dropped at its next compaction. */
  legacy: Map<string, string[]>;
  lastSeq: number;
}
const persisted = new WeakMap<Store, Persisted>();

function persistedOf(store: Store): Persisted {
  let p = persisted.get(store);
  if (!p) persisted.set(store, (p = { keys: new Map(), legacy: new Map(), lastSeq: 0 }));
  return p;
}

/**
 * A batch record's value: its JSON as UTF-8 bytes, which lmdb-js stores as
 * they are. Handed the string, its encoder re-encoded it in a JS loop:
 * ~15 ms of the daemon's CPU per `tar -x` of node_modules (3 MB of JSON).
 */
function encodeBatch(pairs: Map<string, OverlayValue>): Buffer {
  return Buffer.from(JSON.stringify([...pairs]));
}

/** A batch record's pairs: bytes (encodeBatch), or the JSON string earlier versions stored. Throws when damaged. */
function decodeBatch(value: unknown): [string, OverlayValue][] {
  const text = typeof value === 'string' ? value : value instanceof Uint8Array ? Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('utf8') : undefined;
  if (text === undefined) throw new Error('an overlay record that is neither JSON text nor bytes');
  return JSON.parse(text) as [string, OverlayValue][];
}

function nextKey(store: Store, name: string): string {
  const p = persistedOf(store);
  p.lastSeq = Math.max(p.lastSeq + 1, Date.now() * 1000);
  return `${name}/${String(p.lastSeq).padStart(16, '0')}`;
}

/** Reads an overlay straight from LMDB (no cache): the legacy per-path records, then the batches in order. */
export function readOverlay(store: Store, name: string): Map<string, OverlayValue> {
  const out = new Map<string, OverlayValue>();
  const prefix = `${name}/`;
  const p = persistedOf(store);
  const legacy: string[] = [];
  for (const { key, value } of store.meta.state.getRange({ start: [LEGACY, prefix], end: [LEGACY, `${name}0`] })) {
    const k = key[1];
    if (typeof k === 'string' && k.startsWith(prefix)) {
      out.set(k.slice(prefix.length), value as OverlayValue);
      legacy.push(k);
    }
  }
  const keys: string[] = [];
  for (const { key, value } of store.meta.state.getRange({ start: [BATCHES, prefix], end: [BATCHES, `${name}0`] })) {
    const k = key[1];
    if (typeof k !== 'string' || !k.startsWith(prefix)) continue;
    keys.push(k);
    p.lastSeq = Math.max(p.lastSeq, Number(k.slice(prefix.length)) || 0);
    let pairs: [string, OverlayValue][];
    try {
      pairs = decodeBatch(value);
    } catch {
      continue; // our own record, damaged: what it held is lost, the rest still applies
    }
    for (const [rel, v] of pairs) out.set(rel, v);
  }
  p.keys.set(name, keys);
  p.legacy.set(name, legacy);
  return out;
}

/** The overlay of mount `name` (cached after the first read, and compacted then if its records piled up). */
export function overlayOf(store: Store, name: string): Map<string, OverlayValue> {
  const cache = cacheOf(store);
  let o = cache.get(name);
  if (!o) {
    cache.set(name, (o = readOverlay(store, name)));
    const p = persistedOf(store);
    if ((p.keys.get(name)?.length ?? 0) > COMPACT_AFTER || (p.legacy.get(name)?.length ?? 0) > 0) compact(store, name, o);
  }
  return o;
}

/** Replaces a mount's records by one batch of its whole overlay (one transaction: puts and removes of one event turn). */
function compact(store: Store, name: string, overlay: Map<string, OverlayValue>): void {
  const p = persistedOf(store);
  for (const k of p.keys.get(name) ?? []) void store.meta.state.remove([BATCHES, k]);
  for (const k of p.legacy.get(name) ?? []) void store.meta.state.remove([LEGACY, k]);
  p.legacy.set(name, []);
  const key = nextKey(store, name);
  void store.meta.state.put([BATCHES, key], encodeBatch(overlay));
  p.keys.set(name, [key]);
}

// Records reach LMDB at once when changes are rare, and in batches under a
// stream of them: at most one write transaction (one fdatasync) per
// FLUSH_MS instead of one per change — a `tar -x` into a mount is one
// change per file, and each commit cost the daemon about a millisecond.
// The in-memory overlay is the truth meanwhile; a daemon killed with
// SIGKILL during such a stream loses at most its last FLUSH_MS of records,
// which the restarted daemon applies again from the journal files
// (journal.ts keeps a file until a second after its writer is gone).
const FLUSH_MS = 100;
/** Changes not yet in LMDB: per mount name, path → value (the latest). */
const unwritten = new WeakMap<Store, Map<string, Map<string, OverlayValue>>>();
const timers = new WeakMap<Store, NodeJS.Timeout>();
const lastFlush = new WeakMap<Store, number>();

/** Writes every overlay change not yet in LMDB (one record per mount, one transaction). */
export function flushOverlay(store: Store): void {
  const t = timers.get(store);
  if (t) clearTimeout(t);
  timers.delete(store);
  const pending = unwritten.get(store);
  if (!pending || pending.size === 0) return;
  unwritten.delete(store);
  lastFlush.set(store, Date.now());
  const p = persistedOf(store);
  // puts issued in one event turn are one LMDB transaction
  for (const [name, batch] of pending) {
    if (batch.size === 0) continue;
    const keys = p.keys.get(name) ?? [];
    if (keys.length >= COMPACT_AFTER) {
      compact(store, name, overlayOf(store, name)); // the cache holds this batch already
      continue;
    }
    const key = nextKey(store, name);
    void store.meta.state.put([BATCHES, key], encodeBatch(batch));
    keys.push(key);
    p.keys.set(name, keys);
  }
}

/** Records one path's new state (an entry, or deleted). */
export function setOverlay(store: Store, name: string, rel: string, value: OverlayValue): void {
  setOverlays(store, name, [[rel, value]]);
}

/** Records the new state of several paths, in order (a burst of creates: one lookup of the maps for all). */
export function setOverlays(store: Store, name: string, changes: readonly (readonly [string, OverlayValue])[]): void {
  if (changes.length === 0) return;
  const overlay = overlayOf(store, name);
  let pending = unwritten.get(store);
  if (!pending) unwritten.set(store, (pending = new Map()));
  let batch = pending.get(name);
  if (!batch) pending.set(name, (batch = new Map()));
  for (const [rel, value] of changes) {
    overlay.set(rel, value);
    batch.set(rel, value);
  }
  if (timers.has(store)) return;
  const wait = (lastFlush.get(store) ?? 0) + FLUSH_MS - Date.now();
  if (wait <= 0) flushOverlay(store);
  else timers.set(store, setTimeout(() => flushOverlay(store), wait).unref());
}

/** Forgets every change of a mount (unmount, or a fresh mount at the same path). */
export function clearOverlay(store: Store, name: string): void {
  unwritten.get(store)?.delete(name);
  const p = persistedOf(store);
  const written = p.keys.get(name) ?? []; // including records not committed yet, which a read would miss
  readOverlay(store, name); // and those of earlier runs
  for (const k of new Set([...written, ...(p.keys.get(name) ?? [])])) void store.meta.state.remove([BATCHES, k]);
  for (const k of p.legacy.get(name) ?? []) void store.meta.state.remove([LEGACY, k]);
  p.keys.delete(name);
  p.legacy.delete(name);
  cacheOf(store).delete(name);
}

/** Every blob digest any overlay refers to (kept by gc). */
export function overlayDigests(store: Store): Set<Digest> {
  const out = new Set<Digest>();
  const add = (v: OverlayValue): void => {
    if (!('deleted' in v) && v.digest) out.add(v.digest);
  };
  for (const { value } of store.meta.state.getRange({ start: [LEGACY, ''], end: [LEGACY, '\uffff'] })) add(value as OverlayValue);
  for (const { value } of store.meta.state.getRange({ start: [BATCHES, ''], end: [BATCHES, '\uffff'] })) {
    try {
      for (const [, v] of decodeBatch(value)) add(v);
    } catch {
      /* damaged: see readOverlay */
    }
  }
  // and what no record holds yet
  for (const batch of unwritten.get(store)?.values() ?? []) for (const v of batch.values()) add(v);
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
