// Is a stored blob still what was written? One stat, compared with the
// blob index: the size, and the inode change time (ctime) recorded when the
// blob was last known good. No user can set a ctime (root neither, short of
// the clock), and every write into the file moves it, also a write through
// a hard link (a materialized file is the blob's own inode). A record from
// before ctimes were kept falls back to the canonical mtime.
import { statSync } from 'node:fs';
import type { Digest } from '../../lib/digest.js';
import { BLOB_MTIME_MS } from './blob-writer.js';
import type { Cas } from './cas.js';
import type { BlobRecord, Meta } from './meta.js';

export type BlobState = 'ok' | 'changed' | 'missing';

export interface BlobStat {
  size: number;
  mtimeMs: number;
  ctimeNs: bigint;
}

/** The blob file's stat (bigint ctime), or undefined when it is not there. */
export function statBlob(cas: Cas, digest: Digest, exec = false): BlobStat | undefined {
  const st = statSync(cas.pathOf(digest, exec), { bigint: true, throwIfNoEntry: false });
  if (!st) return undefined;
  return { size: Number(st.size), mtimeMs: Number(st.mtimeMs), ctimeNs: st.ctimeNs };
}

/** Compares a stat with the record: `size` is what the tree (or the writer) says. */
export function judge(st: BlobStat, size: number, rec: BlobRecord | undefined, exec: boolean): Exclude<BlobState, 'missing'> {
  if (st.size !== size) return 'changed';
  const want = exec ? rec?.twinCtimeNs : rec?.ctimeNs;
  if (want !== undefined) return st.ctimeNs === want ? 'ok' : 'changed';
  return st.mtimeMs === BLOB_MTIME_MS ? 'ok' : 'changed';
}

/** One stat: the blob is there, the right size, and unchanged since it was last known good. */
export function blobState(cas: Cas, meta: Meta, digest: Digest, size: number, exec = false): BlobState {
  const st = statBlob(cas, digest, exec);
  if (!st) return 'missing';
  return judge(st, size, meta.getBlob(digest), exec);
}

/**
 * Records the blob's (and its twin's) current ctimes as known good: call
 * only right after its bytes were written or re-hashed, once the file is in
 * place (rename, utimes and link all move a ctime).
 */
export function recordGood(cas: Cas, meta: Meta, digest: Digest, size: number, extra: Partial<BlobRecord> = {}): { ctimeNs?: bigint; twinCtimeNs?: bigint } {
  const rec = meta.getBlob(digest);
  const blob = statBlob(cas, digest);
  const twin = statBlob(cas, digest, true);
  meta.putBlob(digest, {
    size,
    lastUse: rec?.lastUse ?? Date.now(),
    exec: twin !== undefined,
    ctimeNs: blob?.ctimeNs,
    twinCtimeNs: twin?.ctimeNs,
    checkedAt: rec?.checkedAt ?? 0,
    ...extra,
  });
  return { ctimeNs: blob?.ctimeNs, twinCtimeNs: twin?.ctimeNs };
}
