// zstd streams (native, libzstd loaded at run time): round trips, and
// damaged input is an error, never silently short data.
import { randomBytes } from 'node:crypto';
import { Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { zstdAvailable, zstdCompress, zstdDecompress } from '../../src/lib/zstd.js';

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
});
