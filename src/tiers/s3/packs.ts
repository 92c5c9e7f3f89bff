// Per-tree packs in S3, so a cold node pulls a handful of objects per
// tree instead of one per file, and a save moves only what is new.
//
// Pushing tree T with a base B already in S3 (the ref's previous tree):
// the small blobs T shares with B stay in B's packs; only T's new small
// blobs go into one new pack. T's manifest lists B's packs plus the new
// one. When that chain of packs grows long, or carries too many bytes T
// no longer needs, the push writes one fresh pack of all of T instead
// (like git repacking). Large blobs are objects of their own (multipart).
//
// Each pack has an index (pack-index.ts): where each blob's bytes are in
// the pack object, so one blob is one ranged GET (pack-blob.ts). A
// compressed pack is a run of independent zstd frames cut between blobs,
// which a whole-pack read still decompresses as one stream.
//
// The tree blob is also stored zstd-compressed (`trees/<tree>.zst`): a
// lazy mount reads only the listing, which is most of what it moves for a
// large tree (a third of the bytes for a node_modules tree).
//
// The tree's lazy index (`lazy/<head>`, `.names.zst`, `.loc`: docs/tree-format.md)
// lets a lazy mount start from the names alone and read each file's digest
// and place when it is opened; the ref set after the push names its head.
//
// Order of writes: loose blobs, tree blob (both forms), pack and its index, the lazy
// index, then the manifest. A manifest therefore promises that everything it names is
// there; a push that dies midway leaves unreferenced objects, never a
// broken manifest.
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { hashBuffer, type Digest } from '../../lib/digest.js';
import { archiveSize } from '../../node/archive/format.js';
import { decodeTree, type TreeEntry } from '../../node/store/tree.js';
import { through, zstdAvailable, zstdCompressBuffer, zstdFramed, zstdInflate } from '../../lib/zstd.js';
import { mapLimit, settleAll } from '../../lib/queue.js';
import type { S3Objects } from './objects.js';
import { PackBlobReader } from './pack-blob.js';
import { encodePackIndex, PackIndex, planPack, type PackFrame } from './pack-index.js';
import { buildLazyIndex } from '../../node/store/lazy-index.js';
import { encodeLocator, lazyKeys } from './locator.js';
import { S3LazyParts } from './lazy-parts.js';
import { manifestKey, MANIFEST_FORMAT, readManifest, type PackManifest, type PackRef } from './pack-manifest.js';
import { MAX_TREE_BYTES, TierError, type ArchivePart, type BlobBody, type BlobSource, type PrepareOptions, type PushResult, type TreePush } from '../tier.js';

/** zstd level of a names blob: written once, read by every lazy mount (9: a fifth smaller than 3 at a twelfth of 19's time; 19 is 8% smaller still). */
const NAMES_LEVEL = 9;
/** A pack chain longer than this is rewritten as one pack. */
const MAX_PACKS = 8;
/** …and so is one where more than this share of the bytes is blobs the tree does not use. */
const MAX_STALE = 0.3;

export class S3Packs {
  private readonly reader: PackBlobReader;
  /** Reads of the trees' lazy indexes (lazy-parts.ts). */
  readonly lazy: S3LazyParts;

  constructor(private readonly objects: S3Objects) {
    this.reader = new PackBlobReader(objects);
    this.lazy = new S3LazyParts(objects, this.reader);
  }

  /** The manifest as S3 holds it now (not cached: a push asks whether the tree is there). */
  manifest(tree: Digest): Promise<PackManifest | undefined> {
    return readManifest(this.objects, tree);
  }

  /** One blob of `tree` by a ranged GET of the pack holding it (pack-blob.ts). */
  getInTree(tree: Digest, digest: Digest): Promise<BlobBody | undefined> {
    return this.reader.get(tree, digest);
  }

  /** Loads the manifest of `tree` and its packs' indexes (kept: pack-blob.ts), ahead of ranged reads. */
  prepareTree(tree: Digest, opts?: PrepareOptions): Promise<void> {
    return this.reader.prepare(tree, opts);
  }

