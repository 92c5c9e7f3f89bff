// What a node announces to its peers on the gossip topic (JSON, signed by
// its libp2p key), and the check every received announcement goes
// through: a peer's word is data, and malformed data is dropped.
import { isDigest, type Digest } from '../../lib/digest.js';
import { MAX_BLOOM_BITS } from './bloom.js';
import { MAX_ANNOUNCED_TREES } from './holdings.js';

/** What a node publishes (JSON on the gossip topic). */
export interface Announcement {
  v: 1;
  grpc: string;
  addrs: string[];
  trees: Digest[];
  treeCount: number;
  blobs: number;
  /** Base64 Bloom filter of the node's blobs, and its number of hash positions. */
  bloom: string;
  bloomK: number;
  /** Trees the node is fetching right now as a member of their swarm (src/node/swarm/). */
  fetching?: Digest[];
  /** For each of `fetching`, the pieces it holds so far: its bitfield (PieceSet.encode), base64. */
  have?: string[];
  bye?: true;
}

/** Trees a node says it is fetching at once, at most. */
export const MAX_FETCHING = 16;
/** A bitfield in an announcement, base64, at most (65 536 pieces). */
const MAX_BITFIELD_B64 = 11_000;

/** An announcement from the wire, checked field by field; undefined when anything is off. */
export function parseAnnouncement(data: Uint8Array): Announcement | undefined {
  if (data.byteLength > 1 << 20) return undefined;
  let a: Partial<Announcement>;
  try {
    a = JSON.parse(Buffer.from(data).toString('utf8')) as Partial<Announcement>;
  } catch {
    return undefined;
  }
  if (typeof a !== 'object' || a === null || a.v !== 1) return undefined;
  if (typeof a.grpc !== 'string' || !/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(a.grpc)) return undefined;
  if (!Array.isArray(a.addrs) || a.addrs.length > 16 || !a.addrs.every((s) => typeof s === 'string' && s.length < 512)) return undefined;
  if (a.bye) return a as Announcement;
  if (!Array.isArray(a.trees) || a.trees.length > MAX_ANNOUNCED_TREES || !a.trees.every((t) => typeof t === 'string' && isDigest(t))) return undefined;
  if (!Number.isSafeInteger(a.treeCount) || !Number.isSafeInteger(a.blobs)) return undefined;
  if (typeof a.bloom !== 'string' || !Number.isInteger(a.bloomK)) return undefined;
  if (a.fetching !== undefined && !(Array.isArray(a.fetching) && a.fetching.length <= MAX_FETCHING && a.fetching.every((t) => typeof t === 'string' && isDigest(t)))) return undefined;
  if (a.have !== undefined && !(Array.isArray(a.have) && a.have.length === (a.fetching?.length ?? 0) && a.have.every((h) => typeof h === 'string' && h.length <= MAX_BITFIELD_B64))) return undefined;
  if (a.bloom) {
    const bytes = Buffer.byteLength(a.bloom, 'base64');
    if (bytes === 0 || bytes > MAX_BLOOM_BITS / 8 || (bytes & (bytes - 1)) !== 0 || a.bloomK! < 1 || a.bloomK! > 8) return undefined;
  }
  return a as Announcement;
}
