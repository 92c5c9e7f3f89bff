// zstd streams (native, libzstd loaded at run time): round trips, and
// damaged input is an error, never silently short data; framed streams
// (packs) whose every frame decompresses alone.
import { randomBytes } from 'node:crypto';
import { Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { zstdAvailable, zstdCompress, zstdDecompress, zstdFramed } from '../../src/lib/zstd.js';

async function run(chunks: Buffer[], t: Transform): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from(chunks), t, async function* (src) {
    for await (const c of src) out.push(c as Buffer);
  });
  return Buffer.concat(out);
}

describe('zstd', () => {
  it('is available here (libzstd.so.1)', () => {
    expect(zstdAvailable()).toBe(true);
  });

  it('round-trips data in any chunking, and compresses text', async () => {
    const text = Buffer.from('the quick brown fox jumps over the lazy dog\n'.repeat(50_000));
    const noise = randomBytes(3 << 20);
    for (const input of [text, noise, Buffer.alloc(0), Buffer.concat([text, noise])]) {
      const z = await run([input.subarray(0, 1000), input.subarray(1000, 700_000), input.subarray(700_000)], zstdCompress());
      const back = await run([z.subarray(0, 7), z.subarray(7)], zstdDecompress());
      expect(back.equals(input)).toBe(true);
    }
    expect((await run([text], zstdCompress())).length).toBeLessThan(text.length / 20);
  });

  it('rejects a cut stream and garbage', async () => {
    const z = await run([randomBytes(1 << 20)], zstdCompress());
    await expect(run([z.subarray(0, z.length - 5)], zstdDecompress())).rejects.toThrow(/truncated/);
    await expect(run([Buffer.from('definitely not zstd')], zstdDecompress())).rejects.toThrow(/zstd: /);
  });

  it('ends a frame at each planned offset: every frame decompresses alone, and all of them as one stream', async () => {
    const input = Buffer.concat([Buffer.from('some text that repeats, '.repeat(3000)), randomBytes(200_000), Buffer.from('tail '.repeat(10))]);
    const ends = [10, 5000, 70_000, 71_000, 250_000, input.length];
    const sizes: number[] = [];
    // Chunks that straddle the frame ends, and one larger than a piece (a frame fed in parts).
    const chunks = [input.subarray(0, 3), input.subarray(3, 60_000), input.subarray(60_000, 240_000), input.subarray(240_000)];
    const z = await run(chunks, zstdFramed(ends, (n) => sizes.push(n)));
    expect(sizes.length).toBe(ends.length);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(z.length);
    expect((await run([z], zstdDecompress())).equals(input)).toBe(true);
    let at = 0;
    for (const [i, n] of sizes.entries()) {
      const alone = await run([z.subarray(at, at + n)], zstdDecompress());
      expect(alone.equals(input.subarray(i === 0 ? 0 : ends[i - 1], ends[i]))).toBe(true);
      at += n;
    }
  });

  it('fails when its input does not match the frames planned for it', async () => {
    await expect(run([randomBytes(100)], zstdFramed([50], () => undefined))).rejects.toThrow(/runs past the last frame/);
    await expect(run([randomBytes(100)], zstdFramed([50, 200], () => undefined))).rejects.toThrow(/ended before the last frame/);
  });
});
