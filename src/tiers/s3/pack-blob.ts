// One blob of a tree out of its S3 packs, without downloading a pack:
// the tree's manifest names the packs, each pack's index (pack-index.ts)
// says which bytes of the pack object hold the blob, and one ranged GET
// reads them (a compressed pack: the zstd frames around the blob,
// decompressed, then cut to the blob). Manifests and indexes do not
// change once written, so they are kept in bounded LRUs (a daemon serves
// many files of one tree) and loaded once however many callers ask.
//
// The bytes are not trusted here any more than elsewhere: the caller
// admits them (hashed). A damaged index or frame is a corrupt tier.
import { Readable } from 'node:stream';
import type { Digest } from '../../lib/digest.js';
import { LruMap } from '../../lib/lru.js';
import { SingleFlight } from '../../lib/single-flight.js';
import { zstdInflate } from '../../lib/zstd.js';
import { ARCHIVE_MAGIC, FRAME_LEN, HEADER_LEN, TAG_BLOB } from '../../node/archive/format.js';
import type { S3Objects } from './objects.js';
import { PackIndex, type BlobRange } from './pack-index.js';
import { readManifest, type PackManifest, type PackRef } from './pack-manifest.js';
import { TierError, type BlobBody } from '../tier.js';

/** Manifests kept (a few hundred bytes each). */
const MANIFESTS = 1024;
/** Bytes of pack indexes kept (48 bytes a blob: ~1.4 million blobs). */
const INDEX_BYTES = 64 << 20;

const pushAgain = 'push the tree again (`vrift push <tree>`)';
/** A ranged read this small (compressed) is decoded whole and its other blobs offered (BlobBody.neighbors). */
const NEIGHBOR_RANGE = 1 << 20;

/** The whole blob frames (docs/archive-format.md) in decoded archive bytes that start at a frame boundary, but `except`. */
function blobsIn(buf: Buffer, except: Digest): { digest: Digest; bytes: Buffer }[] {
  const out: { digest: Digest; bytes: Buffer }[] = [];
  let at = buf.subarray(0, ARCHIVE_MAGIC.length).equals(ARCHIVE_MAGIC) ? HEADER_LEN : 0;
  while (at + FRAME_LEN <= buf.length && buf[at] === TAG_BLOB) {
    const digest = buf.toString('hex', at + 1, at + 33);
    const size = Number(buf.readBigUInt64BE(at + 33));
    const start = at + FRAME_LEN;
    if (size > buf.length - start) break; // cut by the range's end
    if (digest !== except) out.push({ digest, bytes: buf.subarray(start, start + size) });
    at = start + size;
  }
  return out;
}

export class PackBlobReader {
  private readonly manifests = new LruMap<Digest, PackManifest>(MANIFESTS);
  private readonly indexes = new LruMap<string, PackIndex>(INDEX_BYTES, (ix) => ix.byteLength);
  private readonly loadingManifests = new SingleFlight<Digest, PackManifest | undefined>();
  private readonly loadingIndexes = new SingleFlight<string, PackIndex>();

  constructor(private readonly objects: S3Objects) {}

  /** The manifest of `tree` (cached once found; absence is asked again next time: the tree may be pushed meanwhile). */
  async manifest(tree: Digest): Promise<PackManifest | undefined> {
    const known = this.manifests.get(tree);
    if (known) return known;
    return this.loadingManifests.run(tree, async () => {
      const m = await readManifest(this.objects, tree);
      if (m) this.manifests.set(tree, m);
      return m;
    }).result;
  }

  /** A pack's index if it is cached (no request): lets a bulk fetch skip packs that hold nothing wanted. */
  cachedIndex(pack: PackRef): PackIndex | undefined {
    return pack.index && this.indexes.get(pack.index.key);
  }

