// The native BLAKE3 (native/src/blake3_hash.cc, the vendored C code) must
// name every byte string exactly as the JavaScript one does; native
// admission (writeVerifiedBlobs) must write only the slices whose bytes
// hash to their names, and report the others.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashBuffer, StreamHasher } from '../../src/lib/digest.js';
import { archiveHeader, blobFrame, endFrame } from '../../src/node/archive/format.js';
import { readArchive } from '../../src/node/archive/reader.js';
import { writeVerifiedBlobs } from '../../src/node/store/blob-batch.js';
import { hashFile, hashFileJs } from '../../src/node/store/cas.js';
import { loadNative } from '../../src/lib/native.js';
import { Store } from '../../src/node/store/store.js';
import { tempDir } from '../helpers/tmp.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const SEGMENT = 4 * MiB; // hashFile's subtree size (blake3_hash.cc kSegment)


let store: Store;
let dir: string;
beforeAll(() => {
  dir = tempDir('vrift-blake3-');
  store = Store.open(join(dir, 'home'));
});
afterAll(async () => {
  await store.close();
});

describe('native BLAKE3', () => {
  const sizes = [0, 1, 1023, 1024, 1025, 2048, 64 * KiB, 64 * KiB + 1, MiB + 17, 3 * MiB + 5];

  it('hashes buffers exactly as the JS implementation', () => {
    const { blake3 } = loadNative();
    expect(blake3.version).toMatch(/^\d+\.\d+\.\d+$/);
    for (const n of sizes) {
      const data = randomBytes(n);
      expect(blake3.hash(data), `${n} bytes`).toBe(hashBuffer(data));
    }
  });

  it('gives the same digest fed in pieces at odd boundaries', () => {
    const { blake3 } = loadNative();
    const all = randomBytes(5 * MiB + 333);
    for (const step of [1, 63, 64, 65, 1023, 1025, 4097, 65_537, MiB + 1]) {
      const data = step < 1024 ? all.subarray(0, 300 * KiB + 333) : all; // tiny steps on less data (one call per piece)
      const native = new blake3.Hasher();
      const js = new StreamHasher();
      // The first pieces are tiny, the rest `step` long: every kind of chunk-state carry-over.
      for (let off = 0, i = 0; off < data.length; i++) {
        const n = Math.min(i < 3 ? i + 1 : step, data.length - off);
        native.update(data.subarray(off, off + n));
        js.update(data.subarray(off, off + n));
        off += n;
      }
      expect(native.digest(), `step ${step}`).toBe(js.digest());
      expect(js.digest()).toBe(hashBuffer(data));
    }
  });

  it('hashFile (subtrees joined from two threads) agrees with the JS file hash at every segment boundary', async () => {
    const cases = [0, 1, 1025, SEGMENT - 1, SEGMENT, SEGMENT + 1, 2 * SEGMENT, 3 * SEGMENT + 7, 9 * SEGMENT - 4096];
    for (const n of cases) {
      const path = join(dir, `f-${n}`);
      const data = randomBytes(n);
      writeFileSync(path, data);
      const want = hashBuffer(data);
      expect(await hashFile(path), `${n} bytes`).toBe(want);
      expect(await hashFileJs(path)).toBe(want);
    }
  });

  it('hashFile of a missing file fails with ENOENT', async () => {
    await expect(hashFile(join(dir, 'nope'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('native admission', () => {
  it('writes the slices whose bytes match their names and reports the others, writing nothing for them', async () => {
    const good1 = randomBytes(1000);
    const bad = randomBytes(2 * MiB);
    const good2 = randomBytes(3 * MiB + 1);
    const claimed = hashBuffer(randomBytes(2 * MiB)); // the name the bad bytes pretend to have
    const data = Buffer.concat([good1, bad, good2]);
    const slices = [
      { digest: hashBuffer(good1), offset: 0, size: good1.length },
      { digest: claimed, offset: good1.length, size: bad.length },
      { digest: hashBuffer(good2), offset: good1.length + bad.length, size: good2.length },
    ];
    const { written, mismatched } = await writeVerifiedBlobs(store.cas, data, slices);
    expect(mismatched).toEqual([claimed]);
    expect(written.map((w) => w.digest)).toEqual([hashBuffer(good1), hashBuffer(good2)]);
    expect(written.every((w) => w.created)).toBe(true);
    expect(store.cas.has(claimed)).toBe(false);
    expect(store.cas.has(hashBuffer(bad))).toBe(false);
    expect(store.cas.readVerified(hashBuffer(good2)).equals(good2)).toBe(true);
  });

  it('an archive with a wrong batched blob among good ones: the rest admitted, the liar rejected with the usual reason', async () => {
    const dest = Store.open(join(dir, 'dest'));
    // Up to 1 MiB (BATCHED_MAX) a blob is verified on the native write threads; the 3 MiB one streams.
    const blobs = [randomBytes(300 * KiB), randomBytes(700 * KiB), randomBytes(MiB), randomBytes(100), randomBytes(3 * MiB)];
    const claimed = hashBuffer(randomBytes(700 * KiB));
    const parts = [archiveHeader()];
    blobs.forEach((b, i) => parts.push(blobFrame(i === 1 ? claimed : hashBuffer(b), b.length), b));
    parts.push(endFrame(blobs.length, blobs.reduce((n, b) => n + b.length, 0)));
    const arc = Buffer.concat(parts);
    async function* chunks(): AsyncGenerator<Buffer> {
      for (let i = 0; i < arc.length; i += 65_521) yield arc.subarray(i, i + 65_521);
    }
    const admitted: string[] = [];
    const rejected: [string, string][] = [];
    const res = await readArchive(dest.admission, chunks(), { from: 'test', want: () => true, onAdmit: (d) => admitted.push(d), onReject: (d, r) => rejected.push([d, r]) });
    expect(rejected).toEqual([[claimed, 'its bytes do not hash to its name']]);
    expect(res.rejected).toEqual([{ digest: claimed, reason: 'its bytes do not hash to its name' }]);
    expect(admitted.sort()).toEqual([0, 2, 3, 4].map((i) => hashBuffer(blobs[i]!)).sort());
    expect(res.admitted).toBe(4);
    expect(dest.cas.has(claimed)).toBe(false);
    for (const i of [0, 2, 3, 4]) expect(dest.cas.readVerified(hashBuffer(blobs[i]!)).equals(blobs[i]!)).toBe(true);

    // A caller that throws on a rejection (a peer tier abandoning a liar) stops the reader with its
    // error, and is told once even when the batch held two wrong blobs.
    const twoLies = Buffer.concat([
      archiveHeader(),
      ...blobs.flatMap((b, i) => [blobFrame(i === 1 || i === 3 ? hashBuffer(randomBytes(8)) : hashBuffer(b), b.length), b]),
      endFrame(blobs.length, blobs.reduce((n, b) => n + b.length, 0)),
    ]);
    const again = Store.open(join(dir, 'again'));
    let told = 0;
    await expect(
      readArchive(again.admission, [twoLies], {
        from: 'test',
        want: () => true,
        onReject: () => {
          told++;
          throw new Error('liar abandoned');
        },
      }),
    ).rejects.toThrow('liar abandoned');
    expect(told).toBe(1);
    expect(again.cas.has(claimed)).toBe(false);
    await again.close();
    await dest.close();
  });
});
