// Cutting a pack into pieces and checking each one before it is kept.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { buildPieceList, choosePieceBytes, pieceListDigest, pieceRange, verifyPiece } from '../../src/node/swarm/piece-list.js';

describe('piece list', () => {
  it('picks 256 KiB pieces for small packs and at most 4 MiB for large ones', () => {
    expect(choosePieceBytes(10_000)).toBe(256 * 1024);
    expect(choosePieceBytes(200e6)).toBe(512 * 1024);
    expect(choosePieceBytes(3e9)).toBe(4 * 1024 * 1024);
    expect(() => choosePieceBytes(-1)).toThrow('pack size must be a whole number of bytes, not -1');
  });

  it('accepts each true piece and rejects a changed, short or misplaced one', () => {
    const pack = randomBytes(3 * 1000 + 17);
    const list = buildPieceList(pack, 1000);
    expect(list.digests).toHaveLength(4);
    for (let p = 0; p < 4; p++) expect(verifyPiece(list, p, pack.subarray(...pieceRange(list, p)))).toBe(true);
    const bad = Buffer.from(pack.subarray(0, 1000));
    bad[500]! ^= 1;
    expect(verifyPiece(list, 0, bad)).toBe(false);
    expect(verifyPiece(list, 3, pack.subarray(3000, 3010))).toBe(false);
    expect(verifyPiece(list, 1, pack.subarray(0, 1000))).toBe(false);
    expect(() => verifyPiece(list, 4, pack)).toThrow('piece 4 is outside a pack of 3017 bytes');
  });

  it('gives the list one digest that changes with any piece', () => {
    const pack = randomBytes(4096);
    const a = buildPieceList(pack, 1024);
    const b = { ...a, digests: [...a.digests] };
    b.digests[2] = b.digests[1]!;
    expect(pieceListDigest(a)).toBe(pieceListDigest(buildPieceList(pack, 1024)));
    expect(pieceListDigest(a)).not.toBe(pieceListDigest(b));
  });
});
