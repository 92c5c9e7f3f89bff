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
import { mapLimit } from '../../lib/queue.js';
import { SingleFlight } from '../../lib/single-flight.js';
import { zstdInflate } from '../../lib/zstd.js';
import { ARCHIVE_MAGIC, FRAME_LEN, HEADER_LEN, TAG_BLOB } from '../../node/archive/format.js';
import type { S3Objects } from './objects.js';
import { PackIndex, type BlobRange } from './pack-index.js';
import { readManifest, type PackManifest, type PackRef } from './pack-manifest.js';
import { TierError, type BlobBody, type PrepareOptions } from '../tier.js';

/** Manifests kept (a few hundred bytes each). */
const MANIFESTS = 1024;
/** Bytes of pack indexes kept (48 bytes a blob: ~1.4 million blobs). */
const INDEX_BYTES = 64 << 20;

const pushAgain = 'push the tree again (`vrift push <tree>`)';
/** A ranged read this small (compressed) is decoded whole and its other blobs offered (BlobBody.neighbors). */
const NEIGHBOR_RANGE = 1 << 20;
/** A batch (getMany) reads the ranges of blobs closer than this (object bytes) as one: a request costs more than the frames between. */
const BATCH_GAP = 32 << 10;
/** …up to this many object bytes per ranged GET. */
const BATCH_RANGE_MAX = 4 << 20;
/** Ranged GETs of one batch at once. */
const BATCH_PARALLEL = 8;
/** Frames read ahead by warm() are kept this long for a getMany to take. */
const WARM_KEPT_MS = 30_000;

/** A run of whole archive records in a pack object: `[start, end)` of the object decodes to `[archiveStart, archiveEnd)` of the archive. */
export interface Span {
  pack: PackRef;
  start: number;
  end: number;
  archiveStart: number;
  archiveEnd: number;
  compressed: boolean;
}

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

/** Spans sorted by where they start in their pack, those close together (BATCH_GAP) joined, each at most about BATCH_RANGE_MAX. */
function mergeSpans(spans: Span[]): Span[] {
  const out: Span[] = [];
  const sorted = [...spans].sort((a, b) => (a.pack.key < b.pack.key ? -1 : a.pack.key > b.pack.key ? 1 : a.start - b.start));
  for (const s of sorted) {
    const cur = out.at(-1);
    // Frames (records) are contiguous in the object and in the archive: the bytes between two spans decode to the records between.
    if (cur && cur.pack.key === s.pack.key && s.start <= cur.end + BATCH_GAP && Math.max(cur.end, s.end) - cur.start <= BATCH_RANGE_MAX) {
      if (s.end > cur.end) [cur.end, cur.archiveEnd] = [s.end, s.archiveEnd];
    } else out.push({ ...s });
  }
  return out;
}

export class PackBlobReader {
  private readonly manifests = new LruMap<Digest, PackManifest>(MANIFESTS);
  private readonly indexes = new LruMap<string, PackIndex>(INDEX_BYTES, (ix) => ix.byteLength);
  private readonly loadingManifests = new SingleFlight<Digest, PackManifest | undefined>();
  private readonly loadingIndexes = new SingleFlight<string, PackIndex>();
  /** Per tree: the ranges warm() read ahead, each resolving to the records it holds (none if it failed). */
  private readonly warmed = new Map<Digest, { reads: Promise<{ digest: Digest; bytes: Buffer }[]>[] }>();
  /** Trees a getMany read without a warm() before it: a warm() that comes late reads nothing. */
  private readonly readMany = new LruMap<Digest, true>(64);

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

  /** The manifest of `tree` and the indexes of its packs, loaded (and kept) ahead of the reads that need them. */
  async prepare(tree: Digest, opts: PrepareOptions = {}): Promise<void> {
    const m = await this.manifest(tree);
    if (opts.indexes === false) return;
    await Promise.all((m?.packs ?? []).filter((p) => p.index).map((p) => this.index(p)));
  }

  /**
   * Many blobs of `tree` at once (a prefetch of a trace's start-up set):
   * located by the packs' indexes, their frames (their records, in an
   * uncompressed pack) merged into few ranged GETs where they lie close
   * (BATCH_GAP), read BATCH_PARALLEL at a time. `onBlob` gets each blob
   * asked for as its range arrives, and, with `neighbors`, the others the
   * ranges held; unverified like every read. Blobs no indexed pack holds
   * are left out (the caller fetches them one by one); a range that fails
   * leaves its blobs out and the first failure is thrown at the end.
   */
  async getMany(tree: Digest, digests: readonly Digest[], onBlob: (digest: Digest, bytes: Buffer) => Promise<void>): Promise<void> {
    const want = new Set(digests);
    const left = new Set(digests);
    // Read ahead by warm() (a cold mount's start-up set, begun before its listing was here): from memory, once.
    const early = this.warmed.get(tree);
    if (early) {
      this.warmed.delete(tree);
      for (const got of await Promise.all(early.reads)) {
        for (const b of got) {
          if (!left.delete(b.digest)) continue;
          await onBlob(b.digest, b.bytes);
        }
      }
      if (left.size === 0) return;
    } else this.readMany.set(tree, true);
    const spans = await this.plan(tree, [...left]);
    let failure: unknown;
    await mapLimit(mergeSpans(spans), BATCH_PARALLEL, async (s) => {
      try {
        for (const b of await this.readSpan(s)) if (want.has(b.digest) || this.objects.cfg.neighbors) await onBlob(b.digest, b.bytes);
      } catch (e) {
        failure ??= e;
      }
    });
    if (failure !== undefined) throw failure;
  }

