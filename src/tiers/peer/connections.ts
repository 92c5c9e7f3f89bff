// A process's gRPC connections to its peers (client.ts), one per peer,
// shared by whoever calls them: the peer tier, and in the daemon its
// swarms too. The daemon opens them ahead of need (`warm`, as peers
// appear on the mesh: src/node/daemon/warm-peers.ts), so the first call
// of a pull does not pay for TCP, the TLS handshake and HTTP/2 (~30 ms on
// loopback, a few round trips more across a network). A connection with
// no call for `idleMs` is closed here (the peer's service closes it after
// as long: cluster.idleMs); the next call opens it again.
import { PeerConnection, type PeerClientOptions, type PeerEndpoint } from './client.js';

export interface PeerConnectionsOptions extends Omit<PeerClientOptions, 'self'> {
  /** Who is calling (this node's peer id), read when a connection is made. */
  self: () => string;
  /** A connection with no call for this long is closed. */
  idleMs: number;
  /** Connections `warm` opens at most (in all, with those in use): a large cluster is not dialed whole. */
  warmAtMost: number;
}

export class PeerConnections {
  private readonly conns = new Map<string, PeerConnection>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly opts: PeerConnectionsOptions) {}

  /** The connection to `peer` (made now if there is none, or the peer moved to another address). */
  get(peer: PeerEndpoint): PeerConnection {
    let c = this.conns.get(peer.id);
    if (c && c.peer.grpc !== peer.grpc) {
      c.close();
      c = undefined;
    }
    if (!c) {
      const { self, idleMs: _idle, warmAtMost: _most, ...client } = this.opts;
      c = new PeerConnection({ id: peer.id, grpc: peer.grpc }, { ...client, self: self() });
      this.conns.set(peer.id, c);
      this.sweepLater();
    }
    return c;
  }

  /**
   * Opens the connection to `peer` now, unless one is open or `warmAtMost`
   * are; resolves when it is ready (false: not opened, or the peer did
   * not answer, and the connection was dropped).
   */
  async warm(peer: PeerEndpoint): Promise<boolean> {
    const known = this.conns.get(peer.id);
    if (known?.peer.grpc === peer.grpc || (!known && this.conns.size >= this.opts.warmAtMost)) return false;
    const c = this.get(peer);
    try {
      await c.warm();
      return true;
    } catch {
      if (this.conns.get(peer.id) === c) this.drop(peer.id);
      return false;
    }
  }

  /** Closes the connection to `peer` (it failed: the next call gets a fresh one, not grpc-js's back-off). */
  drop(peer: string): void {
    this.conns.get(peer)?.close();
    this.conns.delete(peer);
  }

  /** Connections open now (tests, status). */
  get size(): number {
    return this.conns.size;
  }

  has(peer: string): boolean {
    return this.conns.has(peer);
  }

  close(): void {
    clearTimeout(this.sweeper);
    this.sweeper = undefined;
    for (const c of this.conns.values()) c.close();
    this.conns.clear();
  }

  /** Closes the connections idle for `idleMs`; looks again while any is left. */
  private sweep(): void {
    this.sweeper = undefined;
    const now = Date.now();
    for (const [id, c] of this.conns) {
      if (c.idleMs(now) < this.opts.idleMs) continue;
      c.close();
      this.conns.delete(id);
    }
    this.sweepLater();
  }

  private sweepLater(): void {
    if (this.sweeper || this.conns.size === 0) return;
    // (a quarter of idleMs between looks: a connection lives at most 1.25 × idleMs without a call)
    this.sweeper = setTimeout(() => this.sweep(), Math.max(250, this.opts.idleMs / 4));
    this.sweeper.unref();
  }
}
