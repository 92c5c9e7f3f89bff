// The lean bulk stream: archives (docs/archive-format.md) over a plain
// TCP connection, because gRPC's framing tops out far below what a
// loopback or LAN link carries (docs/peers.md has the figures).
//
// There is no request on this port. A client first asks the gRPC
// service (authenticated with the cluster credential) for an archive;
// the service plans it and calls `issue`, which returns a random
// 32-byte one-time ticket. The client connects here and sends
//
//   "VRIFTBK1" (8 bytes)  ticket (32 bytes)
//
// and the server answers with the archive, then closes. An unknown,
// used or expired ticket gets the connection closed without a byte.
// Tickets expire after `timeoutMs` unused; a connection that sends no
// ticket within `timeoutMs`, or stops reading for that long, is closed.
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import type { Digest } from '../lib/digest.js';
import { errnoOf, fsError } from '../lib/errors.js';
import type { Metrics } from '../tiers/metrics.js';
import { archiveHeader, blobFrame, endFrame } from './archive.js';
import { corruptBlob, missingBlob } from './cas.js';
import type { ServeHooks } from './peer-test-hooks.js';
import type { Store } from './store.js';

export const BULK_MAGIC = Buffer.from('VRIFTBK1', 'latin1');
export const BULK_HELLO_LEN = BULK_MAGIC.length + 32;

export interface BulkPlan {
  blobs: { digest: Digest; size: number }[];
  /** The peer it is for (logs and metrics). */
  peer: string;
  /** Frees the stream slot the plan holds: called once, when served or expired. */
  release(): void;
}

interface Ticket {
  plan: BulkPlan;
  timer: NodeJS.Timeout;
}

export interface BulkServerOptions {
  store: Store;
  host: string;
  port: number;
  timeoutMs: number;
  hooks: ServeHooks;
  metrics: Metrics;
  log: (line: string) => void;
}

export class BulkServer {
  readonly name = 'bulk';
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly tickets = new Map<string, Ticket>();
  port = 0;

  constructor(private readonly opts: BulkServerOptions) {}

  async start(): Promise<void> {
    const server = createServer((s) => void this.serve(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host, () => resolve());
    });
    this.port = (server.address() as { port: number }).port;
    this.server = server;
  }

  async stop(): Promise<void> {
    for (const t of this.tickets.values()) {
      clearTimeout(t.timer);
      t.plan.release();
    }
    this.tickets.clear();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server = undefined;
  }

  /** A one-time ticket for this plan. */
  issue(plan: BulkPlan): Buffer {
    const token = randomBytes(32);
    const key = token.toString('hex');
    const timer = setTimeout(() => {
      if (this.tickets.delete(key)) plan.release();
    }, this.opts.timeoutMs);
    timer.unref();
    this.tickets.set(key, { plan, timer });
    return token;
  }

  private async serve(sock: Socket): Promise<void> {
    this.sockets.add(sock);
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    sock.setNoDelay(true);
    sock.setTimeout(this.opts.timeoutMs, () => sock.destroy());
    const hello = await readHello(sock);
    const ticket = hello && hello.subarray(0, 8).equals(BULK_MAGIC) ? this.tickets.get(hello.toString('hex', 8)) : undefined;
    if (!ticket) {
      this.opts.metrics.inc('vrift_peer_refused_total', { reason: 'bulk-ticket' });
      sock.destroy();
      return;
    }
    this.tickets.delete(hello!.toString('hex', 8));
    clearTimeout(ticket.timer);
    const { plan } = ticket;
    const out = new RingWriter(sock, this.opts.hooks.throttle);
    try {
      await writeArchive(this.opts.store, plan.blobs, out, this.opts.hooks.corrupt);
      await out.end();
    } catch (e) {
      // A local blob found missing or corrupt (quarantined), or the client left.
      if (!sock.destroyed) this.opts.log(`bulk: stream to ${plan.peer} stopped: ${(e as Error).message}`);
      sock.destroy();
    } finally {
      this.opts.metrics.inc('vrift_peer_served_bytes_total', { via: 'bulk' }, out.bytes);
      plan.release();
    }
  }
}

/** Size of the buffers an archive is assembled in, and how many may be in flight on one socket. */
const PIECE = 1 << 20;
const RING = 8;

/**
 * Writes to a socket from a small ring of reusable buffers: file bytes are
 * read straight into them (one copy, no allocation per blob, nothing for
 * the GC), small frames and blobs share a buffer, and at most RING × PIECE
 * bytes wait in the socket at any time (a buffer comes back when the
 * kernel has taken it).
 */
