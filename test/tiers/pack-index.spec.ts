// The pack index format (src/tiers/s3/pack-index.ts): how a pack is cut
// into frames, where each blob is found, and that an index from outside
// is checked before it is used.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hashBuffer, type Digest } from '../../src/lib/digest.js';
import { archiveSize, FRAME_LEN, HEADER_LEN } from '../../src/node/archive/format.js';
import { encodePackIndex, FRAME_TARGET, PackIndex, planPack, type PackFrame } from '../../src/tiers/s3/pack-index.js';

const blobs = (sizes: number[]) => sizes.map((size) => ({ digest: hashBuffer(randomBytes(16)) as Digest, size }));

/** Frames as a compressor would report them, each `ratio` of its input. */
function framesOf(ends: number[], ratio = 0.5): { frames: PackFrame[]; objectBytes: number } {
  const frames: PackFrame[] = [];
  let o = 0;
  let a = 0;
  for (const e of ends) {
    frames.push({ objectOffset: o, archiveOffset: a });
    o += Math.max(1, Math.round((e - a) * ratio));
    a = e;
  }
  return { frames, objectBytes: o };
}

describe('pack plans', () => {
  it('place blobs where the archive writer puts them, and cut frames only between blobs', () => {
    const list = blobs([100, 0, 70_000, 5, 30_000, 40_000, 1, 200_000, 3]);
    const plan = planPack(list);
    expect(plan.archiveBytes).toBe(archiveSize(list.map((b) => b.size)));
    let pos = HEADER_LEN;
    for (const [i, b] of plan.blobs.entries()) {
      expect(b).toEqual({ digest: list[i]!.digest, offset: pos + FRAME_LEN, size: list[i]!.size });
      pos += FRAME_LEN + b.size;
    }
    const starts = new Set(plan.blobs.map((b) => b.offset - FRAME_LEN));
    expect(plan.frameEnds.at(-1)).toBe(plan.archiveBytes);
    for (const e of plan.frameEnds.slice(0, -1)) expect(starts.has(e)).toBe(true);
    // No frame past the target unless a lone blob makes it so.
    let start = 0;
    for (const e of plan.frameEnds) {
      const inside = plan.blobs.filter((b) => b.offset - FRAME_LEN >= start && b.offset - FRAME_LEN < e);
      if (e - start > FRAME_TARGET) expect(inside.length).toBe(1);
      start = e;
    }
  });

  it('an empty pack is one frame of header and end', () => {
    expect(planPack([])).toEqual({ archiveBytes: 33, blobs: [], frameEnds: [33] });
  });
});

describe('pack indexes', () => {
  const list = blobs(Array.from({ length: 500 }, (_, i) => (i * 997) % 9000));
  const plan = planPack(list);

  it('find every blob: its content offset in an uncompressed pack, its frames in a compressed one', () => {
    const raw = PackIndex.decode(encodePackIndex(plan, plan.archiveBytes));
    const { frames, objectBytes } = framesOf(plan.frameEnds);
    const z = PackIndex.decode(encodePackIndex(plan, objectBytes, frames));
    expect([raw.blobCount, raw.frameCount, z.frameCount]).toEqual([500, 0, plan.frameEnds.length]);
    for (const b of plan.blobs) {
      expect(raw.locate(b.digest)).toEqual({ start: b.offset, end: b.offset + b.size, compressed: false, skip: 0, size: b.size, decoded: b.size, archiveStart: b.offset });
      const at = z.locate(b.digest)!;
      const i = frames.findLastIndex((f) => f.archiveOffset <= b.offset);
      expect(at).toEqual({
        start: frames[i]!.objectOffset, end: frames[i + 1]?.objectOffset ?? objectBytes, compressed: true, skip: b.offset - frames[i]!.archiveOffset, size: b.size,
        decoded: (frames[i + 1]?.archiveOffset ?? plan.archiveBytes) - frames[i]!.archiveOffset, // what the frame may inflate to, at most
        archiveStart: frames[i]!.archiveOffset,
      });
    }
    expect(raw.locate(hashBuffer(Buffer.from('absent')))).toBeUndefined();
  });

  it('refuse an index that is damaged or does not add up', () => {
    const good = encodePackIndex(plan, plan.archiveBytes);
    const broken = (f: (b: Buffer) => void) => {
      const b = Buffer.from(good);
      f(b);
      return () => PackIndex.decode(b);
    };
    expect(broken((b) => b.write('X', 0))).toThrow(/bad magic/);
    expect(broken((b) => b.writeUInt16BE(2, 8))).toThrow(/index version 2/);
    expect(broken((b) => b.writeUInt16BE(1, 10))).toThrow(/flags/);
    expect(() => PackIndex.decode(good.subarray(0, good.length - 1))).toThrow(/do not hold/);
    expect(broken((b) => b.writeUInt32BE(501, 36))).toThrow(/do not hold/);
    expect(broken((b) => b.copy(b, 40 + 48, 40, 40 + 32))).toThrow(/not sorted/); // two equal digests
    expect(broken((b) => b.writeBigUInt64BE(BigInt(plan.archiveBytes), 40 + 32))).toThrow(/outside the archive/);
    expect(broken((b) => b.writeBigUInt64BE(2n ** 60n, 40 + 40))).toThrow(/too large/);
    expect(broken((b) => b.writeBigUInt64BE(BigInt(plan.archiveBytes + 1), 24))).toThrow(/uncompressed pack whose object is not its archive/);
    const { frames, objectBytes } = framesOf(plan.frameEnds);
    const z = encodePackIndex(plan, objectBytes, frames);
    const swapped = Buffer.from(z);
    z.copy(swapped, 40, 56, 72); // frame 0 := frame 1
    expect(() => PackIndex.decode(swapped)).toThrow(/frame 0/);
  });
});
