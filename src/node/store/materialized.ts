// Directories materialize wrote, remembered so a later ingest of one (a CI
// job saving the tree it restored, with a few files changed) knows its
// linked files without reading them: a file that is still the very inode
// of a stored blob, with the blob's canonical mtime, has that blob's bytes.
import { loadNative } from '../../lib/native.js';
import { BLOB_MTIME_MS } from './blob-writer.js';
import { IO_THREADS } from './blob-batch.js';
import type { StatLike } from './scan.js';
import type { Store } from './store.js';
import type { TreeEntry } from './tree.js';

interface MaterializedRecord {
  tree: string;
  at: number;
}

const key = (root: string): [string, string] => ['materialized', root];

/** Notes that `root` now holds `tree` as hard links into the store. */
export function rememberMaterialized(store: Store, root: string, tree: string): void {
  const rec: MaterializedRecord = { tree, at: Date.now() };
  void store.meta.state.put(key(root), rec);
}

export interface FileOfDir {
  /** Relative to the directory. */
  path: string;
  stat: StatLike;
  exec: boolean;
}

/**
 * Of these files of `root`, the ones that are still hard links to the
 * blobs of the tree materialize wrote there, with their digests. Empty
 * when materialize never wrote there. One native call stats the blobs.
 */
export async function linkedBlobs<F extends FileOfDir>(store: Store, root: string, files: F[]): Promise<Map<F, string>> {
  const found = new Map<F, string>();
  const rec = store.meta.state.get(key(root)) as MaterializedRecord | undefined;
  // Only a file with the blobs' canonical mtime can still be a link (any write moves it).
  const candidates = files.filter((f) => f.stat.mtimeMs === BLOB_MTIME_MS);
  if (!rec || candidates.length === 0 || !store.hasTree(rec.tree)) return found;
  const byPath = new Map<string, TreeEntry>();
  for (const e of store.getTree(rec.tree).entries) if (e.kind === 'file') byPath.set(e.path, e);
  const asked: [F, TreeEntry][] = [];
  for (const f of candidates) {
    const e = byPath.get(f.path);
    if (e && e.size === f.stat.size && (e.mode === 0o755) === f.exec) asked.push([f, e]);
  }
  if (asked.length === 0) return found;
  const names = Buffer.from(asked.map(([, e]) => `${e.digest}${e.mode === 0o755 ? '.x' : ''}\0`).join(''), 'latin1');
  const inodes = await loadNative().fastFs.blobInodes(store.layout.cas, names, IO_THREADS);
  asked.forEach(([f, e], i) => {
    // The very inode, and unchanged since it was last known good (a write through the link moves its ctime).
    if (inodes[2 * i] === f.stat.dev && inodes[2 * i + 1] === f.stat.ino && store.blobIntact(e.digest!, e.size, e.mode === 0o755)) found.set(f, e.digest!);
  });
  return found;
}

/**
 * The tree materialize wrote at `root`, if a scan of it shows exactly that
 * tree: as many entries, the same directories and symlinks, and every file
 * (`linkedFiles` of them) still a link to its blob (linkedBlobs). Ingest
 * then needs no new tree.
 */
export function unchangedSinceMaterialized(store: Store, root: string, items: readonly { path: string; kind: string; target?: string }[], linkedFiles: number): string | undefined {
  const rec = store.meta.state.get(key(root)) as MaterializedRecord | undefined;
  if (!rec || !store.hasTree(rec.tree)) return undefined;
  const entries = store.getTree(rec.tree).entries;
  if (entries.length !== items.length) return undefined;
  const others = new Map<string, TreeEntry>();
  let files = 0;
  for (const e of entries) {
    if (e.kind === 'file') files++;
    else others.set(e.path, e);
  }
  if (files !== linkedFiles) return undefined;
  for (const it of items) {
    if (it.kind === 'file') continue;
    const e = others.get(it.path);
    if (!e || e.kind !== it.kind || (it.kind === 'symlink' && e.target !== it.target)) return undefined;
  }
  return rec.tree;
}
