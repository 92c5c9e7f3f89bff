// The distinct file blobs of a tree, in tree order (the order of their
// first entry): what lazy-mount accounting counts, what a trace may name,
// and the positions the bulk switch watches for sequential reads; the size
// the resolver checks a tree's blob against (Store.blobsOf keeps a few).
// Read by the addon straight from the tree's encoding
// (native/src/tree_blobs.cc): raw digests, sizes and an open-addressing
// index in typed arrays, no object or string per blob (a cold lazy mount
// needs it for its first open, for 100 000 entries).
import type { Digest } from '../../lib/digest.js';
import { loadNative } from '../../lib/native.js';

const HEX64 = /^[0-9a-f]{64}$/;

export class TreeBlobs {
  /** Distinct file blobs. */
  readonly count: number;
  /** Their total size. */
  readonly bytes: number;
  private readonly raw: Buffer;
  private readonly sizeOf: Float64Array;
  private readonly execOf: Uint8Array;
  private readonly table: Int32Array;
  private readonly mask: number;
  private readonly encoded: Buffer;
  private readonly first: Int32Array;
  private readonly next: Int32Array;
  private readonly pathAt: Float64Array;

  /** The blobs of an encoded tree (throws "malformed tree: …" on bytes that are not one). */
  constructor(encoded: Buffer) {
    const l = loadNative().treeBlobList(encoded);
    this.raw = l.digests;
    this.sizeOf = l.sizes;
    this.execOf = l.exec;
    this.table = l.table;
    this.mask = l.table.length - 1;
    this.count = l.sizes.length;
    this.bytes = l.bytes;
    this.encoded = encoded;
    this.first = l.first;
    this.next = l.next;
    this.pathAt = l.paths;
  }

  /** The position of `digest` (tree order), or undefined when no file of the tree has it. */
  indexOf(digest: Digest): number | undefined {
    if (!HEX64.test(digest)) return undefined;
    const want = Buffer.from(digest, 'hex');
    // (the addon's probe: from the first four bytes, big-endian, linearly)
    for (let s = want.readUInt32BE(0) & this.mask; ; s = (s + 1) & this.mask) {
      const at = this.table[s]! - 1;
      if (at < 0) return undefined;
      if (this.raw.compare(want, 0, 32, at * 32, at * 32 + 32) === 0) return at;
    }
  }

  has(digest: Digest): boolean {
    return this.indexOf(digest) !== undefined;
  }

  /** The blob at position `at`: its digest, size, and whether some entry of it is executable. */
  digest(at: number): Digest {
    return this.raw.toString('hex', at * 32, at * 32 + 32);
  }

  size(at: number): number {
    return this.sizeOf[at]!;
  }

  exec(at: number): boolean {
    return this.execOf[at] === 1;
  }

  /** The paths of the tree's files whose blob is the one at position `at`, in tree order. */
  paths(at: number): string[] {
    const out: string[] = [];
    for (let e = this.first[at]!; e >= 0; e = this.next[e]!) out.push(this.encoded.toString('utf8', this.pathAt[2 * e]!, this.pathAt[2 * e]! + this.pathAt[2 * e + 1]!));
    return out;
  }
}
