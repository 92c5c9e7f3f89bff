// Raw connections to a node's peer ports as a member would make them:
// mutual TLS with the cluster's certificate (src/node/cluster/tls.ts),
// derived from `secret`. With another secret the handshake fails.
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
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