class RingWriter {
  private readonly free: Buffer[] = Array.from({ length: RING }, () => Buffer.allocUnsafe(PIECE));
  private readonly waiting: (() => void)[] = [];
  private cur: Buffer | undefined;
  private off = 0;
  private failed: Error | undefined;
  private readonly started = Date.now();
  bytes = 0;

  constructor(
    private readonly sock: Socket,
    /** Test hook: bytes per second at most. */
    private readonly throttle: number,
  ) {
    sock.once('close', () => {
      this.failed ??= new Error('the client closed the connection');
      for (const w of this.waiting.splice(0)) w();
    });
  }

  /** The current buffer, with room for at least one byte. */
  async room(): Promise<{ buf: Buffer; off: number; len: number }> {
    if (this.cur && this.off < PIECE) return { buf: this.cur, off: this.off, len: PIECE - this.off };
    if (this.cur) await this.flush();
    while (this.free.length === 0 && !this.failed) await new Promise<void>((r) => this.waiting.push(r));
    if (this.failed) throw this.failed;
    this.cur = this.free.pop()!;
    this.off = 0;
    return { buf: this.cur, off: 0, len: PIECE };
  }

  /** Marks `n` bytes of the current buffer filled. */
  filled(n: number): void {
    this.off += n;
  }

  async put(data: Buffer): Promise<void> {
    let done = 0;
    while (done < data.byteLength) {
      const r = await this.room();
      const n = Math.min(r.len, data.byteLength - done);
      data.copy(r.buf, r.off, done, done + n);
      this.filled(n);
      done += n;
    }
  }

  async flush(): Promise<void> {
    const buf = this.cur;
    const n = this.off;
    this.cur = undefined;
    this.off = 0;
    if (!buf) return;
    if (n === 0) {
      this.free.push(buf);
      return;
    }
    if (this.failed) throw this.failed;
    this.bytes += n;
    if (this.throttle > 0) {
      const due = this.started + (this.bytes / this.throttle) * 1000;
      if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
    }
    this.sock.write(buf.subarray(0, n), () => {
      this.free.push(buf);
      this.waiting.shift()?.();
    });
  }

  async end(): Promise<void> {
    await this.flush();
    await new Promise<void>((resolve) => this.sock.end(resolve));
  }
}

/**
 * The archive of `blobs` (docs/archive-format.md) from the local CAS into
 * `out`. A blob is sent as the index knows it: present, of its size and
 * untouched since it was written (the cheap check `materialize` trusts);
 * one that fails it is re-hashed, and a corrupt one quarantined and the
 * stream cut before its frame. The receiver verifies every blob anyway.
 */
async function writeArchive(store: Store, blobs: { digest: Digest; size: number }[], out: RingWriter, corrupt: boolean): Promise<void> {
  await out.put(archiveHeader());
  let total = 0;
  for (const { digest, size } of blobs) {
    const st = store.cas.statOf(digest);
    if (!st) throw missingBlob(digest);
    store.checkBlob(digest, size, st); // throws (and quarantines) when the blob is not what its name says
    const path = store.cas.pathOf(digest);
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') throw missingBlob(digest);
      throw fsError(e, path, 'reading a blob');
    }
    try {
      await out.put(blobFrame(digest, size));
      let left = size;
      let first = corrupt;
      while (left > 0) {
        const r = await out.room();
        const n = readSync(fd, r.buf, r.off, Math.min(r.len, left), null);
        if (n === 0) throw corruptBlob(digest); // shorter than its size: changed under us
        if (first) {
          r.buf[r.off] = r.buf[r.off]! ^ 0xff; // test hook: a lying peer
          first = false;
        }
        out.filled(n);
        left -= n;
      }
    } finally {
      closeSync(fd);
    }
    total += size;
  }
  await out.put(endFrame(blobs.length, total));
}

/** The first BULK_HELLO_LEN bytes a client sends, or undefined if it closes or sends more. */
function readHello(sock: Socket): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    const done = (v: Buffer | undefined) => {
      sock.off('data', onData);
      sock.off('close', onClose);
      resolve(v);
    };
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.byteLength > BULK_HELLO_LEN) done(undefined); // the protocol has nothing after the ticket
      else if (buf.byteLength === BULK_HELLO_LEN) done(buf);
    };
    const onClose = () => done(undefined);
    sock.on('data', onData);
    sock.once('close', onClose);
  });
}
