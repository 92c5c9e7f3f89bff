// A lying peer for tests is a real node whose stored blobs were changed
// on disk, in place, with the canonical mtime put back and its own index
// told they are fine (their new ctimes recorded as good): a node that
// lies, not one with bit rot, which its own checks would catch
// (docs/security.md "Local bit rot"). So it serves the wrong bytes, and
// the receiver is what must catch them. (Its scrub must be off: nodes
// that lie are made with VRIFT_SCRUB_BYTES_PER_SEC=0.)
import { chmodSync, closeSync, existsSync, openSync, readSync, statSync, utimesSync, writeSync } from 'node:fs';
import type { Digest } from '../../src/lib/digest.js';
import { hashFileSync } from '../../src/node/store/cas.js';
import { BLOB_MTIME_SEC } from '../../src/node/store/blob-writer.js';
import { recordGood } from '../../src/node/store/blob-check.js';
import type { Store } from '../../src/node/store/store.js';

/** Flips the first byte of each blob (and of its executable twin) in `store`, which a daemon may be serving. */
export function corruptStoredBlobs(store: Store, digests: Digest[]): void {
  for (const digest of digests) {
    for (const exec of [false, true]) {
      const p = store.cas.pathOf(digest, exec);
      if (exec && !existsSync(p)) continue;
      flipFirstByte(p);
      if (hashFileSync(p) === digest) throw new Error(`${p} still hashes to its name`);
    }
    recordGood(store.cas, store.meta, digest, statSync(store.cas.pathOf(digest)).size);
  }
}

function flipFirstByte(path: string): void {
  const { mode, size } = statSync(path);
  if (size === 0) throw new Error(`${path} is empty: no byte to change`);
  chmodSync(path, 0o600); // blobs are read-only
  const fd = openSync(path, 'r+');
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, 0);
    b[0] = b[0]! ^ 0xff;
    writeSync(fd, b, 0, 1, 0);
  } finally {
    closeSync(fd);
  }
  chmodSync(path, mode & 0o7777);
  utimesSync(path, BLOB_MTIME_SEC, BLOB_MTIME_SEC);
}
