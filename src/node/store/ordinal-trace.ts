// A partial mount's trace (docs/lazy.md "Partial metadata"): the files its
// programs opened first, as file ordinals of the tree (their place among
// its file entries: docs/tree-format.md "Lazy index"), in the order first
// opened. A later partial mount of the tree reads the pieces and blobs of
// those files together before its program asks (a digest trace would need
// the full listing to say where each blob's file is).
//
//   "VROTRAC1" | tree[32] | u32 BE ordinal *
//
// Kept here in LMDB (state ['lazy-trace', <tree>]) and in the remote tiers
// as a hint (`vrift-otrace/<tree>`, tiers/hints.ts). A trace from a tier
// is untrusted: it only chooses which of the tree's files to fetch first,
// and every piece and blob it leads to is checked as on an open.
import type { Digest } from '../../lib/digest.js';
import type { Meta } from './meta.js';

const MAGIC = Buffer.from('VROTRAC1', 'latin1');
const HEAD = MAGIC.length + 32;
/** Ordinals kept at most (the start-up set is its first few hundred). */
export const MAX_ORDINALS = 100_000;
export const MAX_ORDINAL_TRACE_BYTES = HEAD + 4 * MAX_ORDINALS;

export function ordinalTraceRefName(tree: Digest): string {
  return `vrift-otrace/${tree}`;
}

export function encodeOrdinalTrace(tree: Digest, ordinals: readonly number[]): Buffer {
  const b = Buffer.alloc(HEAD + 4 * ordinals.length);
  MAGIC.copy(b, 0);
  b.write(tree, MAGIC.length, 32, 'hex');
  ordinals.forEach((o, i) => b.writeUInt32BE(o, HEAD + 4 * i));
  return b;
}

/** The ordinals of a trace blob of `tree` (a tree of `files` files); repeats and ordinals past the tree dropped; why not, when it is no such trace. */
export function decodeOrdinalTrace(buf: Buffer, tree: Digest, files: number): number[] | { problem: string } {
  if (buf.length < HEAD || !buf.subarray(0, MAGIC.length).equals(MAGIC)) return { problem: 'not an ordinal trace (bad header)' };
  if (buf.toString('hex', MAGIC.length, HEAD) !== tree) return { problem: 'the trace of another tree' };
  if ((buf.length - HEAD) % 4 !== 0 || buf.length > MAX_ORDINAL_TRACE_BYTES) return { problem: 'not whole ordinals' };
  const seen = new Set<number>();
  const out: number[] = [];
  for (let at = HEAD; at < buf.length; at += 4) {
    const o = buf.readUInt32BE(at);
    if (o >= files || seen.has(o)) continue;
    seen.add(o);
    out.push(o);
  }
  return out;
}

export function loadLocalOrdinals(meta: Meta, tree: Digest): number[] {
  const v = meta.state.get(['lazy-trace', tree]) as Uint8Array | undefined;
  if (!v) return [];
  const b = Buffer.from(v);
  return Array.from({ length: b.length >> 2 }, (_, i) => b.readUInt32BE(4 * i));
}

export function saveLocalOrdinals(meta: Meta, tree: Digest, ordinals: readonly number[]): Promise<unknown> {
  const b = Buffer.alloc(4 * ordinals.length);
  ordinals.forEach((o, i) => b.writeUInt32BE(o, 4 * i));
  return meta.state.put(['lazy-trace', tree], b);
}
