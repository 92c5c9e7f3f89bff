// The swarm channel: one TLS connection between two nodes swarming one
// tree, on the bulk port (bulk-server.ts), opened with a one-time ticket
// the gRPC service issued (`OpenSwarm`). Both sides send frames:
//
//   type (1 byte)  piece (u32 BE)  length (u32 BE)  payload (length bytes)
//
// HELLO carries the sender's bitfield (PieceSet.encode); PIECE the piece's
// bytes; OUTBOARD a large blob's Bao outboard (asked by OUTBOARD_ASK with
// the index of one of its pieces); every other frame is a piece number
// alone. Control frames and piece bytes share the connection: a have or a
// request waits at most behind one piece already being written (a few
// milliseconds on a LAN), and the bytes move as raw TLS, several times
// faster than gRPC messages (docs/peers.md has the figures).
//
// What arrives is untrusted: types, piece numbers and lengths are checked
// against the tree's layout, and a frame longer than the largest piece (or
// than a bitfield, for control frames) closes the connection.
import type { Socket } from 'node:net';
import { SerialWriter } from '../../lib/serial-writer.js';

export const F = {
  HELLO: 1,
  HAVE: 2,
  REQUEST: 3,
  REFUSE: 4,
  CANCEL: 5,
  UNCHOKE: 6,
  ACCEPT: 7,
  PIECE: 8,
  OUTBOARD_ASK: 9,
  OUTBOARD: 10,
  NO_OUTBOARD: 11,
} as const;

const HEADER = 9;
/** Frames that wait together go out as one write up to this many bytes (pieces, larger, always alone). */
const SMALL_FRAME = 16 << 10;

/**
 * A buffer for a piece's bytes with room for its frame header just before
 * them, in memory of its own. A piece sent from one (`sendPiece`) goes to
 * the socket as one write: TLS copies a write of several buffers into a
 * fresh one first, which for megabyte pieces was a copy and an allocation
 * of every byte a node served.
 */
export function framedPieceBuffer(length: number): Buffer {
  const frame = Buffer.allocUnsafeSlow(HEADER + length);
  const body = frame.subarray(HEADER);
  frames.set(body, frame);
  return body;
}

/** Bodies made by framedPieceBuffer, and their frames (no other buffer's bytes before it are ever written). */
const frames = new WeakMap<Buffer, Buffer>();

export interface FrameSink {
  frame(type: number, piece: number, payload: Buffer | undefined): void;
  closed(why: string): void;
  /** A buffer for a PIECE frame's bytes (a pool: pieces are megabytes, and fresh ones keep the garbage collector busy). */
  pieceBuffer?(length: number): Buffer;
}

export interface ChannelLimits {
  pieces: number;
  /** Largest payload of a PIECE frame. */
  maxPiece: number;
  /** Largest payload of an OUTBOARD frame. */
  maxOutboard: number;
}

export class SwarmChannel {
  private head = Buffer.alloc(HEADER);
  private headAt = 0;
  private body: Buffer | undefined;
  private bodyAt = 0;
  private type = 0;
  private piece = 0;
  private done = false;
  /** Bytes of every frame sent (queued ones included). */
  bytesOut = 0;
  private readonly writes: SerialWriter;
  bytesIn = 0;

  /** With `reads`, the socket's bytes come through it (a socket read into one reused buffer) instead of 'data' events. */
  constructor(
    readonly socket: Socket,
    private readonly limits: ChannelLimits,
    private readonly sink: FrameSink,
    reads?: (feed: (chunk: Buffer) => void) => void,
  ) {
    this.writes = new SerialWriter(socket, SMALL_FRAME);
    if (reads) reads((c) => this.feed(c));
    else socket.on('data', (c: Buffer) => this.feed(c));
    socket.once('close', () => this.end('the connection closed'));
    socket.on('error', (e) => this.end(e.message));
  }

  get open(): boolean {
    return !this.done;
  }

