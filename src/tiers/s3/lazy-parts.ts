// Reading a tree's lazy index out of S3 (docs/tree-format.md "Lazy index";
// written by packs.ts): its head, its names blob (decompressed, never past
// the size the head gives), a run of locator records by one ranged GET,
// and a blob where a record says it is (one ranged GET of its frames, or
// its own object). Nothing here is trusted: the caller checks each part
// against the signed head (src/node/ops/partial-tree.ts) and every blob
// is hashed when admitted.
import type { Digest } from '../../lib/digest.js';
import { zstdAvailable, zstdInflate } from '../../lib/zstd.js';
import { MAX_HEAD_BYTES } from '../../node/store/lazy-index.js';
import type { S3Objects } from './objects.js';
import { decodeLocation, lazyKeys, RECORD } from './locator.js';
import { mapLimit } from '../../lib/queue.js';
import { FRAME_LEN } from '../../node/archive/format.js';
import type { PackBlobReader, Span } from './pack-blob.js';
import { TierError, type BlobBody, type LazyPart } from '../tier.js';

/** Ranged GETs at once by many(). */
const MANY_PARALLEL = 16;
/** many() reads frames that follow each other in a pack by one ranged GET, up to this many object bytes. */
const MANY_RANGE_MAX = 4 << 20;

export class S3LazyParts {
  constructor(
    private readonly objects: S3Objects,
    private readonly reader: PackBlobReader,
  ) {}

  async part(head: Digest, part: LazyPart): Promise<Buffer | undefined> {
    const keys = lazyKeys(head);
    if (part.kind === 'head') return this.head(keys.head);
    if (part.kind === 'records') return this.objects.getRangeBuffer(keys.locator, part.first * RECORD, part.end * RECORD);
    if (!zstdAvailable()) return undefined;
    const body = await this.objects.get(keys.names);
    if (!body) return undefined;
    const parts: Buffer[] = [];
    try {
      for await (const c of zstdInflate(body.stream, { limit: part.bytes, what: keys.names }) as AsyncIterable<Buffer>) parts.push(c);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'ERR_VRIFT_ZSTD' || code === 'ERR_VRIFT_ZSTD_BOMB') throw new TierError('s3', 'corrupt', `${keys.names} is damaged (${(e as Error).message})`, { hint: 'save the tree again' });
      throw this.objects.fail(e, `reading ${keys.names}`);
    }
    return Buffer.concat(parts);
  }

  /**
   * Many blobs of `tree` where their records place them: one ranged GET per
   * run of frames they share that follow each other in a pack (a start-up
   * set's files are often neighbours in the tree, so in the pack; up to
   * MANY_RANGE_MAX, MANY_PARALLEL GETs at once), the frames' records parsed
   * and only the blobs asked for handed on (unverified). No bytes between
   * two frames are read: a run decodes to no more than its frames' records
   * say, so a damaged pack cannot make it inflate more than they would.
   */
  async many(tree: Digest, wants: readonly { digest: Digest; record: Buffer }[], onBlob: (digest: Digest, bytes: Buffer) => Promise<void>): Promise<void> {
    const m = await this.reader.manifest(tree);
    if (!m) return;
    const frames = new Map<string, Span>();
    const want = new Set<Digest>();
    for (const w of wants) {
      const at = decodeLocation(w.record, 0, Number(w.record.readBigUInt64BE(56)), m.packs);
      if (at.kind !== 'pack') continue;
      const r = at.range;
      want.add(w.digest);
      // (uncompressed: the blob's record, header included, so the same parser reads both)
      const head = r.compressed ? 0 : FRAME_LEN;
      const key = `${at.pack.key}:${r.start - head}`;
      if (!frames.has(key)) frames.set(key, { pack: at.pack, start: r.start - head, end: r.end, archiveStart: 0, archiveEnd: r.decoded + head, compressed: r.compressed });
    }
    let failure: unknown;
    await mapLimit(adjacentRuns([...frames.values()]), MANY_PARALLEL, async (span) => {
      try {
        for (const b of await this.reader.readSpan(span)) if (want.has(b.digest)) await onBlob(b.digest, b.bytes);
      } catch (e) {
        failure ??= e;
      }
    });
    if (failure !== undefined) throw failure;
  }

  /** The head, refused unread when S3 says it is larger than any head. */
  private async head(key: string): Promise<Buffer | undefined> {
    const body = await this.objects.get(key);
    if (!body) return undefined;
    const parts: Buffer[] = [];
    let n = body.size ?? 0;
    try {
      if (n > MAX_HEAD_BYTES) throw new TierError('s3', 'corrupt', `${key} holds ${n} bytes, more than any lazy index head`, { hint: 'save the tree again' });
      n = 0;
      for await (const c of body.stream as AsyncIterable<Buffer>) {
        if ((n += c.length) > MAX_HEAD_BYTES) throw new TierError('s3', 'corrupt', `${key} holds more than any lazy index head`, { hint: 'save the tree again' });
        parts.push(c);
      }
    } finally {
      if (!body.stream.readableEnded) body.stream.destroy();
    }
    return Buffer.concat(parts);
  }

  /** Blob `digest` of `tree` where `record` (a locator record, its digest checked) places it; undefined when it places it nowhere this tier reads. */
  async located(tree: Digest, digest: Digest, record: Buffer, size: number): Promise<BlobBody | undefined> {
    const m = await this.reader.manifest(tree);
    if (!m) return undefined;
    const at = decodeLocation(record, 0, size, m.packs);
    if (at.kind === 'loose') return this.objects.get(`blobs/${digest}`);
    if (at.kind === 'none') return undefined;
    return this.reader.read(at.pack, at.range, digest);
  }
}

/** Frames (each `[start, end)` of its pack, decoding to `archiveEnd` bytes) joined where one ends where the next starts, each run at most MANY_RANGE_MAX object bytes. */
function adjacentRuns(frames: readonly Span[]): Span[] {
  const runs: Span[] = [];
  const sorted = [...frames].sort((a, b) => (a.pack.key < b.pack.key ? -1 : a.pack.key > b.pack.key ? 1 : a.start - b.start));
  for (const f of sorted) {
    const run = runs.at(-1);
    if (run && run.pack.key === f.pack.key && run.compressed === f.compressed && f.start === run.end && f.end - run.start <= MANY_RANGE_MAX) {
      run.end = f.end;
      run.archiveEnd += f.archiveEnd;
    } else runs.push({ ...f });
  }
  return runs;
}
