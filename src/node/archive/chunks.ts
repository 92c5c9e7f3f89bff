// The archive of some local blobs as a stream of chunks (S3 packs): every
// blob is hashed as it is read, so a corrupt local blob never leaves as
// part of a complete archive. (ring-writer.ts is the faster writer the
// peers serve with.)
import { closeSync, readFileSync, readSync } from 'node:fs';
import { hashBuffer, StreamHasher, type Digest } from '../../lib/digest.js';
import { errnoOf, fsError } from '../../lib/errors.js';
import { corruptBlob, missingBlob } from '../store/cas.js';
import type { Store } from '../store/store.js';
import { archiveHeader, blobFrame, END_LEN, endFrame, FRAME_LEN, HEADER_LEN } from './format.js';

/** Blobs up to this size are read whole when writing; larger ones stream. */
const WHOLE_LIMIT = 8 << 20;
const CHUNK = 1 << 20;

/**
 * The archive of `blobs`, read from the local CAS, as a stream of chunks
 * (small frames are coalesced into ~1 MiB chunks). Every blob is hashed
 * as it is read: a corrupt local blob is quarantined and the stream fails
 * before its end frame, so the receiver sees a truncated archive, never a
 * complete one with bad content.
 */
export async function* archiveChunks(
  store: Store,
  blobs: Iterable<{ digest: Digest; size: number }>,
  opts: { onBlob?: (digest: Digest, size: number) => void } = {},
): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [archiveHeader()];
  let pendingBytes = HEADER_LEN;
  let count = 0;
  let total = 0;
  const flush = (): Buffer => {
    const out = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    return out;
  };
  for (const { digest, size } of blobs) {
    if (size <= WHOLE_LIMIT) {
      const buf = readLocal(store, digest);
      if (buf.byteLength !== size || hashBuffer(buf) !== digest) {
        store.quarantineBlob(digest);
        throw corruptBlob(digest);
      }
      pending.push(blobFrame(digest, size), buf);
      pendingBytes += FRAME_LEN + size;
      if (pendingBytes >= CHUNK) yield flush();
    } else {
      pending.push(blobFrame(digest, size));
      pendingBytes += FRAME_LEN;
      yield flush();
      yield* streamLocal(store, digest, size);
    }
    count++;
    total += size;
    opts.onBlob?.(digest, size);
  }
  pending.push(endFrame(count, total));
  pendingBytes += END_LEN;
  yield flush();
}

function readLocal(store: Store, digest: Digest): Buffer {
  try {
    return readFileSync(store.cas.pathOf(digest));
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') throw missingBlob(digest);
    throw fsError(e, store.cas.pathOf(digest), 'reading a blob');
  }
}

async function* streamLocal(store: Store, digest: Digest, size: number): AsyncGenerator<Buffer> {
  const fd = store.cas.openRead(digest);
  const hasher = new StreamHasher();
  try {
    let left = size;
    while (left > 0) {
      const buf = Buffer.allocUnsafe(Math.min(CHUNK * 4, left));
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      hasher.update(buf.subarray(0, n));
      left -= n;
      yield buf.subarray(0, n);
    }
    if (left !== 0 || readSync(fd, Buffer.allocUnsafe(1), 0, 1, null) !== 0 || hasher.digest() !== digest) {
      store.quarantineBlob(digest);
      throw corruptBlob(digest);
    }
  } finally {
    closeSync(fd);
  }
}
