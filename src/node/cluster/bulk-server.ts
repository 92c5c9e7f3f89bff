// The lean bulk stream: archives (docs/archive-format.md) over a TCP
// connection whose bytes are AES-256-GCM frames (src/lib/sealed-socket.ts),
// because gRPC's framing, and node:tls, top out far below what a loopback
// or LAN link carries (docs/peers.md has the figures).
//
// There is no request on this port. A client first asks the gRPC
// service (mutual TLS, authenticated with the cluster credential) for an
// archive; the service plans it and calls `issue`, which returns a
// random 32-byte one-time ticket id and a random 32-byte session key. The
// client connects here and sends
//
//   "VRIFTBK2" (8 bytes)  ticket id (32 bytes)  then sealed frames, the first one the ticket id again
//
// under the client's key derived from the session key (sealKeys). The
// server verifies that first frame's tag before it sends a byte: only the
// member the ticket was issued to holds the key, so an id seen on the
// wire and replayed gets nothing. It then answers with the archive, in
// sealed frames, and an end frame (or, for a swarm ticket, hands the
// connection to the tree's swarm: src/node/swarm/). An unknown, used or
// expired ticket, or a first frame that fails its tag, gets the connection
// closed without a byte. Tickets expire after `timeoutMs` unused; a
// connection that stops reading for `timeoutMs` is closed. Before its
// proof, a connection is bounded by the gate (conn-gate.ts): connections
// per address and in total, and a deadline (`handshakeMs`) for the
// ticket and its proof.
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import type { Digest } from '../../lib/digest.js';
import type { Metrics } from '../../lib/metrics.js';
import { RingWriter, writeArchive } from '../archive/ring-writer.js';
import type { Store } from '../store/store.js';
import { BULK_HELLO_LEN, BULK_MAGIC } from './wire.js';
import { listenError } from './listen-error.js';
import { ConnectionGate, type GateLimits } from './conn-gate.js';
import { SealedSocket, sealKeys } from '../../lib/sealed-socket.js';

export interface BulkPlan {
  blobs: { digest: Digest; size: number }[];
  /**
   * A swarm channel instead of an archive (src/node/swarm/channel.ts): the
   * authenticated connection is handed over and kept open; its owner
   * closes it (and the plan's slot is released at once).
   */
  attach?(sock: SealedSocket): void;
  /** The peer it is for (logs and metrics). */
  peer: string;
  /** Frees the stream slot the plan holds: called once, when served or expired. */
  release(): void;
}

interface Ticket {
  plan: BulkPlan;
  /** The session key (sealed-socket.ts): only the member the ticket was issued to knows it. */
  key: Buffer;
  timer: NodeJS.Timeout;
}

export interface BulkServerOptions {
  store: Store;
  host: string;
  port: number;
  timeoutMs: number;
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
    // The gate counts the TCP socket: its deadline covers the ticket and its proof.
    // Accepted paused: the connection is re-made as a sealed socket that reads into its own buffer (SealedSocket.adopt).
    const server = createServer({ pauseOnConnect: true }, (raw) => void this.serve(raw));
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

  /** A one-time ticket for this plan: its id, and the connection's session key. */
  issue(plan: BulkPlan): { token: Buffer; key: Buffer } {
    const token = randomBytes(32);
    const key = randomBytes(32);
    const id = token.toString('hex');
    const timer = setTimeout(() => {
      if (this.tickets.delete(id)) plan.release();
    }, this.opts.timeoutMs);
    timer.unref();
    this.tickets.set(id, { plan, key, timer });
    return { token, key };
  }

  private async serve(raw: Socket): Promise<void> {
    const remote = `${raw.remoteAddress}:${raw.remotePort}`;
    let id: Buffer | undefined;
    let found: Ticket | undefined;
    // First the ticket id in clear: it names the session key, or the connection closes.
    const sealed = SealedSocket.adopt(raw, {
      bytes: BULK_HELLO_LEN,
      keys: (hello) => {
        if (!hello.subarray(0, BULK_MAGIC.length).equals(BULK_MAGIC)) return undefined;
        id = Buffer.from(hello.subarray(BULK_MAGIC.length));
        found = this.tickets.get(id.toString('hex'));
        return found && sealKeys(found.key, id, 'server');
      },
    });
    const sock = sealed.socket;
    if (!this.gate.admit(sock)) return;
    sock.setTimeout(this.opts.timeoutMs, () => sock.destroy());
    sock.on('error', () => undefined); // a forged frame destroys the socket with its error; 'close' follows
    // Then the first frame proves the session key: it must open (its tag) and carry the ticket id.
    const proven = await new Promise<boolean>((resolve) => {
      sealed.onClose(() => resolve(false));
      sealed.read((first) => {
        resolve(first.equals(id!));
        return false; // nothing more until the ticket is settled
      });
    });
    const ticket = id && this.tickets.get(id.toString('hex'));
    if (!proven || !ticket || ticket !== found) {
      // No ticket, an unknown or used one; or a wrong key (an eavesdropper's replay, a forged or altered frame).
      this.opts.metrics.inc('vrift_peer_refused_total', { reason: !found || (proven && ticket !== found) ? 'bulk-ticket' : 'bulk-proof' });
      sock.destroy();
      return;
    }
    this.tickets.delete(id!.toString('hex'));
    this.gate.authenticated(remote);
    clearTimeout(ticket.timer);
    const { plan } = ticket;
    if (plan.attach) {
      plan.release();
      sock.setTimeout(0);
      plan.attach(sealed);
      return;
    }
    // An archive's client only reads: anything it sends closes the connection.
    sealed.read(() => {
      sealed.destroy();
      return false;
    });
    // The ring's buffers are sealed in place and go to the socket as they fill (plain TCP: queued writes cost no copy).
    const out = new RingWriter({ write: (buf, done) => sealed.write(buf, () => done()), closed: (cb) => sock.once('close', cb) });
    try {
      await writeArchive(this.opts.store, plan.blobs, out);
      await out.flush();
      await out.drained();
      await new Promise<void>((resolve) => sealed.end(resolve));
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
