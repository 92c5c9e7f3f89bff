// A TCP connection whose bytes travel as AES-256-GCM frames: the bulk
// port's wire (docs/peers.md, "The bulk stream"). The key is a fresh
// random session key the gRPC service (mutual TLS, HMAC call
// credentials) handed out with the connection's ticket; each direction
// gets its own key from it (HKDF-SHA256), and each frame the next nonce
// of its direction (a counter, kept by the native cipher: native/src/gcm.h).
//
//   frame: length (u32 BE, 0 … SEAL_MAX_FRAME)  ciphertext (length bytes)  tag (16 bytes)
//
// The length is authenticated too (it is the frame's associated data). A
// frame of length 0 is the sender's end: a connection that closes without
// it was cut. A frame whose tag fails (forged, altered, dropped, replayed,
// reordered, another session's) destroys the socket with
// ERR_VRIFT_PEER_FORGED before a byte of it is handed on.
//
// Why not TLS: node:tls cuts a stream into 16 KiB records and moves every
// one through JavaScript stream plumbing on the main thread, in a fresh
// buffer each; here a frame is up to 1 MiB, sealed and opened in place by
// OpenSSL's AES-GCM (the same code TLS runs) with one native call, and
// both ends read straight from the kernel into their frame buffer. The
// authentication TLS gave the bulk port (the cluster certificate) comes
// from the session key instead: only the member that asked for the ticket
// over the authenticated gRPC service holds it.
import { hkdfSync } from 'node:crypto';
import { connect, Socket } from 'node:net';
import { loadNative, type NativeGcmCipher } from './native.js';

/** Largest frame body; a writer cuts larger buffers into frames of this size. */
export const SEAL_MAX_FRAME = 1 << 20;
const HEAD = 4;
const TAG = 16;

/** The two keys of one side of a connection. */
export interface SealKeys {
  send: Buffer;
  recv: Buffer;
}

/** Each direction's key, from the ticket's session key; the ticket's id is the salt. */
export function sealKeys(session: Buffer, ticket: Buffer, side: 'client' | 'server'): SealKeys {
  const derive = (info: string) => Buffer.from(hkdfSync('sha256', session, ticket, info, 32));
  const c2s = derive('vrift bulk v2 client to server');
  const s2c = derive('vrift bulk v2 server to client');
  return side === 'client' ? { send: c2s, recv: s2c } : { send: s2c, recv: c2s };
}

function sealError(code: 'ERR_VRIFT_PEER_FORGED' | 'ERR_VRIFT_PEER_FRAME' | 'ERR_VRIFT_PEER_CUT', message: string): Error {
  const e = new Error(message);
  (e as Error & { code: string }).code = code;
  return e;
}

/**
 * Reads a frame's plaintext: `false` stops the reading until `resume()`
 * (the caller copied what it needs: the chunk is valid only during the call).
 */
export type SealedFeed = (chunk: Buffer) => boolean | void;

/**
 * A frame whose tag verified, handed on before its body is decrypted: the
 * reader takes each range of it once, in order, either in place (`view`)
 * or decrypted straight into its own buffer (`copyTo`: no copy after the
 * cipher). With a cipher that cannot authenticate without decrypting
 * (OpenSSL's), the body is plaintext already and `copyTo` copies.
 * Valid only during the feed call.
 */
export class SealedFrame {
  body: Buffer = Buffer.alloc(0);
  /** Decrypts ranges of `body`; undefined: `body` is plaintext. */
  cipher: NativeGcmCipher | undefined;
  /** Bytes before this were taken (each is decrypted once). */
  private next = 0;

  set(body: Buffer, cipher: NativeGcmCipher | undefined): this {
    this.body = body;
    this.cipher = cipher;
    this.next = 0;
    return this;
  }

  get byteLength(): number {
    return this.body.byteLength;
  }

  private take(at: number, len: number): Buffer {
    if (at < this.next || at + len > this.body.byteLength) throw new RangeError(`SealedFrame: bytes ${at}+${len} taken out of order`);
    this.next = at + len;
    return this.body.subarray(at, at + len);
  }