  /** Many blobs of `tree` by few ranged GETs of its packs (pack-blob.ts). */
  getManyInTree(tree: Digest, digests: readonly Digest[], onBlob: (digest: Digest, bytes: Buffer) => Promise<void>): Promise<void> {
    return this.reader.getMany(tree, digests, onBlob);
  }

  /** Reads ahead the frames of a tree's start-up set for a getManyInTree soon after (pack-blob.ts, warm). */
  warmInTree(tree: Digest, digests: readonly Digest[], maxBytes: number, blobMax: number): Promise<void> {
    return this.reader.warm(tree, digests, maxBytes, blobMax);
  }

  /** The tree blob from its compressed copy, decompressed (bounded), unverified; undefined when there is none (trees pushed before it existed, or without zstd). */
  async getTreeBlob(tree: Digest): Promise<BlobBody | undefined> {
    const body = await this.objects.get(treeBlobKey(tree));
    if (!body) return undefined;
    if (!zstdAvailable()) {
      body.stream.destroy();
      return undefined; // (the plain blob then)
    }
    return { stream: zstdInflate(body.stream, { limit: MAX_TREE_BYTES, what: treeBlobKey(tree) }) };
  }

  async fetch(tree: Digest, want: ReadonlySet<Digest>): Promise<ArchivePart[] | undefined> {
    const m = await this.reader.manifest(tree);
    if (!m) return undefined;
    // A pack whose index (already here) lists nothing wanted is not read: after a ranged read failed,
    // only the packs that hold the blob, or have no index, are streamed.
    const holds = (p: PackRef) => {
      const ix = this.reader.cachedIndex(p);
      return !ix || [...want].some((d) => ix.has(d));
    };
    return m.packs.filter(holds).map((p) => ({
      name: `s3 pack ${p.key}`,
      bytes: p.bytes,
      open: async () => {
        const body = await this.objects.get(p.key);
        if (!body) {
          throw new TierError('s3', 'corrupt', `pack ${p.key} named by the manifest of tree ${tree} is missing`, {
            hint: 'push the tree again (`vrift push <tree>`)',
          });
        }
        if (p.compression !== 'zstd') return body.stream;
        // Decompressed on the thread pool while the caller admits blobs (its frames, one after another),
        // a bounded step at a time and never past the archive size the manifest gives (a zstd bomb stops there).
        return zstdInflate(body.stream, { limit: p.bytes, what: `pack ${p.key}` });
      },
    }));
  }

  async push(
    push: TreePush,
    putBlob: (d: Digest, src: BlobSource) => Promise<void>,
    hasBlobs: (ds: readonly Digest[]) => Promise<Set<Digest>>,
  ): Promise<PushResult> {
    const present = await this.manifest(push.tree);
    if (present) return { blobs: 0, bytes: 0, present: true, lazy: await this.lazyIndex(push, present.packs) };
    const loose = this.objects.cfg.looseBlobBytes;
    const sizes = blobSizes(push.entries);
    const small = [...sizes].filter(([, s]) => s < loose);
    const large = [...sizes].filter(([, s]) => s >= loose);
    const res: PushResult = { blobs: 0, bytes: 0 };

    // 1-3 do not depend on each other: they run at once.
    const [, , , packs] = await settleAll<[void, void, void, PackRef[]]>([
      this.pushLarge(push, large, putBlob, hasBlobs, res),
      this.objects.putBuffer(`blobs/${push.tree}`, push.encoded),
      this.putCompressedTree(push),
      this.pushSmall(push, small, loose, res),
    ]);

    // 4. The lazy index (its head last), which the ref will name.
    res.lazy = await this.lazyIndex(push, packs);

    // 5. The manifest, last: from now on the tree is complete in S3.
    const manifest: PackManifest = { format: MANIFEST_FORMAT, tree: push.tree, createdAt: Date.now(), packs };
    await this.objects.putBuffer(manifestKey(push.tree), Buffer.from(JSON.stringify(manifest)), 'application/json');
    return res;
  }