  /** Sends one frame; `flushed` is called once the kernel took its bytes (or the connection died). */
  send(type: number, piece: number, payload?: Buffer, flushed?: (ok: boolean) => void): void {
    if (this.done) {
      flushed?.(false);
      return;
    }
    const len = payload?.byteLength ?? 0;
    const frame = Buffer.allocUnsafe(HEADER + len);
    frame.writeUInt8(type, 0);
    frame.writeUInt32BE(piece, 1);
    frame.writeUInt32BE(len, 5);
    if (payload) payload.copy(frame, HEADER);
    this.enqueue(frame, flushed);
  }

  /**
   * Sends a PIECE frame. A body from `framedPieceBuffer` gets its header
   * written in front of it and goes out as one write (the caller must not
   * use those bytes meanwhile: they are the buffer's own); any other body
   * is copied behind its header, as `send` does.
   */
  sendPiece(piece: number, body: Buffer, flushed?: (ok: boolean) => void): void {
    const frame = frames.get(body);
    if (!frame || this.done) return this.send(F.PIECE, piece, body, flushed);
    frame.writeUInt8(F.PIECE, 0);
    frame.writeUInt32BE(piece, 1);
    frame.writeUInt32BE(body.byteLength, 5);
    this.enqueue(frame, flushed);
  }

  /** Frames go out one write at a time, small ones waiting together joined (src/lib/serial-writer.ts: no TLS copy of a writev). */
  private enqueue(frame: Buffer, flushed?: (ok: boolean) => void): void {
    this.bytesOut += frame.byteLength;
    this.writes.write(frame, flushed && ((e) => flushed(!e)));
  }

  close(why = 'closed'): void {
    this.end(why);
    this.socket.destroy();
  }

  private end(why: string): void {
    if (this.done) return;
    this.done = true;
    this.sink.closed(why);
  }

  /** Bytes read off the connection (and bytes that came with its ticket). */
  feed(chunk: Buffer): void {
    this.bytesIn += chunk.byteLength;
    let at = 0;
    while (at < chunk.length && !this.done) {
      if (this.body === undefined) {
        const take = Math.min(HEADER - this.headAt, chunk.length - at);
        chunk.copy(this.head, this.headAt, at, at + take);
        this.headAt += take;
        at += take;
        if (this.headAt < HEADER) return;
        this.headAt = 0;
        this.type = this.head.readUInt8(0);
        this.piece = this.head.readUInt32BE(1);
        const len = this.head.readUInt32BE(5);
        const why = this.check(this.type, this.piece, len);
        if (why) {
          this.close(`the peer sent a bad frame (${why})`);
          return;
        }
        if (len === 0) {
          this.sink.frame(this.type, this.piece, undefined);
          continue;
        }
        this.body = this.type === F.PIECE && this.sink.pieceBuffer ? this.sink.pieceBuffer(len) : Buffer.allocUnsafe(len);
        this.bodyAt = 0;
      }
      const take = Math.min(this.body.length - this.bodyAt, chunk.length - at);
      chunk.copy(this.body, this.bodyAt, at, at + take);
      this.bodyAt += take;
      at += take;
      if (this.bodyAt === this.body.length) {
        const body = this.body;
        this.body = undefined;
        this.sink.frame(this.type, this.piece, body);
      }
    }
  }

  /** Why a frame header is unacceptable, or undefined. */
  private check(type: number, piece: number, len: number): string | undefined {
    const l = this.limits;
    if (type < F.HELLO || type > F.NO_OUTBOARD) return `unknown type ${type}`;
    if (type !== F.HELLO && type !== F.UNCHOKE && piece >= l.pieces) return `piece ${piece} of a tree of ${l.pieces}`;
    if (type === F.HELLO) return len === (l.pieces + 7) >> 3 ? undefined : `a bitfield of ${len} bytes for ${l.pieces} pieces`;
    if (type === F.PIECE) return len <= l.maxPiece ? undefined : `a piece of ${len} bytes, the largest is ${l.maxPiece}`;
    if (type === F.OUTBOARD) return len <= l.maxOutboard ? undefined : `an outboard of ${len} bytes`;
    return len === 0 ? undefined : `${len} bytes after a control frame`;
  }
}
