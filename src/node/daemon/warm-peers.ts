// The daemon's gRPC connections to its peers (src/tiers/peer/connections.ts),
// shared by its peer tier and its swarms, and opened as peers appear on
// the mesh: a pull that starts seconds after `vrift up` and `vrift node
// join` (a CI job's first steps) finds the TLS handshake to its peers done.
// Bounded: at most WARM_AT_MOST connections are opened ahead of need (a
// large cluster is not dialed whole), and any connection with no call for
// `cluster.idleMs` is closed (the peer's service closes it as soon).
import type { ClusterKeys } from '../cluster/auth.js';
import type { ClusterConfig } from '../cluster/config.js';
import type { Mesh } from '../cluster/mesh.js';
import { PeerConnections } from '../../tiers/peer/connections.js';

/** Connections opened before a call needs them, at most (in all, with those in use). */
export const WARM_AT_MOST = 8;

export class WarmPeers {
  readonly name = 'peer connections';
  readonly conns: PeerConnections;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly mesh: Mesh,
    cfg: ClusterConfig,
    keys: ClusterKeys,
  ) {
    this.conns = new PeerConnections({
      auth: keys.auth,
      tls: keys.tls,
      self: () => mesh.peerId,
      timeoutMs: cfg.timeoutMs,
      maxMessageBytes: cfg.maxMessageBytes,
      idleMs: cfg.idleMs,
      warmAtMost: WARM_AT_MOST,
    });
  }

  /** Before the mesh starts: no peer that appears is missed. */
  start(): void {
    this.unsubscribe = this.mesh.onArrival((peer) => void this.conns.warm(peer));
  }

  /** After everything that calls peers has stopped. */
  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.conns.close();
  }
}
