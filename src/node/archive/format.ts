// The archive format (docs/archive-format.md): many blobs in one stream,
// for S3 packs and the peers' backfill.
//
//   header  "VRIFTARC" u16 version u16 flags u32 reserved        16 bytes
//   blob    'B' digest[32] u64 size, then `size` bytes        41 + size
//   end     'E' u64 count u64 bytes                              17 bytes
//
// This file is the format alone; reader.ts admits an archive's blobs,
// chunks.ts and ring-writer.ts write archives from the local CAS.
import type { Digest } from '../../lib/digest.js';

export const ARCHIVE_MAGIC = Buffer.from('VRIFTARC', 'latin1');
export const ARCHIVE_VERSION = 1;
export const HEADER_LEN = 16;
export const TAG_BLOB = 0x42; // 'B'
export const TAG_END = 0x45; // 'E'
export const FRAME_LEN = 41; // tag + digest + size
export const END_LEN = 17; // tag + count + bytes

export function archiveHeader(): Buffer {
  const b = Buffer.alloc(HEADER_LEN);
  ARCHIVE_MAGIC.copy(b, 0);
  b.writeUInt16BE(ARCHIVE_VERSION, 8);
  return b; // flags and reserved stay 0
}

export function blobFrame(digest: Digest, size: number): Buffer {
  const b = Buffer.allocUnsafe(FRAME_LEN);
  b[0] = TAG_BLOB;
  b.write(digest, 1, 32, 'hex');
  b.writeBigUInt64BE(BigInt(size), 33);
  return b;
}

export function endFrame(count: number, bytes: number): Buffer {
  const b = Buffer.allocUnsafe(END_LEN);
  b[0] = TAG_END;
  b.writeBigUInt64BE(BigInt(count), 1);
  b.writeBigUInt64BE(BigInt(bytes), 9);
  return b;
}

/** Bytes an archive of blobs of these sizes takes. */
export function archiveSize(sizes: Iterable<number>): number {
  let n = HEADER_LEN + END_LEN;
  for (const s of sizes) n += FRAME_LEN + s;
  return n;
}