  /** 2. The listing again, compressed (what a lazy mount reads); the plain blob stays for older readers. */
  private async putCompressedTree(push: TreePush): Promise<void> {
    if (this.objects.cfg.compression !== 'zstd' || !zstdAvailable()) return;
    await this.objects.putBuffer(treeBlobKey(push.tree), await zstdCompressBuffer(push.encoded));
  }

  /** 1. Large blobs: their own objects, only those S3 lacks. */
  private async pushLarge(
    push: TreePush,
    large: [Digest, number][],
    putBlob: (d: Digest, src: BlobSource) => Promise<void>,
    hasBlobs: (ds: readonly Digest[]) => Promise<Set<Digest>>,
    res: PushResult,
  ): Promise<void> {
    if (large.length === 0) return;
    const present = await hasBlobs(large.map(([d]) => d));
    await mapLimit(
      large.filter(([d]) => !present.has(d)),
      4,
      async ([d, s]) => {
        await putBlob(d, push.source(d, s));
        res.blobs++;
        res.bytes += s;
        push.onBytes?.(s);
      },
    );
  }

  /** 3. Small blobs: reuse a base's packs, add one pack of what is new. Returns the tree's packs. */
  private async pushSmall(push: TreePush, small: [Digest, number][], loose: number, res: PushResult): Promise<PackRef[]> {
    const base = await this.findBase(push);
    let packs: PackRef[] = [];
    let fresh = small;
    if (base) {
      const inBase = new Set(base.entries.filter((e) => e.kind === 'file' && e.size < loose).map((e) => e.digest!));
      const kept = small.filter(([d]) => inBase.has(d));
      fresh = small.filter(([d]) => !inBase.has(d));
      const oldBytes = base.manifest.packs.reduce((n, p) => n + p.bytes, 0);
      const usedBytes = archiveSize(kept.map(([, s]) => s));
      const freshBytes = fresh.length > 0 ? archiveSize(fresh.map(([, s]) => s)) : 0;
      const stale = Math.max(0, oldBytes - usedBytes) / Math.max(1, oldBytes + freshBytes);
      const count = base.manifest.packs.length + (fresh.length > 0 ? 1 : 0);
      if (count <= MAX_PACKS && stale <= MAX_STALE) {
        packs = base.manifest.packs;
        res.base = base.tree;
      } else fresh = small; // repack: one pack of the whole tree
    }
    if (fresh.length > 0) {
      packs = [await this.writePack(push, startupFirst(fresh, push.startup)), ...packs];
      res.blobs += fresh.length;
      res.bytes += fresh.reduce((n, [, s]) => n + s, 0);
    }
    return packs;
  }

  /**
   * One new pack of `blobs` and its index. Compressed, the pack is zstd
   * frames cut between blobs (each decompresses alone: a ranged read of one
   * blob needs only its frame); the index records where each frame and
   * each blob is. The index goes up once the pack is whole.
   */
  private async writePack(push: TreePush, blobs: [Digest, number][]): Promise<PackRef> {
    const compress = this.objects.cfg.compression === 'zstd' && zstdAvailable();
    const stem = `packs/${push.tree}-${randomBytes(8).toString('hex')}`;
    const key = `${stem}.pack${compress ? '.zst' : ''}`;
    const list = blobs.map(([digest, size]) => ({ digest, size }));
    const plan = planPack(list);
    const chunks = Readable.from(push.archive(list, (_d, s) => push.onBytes?.(s)));
    // Frame k holds the archive from the end of frame k-1; the compressor says how many bytes each took.
    const frames: PackFrame[] = [];
    let objectBytes = 0;
    const onFrame = (n: number) => {
      frames.push({ objectOffset: objectBytes, archiveOffset: frames.length === 0 ? 0 : plan.frameEnds[frames.length - 1]! });
      objectBytes += n;
    };
    await this.objects.upload(key, compress ? through(chunks, zstdFramed(plan.frameEnds, onFrame)) : chunks);
    if (!compress) objectBytes = plan.archiveBytes;
    const index = encodePackIndex(plan, objectBytes, frames);
    await this.objects.putBuffer(`${stem}.idx`, index);
    const ref: PackRef = { key, bytes: plan.archiveBytes, blobs: blobs.length, tree: push.tree, index: { key: `${stem}.idx`, bytes: index.byteLength } };
    if (compress) ref.compression = 'zstd';
    this.reader.remember(ref, PackIndex.decode(index)); // (the locator reads it next)
    return ref;
  }