  /** Bytes [at, at+len), decrypted in place. */
  view(at: number, len: number): Buffer {
    const v = this.take(at, len);
    this.cipher?.plain(v, at, v);
    return v;
  }

  /** Bytes [at, at+len), decrypted into `dst` at `dstOff`. */
  copyTo(at: number, len: number, dst: Uint8Array, dstOff: number): void {
    const v = this.take(at, len);
    if (this.cipher) this.cipher.plain(v, at, dst.subarray(dstOff, dstOff + len));
    else dst.set(v, dstOff);
  }
}

/** Reads a checked frame (see SealedFrame); `false` stops the reading until `resume()`. */
export type SealedFrameFeed = (frame: SealedFrame) => boolean | void;

/** What an accepting side does with the first bytes: a plaintext prefix (the ticket) that names the keys, or refuses. */
export interface SealHello {
  bytes: number;
  /** The keys for this prefix, or undefined: the connection is closed. `prefix` is valid only during the call. */
  keys(prefix: Buffer): SealKeys | undefined;
}

/** The frame buffer of a connection that has its keys: a whole frame fits, and a read's worth behind it. */
const FRAME_BUFFER = HEAD + SEAL_MAX_FRAME + TAG + (64 << 10);
/** Before its keys, a connection reads into this little (a stranger's connection costs no megabyte). */
const HELLO_BUFFER = 512;

export class SealedSocket {
  socket!: Socket;
  private sealer: NativeGcmCipher | undefined;
  private opener: NativeGcmCipher | undefined;
  private hello: SealHello | undefined;
  /**
   * Bytes read and not yet handed on: frames from `lo` to `hi`. The socket
   * reads into the free space after `hi`, chosen when the last read
   * returned, so bytes move to the front (or to a larger buffer) only then
   * (`got`).
   */
  private buf: Buffer;
  private lo = 0;
  private hi = 0;
  private feed: SealedFeed | undefined;
  /** With readFrames: frames go out checked, not yet decrypted. */
  private frames: SealedFrameFeed | undefined;
  private readonly lazyFrame = new SealedFrame();
  /** Frames opened before there was a feed (copied). */
  private early: Buffer[] = [];
  private onEnd: (() => void) | undefined;
  private paused = false;
  private ended = false;
  /** The end frame came before there was a feed. */
  private endPending = false;
  /** A frame failed (or the connection was destroyed here): nothing more is handed on. */
  private failed = false;
  private socketClosed = false;
  private readonly closedCbs: (() => void)[] = [];
  /** Plaintext bytes sent (frames' bodies). */
  bytesOut = 0;

  private constructor(keys: SealKeys | SealHello) {
    if ('send' in keys) {
      this.setKeys(keys);
      this.buf = Buffer.allocUnsafeSlow(FRAME_BUFFER);
    } else {
      this.hello = keys;
      this.buf = Buffer.allocUnsafeSlow(Math.max(HELLO_BUFFER, keys.bytes + HEAD + TAG));
    }
  }

  private setKeys(keys: SealKeys): void {
    const { GcmCipher } = loadNative();
    this.sealer = new GcmCipher(keys.send, true);
    this.opener = new GcmCipher(keys.recv, false);
  }

  /** node:net's `onread`: the socket reads straight into the frame buffer (no copy, no allocation per read). */
  private onread() {
    // @types/node has `onread.buffer` as a Buffer only; node:net also takes a function, called after every read for the next one.
    return { buffer: () => this.buf.subarray(this.hi), callback: (n: number) => this.got(n) };
  }

  /** A client connection to host:port. */
  static connect(host: string, port: number, keys: SealKeys): SealedSocket {
    const s = new SealedSocket(keys);
    s.socket = connect({ host, port, onread: s.onread() } as unknown as Parameters<typeof connect>[0]);
    s.socket.setNoDelay(true);
    s.watch();
    return s;
  }

