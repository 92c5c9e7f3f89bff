// The bulk port's sealed frames (src/lib/sealed-socket.ts) over real
// loopback TCP: what is written arrives exact, in frames of up to 1 MiB,
// with pauses; a frame altered, dropped, cut or oversized on the wire is
// an error before a byte of it is handed on; and a swarm channel over a
// tampered connection closes saying so.
import { randomBytes } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { SEAL_MAX_FRAME, type SealedFrame, SealedSocket, sealKeys } from '../../src/lib/sealed-socket.js';
import { F, SwarmChannel } from '../../src/node/swarm/channel.js';

const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

/** A server on loopback (closed after each test), its port. */
async function listen(onConnection: (s: Socket) => void, opts: { pauseOnConnect?: boolean } = {}): Promise<number> {
  const srv = createServer(opts, onConnection);
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return (srv.address() as { port: number }).port;
}

/**
 * A sealed server side (accepted paused and adopted, as the bulk port
 * does) and a sealed client connected to it. `wire`, when given, rewrites
 * the bytes the client sends on their way: a proxy in between, on real
 * sockets.
 */
async function pair(opts: { wire?: (chunk: Buffer) => Buffer } = {}): Promise<{ client: SealedSocket; server: Promise<SealedSocket> }> {
  const session = randomBytes(32);
  const ticket = randomBytes(32);
  let accepted!: (s: SealedSocket) => void;
  const server = new Promise<SealedSocket>((r) => (accepted = r));
  let port = await listen(
    (raw) => {
      const s = SealedSocket.adopt(raw, sealKeys(session, ticket, 'server'));
      s.socket.on('error', () => undefined);
      accepted(s);
    },
    { pauseOnConnect: true },
  );
  if (opts.wire) {
    const target = port;
    port = await listen((from) => {
      const to = connect(target, '127.0.0.1');
      for (const s of [from, to]) s.on('error', () => undefined);
      from.on('data', (c: Buffer) => to.write(opts.wire!(c)));
      to.pipe(from);
      from.on('close', () => to.destroy());
      to.on('close', () => from.destroy());
    });
  }
  const client = SealedSocket.connect('127.0.0.1', port, sealKeys(session, ticket, 'client'));
  client.socket.on('error', () => undefined);
  client.read(() => undefined);
  await new Promise((r) => client.socket.once('connect', r));
  return { client, server };
}

/** A frame's bytes taken as an archive reader takes them: in pieces of every size, some in place, some into another buffer. */
/** A `wire` for pair(): flips the bits of `mask` in the byte at `at` of the client-to-server stream. */
function flipBit(at: number, mask: number): (chunk: Buffer) => Buffer {
  let seen = 0;
  return (c) => {
    const out = Buffer.from(c);
    for (let i = 0; i < out.byteLength; i++, seen++) if (seen === at) out[i]! ^= mask;
    return out;
  };
}

function takeInPieces(frame: SealedFrame): Buffer {
  const out = Buffer.alloc(frame.byteLength);
  for (let at = 0, k = 0; at < frame.byteLength; k++) {
    const n = Math.min(frame.byteLength - at, [1, 15, 41, 4096, 70_001, 300_000][k % 6]!);
    if (k % 2) frame.copyTo(at, n, out, at);
    else out.set(frame.view(at, n), at);
    at += n;
  }
  return out;
}

/**
 * Everything the server side reads until the client's end frame, or the
 * error that ended it; `lazy`: through readFrames, each frame taken in
 * pieces (takeInPieces).
 */
function collect(s: SealedSocket, pauseEvery = 0, lazy = false): Promise<{ bytes: Buffer; frames: number; error?: { code?: string; message: string } }> {
  return new Promise((resolve) => {
    const got: Buffer[] = [];
    let frames = 0;
    s.socket.on('error', (e) => resolve({ bytes: Buffer.concat(got), frames, error: e as { code?: string; message: string } }));
    s.onClose(() => resolve({ bytes: Buffer.concat(got), frames }));
    const take = (bytes: Buffer) => {
      got.push(bytes);
      frames++;
      if (pauseEvery && frames % pauseEvery === 0) {
        setTimeout(() => s.resume(), 5);
        return false;
      }
    };
    const ended = () => resolve({ bytes: Buffer.concat(got), frames });
    if (lazy) s.readFrames((frame) => take(takeInPieces(frame)), ended);
    else s.read((chunk) => take(Buffer.from(chunk)), ended);
  });
}