  /**
   * The bytes of blob `digest` of `tree`, read by range from the pack
   * whose index lists it; undefined when no indexed pack of the tree holds
   * it (packs pushed before indexes existed are not searched: the caller
   * streams them, `S3Packs.fetch`).
   */
  async get(tree: Digest, digest: Digest): Promise<BlobBody | undefined> {
    const m = await this.manifest(tree);
    for (const pack of m?.packs ?? []) {
      if (!pack.index) continue;
      const at = (await this.index(pack)).locate(digest);
      if (at) return this.read(pack, at, digest);
    }
    return undefined;
  }

  /**
   * Small blobs of `tree`, whole and in the order asked, as one stream, by
   * one ranged GET: when one indexed pack holds them all, close together
   * (the span read is at most about twice their bytes). undefined
   * otherwise (the caller reads them one by one).
   */
  async getRun(tree: Digest, blobs: readonly { digest: Digest; size: number }[]): Promise<BlobBody | undefined> {
    if (blobs.length === 0) return undefined;
    const m = await this.manifest(tree);
    for (const pack of m?.packs ?? []) {
      if (!pack.index) continue;
      const ix = await this.index(pack);
      const at = blobs.map((b) => ix.locate(b.digest));
      if (at.some((r) => !r || r.size === 0)) continue;
      const ranges = at as BlobRange[];
      let start = Infinity;
      let end = 0;
      let from = Infinity;
      let to = 0;
      let bytes = 0;
      for (const r of ranges) {
        start = Math.min(start, r.start);
        end = Math.max(end, r.end);
        from = Math.min(from, r.offset - r.skip);
        to = Math.max(to, r.offset - r.skip + r.decoded);
        bytes += r.size;
      }
      if (end - start > 2 * bytes + NEIGHBOR_RANGE / 4) return undefined;
      return this.readRun(pack, ranges, { start, end, from, to, bytes });
    }
    return undefined;
  }

  private async readRun(pack: PackRef, ranges: BlobRange[], span: { start: number; end: number; from: number; to: number; bytes: number }): Promise<BlobBody> {
    const body = await this.objects.getRange(pack.key, span.start, span.end);
    if (!body) throw new TierError('s3', 'corrupt', `pack ${pack.key} named by the manifest of tree ${pack.tree} is missing`, { hint: pushAgain });
    const compressed = ranges[0]!.compressed;
    const src = compressed ? zstdInflate(body.stream, { limit: span.to - span.from, what: `frames ${span.start}-${span.end} of pack ${pack.key}` }) : body.stream;
    const key = pack.key;
    const objects = this.objects;
    async function* blobs(): AsyncGenerator<Buffer> {
      const parts: Buffer[] = [];
      try {
        for await (const c of src as AsyncIterable<Buffer>) parts.push(c);
      } catch (e) {
        const code = (e as { code?: string }).code;
        if (code === 'ERR_VRIFT_ZSTD' || code === 'ERR_VRIFT_ZSTD_BOMB') throw new TierError('s3', 'corrupt', `frames ${span.start}-${span.end} of pack ${key} are damaged (${(e as Error).message})`, { hint: pushAgain });
        throw objects.fail(e, `reading ${key}`);
      }
      const decoded = Buffer.concat(parts);
      for (const r of ranges) {
        const at = r.offset - span.from;
        if (at + r.size > decoded.length) throw new TierError('s3', 'corrupt', `pack ${key} is cut short at byte ${span.from + decoded.length}`, { hint: pushAgain });
        yield decoded.subarray(at, at + r.size);
      }
    }
    return { stream: Readable.from(blobs()), size: span.bytes };
  }

  private index(pack: PackRef): Promise<PackIndex> {
    const { key, bytes } = pack.index!;
    const known = this.indexes.get(key);
    if (known) return Promise.resolve(known);
    return this.loadingIndexes.run(key, async () => {
      const buf = await this.objects.getRangeBuffer(key, 0, bytes);
      if (!buf) throw new TierError('s3', 'corrupt', `index ${key} named by the manifest of tree ${pack.tree} is missing`, { hint: pushAgain });
      let ix: PackIndex;
      try {
        ix = PackIndex.decode(buf);
        if (ix.archiveBytes !== pack.bytes || ix.blobCount !== pack.blobs) throw new Error(`it describes ${ix.blobCount} blobs in ${ix.archiveBytes} bytes, the manifest ${pack.blobs} in ${pack.bytes}`);
        if ((ix.frameCount > 0) !== (pack.compression === 'zstd')) throw new Error(`its frames do not match the pack's compression`);
      } catch (e) {
        throw new TierError('s3', 'corrupt', `index ${key} is invalid: ${(e as Error).message}`, { hint: pushAgain });
      }
      this.indexes.set(key, ix);
      return ix;
    }).result;
  }

