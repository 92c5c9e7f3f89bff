// `vrift verify`: re-hash every blob on disk (and every executable twin).
// A blob whose bytes do not match its name is moved to quarantine/ and
// dropped from the index, so it can never be served again.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { LAYOUT } from '../../gen/layout.js';
import { hashBuffer, isDigest, type Digest } from '../../lib/digest.js';
import { errnoOf, fsError } from '../../lib/errors.js';
import { statBlob } from './blob-check.js';
import { Cas, hashFile } from './cas.js';
import type { Store } from './store.js';

export interface VerifyResult {
  checked: number;
  bytes: number;
  corrupt: { digest: Digest; file: string }[];
  /** Indexed blobs with no file on disk (dropped from the index). */
  missing: Digest[];
}

const WHOLE_FILE_LIMIT = 8 << 20;

/** Every file under cas/, as [digest, exec, path]. Stray names are ignored. */
export function listCasFiles(store: Store): { digest: Digest; exec: boolean; path: string }[] {
  const out: { digest: Digest; exec: boolean; path: string }[] = [];
  let shards: string[];
  try {
    shards = readdirSync(store.layout.cas);
  } catch (e) {
    throw fsError(e, store.layout.cas, 'listing the store');
  }
  for (const shard of shards.sort()) {
    const dir = join(store.layout.cas, shard);
    for (const name of readdirSync(dir).sort()) {
      const exec = name.endsWith(LAYOUT.blob.execSuffix);
      const digest = exec ? name.slice(0, -LAYOUT.blob.execSuffix.length) : name;
      if (isDigest(digest) && digest.startsWith(shard)) out.push({ digest, exec, path: join(dir, name) });
    }
  }
  return out;
}

export async function verifyStore(store: Store, onProgress?: (done: number, total: number) => void): Promise<VerifyResult> {
  const files = listCasFiles(store);
  const total = files.reduce((n, f) => n + safeSize(f.path), 0);
  const res: VerifyResult = { checked: 0, bytes: 0, corrupt: [], missing: [] };
  const onDisk = new Set<Digest>();
  let last = 0;
  for (const f of files) {
    let size: number;
    let actual: Digest;
    try {
      size = statSync(f.path).size;
      actual = size <= WHOLE_FILE_LIMIT ? hashBuffer(readFileSync(f.path)) : await hashFile(f.path);
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') continue; // removed by a concurrent gc
      throw fsError(e, f.path, 'verifying');
    }
    res.checked++;
    res.bytes += size;
    if (actual !== f.digest) {
      res.corrupt.push({ digest: f.digest, file: f.path });
      store.quarantineBlob(f.digest);
    } else {
      // Good bytes whose mtime moved (touched, not changed): back to the canonical mtime.
      if (!Cas.untouched(statSync(f.path), size)) store.cas.resetMtime(f.digest);
      // Hashed good just now: its ctime is the one later checks compare with (blob-check.ts).
      const rec = store.meta.getBlob(f.digest);
      const st = statBlob(store.cas, f.digest, f.exec);
      if (rec && st) store.meta.putBlob(f.digest, f.exec ? { ...rec, twinCtimeNs: st.ctimeNs } : { ...rec, ctimeNs: st.ctimeNs, checkedAt: Date.now() });
      if (!f.exec) onDisk.add(f.digest);
    }
    if (onProgress && Date.now() - last > 100) {
      last = Date.now();
      onProgress(res.bytes, total);
    }
  }
  onProgress?.(res.bytes, total);
  const corrupt = new Set(res.corrupt.map((c) => c.digest));
  for (const digest of [...store.meta.blobDigests()]) {
    if (!onDisk.has(digest) && !corrupt.has(digest)) {
      res.missing.push(digest);
      store.meta.removeBlob(digest);
    }
  }
  await store.meta.flush();
  return res;
}

function safeSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}
