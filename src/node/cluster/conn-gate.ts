// Connections to a peer-facing port (gRPC, bulk) before and after they
// prove membership. Anyone who can reach the port can open a connection;
// only a member can make one useful. The gate counts every accepted
// socket and holds three bounds that need no credentials:
//
//   perAddress   connections from one remote address (an IPv6 address
//                counts by its /64, since one host holds a whole /64);
//                more are closed at once
//   total        connections in all; at the limit a new connection
//                evicts the oldest one that has not proven membership,
//                and is closed at once only when every connection has
//   handshakeMs  a connection must prove membership (an authenticated
//                gRPC call, a valid bulk ticket) this soon after it was
//                accepted, or it is closed
//
// A connection that has proven membership is only ever closed by its
// own protocol (gRPC's idle timeout, the bulk stream's end).
import type { Socket } from 'node:net';

export interface GateLimits {
  total: number;
  perAddress: number;
  handshakeMs: number;
}

/** Why a connection was closed by the gate (the `reason` label of vrift_peer_refused_total). */
export type GateRefusal = 'conn-address' | 'conn-total' | 'conn-evicted' | 'conn-handshake' | 'conn-unauthenticated';

interface Entry {
  sock: Socket;
  addr: string;
  timer: NodeJS.Timeout | undefined;
}

export class ConnectionGate {
  /** Every counted connection by "address:port" (grpc-js's getPeer() of its calls). */
  private readonly conns = new Map<string, Entry>();
  /** Those that have not proven membership yet, oldest first. */
  private readonly pending = new Map<string, Entry>();
  private readonly byAddr = new Map<string, number>();

  constructor(
    private readonly limits: GateLimits,
    private readonly refused: (reason: GateRefusal, remote: string) => void,
  ) {}

  /** Counts `sock` if the limits allow it; otherwise destroys it and returns false. */
  admit(sock: Socket): boolean {
    const remote = remoteOf(sock);
    const addr = addressKey(sock.remoteAddress ?? '');
    if (remote === undefined) {
      sock.destroy(); // reset before it was accepted
      return false;
    }
    if ((this.byAddr.get(addr) ?? 0) >= this.limits.perAddress) return this.drop(sock, 'conn-address', remote);
    if (this.conns.size >= this.limits.total) {
      const oldest = this.pending.values().next().value as Entry | undefined;
      if (!oldest) return this.drop(sock, 'conn-total', remote);
      this.close(oldest, 'conn-evicted');
    }
    const entry: Entry = { sock, addr, timer: undefined };
    entry.timer = setTimeout(() => this.close(entry, 'conn-handshake'), this.limits.handshakeMs);
    entry.timer.unref();
    this.conns.set(remote, entry);
    this.pending.set(remote, entry);
    this.byAddr.set(addr, (this.byAddr.get(addr) ?? 0) + 1);
    sock.once('close', () => this.forget(remote, entry));
    sock.on('error', () => sock.destroy());
    return true;
  }

  /** The connection `remote` ("address:port") has proven membership: no deadline, never evicted. */
  authenticated(remote: string): void {
    const e = this.pending.get(remote);
    if (!e) return;
    clearTimeout(e.timer);
    this.pending.delete(remote);
  }

  /**
   * A call on `remote` was refused for its credentials: a connection that
   * never proved membership is closed (a moment later, so the refusal
   * reaches the caller); one that has, carries on.
   */
  refuse(remote: string): void {
    const e = this.pending.get(remote);
    if (!e) return;
    this.forget(remote, e); // counted out now: its bytes are no longer wanted
    setTimeout(() => e.sock.destroy(), 50).unref();
    this.refused('conn-unauthenticated', remote);
  }

  get size(): number {
    return this.conns.size;
  }

  closeAll(): void {
    for (const e of [...this.conns.values()]) e.sock.destroy();
  }

  private close(e: Entry, reason: GateRefusal): void {
    const remote = remoteOf(e.sock) ?? '?';
    this.forget(remote, e);
    e.sock.destroy();
    this.refused(reason, remote);
  }

  private drop(sock: Socket, reason: GateRefusal, remote: string): false {
    sock.destroy();
    this.refused(reason, remote);
    return false;
  }

  /** Counts a connection out (once, however it ended). */
  private forget(remote: string, e: Entry): void {
    if (this.conns.get(remote) !== e) return;
    clearTimeout(e.timer);
    this.conns.delete(remote);
    this.pending.delete(remote);
    const n = (this.byAddr.get(e.addr) ?? 1) - 1;
    if (n <= 0) this.byAddr.delete(e.addr);
    else this.byAddr.set(e.addr, n);
  }
}

/** "address:port" as grpc-js's call.getPeer() gives it; undefined for a socket already closed. */
function remoteOf(sock: Socket): string | undefined {
  return sock.remoteAddress && sock.remotePort ? `${sock.remoteAddress}:${sock.remotePort}` : undefined;
}

/** What the per-address limit counts by: an IPv4 address (also when IPv4-mapped), or an IPv6 /64. */
export function addressKey(address: string): string {
  const a = address.replace(/%.*$/, '').toLowerCase();
  if (!a.includes(':')) return a;
  if (/^::ffff:\d+\.\d+\.\d+\.\d+$/.test(a)) return a.slice(7);
  const [head = '', tail] = a.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  return `${groups
    .slice(0, 4)
    .map((g) => parseInt(g || '0', 16).toString(16))
    .join(':')}::/64`;
}