  /**
   * A connection a server accepted, paused (`net.createServer({pauseOnConnect: true})`:
   * nothing read yet), made again as a socket that reads into the frame
   * buffer (node:net offers `onread` only to sockets it connects, so the
   * handle moves to one made with it; `raw` is dropped). With a `SealHello`
   * the first bytes are a plaintext prefix that names the keys.
   */
  static adopt(raw: Socket, keys: SealKeys | SealHello): SealedSocket {
    const handle = (raw as unknown as { _handle: unknown })._handle;
    if (!handle || raw.bytesRead > 0) throw new Error('SealedSocket.adopt: the socket must be accepted paused, before a byte was read');
    (raw as unknown as { _handle: unknown })._handle = null; // `raw` no longer owns it: destroying it closes nothing
    raw.destroy();
    const s = new SealedSocket(keys);
    s.socket = new Socket({ handle, readable: true, writable: true, onread: s.onread() } as unknown as ConstructorParameters<typeof Socket>[0]);
    s.socket.setNoDelay(true);
    s.watch();
    s.socket.resume();
    return s;
  }

  private watch(): void {
    this.socket.once('close', () => {
      this.socketClosed = true;
      this.settleClose();
    });
  }

  /**
   * `cb` once the connection closed and every frame that arrived whole
   * before was handed on (a paused reader still gets them after the
   * socket closed); `complete` then says whether the end frame was one.
   */
  onClose(cb: () => void): void {
    this.closedCbs.push(cb);
    this.settleClose();
  }

  private settleClose(): void {
    if (!this.socketClosed || this.closedCbs.length === 0) return;
    if (!this.failed && this.hasFrame()) return; // more to hand on first (the reader is paused)
    for (const cb of this.closedCbs.splice(0)) cb();
  }

  /** Whether bytes that came are still to be handed on. */
  private hasFrame(): boolean {
    if (this.early.length > 0 || this.endPending) return true;
    const n = this.hi - this.lo;
    return this.opener !== undefined && n >= HEAD && n >= HEAD + this.buf.readUInt32BE(this.lo) + TAG;
  }

  /** From now on every frame's plaintext goes to `feed` (frames that came earlier first); `ended` when the peer's end frame arrives. */
  read(feed: SealedFeed, ended?: () => void): void {
    this.feed = feed;
    this.onEnd = ended;
    this.paused = true;
    this.resume();
  }

  /**
   * As read(), but each frame goes to `feed` as a SealedFrame: its tag
   * verified, its body decrypted only as the reader takes it (an archive
   * reader decrypts a blob's bytes straight into its batch).
   */
  readFrames(feed: SealedFrameFeed, ended?: () => void): void {
    this.frames = feed;
    this.read((chunk) => feed(this.lazyFrame.set(chunk, undefined)), ended); // (frames that came before: opened already)
  }

  /** Reading again after a feed returned false. */
  resume(): void {
    if (!this.paused || this.failed) return;
    this.paused = false;
    while (this.early.length > 0 && !this.paused) if (this.feed!(this.early.shift()!) === false) this.paused = true;
    if (this.early.length === 0 && this.endPending) {
      this.endPending = false;
      this.onEnd?.();
    }
    this.drain(); // (bytes do not move here: the socket's next read is already aimed after `hi`)
    if (!this.paused && !this.socket.destroyed) this.socket.resume();
    this.settleClose();
  }

  /**
   * Sends `buf` as one or more frames. It is encrypted in place: the
   * caller must leave its bytes alone until `done` (the kernel took them,
   * or the connection failed).
   */
  write(buf: Buffer, done?: (err?: Error | null) => void): void {
    if (this.socket.destroyed || !this.sealer) {
      if (done) queueMicrotask(() => done(new Error('the connection is closed')));
      return;
    }
    if (buf.byteLength === 0) {
      if (done) queueMicrotask(() => done());
      return;
    }
    this.bytesOut += buf.byteLength;
    this.socket.cork();
    for (let at = 0; at < buf.byteLength; at += SEAL_MAX_FRAME) {
      const end = Math.min(buf.byteLength, at + SEAL_MAX_FRAME);
      this.frame(buf.subarray(at, end), end === buf.byteLength ? done : undefined);
    }
    this.socket.uncork();
  }