  /** One ranged GET of the pack, decompressed where it is compressed, cut to the blob. */
  private async read(pack: PackRef, at: BlobRange, digest: Digest): Promise<BlobBody> {
    if (at.size === 0) return { stream: Readable.from([]), size: 0 };
    const body = await this.objects.getRange(pack.key, at.start, at.end);
    if (!body) throw new TierError('s3', 'corrupt', `pack ${pack.key} named by the manifest of tree ${pack.tree} is missing`, { hint: pushAgain });
    // Inflated a bounded step at a time, and never past what the index says the frames hold.
    const bytes = at.compressed ? zstdInflate(body.stream, { limit: at.decoded, what: `frames ${at.start}-${at.end} of pack ${pack.key}` }) : body.stream;
    if (this.objects.cfg.neighbors && at.compressed && at.end - at.start <= NEIGHBOR_RANGE) return this.withNeighbors(bytes, body.stream, at, digest, pack.key);
    return { stream: Readable.from(this.cut(bytes, body.stream, at, digest, pack.key)), size: at.size };
  }

  /**
   * A small compressed range (the blob's frame, other small blobs around
   * it): decoded whole, so the blobs beside this one come too, for free
   * (they crossed the network anyway).
   */
  private withNeighbors(src: Readable, response: Readable, at: BlobRange, digest: Digest, key: string): BlobBody {
    const parts: Buffer[] = [];
    let decoded: Buffer | undefined;
    const collect = async function* (this: PackBlobReader): AsyncGenerator<Buffer> {
      for await (const c of this.cut(src, response, { ...at, skip: 0, size: Number.MAX_SAFE_INTEGER }, digest, key)) parts.push(c);
      decoded = Buffer.concat(parts);
      if (decoded.length < at.skip + at.size) throw new TierError('s3', 'corrupt', `blob ${digest} in pack ${key} is cut short`, { hint: pushAgain });
      yield decoded.subarray(at.skip, at.skip + at.size);
    }.bind(this);
    return { stream: Readable.from(collect()), size: at.size, neighbors: () => (decoded ? blobsIn(decoded, digest) : []) };
  }

  /**
   * `at.size` bytes after the first `at.skip`. The rest of the range (other
   * blobs of the blob's frame, at most about FRAME_TARGET) is read and
   * dropped: a response read to its end leaves its connection for the next
   * request, and the last frame is checked whole.
   */
  private async *cut(src: Readable, response: Readable, at: BlobRange, digest: Digest, key: string): AsyncGenerator<Buffer> {
    let skip = at.skip;
    let left = at.size;
    try {
      for await (const c of src as AsyncIterable<Buffer>) {
        if (left === 0) continue;
        let chunk = c;
        if (skip >= chunk.length) {
          skip -= chunk.length;
          continue;
        }
        chunk = chunk.subarray(skip, skip + left);
        skip = 0;
        left -= chunk.length;
        yield chunk;
      }
    } catch (e) {
      // Frames that do not decode are damaged bytes in the tier, like bytes that do not hash.
      if ((e as { code?: string }).code === 'ERR_VRIFT_ZSTD' || (e as { code?: string }).code === 'ERR_VRIFT_ZSTD_BOMB') {
        throw new TierError('s3', 'corrupt', `blob ${digest} in pack ${key} is damaged (${(e as Error).message})`, { hint: pushAgain });
      }
      throw this.objects.fail(e, `reading ${key}`);
    } finally {
      // Stopped early (the reader gave up, or an error): the response is abandoned, not left half read.
      if (!response.readableEnded) response.destroy();
    }
  }
}
