// The gRPC port is mutual TLS with a certificate derived from the cluster
// secret (src/node/cluster/tls.ts). A plaintext HTTP/2 client gets no gRPC
// status, a client holding another cluster's certificate fails the
// handshake, and members restore from one another as before (the bulk
// port's sealed frames, whose keys come over this TLS: bulk-seal.spec.ts).
import { randomBytes, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect as h2connect } from 'node:http2';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clusterKeys, signCall } from '../../src/node/cluster/auth.js';
import { PEER_METHODS } from '../../src/node/cluster/wire.js';
import { PeerConnection } from '../../src/tiers/peer/client.js';
import { makeNode, SECRET, startAll, waitForPeers, type TestNode } from '../helpers/cluster.js';
import { memberH2 } from '../helpers/peer-tls.js';
import { tempDir } from '../helpers/tmp.js';

const OTHER = 'another-secret-entirely-0123456789';
let a: TestNode;
let b: TestNode;

beforeAll(async () => {
  [a, b] = await Promise.all([makeNode('a'), makeNode('b')]);
  await startAll([a, b]);
});
afterAll(() => {
  a?.stop();
  b?.stop();
});

/** How an HTTP/2 session ends: a gRPC status if it got one, else the error or close that ended it. */
function call(session: ReturnType<typeof h2connect>, headers: Record<string, string> = {}): Promise<{ status?: number; error?: string }> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve({ error: 'timeout' }), 8000);
    const done = (v: { status?: number; error?: string }) => {
      clearTimeout(t);
      session.destroy();
      resolve(v);
    };
    session.on('error', (e) => done({ error: e.message }));
    session.on('close', () => done({ error: 'closed' }));
    const req = session.request({ ':method': 'POST', ':path': PEER_METHODS.has, 'content-type': 'application/grpc', te: 'trailers', ...headers });
    let status: number | undefined;
    const take = (h: Record<string, unknown>) => {
      if (h['grpc-status'] !== undefined) status = Number(h['grpc-status']);
    };
    req.on('response', take);
    req.on('trailers', take);
    req.on('data', () => undefined);
    req.on('end', () => done({ status }));
    req.on('error', (e) => done({ error: e.message }));
    req.end(Buffer.alloc(5));
  });
}

describe('the cluster certificate', () => {
  it('is the same on every node, derived from the secret alone, and another secret gives another', () => {
    const k = clusterKeys(SECRET).tls;
    expect(clusterKeys(SECRET).tls).toEqual(k);
    const x = new X509Certificate(k.cert);
    expect(x.fingerprint256).toBe(k.fingerprint);
    expect(x.verify(x.publicKey)).toBe(true); // self-signed, with the derived key
    expect(x.publicKey.asymmetricKeyType).toBe('ed25519');
    expect(clusterKeys(OTHER).tls.fingerprint).not.toBe(k.fingerprint);
  });
});

describe('the gRPC port', () => {
  it('gives a plaintext HTTP/2 client no gRPC status', async () => {
    const r = await call(h2connect(`http://${a.status().addresses.grpc}`), { 'x-vrift-auth': signCall(clusterKeys(SECRET).auth, 't', PEER_METHODS.has) });
    expect(r.status).toBeUndefined(); // the TLS server sees no ClientHello and closes
  });

  it("fails the handshake of a client holding another cluster's certificate", async () => {
    const r = await call(memberH2(a.status().addresses.grpc, OTHER));
    expect(r.status).toBeUndefined();
    expect(r.error).toMatch(/certificate|alert|closed|socket/i);
    // And the daemon's own client refuses a server that is not of its cluster.
    const c = new PeerConnection({ id: 'a', grpc: a.status().addresses.grpc }, { auth: clusterKeys(SECRET).auth, tls: clusterKeys(OTHER).tls, self: 't', timeoutMs: 3000, maxMessageBytes: 4 << 20 });
    await expect(c.has(['ab'.repeat(32)])).rejects.toMatchObject({ code: 'ERR_VRIFT_TIER_AUTH', message: expect.stringMatching(/certificate/) });
    c.close();
  });

  it('answers a member over TLS (the HMAC credential is still checked inside)', async () => {
    expect(await call(memberH2(a.status().addresses.grpc), { 'x-vrift-auth': signCall(clusterKeys(SECRET).auth, 't', PEER_METHODS.has) })).toEqual({ status: 0 });
    expect(await call(memberH2(a.status().addresses.grpc))).toEqual({ status: 16 });
  });
});

describe('members', () => {
  it('restore from each other (gRPC over TLS, archives in sealed frames), exact bytes', async () => {
    b.json(['node', 'join', a.addr()]);
    const src = join(tempDir(), 'src');
    const body = randomBytes(3 << 20);
    const { mkdirSync } = await import('node:fs');
    mkdirSync(src, { recursive: true });
    writeFileSync(join(src, 'big.bin'), body);
    writeFileSync(join(src, 'small.txt'), 'hello over tls\n');
    const { tree } = a.json(['ingest', src, '--ref', 'ci/tls']);
    await waitForPeers(b, [a.peerId()], tree);
    const out = join(tempDir(), 'out');
    const r = b.json(['restore', 'ci/tls', out]);
    expect(r).toMatchObject({ tree, refFrom: 'peer' });
    expect(readFileSync(join(out, 'big.bin')).equals(body)).toBe(true);
    expect(readFileSync(join(out, 'small.txt'), 'utf8')).toBe('hello over tls\n');
    expect(a.status().metrics['vrift_peer_served_bytes_total{via="bulk"}']).toBeGreaterThan(3 << 20);
  });
});