  /**
   * Reads ahead the frames of `digests` of `tree` (in their order, those
   * under `blobMax` bytes, up to `maxBytes` of them), as getMany would,
   * and keeps what they hold in memory for WARM_KEPT_MS: a getMany of the
   * tree meanwhile takes its blobs from there. For a cold lazy mount's
   * start-up set, begun with its listing: the names come from a trace no
   * one has checked against the tree yet, so nothing is stored here, and
   * only what the caller then asks for (checked) is handed on.
   */
  async warm(tree: Digest, digests: readonly Digest[], maxBytes: number, blobMax: number): Promise<void> {
    if (this.warmed.has(tree)) return;
    const m = await this.manifest(tree);
    const indexes: PackIndex[] = [];
    for (const pack of m?.packs ?? []) if (pack.index) indexes.push(await this.index(pack));
    const picked: Digest[] = [];
    let bytes = 0;
    for (const d of digests) {
      let size: number | undefined;
      for (const ix of indexes) if ((size = ix.locate(d)?.size) !== undefined) break;
      if (size === undefined || size >= blobMax) continue;
      if (bytes + size > maxBytes) break;
      bytes += size;
      picked.push(d);
    }
    if (picked.length < 2 || this.warmed.has(tree) || this.readMany.get(tree)) return;
    const spans = mergeSpans(await this.plan(tree, picked));
    const done: ((records: { digest: Digest; bytes: Buffer }[]) => void)[] = [];
    const entry = { reads: spans.map(() => new Promise<{ digest: Digest; bytes: Buffer }[]>((r) => done.push(r))) };
    this.warmed.set(tree, entry);
    setTimeout(() => this.warmed.get(tree) === entry && this.warmed.delete(tree), WARM_KEPT_MS).unref();
    await mapLimit(
      spans.map((sp, i) => ({ sp, i })),
      BATCH_PARALLEL,
      async ({ sp, i }) => done[i]!(await this.readSpan(sp).catch(() => [])), // (what failed is read again by the getMany that wants it)
    );
  }

  /** Where the frames (records) of `digests` lie in the tree's indexed packs; those no index lists are left out. */
  private async plan(tree: Digest, digests: readonly Digest[]): Promise<Span[]> {
    const m = await this.manifest(tree);
    const left = new Set(digests);
    const spans: Span[] = [];
    for (const pack of m?.packs ?? []) {
      if (!pack.index || left.size === 0) continue;
      const ix = await this.index(pack);
      for (const d of [...left]) {
        const at = ix.locate(d);
        if (!at) continue;
        left.delete(d);
        // (uncompressed: the blob's record, header included, so the same parser reads both)
        const head = at.compressed ? 0 : FRAME_LEN;
        spans.push({ pack, start: at.start - head, end: at.end, archiveStart: at.archiveStart - head, archiveEnd: at.archiveStart + at.decoded, compressed: at.compressed });
      }
    }
    return spans;
  }

  /** The records a span holds, read by one ranged GET (decompressed where the pack is). */
  async readSpan(s: Span): Promise<{ digest: Digest; bytes: Buffer }[]> {
    const what = `${s.start}-${s.end} of pack ${s.pack.key}`;
    const body = await this.objects.getRange(s.pack.key, s.start, s.end);
    if (!body) throw new TierError('s3', 'corrupt', `pack ${s.pack.key} named by the manifest of tree ${s.pack.tree} is missing`, { hint: pushAgain });
    const src = s.compressed ? zstdInflate(body.stream, { limit: s.archiveEnd - s.archiveStart, what: `frames ${what}` }) : body.stream;
    const parts: Buffer[] = [];
    try {
      for await (const c of src as AsyncIterable<Buffer>) parts.push(c);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'ERR_VRIFT_ZSTD' || code === 'ERR_VRIFT_ZSTD_BOMB') throw new TierError('s3', 'corrupt', `bytes ${what} are damaged (${(e as Error).message})`, { hint: pushAgain });
      throw this.objects.fail(e, `reading ${s.pack.key}`);
    } finally {
      if (!body.stream.readableEnded) body.stream.destroy();
    }
    return blobsIn(Buffer.concat(parts), '');
  }

  /** Keeps the index of a pack this process just wrote (a push reads it back for the tree's locator). */
  remember(pack: PackRef, ix: PackIndex): void {
    if (pack.index) this.indexes.set(pack.index.key, ix);
  }

  /** A pack's index: kept, or read and checked once. */
  index(pack: PackRef): Promise<PackIndex> {
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

  /** One ranged GET of the pack, decompressed where it is compressed, cut to the blob (a lazy index's locator gives `at` directly). */
  async read(pack: PackRef, at: BlobRange, digest: Digest): Promise<BlobBody> {
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
