// Traces: per tree, the order in which programs first opened its files'
// blobs in lazy mounts (the daemon's FETCH order), merged over runs: the
// first-seen order is kept and new blobs are appended, up to a bound.
// A later cold mount of the tree prefetches them in that order
// (docs/lazy.md). This file is the trace itself: its local record (LMDB)
// and the blob that carries it to other nodes, and the one reader of that
// blob, which treats it as untrusted input.
//
// Trace blob: "VRTRACE1" | tree id (32 raw bytes) | n digests (32 raw bytes each).
// The tree id inside binds a trace to its tree: a ref that points tree A's
// trace name at tree B's trace is caught here.
import type { Digest } from '../../lib/digest.js';
import type { Meta } from './meta.js';

/** A trace keeps at most this many blobs (later ones are not recorded). */
export const MAX_TRACE_BLOBS = 100_000;
const MAGIC = Buffer.from('VRTRACE1', 'latin1');
const DIGEST_BYTES = 32;
const HEADER_BYTES = MAGIC.length + DIGEST_BYTES;
/** The largest trace blob worth reading: a full trace. */
export const MAX_TRACE_BLOB_BYTES = HEADER_BYTES + MAX_TRACE_BLOBS * DIGEST_BYTES;

/** The ref that names a tree's trace blob in the remote tiers (never set locally: a local ref names a tree, and pins it). */
export function traceRefName(tree: Digest): string {
  return `vrift-trace/${tree}`;
}

/** `a`, then what `b` adds, in order, without repeats, at most MAX_TRACE_BLOBS. */
export function mergeTraces(a: readonly Digest[], b: readonly Digest[]): Digest[] {
  const seen = new Set<Digest>();
  const out: Digest[] = [];
  for (const d of [...a, ...b]) {
    if (out.length >= MAX_TRACE_BLOBS) break;
    if (!seen.has(d)) {
      seen.add(d);
      out.push(d);
    }
  }
  return out;
}

// --- the local record --------------------------------------------------------

/** The trace recorded here for `tree` ([] when none). */
export function loadLocalTrace(meta: Meta, tree: Digest): Digest[] {
  const raw = meta.traces.getBinaryFast(tree);
  // Our own record; a length that is not whole digests is damage: start again.
  if (!raw || raw.length % DIGEST_BYTES !== 0) return [];
  return unpack(raw, 0, Math.min(raw.length / DIGEST_BYTES, MAX_TRACE_BLOBS));
}

export function hasLocalTrace(meta: Meta, tree: Digest): boolean {
  return meta.traces.doesExist(tree);
}

export function saveLocalTrace(meta: Meta, tree: Digest, blobs: readonly Digest[]): Promise<boolean> {
  return meta.traces.put(tree, pack(blobs.slice(0, MAX_TRACE_BLOBS)));
}

// --- the blob that travels -----------------------------------------------------

export function encodeTraceBlob(tree: Digest, blobs: readonly Digest[]): Buffer {
  const list = blobs.slice(0, MAX_TRACE_BLOBS);
  return Buffer.concat([MAGIC, Buffer.from(tree, 'hex'), pack(list)], HEADER_BYTES + list.length * DIGEST_BYTES);
}

export type DecodedTrace = { blobs: Digest[]; ignored: number } | { problem: string };

/**
 * Reads a trace blob from a remote tier: untrusted. The whole blob is
 * refused when it is not a trace of `tree` (bad header, another tree, a
 * length that is not whole digests, more than MAX_TRACE_BLOBS); entries
 * that are not blobs of the tree (`isBlobOfTree`) or repeat are dropped
 * and counted in `ignored`: a trace only ever hints which of the tree's
 * own blobs to fetch first.
 */
export function decodeTraceBlob(buf: Buffer, tree: Digest, isBlobOfTree: (d: Digest) => boolean): DecodedTrace {
  if (buf.length < HEADER_BYTES || !buf.subarray(0, MAGIC.length).equals(MAGIC)) return { problem: 'not a trace (bad header)' };
  const of = buf.toString('hex', MAGIC.length, HEADER_BYTES);
  if (of !== tree) return { problem: `a trace of another tree (${of})` };
  const body = buf.length - HEADER_BYTES;
  if (body % DIGEST_BYTES !== 0) return { problem: `${body} bytes of entries, not whole digests` };
  const n = body / DIGEST_BYTES;
  if (n > MAX_TRACE_BLOBS) return { problem: `${n} entries, more than the ${MAX_TRACE_BLOBS} a trace holds` };
  const seen = new Set<Digest>();
  const blobs: Digest[] = [];
  for (const d of unpack(buf, HEADER_BYTES, n)) {
    if (seen.has(d) || !isBlobOfTree(d)) continue;
    seen.add(d);
    blobs.push(d);
  }
  return { blobs, ignored: n - blobs.length };
}

function pack(blobs: readonly Digest[]): Buffer {
  const out = Buffer.allocUnsafe(blobs.length * DIGEST_BYTES);
  blobs.forEach((d, i) => out.write(d, i * DIGEST_BYTES, DIGEST_BYTES, 'hex'));
  return out;
}

function unpack(buf: Buffer, offset: number, n: number): Digest[] {
  const out = new Array<Digest>(n);
  for (let i = 0; i < n; i++) out[i] = buf.toString('hex', offset + i * DIGEST_BYTES, offset + (i + 1) * DIGEST_BYTES);
  return out;
}
