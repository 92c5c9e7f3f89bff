// The lean bulk stream: archives (docs/archive-format.md) over a TLS
// connection (mutual, with the cluster's certificate: tls.ts), because gRPC's framing tops out far below what a
// loopback or LAN link carries (docs/peers.md has the figures).
//
// There is no request on this port. A client first asks the gRPC
// service (authenticated with the cluster credential) for an archive;
// the service plans it and calls `issue`, which returns a random
// 32-byte one-time ticket. The client connects here and sends
//
//   "VRIFTBK1" (8 bytes)  ticket (32 bytes)
//
// and the server answers with the archive, then closes (or, for a swarm
// ticket, hands the connection to the tree's swarm: src/node/swarm/). An unknown,
// used or expired ticket gets the connection closed without a byte.
// Tickets expire after `timeoutMs` unused; a connection that stops
// reading for `timeoutMs` is closed. Before its ticket, a connection is
// bounded by the gate (conn-gate.ts): connections per address and in
// total, and a deadline (`handshakeMs`) for the whole ticket.
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { Digest } from '../../lib/digest.js';
import type { Metrics } from '../../lib/metrics.js';
import { RingWriter, writeArchive } from '../archive/ring-writer.js';
import type { Store } from '../store/store.js';
import { BULK_HELLO_LEN, BULK_MAGIC } from './wire.js';
import { listenError } from './listen-error.js';
import { ConnectionGate, type GateLimits } from './conn-gate.js';
import { SerialWriter } from '../../lib/serial-writer.js';
import { checkPinned, tlsServerOptions, type ClusterTls } from './tls.js';

export interface BulkPlan {
  blobs: { digest: Digest; size: number }[];
  /**
   * A swarm channel instead of an archive (src/node/swarm/channel.ts): the
   * authenticated connection is handed over and kept open; its owner
   * closes it (and the plan's slot is released at once).
   */
  attach?(sock: TLSSocket, early: Buffer): void;
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
  /** The cluster's certificate: the port speaks only mutual TLS with it. */
  tls: ClusterTls;
  /** Connections before and after their ticket. */
  limits: GateLimits;
  metrics: Metrics;
  log: (line: string) => void;
}

export class BulkServer {
  readonly name = 'bulk';
  private server: Server | undefined;
  private readonly gate: ConnectionGate;
  private readonly tickets = new Map<string, Ticket>();
  port = 0;

  constructor(private readonly opts: BulkServerOptions) {
    this.gate = new ConnectionGate(opts.limits, (reason) => opts.metrics.inc('vrift_peer_refused_total', { reason: `bulk-${reason}` }));
  }

  async start(): Promise<void> {
    // The gate counts the TCP socket (its deadline covers the TLS handshake and the ticket); the protocol runs on TLS above it.
    // A tls.Server that never listens: it checks the client's certificate (which a bare TLSSocket would not);
    // a failed handshake ('tlsClientError') destroys the socket.
    const secure = createTlsServer(tlsServerOptions(this.opts.tls), (t) => void this.serve(t));
    secure.on('tlsClientError', () => this.opts.metrics.inc('vrift_peer_refused_total', { reason: 'bulk-tls' }));
    const server = createServer((s) => {
      if (this.gate.admit(s)) secure.emit('connection', s);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) => reject(listenError(e, { what: "the cluster's bulk server", host: this.opts.host, port: this.opts.port, portKey: 'bulkPort' })));
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
    this.gate.closeAll();
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

  private async serve(sock: TLSSocket): Promise<void> {
    const remote = `${sock.remoteAddress}:${sock.remotePort}`;
    if (!sock.authorized || checkPinned(this.opts.tls, sock.getPeerCertificate())) {
      this.opts.metrics.inc('vrift_peer_refused_total', { reason: 'bulk-tls' });
      sock.destroy();
      return;
    }
    sock.setNoDelay(true);
    sock.setTimeout(this.opts.timeoutMs, () => sock.destroy());
    const got = await readHello(sock);
    const hello = got?.subarray(0, BULK_HELLO_LEN);
    const ticket = hello && hello.subarray(0, 8).equals(BULK_MAGIC) ? this.tickets.get(hello.toString('hex', 8)) : undefined;
    // Only a swarm channel's client speaks after its ticket (without waiting for an answer).
    if (!ticket || (got!.byteLength > BULK_HELLO_LEN && !ticket.plan.attach)) {
      this.opts.metrics.inc('vrift_peer_refused_total', { reason: 'bulk-ticket' });
      sock.destroy();
      return;
    }
    this.tickets.delete(hello!.toString('hex', 8));
    this.gate.authenticated(remote);
    clearTimeout(ticket.timer);
    const { plan } = ticket;
    if (plan.attach) {
      plan.release();
      sock.setTimeout(0);
      plan.attach(sock, got!.subarray(BULK_HELLO_LEN));
      return;
    }
    // One buffer at a time (src/lib/serial-writer.ts): TLS would copy a writev of queued ring buffers first.
    const writes = new SerialWriter(sock);
    const out = new RingWriter({ write: (buf, done) => writes.write(buf, () => done()), closed: (cb) => sock.once('close', cb) });
    try {
      await writeArchive(this.opts.store, plan.blobs, out);
      await out.flush();
      await out.drained(); // the last buffers may still wait in the SerialWriter's queue
      await new Promise<void>((resolve) => sock.end(resolve));
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

/** The first BULK_HELLO_LEN bytes a client sends (and whatever came with them), or undefined if it closes first. */
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
      if (buf.byteLength >= BULK_HELLO_LEN) done(buf);
    };
    const onClose = () => done(undefined);
    sock.on('data', onData);
    sock.once('close', onClose);
  });
}
