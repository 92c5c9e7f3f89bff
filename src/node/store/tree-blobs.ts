// The distinct file blobs of a tree, in tree order (the order of their
// first entry): what lazy-mount accounting counts, what a trace may name,
// and the positions the bulk switch watches for sequential reads; the size
// the resolver checks a tree's blob against (Store.blobsOf keeps a few).
import type { Digest } from '../../lib/digest.js';
import type { TreeEntry } from './tree.js';

export interface TreeBlobs {
  digests: Digest[];
  sizes: number[];
  /** Some entry with this blob is executable (it is opened through its exec twin). */
  exec: boolean[];
  /** Digest → position in `digests`. */
  index: Map<Digest, number>;
  bytes: number;
}

export function treeBlobs(entries: readonly TreeEntry[]): TreeBlobs {
  const out: TreeBlobs = { digests: [], sizes: [], exec: [], index: new Map(), bytes: 0 };
  for (const e of entries) {
    if (e.kind !== 'file') continue;
    const at = out.index.get(e.digest!);
    if (at !== undefined) {
      if (e.mode === 0o755) out.exec[at] = true;
      continue;
    }
    out.index.set(e.digest!, out.digests.length);
    out.digests.push(e.digest!);
    out.sizes.push(e.size);
    out.exec.push(e.mode === 0o755);
    out.bytes += e.size;
  }
  return out;
}
