// The pack manifest of a tree in S3 (`trees/<tree>.json`, docs/tiers.md):
// which packs hold the tree's small blobs, newest first, and for packs
// written since packs have one, the key of each pack's index. It comes
// from outside, so every field is checked before it is used.
import { isDigest, type Digest } from '../../lib/digest.js';
import type { S3Objects } from './objects.js';
import { TierError } from '../tier.js';

export const MANIFEST_FORMAT = 'vrift-packs 1';

export interface PackRef {
  key: string;
  /** Bytes of the archive (uncompressed). */
  bytes: number;
  /** Set when the object is the archive compressed (key ends in .zst): independent zstd frames, or one stream in packs older than indexes. */
  compression?: 'zstd';
  blobs: number;
  /** The tree whose push wrote this pack. */
  tree: Digest;
  /** The pack's index (pack-index.ts): absent in packs written before packs had one (they are read by streaming). */
  index?: { key: string; bytes: number };
}

export interface PackManifest {
  format: string;
  tree: Digest;
  createdAt: number;
  /** Newest first: a node that has an older version of the tree finds what it lacks in the first ones. */
  packs: PackRef[];
}

export function manifestKey(tree: Digest): string {
  return `trees/${tree}.json`;
}

/** The manifest of `tree`, or undefined when S3 has none (the tree was never pushed whole). */
export async function readManifest(objects: S3Objects, tree: Digest): Promise<PackManifest | undefined> {
  const text = await objects.getText(manifestKey(tree));
  return text === undefined ? undefined : parseManifest(tree, text);
}

/** Validates a manifest: it comes from outside, so every field is checked. */
export function parseManifest(tree: Digest, text: string): PackManifest {
  const bad = (why: string): never => {
    throw new TierError('s3', 'corrupt', `pack manifest ${manifestKey(tree)} is invalid: ${why}`, {
      hint: 'push the tree again (`vrift push <tree>`) to rewrite it',
    });
  };
  let m: Partial<PackManifest>;
  try {
    m = JSON.parse(text) as Partial<PackManifest>;
  } catch {
    return bad('not JSON');
  }
  if (m.format !== MANIFEST_FORMAT) bad(`format ${JSON.stringify(m.format)} (this vrift reads "${MANIFEST_FORMAT}")`);
  if (m.tree !== tree) bad('it names another tree');
  if (!Array.isArray(m.packs)) return bad('no pack list');
  for (const p of m.packs as Partial<PackRef>[]) {
    if (typeof p.key !== 'string' || !/^packs\/[0-9a-f]{64}-[0-9a-f]{16}\.pack(\.zst)?$/.test(p.key)) bad(`bad pack key ${JSON.stringify(p.key)}`);
    if (p.compression !== undefined && p.compression !== 'zstd') bad(`unknown compression ${JSON.stringify(p.compression)} for ${p.key} (this vrift reads zstd)`);
    if ((p.compression === 'zstd') !== p.key!.endsWith('.zst')) bad(`compression of ${p.key} does not match its name`);
    if (!Number.isSafeInteger(p.bytes) || !Number.isSafeInteger(p.blobs) || typeof p.tree !== 'string' || !isDigest(p.tree)) bad(`bad pack entry for ${p.key}`);
    if (p.index !== undefined) {
      const stem = p.key!.replace(/\.pack(\.zst)?$/, '');
      if (typeof p.index !== 'object' || p.index === null || p.index.key !== `${stem}.idx` || !Number.isSafeInteger(p.index.bytes) || p.index.bytes <= 0) {
        bad(`bad index for ${p.key}`);
      }
    }
  }
  return { format: MANIFEST_FORMAT, tree, createdAt: Number(m.createdAt) || 0, packs: m.packs as PackRef[] };
}
