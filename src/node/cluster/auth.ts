// What the cluster secret becomes. Nothing on the wire is the secret
// itself: three keys are derived from it (HKDF-SHA256), one per use.
//
//   psk    the libp2p private-network key: a node without it cannot
//          finish the pnet handshake, so it never joins the mesh
//   auth   the HMAC key of gRPC call credentials (metadata x-vrift-auth)
//   id     names the gossip topic, so two clusters never share one
//   tls    the seed of the cluster's TLS key pair and certificate (tls.ts):
//          gRPC and bulk connections are mutual TLS pinned to it
//
// A call credential is "v1.<peer>.<ms>.<nonce>.<mac>": the caller's peer
// id, the time, a random nonce, and HMAC(auth, "v1|peer|ms|nonce|method").
// The server accepts it within ±5 minutes of its clock and only once (it
// remembers the nonces it has seen in that window), so a credential
// overheard on the wire cannot be replayed, nor used for another method.
import { clusterTls, type ClusterTls } from './tls.js';
import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';

export interface ClusterKeys {
  /** libp2p pnet key, in the swarm-key format @libp2p/pnet reads. */
  psk: Uint8Array;
  auth: Buffer;
  /** 16 hex characters naming this cluster. */
  id: string;
  tls: ClusterTls;
}

const SALT = 'vrift cluster v1';

function derive(secret: string, info: string, bytes: number): Buffer {
  return Buffer.from(hkdfSync('sha256', Buffer.from(secret, 'utf8'), SALT, info, bytes));
}

export function clusterKeys(secret: string): ClusterKeys {
  const psk = derive(secret, 'libp2p pnet', 32).toString('hex');
  const id = derive(secret, 'cluster id', 8).toString('hex');
  return {
    psk: new TextEncoder().encode(`/key/swarm/psk/1.0.0/\n/base16/\n${psk}`),
    auth: derive(secret, 'grpc auth', 32),
    id,
    tls: clusterTls(derive(secret, 'tls ed25519 seed', 32), id),
  };
}

export const AUTH_METADATA = 'x-vrift-auth';
/** How far a credential's time may be from the server's clock. */
export const AUTH_WINDOW_MS = 5 * 60_000;

function mac(key: Buffer, parts: string[]): string {
  return createHmac('sha256', key).update(parts.join('|')).digest('hex');
}

/** A one-time credential for a call of `method` (e.g. "/vrift.peer.v1.Peer/Has"). */
export function signCall(key: Buffer, peer: string, method: string, now = Date.now()): string {
  const nonce = randomBytes(12).toString('hex');
  const ms = String(now);
  return ['v1', peer, ms, nonce, mac(key, ['v1', peer, ms, nonce, method])].join('.');
}

export type AuthResult = { ok: true; peer: string } | { ok: false; reason: string };

/**
 * Checks credentials and refuses replays. Memory is bounded: nonces are
 * kept only for the time window, and at most `maxNonces` of them (when
 * full, new calls are refused until old nonces expire: a flood cannot
 * make the server forget the nonces that protect it).
 */
export class CallVerifier {
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly key: Buffer,
    private readonly maxNonces = 200_000,
  ) {}

  verify(credential: string | undefined, method: string, now = Date.now()): AuthResult {
    if (!credential) return { ok: false, reason: 'no credentials (is the cluster secret set on the caller?)' };
    const parts = credential.split('.');
    if (parts.length !== 5 || parts[0] !== 'v1') return { ok: false, reason: 'malformed credentials' };
    const [, peer, ms, nonce, got] = parts as [string, string, string, string, string];
    if (!/^\d{1,16}$/.test(ms) || !/^[0-9a-f]{24}$/.test(nonce) || !/^[0-9a-f]{64}$/.test(got) || peer.length > 128) {
      return { ok: false, reason: 'malformed credentials' };
    }
    const want = Buffer.from(mac(this.key, ['v1', peer, ms, nonce, method]), 'hex');
    if (!timingSafeEqual(want, Buffer.from(got, 'hex'))) return { ok: false, reason: 'wrong cluster secret' };
    const at = Number(ms);
    if (Math.abs(now - at) > AUTH_WINDOW_MS) return { ok: false, reason: 'credentials expired (are the clocks in sync?)' };
    this.prune(now);
    if (this.seen.has(nonce)) return { ok: false, reason: 'credentials replayed' };
    if (this.seen.size >= this.maxNonces) return { ok: false, reason: 'too many calls; try again shortly' };
    this.seen.set(nonce, at + AUTH_WINDOW_MS);
    return { ok: true, peer };
  }

  private prune(now: number): void {
    // Map order is insertion order, and expiry follows the caller's time: stop at the first live one
    // (a caller with a skewed clock can only keep its own nonces a little longer).
    for (const [nonce, until] of this.seen) {
      if (until > now) break;
      this.seen.delete(nonce);
    }
  }
}
