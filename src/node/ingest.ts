// `vrift ingest <dir>`: store every file of a directory in the CAS and
// record the directory as a tree. Re-ingest is incremental: a file whose
// (device, inode, size, mtime, ctime) is unchanged since the last ingest
// keeps its digest without being read, as git's index does.
import type { Stats } from 'node:fs';
import { resolve } from 'node:path';
import type { Digest } from '../lib/digest.js';
import { hasCode, VriftError } from '../lib/errors.js';
import { scanDir } from './scan.js';
import type { StatRecord } from './meta.js';
import type { Store } from './store.js';
import { modeFor, normalizeFileMode, summarize, type TreeEntry, type TreeSummary } from './tree.js';

export interface IngestProgress {
  files: number;
  totalFiles: number;
  bytes: number;
  totalBytes: number;
}

export interface IngestOptions {
  ref?: string;
  onProgress?: (p: IngestProgress) => void;
  /** Called once per skipped special file. */
  warn?: (message: string) => void;
}

export interface IngestResult {
  tree: Digest;
  summary: TreeSummary;
  /** Files whose digest came from the re-ingest cache (not read). */
  cached: number;
  /** Files read and hashed. */
  hashed: number;
  /** Blobs that were new to the store, and their bytes. */
  newBlobs: number;
  newBytes: number;
  skipped: { path: string; what: string }[];
}

/** A file changed within this window of its record cannot be trusted by stat alone ("racy git"). */
const RACY_MS = 1000;
const CHANGE_RETRIES = 3;

function cacheHit(rec: StatRecord | undefined, st: Stats): boolean {
  return (
    rec !== undefined &&
    rec.dev === st.dev &&
    rec.ino === st.ino &&
    rec.size === st.size &&
    rec.mtimeMs === st.mtimeMs &&
    rec.ctimeMs === st.ctimeMs &&
    rec.at - rec.ctimeMs > RACY_MS
  );
}

export async function ingest(store: Store, dir: string, opts: IngestOptions = {}): Promise<IngestResult> {
  const root = resolve(dir);
  const scan = scanDir(root);
  for (const s of scan.skipped) opts.warn?.(`skipping ${s.what}: ${root}/${s.path}`);

  const entries: TreeEntry[] = [];
  const progress: IngestProgress = { files: 0, totalFiles: scan.files, bytes: 0, totalBytes: scan.bytes };
  const result = { cached: 0, hashed: 0, newBlobs: 0, newBytes: 0 };
  const now = Date.now();
  let lastReport = 0;

  for (const item of scan.items) {
    if (item.kind === 'dir') {
      entries.push({ path: item.path, kind: 'dir', mode: modeFor('dir'), size: 0 });
      continue;
    }
    if (item.kind === 'symlink') {
      entries.push({ path: item.path, kind: 'symlink', mode: modeFor('symlink'), size: Buffer.byteLength(item.target!), target: item.target! });
      continue;
    }
    let st = item.stat!;
    const exec = normalizeFileMode(st.mode) === 0o755;
    let digest: Digest | undefined;
    const rec = store.meta.statcache.get(item.abs);
    if (cacheHit(rec, st) && store.cas.has(rec!.digest)) {
      digest = rec!.digest;
      result.cached++;
    } else {
      for (let attempt = 1; ; attempt++) {
        try {
          const blob = store.cas.putFile(item.abs, attempt === 1 ? st : undefined);
          store.recordBlob(blob);
          st = blob.source;
          digest = blob.digest;
          if (blob.created) {
            result.newBlobs++;
            result.newBytes += blob.size;
          }
          break;
        } catch (e) {
          if (!hasCode(e, 'ERR_VRIFT_INGEST_CHANGED') || attempt >= CHANGE_RETRIES) throw e;
        }
      }
      result.hashed++;
      void store.meta.statcache.put(item.abs, {
        dev: st.dev,
        ino: st.ino,
        size: st.size,
        mtimeMs: st.mtimeMs,
        ctimeMs: st.ctimeMs,
        digest,
        at: now,
      });
    }
    if (exec) store.ensureExecTwin(digest);
    entries.push({ path: item.path, kind: 'file', mode: modeFor('file', exec), size: st.size, digest });
    progress.files++;
    progress.bytes += st.size;
    if (opts.onProgress && (progress.files === progress.totalFiles || Date.now() - lastReport > 100)) {
      lastReport = Date.now();
      opts.onProgress(progress);
    }
  }

  const tree = store.putTree(entries);
  if (opts.ref !== undefined) store.setRef(opts.ref, tree);
  await store.meta.flush();
  return { tree, summary: summarize(entries), ...result, skipped: scan.skipped };
}

/** Rejects an ingest target that is inside the store itself (it would ingest its own blobs). */
export function assertNotInsideHome(store: Store, dir: string): void {
  const root = resolve(dir);
  const home = store.layout.root;
  if (root === home || root.startsWith(`${home}/`)) {
    throw new VriftError('ERR_VRIFT_INGEST_HOME', `${root} is inside the vrift store (${home})`, {
      hint: 'ingest a directory outside $VRIFT_HOME',
    });
  }
}
