// How a tree is cut into swarm pieces (src/node/swarm/tree-pieces.ts), the
// check of a large blob's outboard against its digest alone, and the swarm
// channel's refusal of frames that do not fit the tree.
import { randomBytes } from 'node:crypto';
import { createServer, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { BAO_GROUP_LOG, baoEncode, baoGroupBytes, baoVerifyOutboard, baoVerifyRange } from '../../src/lib/bao.js';
import { hashBuffer } from '../../src/lib/digest.js';
import { SealedSocket, sealKeys } from '../../src/lib/sealed-socket.js';
import { F, framedPieceBuffer, SwarmChannel } from '../../src/node/swarm/channel.js';
import { LARGE_BLOB, planPieces } from '../../src/node/swarm/tree-pieces.js';
import type { TreeEntry } from '../../src/node/store/tree.js';

const file = (path: string, size: number, seed = path): TreeEntry => ({ path, kind: 'file', size, digest: hashBuffer(Buffer.from(seed)), mode: 0o644 }) as TreeEntry;

describe('tree pieces', () => {
  it('groups small blobs whole in tree order, cuts large ones into group-aligned chunks, and counts a blob once', () => {
    const entries = [file('a', 100_000), file('b', 300_000), file('dup', 100_000, 'a'), file('empty', 0), file('big', LARGE_BLOB + 5), file('c', 200_000)];
    const t = planPieces('0'.repeat(64), entries);
    expect(t.pieceBytes % baoGroupBytes(BAO_GROUP_LOG)).toBe(0);
    expect(t.totalBytes).toBe(100_000 + 300_000 + LARGE_BLOB + 5 + 200_000);
    // The duplicate and the empty file are not pieces; the small blobs keep their order.
    expect(t.pieces.filter((p) => p.kind === 'blobs').flatMap((p) => (p.kind === 'blobs' ? p.blobs : [])).map((b) => b.size)).toEqual([100_000, 300_000, 200_000]);
    const chunks = t.pieces.filter((p) => p.kind === 'chunk');
    expect(chunks.length).toBe(Math.ceil((LARGE_BLOB + 5) / t.pieceBytes));
    expect(chunks.every((p) => p.kind === 'chunk' && p.offset % t.pieceBytes === 0)).toBe(true);
    expect(chunks.reduce((n, p) => n + p.bytes, 0)).toBe(LARGE_BLOB + 5);
    expect(t.chunksOf.get(entries[4]!.digest!)).toEqual({ first: t.pieces.indexOf(chunks[0]!), count: chunks.length, size: LARGE_BLOB + 5 });
    // Every node computes the same cut from the same tree.
    expect(planPieces('0'.repeat(64), entries)).toEqual(t);
    expect(planPieces('0'.repeat(64), entries.slice(0, 5)).layout).not.toBe(t.layout);
  });

  it('a piece never holds more than pieceBytes unless it is one small blob alone', () => {
    const entries = Array.from({ length: 300 }, (_, i) => file(`f${i}`, 10_000 + ((i * 7919) % 700_000)));
    const t = planPieces('1'.repeat(64), entries);
    for (const p of t.pieces) {
      if (p.kind === 'blobs' && p.blobs.length > 1) expect(p.bytes).toBeLessThanOrEqual(t.pieceBytes);
      expect(p.bytes).toBe(p.kind === 'blobs' ? p.blobs.reduce((n, b) => n + b.size, 0) : p.bytes);
    }
  });
});

describe('a large blob outboard from elsewhere', () => {
  it('is checked against the digest alone; a chunk is then checked against it', () => {
    const blob = randomBytes(3 * 1024 * 1024 + 123);
    const { digest, outboard } = baoEncode(blob);
    expect(baoVerifyOutboard(digest, blob.length, outboard)).toBe(true);
    const bad = Buffer.from(outboard);
    bad[bad.length >> 1]! ^= 1;
    expect(baoVerifyOutboard(digest, blob.length, bad)).toBe(false);
    expect(baoVerifyOutboard(digest, blob.length, outboard.subarray(64))).toBe(false);
    expect(baoVerifyOutboard(hashBuffer(Buffer.from('other')), blob.length, outboard)).toBe(false);
    const piece = 1 << 20;
    expect(baoVerifyRange(digest, blob.length, outboard, piece, blob.subarray(piece, 2 * piece))).toBe(true);
    const wrong = Buffer.from(blob.subarray(piece, 2 * piece));
    wrong[5]! ^= 1;
    expect(baoVerifyRange(digest, blob.length, outboard, piece, wrong)).toBe(false);
  });
});

describe('the swarm channel', () => {
  /** Two ends of a sealed loopback connection (src/lib/sealed-socket.ts), as the bulk port makes them. */
  const pair = async (): Promise<[SealedSocket, SealedSocket, () => void]> => {
    const [session, ticket] = [randomBytes(32), randomBytes(32)];
    let server: SealedSocket | undefined;
    const srv = createServer({ pauseOnConnect: true }, (s: Socket) => (server = SealedSocket.adopt(s, sealKeys(session, ticket, 'server'))));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const client = SealedSocket.connect('127.0.0.1', (srv.address() as { port: number }).port, sealKeys(session, ticket, 'client'));
    await new Promise((r) => client.socket.once('connect', r));
    while (!server) await new Promise((r) => setTimeout(r, 5));
    return [client, server, () => srv.close()];
  };
  const limits = { pieces: 10, maxPiece: 1000, maxOutboard: 64 };

  it('carries frames both ways, split across reads as they come', async () => {
    const [a, b, done] = await pair();
    const got: [number, number, number][] = [];
    const ca = new SwarmChannel(a, limits, { frame: () => undefined, closed: () => undefined });
    new SwarmChannel(b, limits, { frame: (t, p, body) => got.push([t, p, body?.length ?? 0]), closed: () => undefined });
    ca.send(F.HELLO, 0, Buffer.from([0xff, 0xc0]));
    ca.send(F.REQUEST, 7);
    ca.send(F.PIECE, 7, Buffer.alloc(1000, 1));
    await new Promise((r) => setTimeout(r, 50));
    expect(got).toEqual([
      [F.HELLO, 0, 2],
      [F.REQUEST, 7, 0],
      [F.PIECE, 7, 1000],
    ]);
    ca.close();
    done();
  });

  it('sends each piece as one write: a framed buffer with its header in front of its bytes, any other copied behind one', async () => {
    const [a, b, done] = await pair();
    const got: [number, number, Buffer | undefined][] = [];
    const ca = new SwarmChannel(a, limits, { frame: () => undefined, closed: () => undefined });
    new SwarmChannel(b, limits, { frame: (t, p, body) => got.push([t, p, body && Buffer.from(body)]), closed: () => undefined });
    const writes: number[] = [];
    const write = a.write.bind(a) as (...args: unknown[]) => boolean;
    (a as unknown as { write: (...args: unknown[]) => boolean }).write = (chunk: unknown, ...rest: unknown[]) => {
      writes.push((chunk as Buffer).byteLength);
      return write(chunk, ...rest);
    };
    const framed = framedPieceBuffer(1000).fill(7);
    const plain = Buffer.alloc(600, 9);
    let flushed = 0;
    ca.sendPiece(3, framed, (ok) => ok && flushed++);
    ca.sendPiece(4, plain, (ok) => ok && flushed++);
    await new Promise((r) => setTimeout(r, 50));
    expect(writes).toEqual([9 + 1000, 9 + 600]); // the plain body is copied behind its header: one write each
    expect(got).toEqual([
      [F.PIECE, 3, Buffer.alloc(1000, 7)],
      [F.PIECE, 4, Buffer.alloc(600, 9)],
    ]);
    expect(flushed).toBe(2);
    // (The header went before the body, not into it: the bytes arrived whole. A framed body is sealed in place; a plain one was copied.)
    expect(plain.equals(Buffer.alloc(600, 9))).toBe(true);
    ca.close();
    done();
  });

  it('writes one frame at a time, joining small frames that wait together, never a piece with anything', async () => {
    const [a, b, done] = await pair();
    const got: number[] = [];
    const ca = new SwarmChannel(a, { ...limits, maxPiece: 200_000 }, { frame: () => undefined, closed: () => undefined });
    new SwarmChannel(b, { ...limits, maxPiece: 200_000 }, { frame: (t) => got.push(t), closed: () => undefined });
    const writes: number[] = [];
    const write = a.write.bind(a) as (...args: unknown[]) => boolean;
    (a as unknown as { write: (...args: unknown[]) => boolean }).write = (chunk: unknown, ...rest: unknown[]) => {
      writes.push((chunk as Buffer).byteLength);
      return write(chunk, ...rest);
    };
    ca.sendPiece(1, framedPieceBuffer(100_000)); // written at once
    ca.send(F.HAVE, 2); // these three wait behind it, then go as one write
    ca.send(F.HAVE, 3);
    ca.send(F.REQUEST, 4);
    ca.sendPiece(5, framedPieceBuffer(100_000)); // alone again
    ca.send(F.CANCEL, 6);
    await new Promise((r) => setTimeout(r, 100));
    expect(writes).toEqual([100_009, 27, 100_009, 9]);
    expect(got).toEqual([F.PIECE, F.HAVE, F.HAVE, F.REQUEST, F.PIECE, F.CANCEL]);
    ca.close();
    done();
  });

  for (const [what, frame] of [
    ['a piece number past the tree', [F.HAVE, 10, 0]],
    ['a piece longer than the largest', [F.PIECE, 1, 1001]],
    ['a bitfield of the wrong size', [F.HELLO, 0, 3]],
    ['bytes after a control frame', [F.REQUEST, 1, 4]],
    ['an unknown type', [99, 0, 0]],
  ] as const) {
    it(`closes the connection on ${what}, before reading its body`, async () => {
      const [a, b, done] = await pair();
      let closed = '';
      const frames: number[] = [];
      new SwarmChannel(b, limits, { frame: (t) => frames.push(t), closed: (why) => (closed = why) });
      const h = Buffer.alloc(9);
      h.writeUInt8(frame[0], 0);
      h.writeUInt32BE(frame[1], 1);
      h.writeUInt32BE(frame[2], 5);
      a.write(h);
      await new Promise((r) => setTimeout(r, 50));
      expect(frames).toEqual([]);
      expect(closed).toMatch(/bad frame/);
      a.destroy();
      done();
    });
  }
});
