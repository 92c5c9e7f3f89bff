// The swarm channel: one connection between two nodes swarming one
// tree, on the bulk port (bulk-server.ts), opened with a one-time ticket
// and session key the gRPC service issued (`OpenSwarm`), its bytes sealed
// (src/lib/sealed-socket.ts). Both sides send frames:
//
//   type (1 byte)  piece (u32 BE)  length (u32 BE)  payload (length bytes)
//
// HELLO carries the sender's bitfield (PieceSet.encode); PIECE the piece's
// bytes; OUTBOARD a large blob's Bao outboard (asked by OUTBOARD_ASK with
// the index of one of its pieces); every other frame is a piece number
// alone. Control frames and piece bytes share the connection: a have or a
// request waits at most behind one piece already being written (a few
// milliseconds on a LAN), and the bytes move in AES-GCM frames of up to
// 1 MiB, several times faster than gRPC messages or node:tls
// (docs/peers.md has the figures).
//
// What arrives is untrusted: types, piece numbers and lengths are checked
// against the tree's layout, and a frame longer than the largest piece (or
// than a bitfield, for control frames) closes the connection.
import type { SealedSocket } from '../../lib/sealed-socket.js';
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
 * them, in memory of its own. A piece sent from one (`sendPiece`) is
 * sealed in place and goes to the socket with no copy of its bytes.
 */
export function framedPieceBuffer(length: number): Buffer {
  return framedView(Buffer.allocUnsafeSlow(HEADER + length), length);
}

/** The body of `length` bytes of a piece buffer made in `memory` (at least HEADER + length bytes, only ever used for this), its header room before it. */
export function framedView(memory: Buffer, length: number): Buffer {
  const body = memory.subarray(HEADER, HEADER + length);
  frames.set(body, memory.subarray(0, HEADER + length));
  return body;
}

/** The memory a piece buffer of `length` bytes needs (framedView). */
export function framedBytes(length: number): number {
  return HEADER + length;
}

/** Bodies made by framedPieceBuffer, and their frames (no other buffer's bytes before it are ever written). */
const frames = new WeakMap<Buffer, Buffer>();

export interface FrameSink {
  frame(type: number, piece: number, payload: Buffer | undefined): void;
  /** The channel is over; `forged`: a frame failed its authentication tag (the peer, or someone between, lied). */
  closed(why: string, forged: boolean): void;
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

  constructor(
    readonly conn: SealedSocket,
    private readonly limits: ChannelLimits,
    private readonly sink: FrameSink,
  ) {
    this.writes = new SerialWriter(conn, SMALL_FRAME);
    // A frame that fails its tag destroys the socket with ERR_VRIFT_PEER_FORGED ('error', then 'close').
    conn.socket.on('error', (e) => this.end(e.message, (e as { code?: string }).code === 'ERR_VRIFT_PEER_FORGED'));
    conn.onClose(() => this.end('the connection closed'));
    conn.read((c) => this.feed(c));
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

  /** Frames go out one write at a time (a have waits behind one piece at most), small ones waiting together joined into one sealed frame. */
  private enqueue(frame: Buffer, flushed?: (ok: boolean) => void): void {
    this.bytesOut += frame.byteLength;
    this.writes.write(frame, flushed && ((e) => flushed(!e)));
  }

  close(why = 'closed'): void {
    this.end(why);
    this.conn.destroy();
  }

  private end(why: string, forged = false): void {
    if (this.done) return;
    this.done = true;
    this.sink.closed(why, forged);
  }

  /** Bytes opened off the connection. */
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
