// Who may talk to a node, and what a bad request gets: a node with the
// wrong cluster secret can neither join the mesh (pnet handshake) nor
// read anything over gRPC (TLS, then UNAUTHENTICATED: tested here behind
// the cluster's TLS; tls.spec.ts tests TLS itself) or the bulk port (sealed
// frames: bulk-seal.spec.ts); malformed
// and oversized gRPC messages get an error status and the node stays up.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clusterKeys, signCall } from '../../src/node/cluster/auth.js';
import { PeerConnection } from '../../src/tiers/peer/client.js';
import { PEER_METHODS } from '../../src/node/cluster/wire.js';
import { vrift } from '../helpers/cli.js';
import { makeNode, startAll, SECRET, type TestNode } from '../helpers/cluster.js';
import { memberH2, rawBulk } from '../helpers/peer-tls.js';
import { tempDir } from '../helpers/tmp.js';
import { writeSampleTree } from '../helpers/trees.js';

let a: TestNode;
let w: TestNode;
let tree: string;
let blob: string;

beforeAll(async () => {
  [a, w] = await Promise.all([makeNode('a', { env: { VRIFT_GRPC_MAX_MESSAGE: '1M' } }), makeNode('w', { secret: 'another-secret-entirely-0123456789', env: { VRIFT_PEER_TIMEOUT_MS: '2000' } })]);
  await startAll([a, w]);
  const src = tempDir();
  writeSampleTree(src);
  tree = a.json(['ingest', src, '--ref', 'ci/secret']).tree;
  blob = (a.json(['ls', tree]).entries as { path: string; digest?: string }[]).find((e) => e.path === 'README.md')!.digest!;
});
afterAll(() => {
  a?.stop();
  w?.stop();
});

/** A client whose calls are signed with `secret`, over TLS from `tlsSecret` (the cluster's: the HMAC check is tested behind TLS). */
const client = (secret: string, self = 'test', tlsSecret = SECRET) =>
  new PeerConnection({ id: 'a', grpc: a.status().addresses.grpc }, { auth: clusterKeys(secret).auth, tls: clusterKeys(tlsSecret).tls, self, timeoutMs: 5000, maxMessageBytes: 4 << 20 });

/** One raw gRPC call over HTTP/2: the status and message the server ends it with. */
function rawCall(path: string, body: Buffer, headers: Record<string, string> = {}): Promise<{ status: number; message: string }> {
  return new Promise((resolve, reject) => {
    const session = memberH2(a.status().addresses.grpc);
    session.on('error', reject);
    const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...headers });
    let status = -1;
    let message = '';
    const take = (h: Record<string, unknown>) => {
      if (h['grpc-status'] !== undefined) status = Number(h['grpc-status']);
      if (h['grpc-message'] !== undefined) message = decodeURIComponent(String(h['grpc-message']));
    };
    req.on('response', take);
    req.on('trailers', take);
    req.on('data', () => undefined);
    req.on('end', () => {
      session.close();
      resolve({ status, message });
    });
    req.on('error', reject);
    const frame = Buffer.alloc(5);
    frame.writeUInt32BE(body.byteLength, 1);
    req.end(Buffer.concat([frame, body]));
  });
}

const auth = (method: string) => ({ 'x-vrift-auth': signCall(clusterKeys(SECRET).auth, 'test', method) });

