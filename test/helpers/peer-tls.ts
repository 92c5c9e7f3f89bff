// Raw connections to a node's peer ports as a member would make them:
// mutual TLS with the cluster's certificate (src/node/cluster/tls.ts),
// derived from `secret`. With another secret the handshake fails.
import { readFileSync } from 'node:fs';
import { connect as h2connect, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { clusterKeys } from '../../src/node/cluster/auth.js';
import { tlsClientOptions } from '../../src/node/cluster/tls.js';
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
