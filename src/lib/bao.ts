// Verified streaming, Bao style (docs/bao.md): a blob's bytes can be
// checked against its digest range by range, before the whole blob has
// arrived. BLAKE3 is a Merkle tree of 1 KiB chunks; the "outboard" keeps
// the parent nodes above groups of 16 KiB (64 bytes per group, 0.4 % of
// the blob), computed once. With it, any whole-group range is verified
// alone, in any order, and an in-order stream is verified as it comes.
// The root of the outboard's tree IS the blob's BLAKE3 digest: no second
// name, nothing to trust besides the digest a blob already has.
// The work is native (native/src/bao_*.cc, on the vendored BLAKE3 C code).
import { availableParallelism } from 'node:os';
import { type Digest, assertDigest } from './digest.js';
import { errnoError, VriftError } from './errors.js';
import { loadNative, type NativeBao, type NativeBaoStream } from './native.js';

/** log2 of the chunks (1 KiB) in a group: 16 KiB groups, as bao-tree/iroh use. 0 is the original Bao. */
export const BAO_GROUP_LOG = 4;

let native: NativeBao | undefined;

function bao(): NativeBao {
  return (native ??= loadNative().bao);
}

/** Bytes in one group. */
export function baoGroupBytes(groupLog = BAO_GROUP_LOG): number {
  return 1024 * 2 ** groupLog;
}

/** Bytes of the outboard of a blob of `size` bytes: 64 per group but one. */
export function baoOutboardSize(size: number, groupLog = BAO_GROUP_LOG): number {
  return (Math.max(1, Math.ceil(size / baoGroupBytes(groupLog))) - 1) * 64;
}

/**
 * The smallest verifiable range holding [offset, offset + length): out to
 * group boundaries, capped at the blob's end. What a reader fetches and
 * verifies to answer a read it cannot answer from verified bytes.
 */
export function baoAlignRange(offset: number, length: number, size: number, groupLog = BAO_GROUP_LOG): { offset: number; length: number } {
  const g = baoGroupBytes(groupLog);
  const start = Math.min(Math.floor(offset / g) * g, Math.max(0, Math.ceil(size / g) - 1) * g);
  const end = Math.min(size, Math.max(start + 1, Math.ceil((offset + length) / g) * g));
  return { offset: start, length: end - start };
}

/** An outboard with the digest and size it was computed for. */
export interface BaoEncoded {
  outboard: Buffer;
  digest: Digest;
  size: number;
}

/** The outboard of a blob in memory (synchronously, on this thread). */
export function baoOutboard(bytes: Uint8Array, groupLog = BAO_GROUP_LOG): Buffer {
  return bao().outboard(bytes, groupLog).outboard;
}

/** The outboard and the digest of a blob in memory, in one pass. */
export function baoEncode(bytes: Uint8Array, groupLog = BAO_GROUP_LOG): BaoEncoded {
  const r = bao().outboard(bytes, groupLog);
  return { outboard: r.outboard, digest: r.root, size: bytes.byteLength };
}

/** Native threads encoding one file: its tree is split between them, as for hashFile. */
const FILE_THREADS = Math.max(1, Math.min(4, availableParallelism()));

/**
 * The outboard and digest of a file (a CAS blob), on native threads in
 * bounded memory (a 4 MiB buffer per thread). The caller compares the
 * digest with the name it expects. A file that shrank while it was read
 * is ERR_VRIFT_BAO_CHANGED; I/O errors carry their errno code (ENOENT …).
 */
export async function baoOutboardFile(path: string, opts: { groupLog?: number; threads?: number } = {}): Promise<BaoEncoded> {
  let r;
  try {
    r = await bao().outboardFile(path, opts.groupLog ?? BAO_GROUP_LOG, opts.threads ?? FILE_THREADS);
  } catch (e) {
    const errno = (e as { code?: unknown }).code;
    if (typeof errno === 'number' && errno > 0) throw errnoError(errno, (e as Error).message.startsWith('open') ? 'open' : 'read', path);
    throw e;
  }
  if (r === null) {
    throw new VriftError('ERR_VRIFT_BAO_CHANGED', `${path} shrank while its outboard was computed`, {
      hint: 'blobs are immutable: something outside vrift changed this file',
    });
  }
  return { outboard: r.outboard, digest: r.root, size: r.size };
}

/**
 * The combined encoding: the outboard's parents with the content
 * interleaved in pre-order (no length header), for a tier that streams a
 * blob without sending its outboard apart. BaoDecoder reads it.
 */
