// The cluster's TLS identity: one Ed25519 key pair and one self-signed
// certificate, derived from the cluster secret alone, byte for byte the
// same on every node. The gRPC port and the bulk port serve it, and ask
// the client for it too (mutual TLS); both sides accept only a peer whose
// certificate is this one (pinned by its SHA-256 fingerprint: announced
// addresses are not in the certificate, so there is no name to check).
// A host without the secret has neither the key nor the certificate, so
// it cannot finish a handshake in either direction. Rotating the secret
// rotates the certificate.
//
// Why a hand-built certificate: Ed25519 signatures are deterministic, so
// fixed fields (serial 1, validity 2000-01-01 to 9999-12-31, subject
// "vrift cluster <id>", no extensions) give the same DER on every node,
// synchronously, from node:crypto alone. X.509 libraries for Node sign
// through WebCrypto (async), and clusterKeys() is synchronous for its
// callers (the peer tier's factory). The DER below is RFC 5280's minimal
// TBSCertificate; test/peers/units.spec.ts checks it parses and verifies.
import { createPrivateKey, createPublicKey, sign, X509Certificate } from 'node:crypto';
import { createSecureContext, type ConnectionOptions, type PeerCertificate, type SecureContext, type TlsOptions } from 'node:tls';

export interface ClusterTls {
  /** PEM of the PKCS#8 private key. */
  key: string;
  /** PEM of the certificate. */
  cert: string;
  /** Its SHA-256 fingerprint, as node:tls prints it ("AB:CD:…"). */
  fingerprint: string;
}

/** SNI name clients send (never an IP, which TLS forbids); the server does not check it. */
export const TLS_SERVERNAME = 'vrift-cluster';

/** A DER element: tag, definite length, contents. */
function der(tag: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  const n = body.length;
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
  return Buffer.concat([Buffer.from([tag, ...len]), body]);
}
const seq = (...parts: Buffer[]) => der(0x30, ...parts);
const ED25519 = seq(der(0x06, Buffer.from([0x2b, 0x65, 0x70]))); // 1.3.101.112
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex'); // PKCS#8 header of a 32-byte seed

/** The key pair and certificate of a cluster, from a 32-byte seed derived from its secret. */
export function clusterTls(seed: Buffer, clusterId: string): ClusterTls {
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, seed]), format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  const name = seq(der(0x31, seq(der(0x06, Buffer.from([0x55, 0x04, 0x03])), der(0x0c, Buffer.from(`vrift cluster ${clusterId}`)))));
  const validity = seq(der(0x17, Buffer.from('000101000000Z')), der(0x18, Buffer.from('99991231235959Z')));
  const tbs = seq(der(0xa0, der(0x02, Buffer.from([2]))), der(0x02, Buffer.from([1])), ED25519, name, validity, name, spki);
  const certDer = seq(tbs, ED25519, der(0x03, Buffer.from([0]), sign(null, tbs, key)));
  const cert = `-----BEGIN CERTIFICATE-----\n${certDer.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`;
  return { key: key.export({ type: 'pkcs8', format: 'pem' }) as string, cert, fingerprint: new X509Certificate(cert).fingerprint256 };
}

/** undefined if `cert` is the cluster's certificate, else the error that ends the handshake. */
export function checkPinned(t: ClusterTls, cert: Pick<PeerCertificate, 'fingerprint256'> | undefined): Error | undefined {
  if (cert?.fingerprint256 === t.fingerprint) return undefined;
  const e = new Error('the peer does not hold this cluster\'s certificate (another cluster secret?)');
  (e as Error & { code: string }).code = 'ERR_VRIFT_PEER_TLS_PIN';
  return e;
}

/** node:tls server options: present the cluster's certificate, require it from the client. */
export function tlsServerOptions(t: ClusterTls): TlsOptions {
  return { key: t.key, cert: t.cert, ca: t.cert, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' };
}

/** One client context per identity: built from PEM once, not at every connection (a swarm opens many). */
const clientContexts = new WeakMap<ClusterTls, SecureContext>();

/** node:tls client options: present the cluster's certificate, accept only it from the server. */
export function tlsClientOptions(t: ClusterTls): ConnectionOptions {
  let secureContext = clientContexts.get(t);
  if (!secureContext) {
    secureContext = createSecureContext({ key: t.key, cert: t.cert, ca: t.cert, minVersion: 'TLSv1.3' });
    clientContexts.set(t, secureContext);
  }
  return { secureContext, servername: TLS_SERVERNAME, minVersion: 'TLSv1.3', checkServerIdentity: (_host, cert) => checkPinned(t, cert) };
}
