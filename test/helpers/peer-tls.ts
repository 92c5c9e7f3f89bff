// Raw connections to a node's peer ports as a member would make them:
// mutual TLS with the cluster's certificate (src/node/cluster/tls.ts),
// derived from `secret` (with another secret the handshake fails), and
// bulk tickets asked for over it, to use on the bulk port by hand.
import { readFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { connect as h2connect, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { AUTH_METADATA, clusterKeys, signCall } from '../../src/node/cluster/auth.js';
import { checkPinned, tlsClientOptions, TLS_SERVERNAME } from '../../src/node/cluster/tls.js';
import { PEER_METHODS, peerProto } from '../../src/node/cluster/wire.js';
import { loadNative } from '../../src/lib/native.js';
import { sealKeys } from '../../src/lib/sealed-socket.js';
import { SECRET } from './cluster.js';

/** An HTTP/2 session to a gRPC address ("host:port"), over the cluster's TLS (from `localAddress`, e.g. 127.0.0.2). */
export function memberH2(address: string, secret = SECRET, localAddress?: string): ClientHttp2Session {
  return h2connect(`https://${address}`, { ...tlsClientOptions(clusterKeys(secret).tls), ...(localAddress ? { localAddress } : {}) });
}

/** A TLS connection to the bulk port. */
export function memberTls(port: number, secret = SECRET): TLSSocket {
  return tlsConnect({ ...tlsClientOptions(clusterKeys(secret).tls), host: '127.0.0.1', port });
}

/**
 * Starts a gRPC message on `req` that declares `declared` bytes and sends
 * only `sent` of them (from `chunk`, repeated), and never ends it: what a
 * client that holds a server's memory with half-sent requests does.
 */
export function sendPartialMessage(req: ClientHttp2Stream, declared: number, sent: number, chunk: Buffer): void {
  req.on('error', () => undefined);
  req.on('data', () => undefined);
  const frame = Buffer.alloc(5);
  frame.writeUInt32BE(declared, 1);
  req.write(frame);
  for (let at = 0; at < sent; at += chunk.byteLength) req.write(chunk.subarray(0, Math.min(chunk.byteLength, sent - at)));
}

/** A process's resident memory, MiB (/proc). */
export const rssMiB = (pid: number): number => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

/** A bulk ticket for the archive of `tree`, asked for over gRPC as a member (OpenBulk): its port, id and session key. */
export function openBulkTicket(address: string, tree: string, secret = SECRET): Promise<{ port: number; token: Buffer; key: Buffer; bytes: number }> {
  const { grpc, Client } = peerProto();
  const { tls, auth } = clusterKeys(secret);
  const creds = grpc.credentials.createSsl(Buffer.from(tls.cert), Buffer.from(tls.key), Buffer.from(tls.cert), { checkServerIdentity: (_h, cert) => checkPinned(tls, cert) });
  const client = new Client(address, creds, { 'grpc.ssl_target_name_override': TLS_SERVERNAME });
  const meta = new grpc.Metadata();
  meta.set(AUTH_METADATA, signCall(auth, 'test-member', PEER_METHODS.openBulk));
  return new Promise((resolve, reject) => {
    client.OpenBulk({ tree: Buffer.from(tree, 'hex'), want: Buffer.alloc(0), have: Buffer.alloc(0) }, meta, (err, t) => {
      client.close();
      if (err || !t) reject(err ?? new Error('no ticket'));
      else resolve({ port: t.port, token: t.token, key: t.key, bytes: t.bytes });
    });
  });
}

/** Sealed frames (src/lib/sealed-socket.ts) of `bodies`, under `key` (32 bytes), nonces from 0: what a client sends. */
export function sealFrames(key: Buffer, bodies: Buffer[]): Buffer {
  const cipher = new (loadNative().GcmCipher)(key, true);
  return Buffer.concat(
    bodies.flatMap((b) => {
      const head = Buffer.alloc(4);
      head.writeUInt32BE(b.byteLength);
      const body = Buffer.from(b);
      const tag = Buffer.alloc(16);
      cipher.seal(head, body, tag);
      return [head, body, tag];
    }),
  );
}

/** What a client that holds the ticket's session key sends first: the ticket id in clear, then the id sealed under its key. */
export function bulkHello(ticket: { token: Buffer; key: Buffer }): Buffer {
  return Buffer.concat([Buffer.from('VRIFTBK2'), ticket.token, sealFrames(sealKeys(ticket.key, ticket.token, 'client').send, [ticket.token])]);
}

/** Opens the frames a server sent under the ticket's server-to-client key; throws at the first one that fails its tag. */
export function openFrames(ticket: { token: Buffer; key: Buffer }, wire: Buffer): { plain: Buffer; ended: boolean } {
  const cipher = new (loadNative().GcmCipher)(sealKeys(ticket.key, ticket.token, 'client').recv, false);
  const out: Buffer[] = [];
  let at = 0;
  while (at + 4 <= wire.byteLength) {
    const len = wire.readUInt32BE(at);
    const body = Buffer.from(wire.subarray(at + 4, at + 4 + len));
    if (!cipher.open(wire.subarray(at, at + 4), body, wire.subarray(at + 4 + len, at + 4 + len + 16))) throw new Error(`frame at ${at} failed its tag`);
    if (len === 0) return { plain: Buffer.concat(out), ended: true };
    out.push(body);
    at += 4 + len + 16;
  }
  return { plain: Buffer.concat(out), ended: false };
}

/** Sends `bytes` to the bulk port and collects what comes back until the server closes (or 5 s pass). */
export function rawBulk(port: number, bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve) => {
    const got: Buffer[] = [];
    const s = netConnect({ host: '127.0.0.1', port });
    const t = setTimeout(() => s.destroy(), 5000);
    s.on('connect', () => s.write(bytes));
    s.on('data', (d: Buffer) => got.push(d));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(t);
      resolve(Buffer.concat(got));
    });
  });
}