describe('sealed sockets', () => {
  it('carry writes of any size exactly, in frames of at most 1 MiB, through pauses, and end with an end frame', async () => {
    const { client, server } = await pair();
    const parts = [randomBytes(1), randomBytes(SEAL_MAX_FRAME), randomBytes(3 * SEAL_MAX_FRAME + 17), randomBytes(5000)];
    const expected = Buffer.concat(parts);
    const done = collect(await server, 2);
    let flushed = 0;
    for (const p of parts) client.write(Buffer.from(p), () => flushed++); // (a copy: written buffers are sealed in place)
    client.end();
    const r = await done;
    expect(r.error).toBeUndefined();
    expect(r.bytes.equals(expected)).toBe(true);
    expect(r.frames).toBe(1 + 1 + 4 + 1);
    expect(flushed).toBe(parts.length);
    expect((await server).complete).toBe(true);
  });

  it('hand frames on checked and still sealed (readFrames): every piece taken, in place or into another buffer, is the plaintext', async () => {
    const { client, server } = await pair();
    const parts = [randomBytes(1), randomBytes(SEAL_MAX_FRAME), randomBytes(2 * SEAL_MAX_FRAME + 17), randomBytes(5000)];
    const done = collect(await server, 3, true);
    for (const p of parts) client.write(Buffer.from(p));
    client.end();
    const r = await done;
    expect(r.error).toBeUndefined();
    expect(r.bytes.equals(Buffer.concat(parts))).toBe(true);
    expect(r.frames).toBe(1 + 1 + 3 + 1);
  });

  it('a frame reader takes each byte once, in order', async () => {
    const { client, server } = await pair();
    const s = await server;
    const errors: string[] = [];
    const got = new Promise<void>((resolve) =>
      s.readFrames((frame) => {
        frame.view(0, 10);
        for (const again of [() => frame.view(5, 1), () => frame.copyTo(0, 10, Buffer.alloc(10), 0), () => frame.view(10, frame.byteLength)]) {
          try {
            again();
          } catch (e) {
            errors.push((e as Error).message);
          }
        }
        resolve();
      }),
    );
    client.write(randomBytes(100));
    await got;
    expect(errors).toEqual([expect.stringMatching(/out of order/), expect.stringMatching(/out of order/), expect.stringMatching(/out of order/)]);
    client.socket.destroy();
  });

  it('send the other way too (the server answers the client)', async () => {
    const { client, server } = await pair();
    const s = await server;
    const body = randomBytes(2 * SEAL_MAX_FRAME + 3);
    const got = collect(client);
    s.write(Buffer.from(body));
    s.end();
    expect((await got).bytes.equals(body)).toBe(true);
  });

  it('refuse a frame altered on the wire: ERR_VRIFT_PEER_FORGED, and nothing of it handed on', async () => {
    // Flip one bit of the ciphertext of the second frame (its bytes 4 … after the first frame's 4 + 100 + 16).
    const { client, server } = await pair({ wire: flipBit(120 + 4 + 10, 1) });
    const done = collect(await server);
    client.write(randomBytes(100));
    client.write(randomBytes(1000));
    client.write(randomBytes(1000));
    const r = await done;
    expect(r.error).toMatchObject({ code: 'ERR_VRIFT_PEER_FORGED', message: expect.stringMatching(/authentication tag/) });
    expect(r.bytes.byteLength).toBe(100); // the first frame only
    client.socket.destroy();
  });

  it('refuse an altered frame before a frame reader sees it (readFrames)', async () => {
    const { client, server } = await pair({ wire: flipBit(120 + 4 + 999, 0x40) });
    const done = collect(await server, 0, true);
    client.write(randomBytes(100));
    client.write(randomBytes(1000));
    client.write(randomBytes(1000));
    const r = await done;
    expect(r.error).toMatchObject({ code: 'ERR_VRIFT_PEER_FORGED' });
    expect(r.bytes.byteLength).toBe(100);
    client.socket.destroy();
  });

  it('refuse a dropped frame (the next one fails its nonce), an oversized length, and a cut before the end frame', async () => {
    // Dropped: the second frame (20 + 16 … bytes) never reaches the server.
    let seen = 0;
    const dropped = await pair({
      wire: (c) => {
        const keep: number[] = [];
        for (let i = 0; i < c.byteLength; i++, seen++) if (seen < 4 + 10 + 16 || seen >= 2 * (4 + 10 + 16)) keep.push(c[i]!);
        return Buffer.from(keep);
      },
    });
    const d = collect(await dropped.server);
    for (let i = 0; i < 3; i++) dropped.client.write(randomBytes(10));
    expect((await d).error).toMatchObject({ code: 'ERR_VRIFT_PEER_FORGED' });
    dropped.client.socket.destroy();

    // Oversized: a length past 1 MiB is refused at its header.
    const big = await pair({ wire: (c) => (c.readUInt32BE(0) === 10 ? Buffer.concat([Buffer.from([0x7f, 0, 0, 0]), c.subarray(4)]) : c) });
    const b = collect(await big.server);
    big.client.write(randomBytes(10));
    expect((await b).error).toMatchObject({ code: 'ERR_VRIFT_PEER_FRAME', message: expect.stringMatching(/at most 1048576/) });
    big.client.socket.destroy();

    // Cut: the connection closes with no end frame; the reader sees a close, not an end.
    const cut = await pair();
    const s = await cut.server;
    const ended: string[] = [];
    s.socket.on('close', () => ended.push(s.complete ? 'end' : 'cut'));
    const c = collect(s);
    cut.client.write(randomBytes(10), () => cut.client.socket.destroy());
    await c;
    await new Promise((r) => setTimeout(r, 20));
    expect(ended).toEqual(['cut']);
  });

  it('a swarm channel over a tampered connection closes as forged', async () => {
    const { client, server } = await pair({ wire: flipBit(4 + 20, 0x80) });
    const s = await server;
    const closed = new Promise<{ why: string; forged: boolean }>((resolve) => {
      new SwarmChannel(s, { pieces: 8, maxPiece: 1 << 20, maxOutboard: 1024 }, { frame: () => undefined, closed: (why, forged) => resolve({ why, forged }) });
    });
    const sender = new SwarmChannel(client, { pieces: 8, maxPiece: 1 << 20, maxOutboard: 1024 }, { frame: () => undefined, closed: () => undefined });
    sender.send(F.HELLO, 0, Buffer.alloc(1));
    expect(await closed).toEqual({ why: expect.stringMatching(/authentication tag/), forged: true });
    sender.close();
  });
});