  /**
   * The tree's lazy index (docs/tree-format.md): names, locator, then the
   * head, whose presence promises the other two. It is a function of the
   * tree and of where its blobs are, so one already there (an earlier push
   * of the same tree) is kept. Returns the head's digest; undefined without
   * zstd (the names are stored compressed), and the ref then goes without.
   */
  private async lazyIndex(push: TreePush, packs: readonly PackRef[]): Promise<Digest | undefined> {
    if (!zstdAvailable()) return undefined;
    const lazy = buildLazyIndex(push.tree, push.entries);
    const keys = lazyKeys(lazy.digest);
    if (await this.objects.exists(keys.head)) return lazy.digest;
    const indexes = await Promise.all(packs.map((p) => (p.index ? this.reader.index(p) : undefined)));
    await Promise.all([
      zstdCompressBuffer(lazy.names, NAMES_LEVEL).then((z) => this.objects.putBuffer(keys.names, z)),
      this.objects.putBuffer(keys.locator, encodeLocator(lazy.files, packs, indexes, this.objects.cfg.looseBlobBytes)),
    ]);
    await this.objects.putBuffer(keys.head, lazy.head);
    return lazy.digest;
  }

  /** The first base tree that is complete in S3, with its entries. */
  private async findBase(push: TreePush): Promise<{ tree: Digest; manifest: PackManifest; entries: TreeEntry[] } | undefined> {
    for (const tree of push.bases) {
      if (tree === push.tree) continue;
      const manifest = await this.manifest(tree);
      if (!manifest) continue;
      const entries = push.baseEntries(tree) ?? (await this.fetchTreeEntries(tree));
      if (entries) return { tree, manifest, entries };
    }
    return undefined;
  }

  /** A base tree's entries straight from S3: verified and validated, but not admitted anywhere. */
  private async fetchTreeEntries(tree: Digest): Promise<TreeEntry[] | undefined> {
    const body = await this.objects.get(`blobs/${tree}`);
    if (!body) return undefined;
    const chunks: Buffer[] = [];
    for await (const c of body.stream as AsyncIterable<Buffer>) chunks.push(c);
    const buf = Buffer.concat(chunks);
    if (hashBuffer(buf) !== tree) return undefined; // a corrupt base is just not a base
    try {
      return decodeTree(buf);
    } catch {
      return undefined;
    }
  }
}

/** The object holding tree `tree`'s blob, zstd-compressed. */
export function treeBlobKey(tree: Digest): string {
  return `trees/${tree}.zst`;
}

/** Unique file blobs of a tree with their sizes. */
function blobSizes(entries: TreeEntry[]): Map<Digest, number> {
  const m = new Map<Digest, number>();
  for (const e of entries) if (e.kind === 'file') m.set(e.digest!, e.size);
  return m;
}

/** `blobs` with those of the start-up set (a trace) first, in its order; the rest as they were. */
export function startupFirst(blobs: [Digest, number][], startup: readonly Digest[] | undefined): [Digest, number][] {
  if (!startup || startup.length === 0) return blobs;
  const rank = new Map<Digest, number>();
  startup.forEach((d, i) => rank.has(d) || rank.set(d, i));
  const first = blobs.filter(([d]) => rank.has(d)).sort(([a], [b]) => rank.get(a)! - rank.get(b)!);
  return [...first, ...blobs.filter(([d]) => !rank.has(d))];
}