export function baoEncodeCombined(bytes: Uint8Array, groupLog = BAO_GROUP_LOG): Buffer {
  return bao().encodeCombined(bytes, groupLog);
}

/**
 * Whether `bytes` are the bytes [offset, offset + bytes.length) of the blob
 * named `digest`, of `size` bytes, with this outboard. The range starts on
 * a group boundary and ends on one or at the blob's end (baoAlignRange);
 * other ranges, and an outboard of the wrong size, are a RangeError.
 * False when either the bytes or the outboard parents on the way to them
 * are wrong: a reader then refetches, from another source.
 */
export function baoVerifyRange(digest: Digest, size: number, outboard: Uint8Array, offset: number, bytes: Uint8Array, groupLog = BAO_GROUP_LOG): boolean {
  return bao().verifyRange(assertDigest(digest), size, groupLog, outboard, offset, bytes);
}

/**
 * Whether `outboard` is the outboard of the blob named `digest` of `size`
 * bytes: every parent node checked from the root down (the content is not
 * needed). An outboard from another node passes this before it is used to
 * judge that node's or anyone's ranges, so a bad range is the sender's
 * fault, not the outboard's.
 */
export function baoVerifyOutboard(digest: Digest, size: number, outboard: Uint8Array, groupLog = BAO_GROUP_LOG): boolean {
  return bao().verifyOutboard(assertDigest(digest), size, groupLog, outboard);
}

function mismatch(s: NativeBaoStream, digest: Digest, what: string): VriftError {
  return new VriftError('ERR_VRIFT_BAO_MISMATCH', `${what} does not match ${digest} at byte ${s.failedAt}`, {
    hint: 'the source sent corrupt bytes or a corrupt outboard: fetch the blob from another source',
  });
}

/**
 * Verifies the content of a blob as it arrives in order, with its
 * outboard: push() returns how many leading bytes are verified so far, so
 * a reader may hand out those before the rest arrives. It holds at most
 * one group of unverified bytes. A mismatch throws ERR_VRIFT_BAO_MISMATCH
 * (the verified prefix stays good); so does every push after it, and
 * the constructor when the outboard's left edge (or an empty blob) is wrong.
 */
export class BaoVerifier {
  private readonly s: NativeBaoStream;

  constructor(
    readonly digest: Digest,
    readonly size: number,
    outboard: Uint8Array,
    groupLog = BAO_GROUP_LOG,
  ) {
    this.s = new (bao().StreamVerifier)(assertDigest(digest), size, groupLog, outboard);
    // Construction already checks what needs no content: the outboard's
    // left edge, and the whole of an empty blob.
    if (this.s.failedAt >= 0) throw mismatch(this.s, digest, 'outboard');
  }

  /** Takes the next content bytes; returns the count of leading bytes verified. */
  push(bytes: Uint8Array): number {
    const n = this.s.push(bytes) as number;
    if (n < 0) throw mismatch(this.s, this.digest, 'content');
    return n;
  }

  get verified(): number {
    return this.s.verified;
  }

  /** True once every byte of the blob was verified. */
  get complete(): boolean {
    return this.s.complete;
  }
}

/**
 * Verifies a combined encoding (baoEncodeCombined) as it arrives in order:
 * push() returns the content bytes verified by this push (possibly none).
 * Only a group split between two pushes is held (and copied) here.
 * A mismatch throws ERR_VRIFT_BAO_MISMATCH, as for BaoVerifier.
 */
export class BaoDecoder {
  private readonly s: NativeBaoStream;

  constructor(
    readonly digest: Digest,
    readonly size: number,
    groupLog = BAO_GROUP_LOG,
  ) {
    this.s = new (bao().StreamVerifier)(assertDigest(digest), size, groupLog, null);
    if (this.s.failedAt >= 0) throw mismatch(this.s, digest, 'empty blob');
  }

  /**
   * Takes the next bytes of the encoding; returns the content they
   * completed, in order, as pieces. A piece is a view of `encoded` (no
   * copy) unless its group straddled two pushes: do not reuse the memory of
   * `encoded` while a piece is still needed.
   */
  push(encoded: Uint8Array): Buffer[] {
    const out = this.s.push(encoded) as Uint8Array[] | null;
    if (out === null) throw mismatch(this.s, this.digest, 'encoded stream');
    return out.map((u) => Buffer.from(u.buffer, u.byteOffset, u.byteLength));
  }

  get verified(): number {
    return this.s.verified;
  }

  get complete(): boolean {
    return this.s.complete;
  }
}