describe('cluster membership', () => {
  it('refuses a node with another secret at the libp2p handshake', async () => {
    const r = w.run(['node', 'join', a.addr()]);
    expect(r.code).toBe(2);
    // Refused at once, or (when the garbled handshake leaves the other side waiting) after the timeout.
    expect(r.stderr, r.stderr).toMatch(/^vrift: could not join \/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/12D3Koo\w+: (the handshake failed|no handshake in time) .*same cluster secret/);
    expect(w.json(['node', 'peers']).peers).toEqual([]);
    expect(w.status().cluster.remembered).toEqual([]);
    expect(a.json(['node', 'peers']).peers).toEqual([]);
  });

  it('refuses gRPC calls without the right credentials (UNAUTHENTICATED)', async () => {
    const wrong = client('another-secret-entirely-0123456789');
    await expect(wrong.has([blob])).rejects.toMatchObject({ code: 'ERR_VRIFT_TIER_AUTH', message: expect.stringMatching(/wrong cluster secret/) });
    await expect(wrong.archive({ tree }, true)).rejects.toMatchObject({ code: 'ERR_VRIFT_TIER_AUTH' });
    await expect(wrong.getRef('ci/secret')).rejects.toMatchObject({ code: 'ERR_VRIFT_TIER_AUTH' });
    wrong.close();
    const none = await rawCall(PEER_METHODS.has, Buffer.alloc(0));
    expect(none).toMatchObject({ status: 16, message: expect.stringMatching(/no credentials/) });
    // A credential is good once, and for its own method only.
    const cred = auth(PEER_METHODS.has);
    expect((await rawCall(PEER_METHODS.has, Buffer.alloc(0), cred)).status).toBe(0);
    expect(await rawCall(PEER_METHODS.has, Buffer.alloc(0), cred)).toMatchObject({ status: 16, message: expect.stringMatching(/replayed/) });
    expect(await rawCall(PEER_METHODS.getRef, Buffer.alloc(0), auth(PEER_METHODS.has))).toMatchObject({ status: 16 });

    const right = client(SECRET);
    expect([...(await right.has([blob]))]).toEqual([blob]);
    expect(await right.getRef('ci/secret')).toMatchObject({ tree });
    right.close();
  });

  it('a node with the wrong secret cannot fetch: its restore finds nothing, and nothing was served', () => {
    const r = w.run(['restore', 'ci/secret', tempDir(), '--json']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).error.code).toBe('ERR_VRIFT_RESTORE_MISS');
    expect(a.status().metrics['vrift_peer_served_bytes_total{via="bulk"}']).toBeUndefined();
  });

  it('closes the bulk port on an unknown ticket without sending a byte', async () => {
    const port = Number(a.status().addresses.bulk.split(':')[1]);
    const got = await rawBulk(port, Buffer.concat([Buffer.from('VRIFTBK2'), Buffer.alloc(32, 7)]));
    expect(got.byteLength).toBe(0);
    expect(a.status().metrics['vrift_peer_refused_total{reason="bulk-ticket"}']).toBe(1);
  });

  it('answers malformed and oversized messages with an error status, and stays up', async () => {
    // Not a protobuf message at all.
    const garbage = await rawCall(PEER_METHODS.has, Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]), auth(PEER_METHODS.has));
    expect([3, 13]).toContain(garbage.status); // INVALID_ARGUMENT or INTERNAL
    // A well-formed message with nonsense in it: 33 bytes are not packed digests.
    expect(await rawCall(PEER_METHODS.has, Buffer.concat([Buffer.from([0x0a, 33]), Buffer.alloc(33)]), auth(PEER_METHODS.has))).toMatchObject({
      status: 3,
      message: expect.stringMatching(/packed 32-byte digests/),
    });
    const c = client(SECRET);
    await expect(c.archive({ tree: 'ab'.repeat(32) }, true)).resolves.toBeUndefined(); // NOT_FOUND: absence
    // Above the node's 1 MiB message limit: RESOURCE_EXHAUSTED before anything is decoded.
    const big = Buffer.concat([Buffer.from([0x0a, 0x80, 0x80, 0x80, 0x01]), Buffer.alloc(2 << 20)]);
    expect(await rawCall(PEER_METHODS.has, big, auth(PEER_METHODS.has))).toMatchObject({ status: 8 });
    // Still serving.
    expect([...(await c.has([blob]))]).toEqual([blob]);
    c.close();
    expect(a.status().running).toBe(true);
  });
});

describe('a node without a cluster secret', () => {
  it('runs alone, and says so', () => {
    const home = tempDir();
    const env = { VRIFT_CLUSTER_SECRET: '' };
    try {
      expect(vrift(['up', '--detach'], { home, env }).code).toBe(0);
      const st = JSON.parse(vrift(['status', '--json'], { home, env }).stdout);
      expect(st.cluster).toEqual({ enabled: false });
      expect(Object.keys(st.addresses)).toEqual(['control']);
      const r = vrift(['node', 'peers'], { home, env });
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^vrift: this node is not part of a cluster \(no cluster secret is set\) \(set VRIFT_CLUSTER_SECRET/);
    } finally {
      vrift(['down'], { home });
    }
  });

  it('refuses to start with a secret too short to be one', () => {
    const r = vrift(['up', '--detach'], { home: tempDir(), env: { VRIFT_CLUSTER_SECRET: 'short' } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/VRIFT_CLUSTER_SECRET: too short: at least 16 characters/);
  });
});
