// `vrift ingest <dir>`: store every file of a directory in the CAS and
// record the directory as a tree. Re-ingest is incremental: a file whose
// (device, inode, size, mtime, ctime) is unchanged since the last ingest
// keeps its digest without being read, as git's index does.
import { resolve } from 'node:path';
import type { Digest } from '../../lib/digest.js';
import { hasCode, VriftError } from '../../lib/errors.js';
import { batches, readFiles, READ_OK, type FileRead } from './blob-batch.js';
import type { Lease } from './leases.js';
import { linkedBlobs, unchangedSinceMaterialized } from './materialized.js';
import { scanDir, type ScanItem, type StatLike } from './scan.js';
import type { StatRecord } from './meta.js';
import type { Store } from './store.js';
import { encodeTimes, mtimeNsOf, rememberTimes, timesInTreeOrder } from './times.js';
import { modeFor, normalizeFileMode, sortEntries, summarize, type TreeEntry, type TreeSummary } from './tree.js';

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
  /**
   * The caller's lease (e.g. save's, which then pushes the tree): ingest
   * names its tree in it. Without one, ingest takes its own for its duration.
   */
  lease?: Lease;
  /** Record the files' modification times beside the tree (default true; store/times.ts). */
  mtimes?: boolean;
}

export interface IngestResult {
  tree: Digest;
  /** The blob of the files' modification times, when recorded. */
  times?: Digest;
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

/** The last ingest of a directory, for the "nothing changed" fast path. */
interface DirRecord {
  fingerprint: Digest;
  tree: Digest;
  /** Its times blob (the fingerprint covers the times: unchanged with it). */
  times?: Digest;
  blobGeneration: string;
  at: number;
}

type StatFields = Pick<StatLike, 'dev' | 'ino' | 'size' | 'mtimeMs' | 'ctimeMs'>;

/** Files up to this size are read whole, in batches; larger ones stream one at a time. */
const WHOLE_FILE_LIMIT = 8 << 20;

function cacheHit(rec: StatRecord | undefined, st: StatFields): boolean {
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
  const prev = store.meta.state.get(['ingest', root]) as DirRecord | undefined;
  // A lease for the whole ingest, so a concurrent `vrift gc` keeps what it
  // stores (leases.ts). It names the tree of the last ingest of this
  // directory from the start: the fast path below relies on it, and most
  // of a re-ingest's blobs are in it.
  const own = opts.lease === undefined ? await store.leases.begin(`ingest ${root}`, prev ? [prev.tree] : []) : undefined;
  try {
    if (prev && opts.lease) await opts.lease.addTree(prev.tree);
    const r = await ingestLeased(store, root, prev, opts, (opts.lease ?? own)!);
    own?.release(); // committed with the ingest's last writes
    await store.meta.flush();
    return r;
  } finally {
    own?.release();
  }
}

async function ingestLeased(store: Store, root: string, prev: DirRecord | undefined, opts: IngestOptions, lease: Lease): Promise<IngestResult> {
  const scan = scanDir(root);
  for (const s of scan.skipped) opts.warn?.(`skipping ${s.what}: ${root}/${s.path}`);
  const now = Date.now();

  // Nothing changed since the last ingest of this directory (same fingerprint,
  // not racy, no blob left the store since): same tree, without looking inside.
  // The lease named that tree before this check, so gc keeps it from then on.
  if (prev && prev.fingerprint === scan.fingerprint) {
    const wantTimes = opts.mtimes !== false;
    const times = wantTimes ? prev.times : undefined;
    const timesHere = times === undefined || store.cas.has(times);
    if (prev.blobGeneration === store.meta.latest(() => store.meta.blobGeneration()) && store.hasTree(prev.tree) && (!wantTimes || (times !== undefined && timesHere))) {
      if (times !== undefined) rememberTimes(store.meta, prev.tree, times);
      if (opts.ref !== undefined) store.setRef(opts.ref, prev.tree, { times });
      const summary = store.treeSummary(prev.tree);
      opts.onProgress?.({ files: summary.files, totalFiles: summary.files, bytes: summary.bytes, totalBytes: summary.bytes });
      return { tree: prev.tree, ...(times === undefined ? {} : { times }), summary, cached: summary.files, hashed: 0, newBlobs: 0, newBytes: 0, skipped: scan.skipped };
    }
  }

  const entries: TreeEntry[] = [];
  const progress: IngestProgress = { files: 0, totalFiles: scan.files, bytes: 0, totalBytes: scan.bytes };
  const result = { cached: 0, hashed: 0, newBlobs: 0, newBytes: 0 };
  let lastReport = 0;

  // Blobs this ingest found already stored and did not write: nothing keeps
  // them until the lease names the tree (unless the previous tree of this
  // directory, named from the start, holds them). Checked at the end if
  // anything left the store meanwhile.
  const atRisk = new Map<Digest, ScanItem>();
  // Each file entry's mtime (ns), for the times blob: looked up by entry once the entries are sorted.
  const mtimeOf = new Map<TreeEntry, bigint>();
  const prevHolds = prev !== undefined && store.hasTree(prev.tree);

  const fileDone = (item: ScanItem, size: number, digest: Digest): void => {
    const exec = normalizeFileMode(item.stat!.mode) === 0o755;
    if (exec) {
      try {
        store.ensureExecTwin(digest);
      } catch (e) {
        if (!hasCode(e, 'ERR_VRIFT_FS_NOT_FOUND') || !atRisk.has(digest)) throw e;
        // gc took the blob just now: it is stored again (and its twin made) at the end.
      }
    }
    const entry: TreeEntry = { path: item.path, kind: 'file', mode: modeFor('file', exec), size, digest };
    entries.push(entry);
    if (opts.mtimes !== false) mtimeOf.set(entry, mtimeNsOf(item.stat!.mtimeMs, item.mtimeNsec ?? 0));
    progress.files++;
    progress.bytes += size;
    if (opts.onProgress && (progress.files === progress.totalFiles || Date.now() - lastReport > 100)) {
      lastReport = Date.now();
      opts.onProgress(progress);
    }
  };
  const remember = (item: ScanItem, st: StatFields, digest: Digest): void => {
    result.hashed++;
    store.meta.putStat(item.abs, { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, digest, at: now });
  };

  // 1. Directories, symlinks, and files the re-ingest cache (or the store's own inodes) vouch for.
  const toRead: ScanItem[] = [];
  const slow: ScanItem[] = [];
  const unknown: ScanItem[] = [];
  for (const item of scan.items) {
    if (item.kind === 'dir') entries.push({ path: item.path, kind: 'dir', mode: modeFor('dir'), size: 0 });
    else if (item.kind === 'symlink') {
      entries.push({ path: item.path, kind: 'symlink', mode: modeFor('symlink'), size: Buffer.byteLength(item.target!), target: item.target! });
    } else {
      const rec = store.meta.getStat(item.abs);
      // The blob must be intact too (one stat; a damaged one is quarantined and the file read again: re-ingest heals).
      if (cacheHit(rec, item.stat!) && store.meta.hasBlob(rec!.digest) && store.blobIntact(rec!.digest, item.stat!.size)) {
        result.cached++;
        // Unchanged since the previous ingest of this directory read it: that tree holds this blob.
        if (!(prevHolds && rec!.at <= prev!.at)) atRisk.set(rec!.digest, item);
        fileDone(item, item.stat!.size, rec!.digest);
        continue;
      }
      unknown.push(item);
    }
  }
  // In a directory materialize wrote, the files that are still links to stored blobs need no reading.
  const linked = await linkedBlobs(
    store,
    root,
    unknown.map((item) => ({ item, path: item.path, stat: item.stat!, exec: normalizeFileMode(item.stat!.mode) === 0o755 })),
  );
  const known = new Map([...linked].map(([f, digest]) => [f.item, digest]));
  for (const item of unknown) {
    const digest = known.get(item);
    if (digest !== undefined) {
      result.cached++;
      atRisk.set(digest, item);
      fileDone(item, item.stat!.size, digest);
    } else if (item.stat!.size <= WHOLE_FILE_LIMIT) toRead.push(item);
    else slow.push(item);
  }

  // 2. Small files in batches: native threads read and hash batch k+1 while this thread stores batch k.
  const work = batches(toRead, (i) => i.stat!.size);
  let next = work.length > 0 ? readFiles(work[0]!.map((i) => ({ abs: i.abs, size: i.stat!.size }))) : undefined;
  for (let k = 0; k < work.length; k++) {
    const { data, reads } = await next!;
    next = k + 1 < work.length ? readFiles(work[k + 1]!.map((i) => ({ abs: i.abs, size: i.stat!.size }))) : undefined;
    const batch = work[k]!;
    const fresh = new Map<Digest, { digest: Digest; offset: number; size: number }>();
    const hashedHere: [ScanItem, FileRead, Digest][] = [];
    for (let i = 0; i < batch.length; i++) {
      const r = reads[i]!;
      if (r.status !== READ_OK) {
        slow.push(batch[i]!); // changed, vanished, unreadable: the one-file path retries or reports it
        continue;
      }
      const digest = r.digest!; // hashed on the reading thread, from these very bytes
      if (!fresh.has(digest)) {
        // A stored blob that is damaged is quarantined by blobIntact and written again from these bytes.
        if (!store.meta.hasBlob(digest) || !store.blobIntact(digest, r.bytes.length)) fresh.set(digest, { digest, offset: r.offset, size: r.bytes.length });
        else atRisk.set(digest, batch[i]!);
      }
      hashedHere.push([batch[i]!, r, digest]);
    }
    const firstOf = new Map(hashedHere.map(([item, , digest]) => [digest, item]));
    for (const b of await store.admission.hashedBatch(data, [...fresh.values()])) {
      if (b.created) {
        result.newBlobs++;
        result.newBytes += b.size;
      } else atRisk.set(b.digest, firstOf.get(b.digest)!); // on disk already, not indexed
    }
    for (const [item, r, digest] of hashedHere) {
      remember(item, r, digest);
      fileDone(item, r.size, digest);
    }
  }

  // 3. Large files (streamed) and files a batch could not take: one at a time, with retries.
  for (const item of slow) {
    for (let attempt = 1; ; attempt++) {
      try {
        const blob = store.admission.file(item.abs, attempt === 1 ? item.stat : undefined);
        if (blob.created) {
          result.newBlobs++;
          result.newBytes += blob.size;
        } else atRisk.set(blob.digest, item);
        remember(item, blob.source, blob.digest);
        fileDone(item, blob.size, blob.digest);
        break;
      } catch (e) {
        if (!hasCode(e, 'ERR_VRIFT_INGEST_CHANGED') || attempt >= CHANGE_RETRIES) throw e;
      }
    }
  }

  // 4. The lease names the tree (gc keeps it from now on), then the tree is stored. A directory that
  // is still exactly the tree materialize wrote there is that tree: nothing to encode.
  const same = known.size === scan.files ? unchangedSinceMaterialized(store, root, scan.items, known.size) : undefined;
  const encoded = same === undefined ? store.encodeTree(entries) : undefined;
  const tree = same ?? encoded!.id;
  await lease.addTree(tree);
  const generation = store.meta.latest(() => store.meta.blobGeneration());
  if (encoded) store.putTree(encoded);
  // Blobs written by this ingest are kept by their ctime, those of the
  // previous tree by its name; the others it found already stored were kept
  // by nothing until now: if anything left the store while this ran, look
  // for them on disk and store again what went.
  if (atRisk.size > 0 && lease.evictedSince()) {
    const restored = restoreEvicted(store, atRisk);
    result.newBlobs += restored.blobs;
    result.newBytes += restored.bytes;
  }
  const times = opts.mtimes === false ? undefined : storeTimes(store, tree, encoded?.sorted ?? sortEntries(entries), mtimeOf);
  if (opts.ref !== undefined) store.setRef(opts.ref, tree, { times });
  if (now - scan.newestChangeMs > RACY_MS) {
    const rec: DirRecord = { fingerprint: scan.fingerprint, tree, ...(times === undefined ? {} : { times }), blobGeneration: generation, at: now };
    void store.meta.state.put(['ingest', root], rec);
  }
  return { tree, ...(times === undefined ? {} : { times }), summary: same ? store.treeSummary(same) : summarize(entries), ...result, skipped: scan.skipped };
}

/** Stores the times blob of `tree` (its files' mtimes, in tree order) and remembers it as the tree's latest. */
function storeTimes(store: Store, tree: Digest, sorted: TreeEntry[], mtimeOf: Map<TreeEntry, bigint>): Digest | undefined {
  const list = timesInTreeOrder(sorted, (e) => mtimeOf.get(e));
  if (!list) return undefined; // an entry without its time (cannot happen for a walk): no times rather than wrong ones
  const digest = store.putBlob(encodeTimes(tree, list)).digest;
  rememberTimes(store.meta, tree, digest);
  return digest;
}

/**
 * Stores again, from the directory, the blobs ingest relied on that are no
 * longer on disk (gc evicted them before the lease named the tree), and
 * the executable twins they need.
 */
function restoreEvicted(store: Store, atRisk: Map<Digest, ScanItem>): { blobs: number; bytes: number } {
  const out = { blobs: 0, bytes: 0 };
  for (const [digest, item] of atRisk) {
    if (!store.cas.has(digest)) {
      // Recorded by the door whatever the index says: it may still list the blob (a writer indexed it as gc unlinked it).
      const blob = store.admission.file(item.abs);
      if (blob.digest !== digest) {
        throw new VriftError('ERR_VRIFT_INGEST_CHANGED', `${item.abs}: file changed while the directory was being ingested`, {
          hint: 'stop whatever is writing it, then ingest again',
        });
      }
      out.blobs++;
      out.bytes += blob.size;
    }
  }
  // Twins of blobs that went (or were made from one as it went).
  for (const [digest, item] of atRisk) {
    if (normalizeFileMode(item.stat!.mode) === 0o755 && !store.cas.has(digest, true)) store.ensureExecTwin(digest);
  }
  return out;
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
