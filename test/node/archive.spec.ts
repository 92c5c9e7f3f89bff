// The archive format (docs/archive-format.md): round trip, every way a
// stream can be cut or lie, and bounded memory for a large blob.
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashBuffer, StreamHasher, type Digest } from '../../src/lib/digest.js';
import { archiveChunks } from '../../src/node/archive/chunks.js';
import { archiveHeader, archiveSize, blobFrame, endFrame } from '../../src/node/archive/format.js';
import { readArchive, type ArchiveReadOptions } from '../../src/node/archive/reader.js';
import { Store } from '../../src/node/store/store.js';
import { tempDir } from '../helpers/tmp.js';

let store: Store;
beforeAll(() => {
  store = Store.open(tempDir('vrift-archive-'));
});
afterAll(async () => {
  await store.close();
});

function archiveOf(blobs: Buffer[]): Buffer {
  const parts = [archiveHeader()];
  for (const b of blobs) parts.push(blobFrame(hashBuffer(b), b.byteLength), b);
  parts.push(endFrame(blobs.length, blobs.reduce((n, b) => n + b.byteLength, 0)));
  return Buffer.concat(parts);
}

/** Feeds a buffer in chunks of `size` bytes (1 = byte by byte). */
async function* chunked(buf: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

function collect(): { admitted: Digest[]; rejected: Digest[]; opts: ArchiveReadOptions } {
  const admitted: Digest[] = [];
  const rejected: Digest[] = [];
  return { admitted, rejected, opts: { from: 'test', want: () => true, onAdmit: (d) => admitted.push(d), onReject: (d) => rejected.push(d) } };
}

describe('archive format', () => {
  it('round-trips blobs written from the CAS, in any chunking', async () => {
    const blobs = [randomBytes(10), Buffer.alloc(0), randomBytes(3 << 20), randomBytes(70_000)];
    const written = blobs.map((b) => store.putBlob(b));
    const chunks: Buffer[] = [];
    for await (const c of archiveChunks(store, written.map((w) => ({ digest: w.digest, size: w.size })))) chunks.push(c);
    const arc = Buffer.concat(chunks);
    expect(arc.length).toBe(archiveSize(blobs.map((b) => b.length)));
    expect(arc.equals(archiveOf(blobs))).toBe(true);
    for (const size of [4099, 65_536, arc.length]) {
      const dest = Store.open(tempDir('vrift-archive-rt-'));
      const c = collect();
      const res = await readArchive(dest.admission, chunked(arc, size), c.opts);
      expect(res.admitted).toBe(4);
      for (const b of blobs) expect(dest.cas.readVerified(hashBuffer(b)).equals(b)).toBe(true);
      await dest.close();
    }
  });

  it('keeps exactly the blobs that arrived whole before a cut, at every offset', async () => {
    const blobs = [randomBytes(5), randomBytes(40), randomBytes(1)];
    const arc = archiveOf(blobs);
    const ends: number[] = [];
    let off = 16;
    for (const b of blobs) ends.push((off += 41 + b.length));
    for (let cut = 0; cut < arc.length; cut++) {
      const c = collect();
      const err = await readArchive(store.admission, chunked(arc.subarray(0, cut), 3), c.opts).then(
        () => undefined,
        (e: unknown) => e as { code: string; result: { admitted: number } },
      );
      expect(err?.code).toBe('ERR_VRIFT_ARCHIVE_TRUNCATED');
      const whole = ends.filter((e) => e <= cut).length;
      expect(c.admitted).toEqual(blobs.slice(0, whole).map(hashBuffer));
      expect(err?.result.admitted).toBe(whole);
    }
  });

  it('keeps the whole blobs before a random cut (property)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 6 }), fc.nat(), fc.integer({ min: 1, max: 64 }), async (arrays, cutSeed, chunk) => {
        const blobs = arrays.map((a) => Buffer.from(a));
        const arc = archiveOf(blobs);
        const cut = cutSeed % (arc.length + 1);
        const c = collect();
        const ok = await readArchive(store.admission, chunked(arc.subarray(0, cut), chunk), c.opts).then(
          () => true,
          () => false,
        );
        expect(ok).toBe(cut === arc.length);
        let off = 16;
        const whole = blobs.filter((b) => (off += 41 + b.length) <= cut).length;
        expect(c.admitted).toEqual(blobs.slice(0, whole).map(hashBuffer));
      }),
      { numRuns: 150 },
    );
  });

  it('rejects a wrong blob, admits the rest, and never names wrong bytes', async () => {
    const good1 = randomBytes(100);
    const bad = randomBytes(100);
    const good2 = randomBytes(100);
    const claimed = hashBuffer(randomBytes(100)); // the name the bad bytes pretend to have
    const arc = Buffer.concat([
      archiveHeader(),
      blobFrame(hashBuffer(good1), 100),
      good1,
      blobFrame(claimed, 100),
      bad,
      blobFrame(hashBuffer(good2), 100),
      good2,
      endFrame(3, 300),
    ]);
    const c = collect();
    const res = await readArchive(store.admission, chunked(arc, 33), c.opts);
    expect(c.admitted).toEqual([hashBuffer(good1), hashBuffer(good2)]);
    expect(c.rejected).toEqual([claimed]);
    expect(res.rejected[0]?.reason).toMatch(/do not hash to its name/);
    expect(store.cas.has(claimed)).toBe(false);
    expect(store.cas.has(hashBuffer(bad))).toBe(false);
  });

  it('rejects a frame smaller than the tree expects, unread, and reads on', async () => {
    const b = randomBytes(50);
    const c = collect();
    const res = await readArchive(store.admission, chunked(archiveOf([b]), 1000), { ...c.opts, expectedSize: () => 51 });
    expect(res.admitted).toBe(0);
    expect(res.rejected[0]?.reason).toMatch(/declared size 50 but the tree says 51/);
  });

  it('stops at a frame larger than the tree expects, before writing anything (a stream that lies about its sizes)', async () => {
    const b = randomBytes(50);
    const c = collect();
    const read = readArchive(store.admission, chunked(archiveOf([b]), 1000), { ...c.opts, expectedSize: () => 49 });
    await expect(read).rejects.toMatchObject({ code: 'ERR_VRIFT_ARCHIVE_MALFORMED', message: expect.stringMatching(/declares 50 bytes but the tree says 49/) });
    expect(c.rejected).toEqual([hashBuffer(b)]);
    expect(store.cas.has(hashBuffer(b))).toBe(false);
  });

  it('skips blobs it does not want, without writing them', async () => {
    const a = randomBytes(30);
    const b = randomBytes(30);
    const dest = Store.open(tempDir('vrift-archive-skip-'));
    const res = await readArchive(dest.admission, chunked(archiveOf([a, b]), 5), { from: 'test', want: (d) => d === hashBuffer(b) });
    expect([res.admitted, res.skipped]).toEqual([1, 1]);
    expect(dest.cas.has(hashBuffer(a))).toBe(false);
    await dest.close();
  });

  it('stops reading once it has read what it wants (one blob of a pack), keeping that blob', async () => {
    const blobs = [randomBytes(40), randomBytes(2 << 20), randomBytes(40), randomBytes(3 << 20)];
    const arc = archiveOf(blobs);
    for (const wanted of [blobs[0]!, blobs[1]!]) {
      const dest = Store.open(tempDir('vrift-archive-stop-'));
      let fed = 0;
      async function* counted(): AsyncGenerator<Buffer> {
        for await (const c of chunked(arc, 64 << 10)) {
          fed += c.byteLength;
          yield c;
        }
      }
      const res = await readArchive(dest.admission, counted(), { from: 'test', want: (d) => d === hashBuffer(wanted), stopAfter: 1 });
      expect([res.admitted, res.stoppedEarly]).toEqual([1, true]);
      expect(dest.cas.has(hashBuffer(wanted))).toBe(true);
      expect(fed).toBeLessThan(arc.length / 2); // the 3 MiB blob at the end was never read
      await dest.close();
    }
  });

  it('rejects malformed streams with one clear reason each', async () => {
    const b = randomBytes(8);
    const arc = archiveOf([b]);
    const cases: [string, Buffer, RegExp][] = [
      ['bad magic', Buffer.concat([Buffer.from('NOTVRIFT'), arc.subarray(8)]), /bad magic/],
      ['newer version', Buffer.concat([arc.subarray(0, 8), Buffer.from([0, 2]), arc.subarray(10)]), /version 2/],
      ['unknown flags', Buffer.concat([arc.subarray(0, 10), Buffer.from([0, 1]), arc.subarray(12)]), /flags 1/],
      ['unknown tag', Buffer.concat([arc.subarray(0, 16), Buffer.from('Z'), arc.subarray(17)]), /unknown frame tag 0x5a/],
      ['bytes after the end', Buffer.concat([arc, Buffer.from('x')]), /after the end frame/],
      ['count mismatch', Buffer.concat([arc.subarray(0, arc.length - 17), endFrame(2, 8)]), /end frame says 2 blobs/],
      ['bytes mismatch', Buffer.concat([arc.subarray(0, arc.length - 17), endFrame(1, 9)]), /9 bytes/],
    ];
    for (const [what, data, re] of cases) {
      const err = await readArchive(store.admission, chunked(data, 4), { from: 'test', want: () => true }).then(
        () => undefined,
        (e: unknown) => e as { code: string; message: string },
      );
      expect(err?.code, what).toBe('ERR_VRIFT_ARCHIVE_MALFORMED');
      expect(err?.message, what).toMatch(re);
    }
  });

  it('streams a large blob to disk in bounded memory', async () => {
    const size = 96 << 20;
    const piece = 64 << 10;
    // Deterministic content generated on the fly: the blob never exists in memory whole.
    const content = function* (): Generator<Buffer> {
      const buf = Buffer.alloc(piece);
      for (let off = 0; off < size; off += piece) {
        buf.writeUInt32LE(off, 0);
        buf.writeUInt32LE(off ^ 0x5a5a5a5a, piece - 4);
        yield buf;
      }
    };
    const h = new StreamHasher();
    for (const c of content()) h.update(c);
    const digest = h.digest();
    async function* stream(): AsyncGenerator<Buffer> {
      yield archiveHeader();
      yield blobFrame(digest, size);
      for (const c of content()) yield c;
      yield endFrame(1, size);
    }
    const dest = Store.open(tempDir('vrift-archive-big-'));
    global.gc?.();
    const before = process.memoryUsage().rss;
    let peak = before;
    const res = await readArchive(dest.admission, stream(), { from: 'test', want: () => true, onBytes: () => (peak = Math.max(peak, process.memoryUsage().rss)) });
    expect(res.admitted).toBe(1);
    expect(dest.cas.statOf(digest)?.size).toBe(size);
    expect(peak - before).toBeLessThan(48 << 20);
    await dest.close();
  });
});