  /** Sends the end frame and half-closes; `done` once the kernel took it. */
  end(done?: () => void): void {
    if (this.socket.destroyed || !this.sealer) return done?.();
    this.frame(Buffer.alloc(0), undefined);
    this.socket.end(done);
  }

  /** Closes the connection at once (with `err`: its 'error'). */
  destroy(err?: Error): void {
    this.failed = true;
    this.socket.destroy(err);
  }

  private frame(body: Buffer, done: ((err?: Error | null) => void) | undefined): void {
    const ht = Buffer.allocUnsafe(HEAD + TAG);
    ht.writeUInt32BE(body.byteLength, 0);
    const head = ht.subarray(0, HEAD);
    const tag = ht.subarray(HEAD);
    this.sealer!.seal(head, body, tag);
    // Three buffers, one writev (the caller corks): the body is not copied.
    this.socket.write(head);
    if (body.byteLength > 0) this.socket.write(body);
    this.socket.write(tag, done);
  }

  /** The socket read `n` bytes after `hi`; false stops its reading. */
  private got(n: number): boolean {
    this.hi += n;
    this.drain();
    // The next read goes after `hi` (onread asks once this returns): the only moment bytes may move.
    if (this.opener && this.buf.byteLength < FRAME_BUFFER) {
      // Keys known (the hello passed): from now on frames of up to a megabyte.
      const big = Buffer.allocUnsafeSlow(FRAME_BUFFER);
      this.buf.copy(big, 0, this.lo, this.hi);
      this.hi -= this.lo;
      this.lo = 0;
      this.buf = big;
    } else if (this.lo > 0) {
      this.buf.copyWithin(0, this.lo, this.hi);
      this.hi -= this.lo;
      this.lo = 0;
    }
    return !this.paused && !this.failed;
  }

  /** Opens and hands on every whole frame in the buffer, until a feed asks to pause. */
  private drain(): void {
    if (!this.opener && !this.failed && this.hello && this.hi - this.lo >= this.hello.bytes) {
      const keys = this.hello.keys(this.buf.subarray(this.lo, this.lo + this.hello.bytes));
      if (!keys) return this.destroy();
      this.setKeys(keys);
      this.lo += this.hello.bytes;
    }
    while (this.opener && !this.paused && !this.failed && this.hi - this.lo >= HEAD) {
      const at = this.lo;
      const len = this.buf.readUInt32BE(at);
      if (len > SEAL_MAX_FRAME) return this.destroy(sealError('ERR_VRIFT_PEER_FRAME', `the peer sent a frame of ${len} bytes (at most ${SEAL_MAX_FRAME})`));
      const size = HEAD + len + TAG;
      if (this.hi - at < size) return;
      const body = this.buf.subarray(at + HEAD, at + HEAD + len);
      // A frame reader gets the body checked but still sealed (decrypted as it takes it); others get it opened.
      const lazy = this.frames !== undefined && len > 0;
      const head = this.buf.subarray(at, at + HEAD);
      const tag = this.buf.subarray(at + HEAD + len, at + size);
      if (!(lazy ? this.opener.check(head, body, tag) : this.opener.open(head, body, tag))) {
        return this.destroy(sealError('ERR_VRIFT_PEER_FORGED', 'a frame from the peer failed its authentication tag (forged, altered or out of order)'));
      }
      if (this.ended) return this.destroy(sealError('ERR_VRIFT_PEER_FRAME', 'the peer sent a frame after its end'));
      this.lo += size;
      if (len === 0) {
        this.ended = true;
        if (this.feed) this.onEnd?.();
        else this.endPending = true;
      } else if (!this.feed) this.early.push(Buffer.from(body)); // read() comes soon (a swarm channel being set up)
      else if ((lazy ? this.frames!(this.lazyFrame.set(body, this.opener)) : this.feed(body)) === false) this.paused = true;
    }
  }

  /** Whether the peer's end frame arrived (a close before it is a cut connection). */
  get complete(): boolean {
    return this.ended;
  }
}

/** The error a connection that closed before its end frame fails with. */
export function cutError(what: string): Error {
  return sealError('ERR_VRIFT_PEER_CUT', `${what} closed before its end (cut)`);
}
