// vrift's one BLAKE3 (the official C code vendored in the addon, behind
// src/lib/digest.ts) must give the official digests, one-shot and fed in
// pieces split anywhere; hashFile (subtrees on native threads) must agree
// with it; native admission (writeVerifiedBlobs) must write only the
// slices whose bytes hash to their names, and report the others.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashBuffer, StreamHasher } from '../../src/lib/digest.js';
import { archiveHeader, blobFrame, endFrame } from '../../src/node/archive/format.js';
import { readArchive } from '../../src/node/archive/reader.js';
import { BATCHED_MAX } from '../../src/node/store/admit-batcher.js';
import { writeVerifiedBlobs } from '../../src/node/store/blob-batch.js';
import { hashFile, hashFileJs } from '../../src/node/store/cas.js';
import { loadNative } from '../../src/lib/native.js';
import { Store } from '../../src/node/store/store.js';
import { tempDir } from '../helpers/tmp.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK = KiB; // a BLAKE3 chunk
const SEGMENT = 4 * MiB; // hashFile's subtree size (blake3_hash.cc kSegment)

/** The official test vectors' input: bytes 0, 1, …, 250, 0, 1, … */
function pattern(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = i % 251;
  return b;
}

// BLAKE3's test_vectors/test_vectors.json (github.com/BLAKE3-team/BLAKE3):
// every input length there, the first 32 bytes of `hash`.
const OFFICIAL: [number, string][] = [
  [0, 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262'],
  [1, '2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213'],
  [1023, '10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11'],
  [1024, '42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7'],
  [1025, 'd00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444'],
  [2048, 'e776b6028c7cd22a4d0ba182a8bf62205d2ef576467e838ed6f2529b85fba24a'],
  [2049, '5f4d72f40d7a5f82b15ca2b2e44b1de3c2ef86c426c95c1af0b6879522563030'],
  [3072, 'b98cb0ff3623be03326b373de6b9095218513e64f1ee2edd2525c7ad1e5cffd2'],
  [3073, '7124b49501012f81cc7f11ca069ec9226cecb8a2c850cfe644e327d22d3e1cd3'],
  [4096, '015094013f57a5277b59d8475c0501042c0b642e531b0a1c8f58d2163229e969'],
  [4097, '9b4052b38f1c5fc8b1f9ff7ac7b27cd242487b3d890d15c96a1c25b8aa0fb995'],
  [5120, '9cadc15fed8b5d854562b26a9536d9707cadeda9b143978f319ab34230535833'],
  [5121, '628bd2cb2004694adaab7bbd778a25df25c47b9d4155a55f8fbd79f2fe154cff'],
  [6144, '3e2e5b74e048f3add6d21faab3f83aa44d3b2278afb83b80b3c35164ebeca205'],
  [6145, 'f1323a8631446cc50536a9f705ee5cb619424d46887f3c376c695b70e0f0507f'],
  [7168, '61da957ec2499a95d6b8023e2b0e604ec7f6b50e80a9678b89d2628e99ada77a'],
  [7169, 'a003fc7a51754a9b3c7fae0367ab3d782dccf28855a03d435f8cfe74605e7817'],
  [8192, 'aae792484c8efe4f19e2ca7d371d8c467ffb10748d8a5a1ae579948f718a2a63'],
  [8193, 'bab6c09cb8ce8cf459261398d2e7aef35700bf488116ceb94a36d0f5f1b7bc3b'],
  [16384, 'f875d6646de28985646f34ee13be9a576fd515f76b5b0a26bb324735041ddde4'],
  [31744, '62b6960e1a44bcc1eb1a611a8d6235b6b4b78f32e7abc4fb4c6cdcce94895c47'],
  [102400, 'bc3e3d41a1146b069abffad3c0d44860cf664390afce4d9661f7902e7943e085'],
];

// Longer than the official vectors reach: across hashFile's 4 MiB subtrees
// and BLAKE3's own tree levels. Computed with an independent implementation
// (the Rust blake3 crate, through @napi-rs/blake-hash 1.3.6, vrift's hasher
// before the addon's).
const INDEPENDENT: [number, string][] = [
  [SEGMENT - 1, '6ee7f30ae33570aae744290e3f678050511e72f37e594d7620a9191c7d353dd9'],
  [SEGMENT, '4e94e6f582581a0f3855f3ce504b153e951e65036fe9e2f010b7e25473c54f98'],
  [SEGMENT + 1, '0460893a0170917e0d568bb27c0287984d4f7e9d59eafb95e6fb3c01ec611eab'],
  [2 * SEGMENT + 1025, '80a748e370e8414f4e11af81138fdd3338bb64489ccab27c1d4b2efa612cb65a'],
  [9 * SEGMENT - 4096 + 7, '1d48431f2e4fcb81fbbc2beb20057eecfcba7760926e96eab40b0f02e2f90d6e'],
];

let store: Store;
let dir: string;
beforeAll(() => {
  dir = tempDir('vrift-blake3-');
  store = Store.open(join(dir, 'home'));
});
afterAll(async () => {
  await store.close();
});

describe('BLAKE3 (the addon, behind hashBuffer and StreamHasher)', () => {
  it('is the vendored official C code', () => {
    expect(loadNative().blake3.version).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('gives the well-known digests of "" and "abc"', () => {
    expect(hashBuffer(Buffer.alloc(0))).toBe('af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262');
    expect(hashBuffer(Buffer.from('abc'))).toBe('6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85');
    expect(new StreamHasher().digest()).toBe('af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262');
  });

  it('matches every official test vector, one-shot and streamed', () => {
    for (const [n, want] of OFFICIAL) {
      const data = pattern(n);
      expect(hashBuffer(data), `${n} bytes`).toBe(want);
      const h = new StreamHasher();
      h.update(data);
      expect(h.digest(), `${n} bytes streamed`).toBe(want);
      expect(h.bytes).toBe(n);
    }
  });

  it('matches an independent implementation past the 4 MiB subtree boundary', () => {
    for (const [n, want] of INDEPENDENT) expect(hashBuffer(pattern(n)), `${n} bytes`).toBe(want);
  });

  it('gives the one-shot digest for bytes split in two anywhere around chunk and subtree boundaries', () => {
    const [n, want] = INDEPENDENT[3]!; // 8 MiB + 1025: two whole subtrees and a partial chunk
    const data = pattern(n);
    const cuts = [0, 1, 63, 64, 65, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 16 * CHUNK + 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 2 * SEGMENT, n - 1, n];
    for (const cut of cuts) {
      const h = new StreamHasher();
      h.update(data.subarray(0, cut));
      h.update(data.subarray(cut));
      expect(h.digest(), `cut at ${cut}`).toBe(want);
    }
  });

  it('gives the one-shot digest fed in pieces of odd sizes', () => {
    const all = randomBytes(5 * MiB + 333);
    for (const step of [1, 63, 64, 65, 1023, 1025, 4097, 65_537, MiB + 1]) {
      const data = step < 1024 ? all.subarray(0, 300 * KiB + 333) : all; // tiny steps on less data (one call per piece)
      const h = new StreamHasher();
      // The first pieces are tiny, the rest `step` long: every kind of chunk-state carry-over.
      for (let off = 0, i = 0; off < data.length; i++) {
        const n = Math.min(i < 3 ? i + 1 : step, data.length - off);
        h.update(data.subarray(off, off + n));
        off += n;
      }
      expect(h.digest(), `step ${step}`).toBe(hashBuffer(data));
    }
  });

  it('hashes a view as its own bytes (a subarray at an offset), and keeps a hasher open after digest()', () => {
    // pattern(251 + n) from byte 251 on is pattern(n) again.
    const [n, want] = OFFICIAL.find(([len]) => len === 1025)!;
    const view = pattern(251 + n).subarray(251);
    expect(view.byteOffset).toBe(251);
    expect(hashBuffer(view)).toBe(want);
    expect(hashBuffer(new Uint8Array(view.buffer, view.byteOffset, view.byteLength))).toBe(want);
    const h = new StreamHasher();
    h.update(view.subarray(0, 1000));
    expect(h.digest()).toBe(hashBuffer(view.subarray(0, 1000)));
    h.update(view.subarray(1000));
    expect(h.digest()).toBe(want);
  });

  it('refuses what is not bytes with a TypeError', () => {
    expect(() => hashBuffer('abc' as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => hashBuffer(new Float64Array(4) as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => new StreamHasher().update({} as Uint8Array)).toThrow(TypeError);
  });

  it('hashFile (subtrees joined from two threads) agrees with hashBuffer at every segment boundary', async () => {
    const cases = [0, 1, 1025, SEGMENT - 1, SEGMENT, SEGMENT + 1, 2 * SEGMENT, 3 * SEGMENT + 7, 9 * SEGMENT - 4096];
    for (const n of cases) {
      const path = join(dir, `f-${n}`);
      const data = randomBytes(n);
      writeFileSync(path, data);
      const want = hashBuffer(data);
      expect(await hashFile(path), `${n} bytes`).toBe(want);
      expect(await hashFileJs(path)).toBe(want);
    }
    const [n, want] = INDEPENDENT[4]!;
    writeFileSync(join(dir, 'pattern'), pattern(n));
    expect(await hashFile(join(dir, 'pattern'))).toBe(want);
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
    // Up to 8 MiB (BATCHED_MAX) a blob is verified on the native write threads; the 9 MiB one streams.
    expect(BATCHED_MAX).toBe(8 * MiB);
    const blobs = [randomBytes(300 * KiB), randomBytes(700 * KiB), randomBytes(3 * MiB), randomBytes(100), randomBytes(9 * MiB)];
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
