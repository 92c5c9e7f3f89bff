// Connections to peers opened ahead of need (src/tiers/peer/connections.ts,
// src/node/daemon/warm-peers.ts): a daemon opens its gRPC connection to a
// peer (TCP, TLS, one authenticated call) as the peer appears on the mesh,
// so a pull's first call does not pay for it; the first call reuses it;
// at most `warmAtMost` are opened ahead of need; and a connection with no
// call for `idleMs` is closed. Connections are counted on the peer's side
// (`ss`, established TCP connections to its gRPC port).
import { execFileSync } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clusterKeys } from '../../src/node/cluster/auth.js';
import { PeerConnections } from '../../src/tiers/peer/connections.js';
import { makeNode, startAll, SECRET, waitFor, type TestNode } from '../helpers/cluster.js';
import { tempDir } from '../helpers/tmp.js';
import { writeSampleTree } from '../helpers/trees.js';

let a: TestNode;
let b: TestNode | undefined;
let tree: string;
let grpc: string;
let id: string;

beforeAll(async () => {
  a = await makeNode('a');
  await startAll([a]);
  const src = tempDir();
  writeSampleTree(src);
  tree = a.json(['ingest', src]).tree as string;
  const st = a.status();
  grpc = st.addresses.grpc as string;
  id = st.cluster.peerId as string;
}, 60_000);
afterAll(() => {
  b?.stop();
  a?.stop();
});

/** TCP connections established to a's gRPC port (seen from its side). */
const established = (): number => {
  const port = grpc.split(':').pop();
  const out = execFileSync('ss', ['-Htn', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.trim() !== '').length;
};
const hasCalls = (n: TestNode): number => (n.status().metrics['vrift_peer_requests_total{method="/vrift.peer.v1.Peer/Has"}'] as number | undefined) ?? 0;

function pool(opts: { idleMs?: number; warmAtMost?: number } = {}): PeerConnections {
  const keys = clusterKeys(SECRET);
  return new PeerConnections({ auth: keys.auth, tls: keys.tls, self: () => 'test-client', timeoutMs: 5000, maxMessageBytes: 8 << 20, idleMs: opts.idleMs ?? 60_000, warmAtMost: opts.warmAtMost ?? 4 });
}

describe('connections to peers opened ahead of need', () => {
  it('a warmed connection is open and authenticated before the first call, and that call reuses it', async () => {
    const conns = pool();
    try {
      const before = established();
      const calls = hasCalls(a);
      expect(await conns.warm({ id, grpc })).toBe(true);
      expect(established()).toBe(before + 1);
      expect(hasCalls(a)).toBe(calls + 1); // one Has of nothing: the peer's gate counts the connection as a member's
      const c = conns.get({ id, grpc });
      expect(await c.has([tree])).toEqual(new Set([tree]));
      expect(conns.get({ id, grpc })).toBe(c);
      expect(established()).toBe(before + 1); // no second connection
      expect(await conns.warm({ id, grpc })).toBe(false); // open already
    } finally {
      conns.close();
    }
  });

  it('opens at most warmAtMost connections ahead of need; a call still gets one', async () => {
    const conns = pool({ warmAtMost: 1 });
    try {
      expect(await conns.warm({ id, grpc })).toBe(true);
      // (a second peer at the same address, for the count)
      expect(await conns.warm({ id: `${id}-2`, grpc })).toBe(false);
      expect(conns.size).toBe(1);
      expect(await conns.get({ id: `${id}-2`, grpc }).has([tree])).toEqual(new Set([tree]));
      expect(conns.size).toBe(2);
    } finally {
      conns.close();
    }
  });

  it('a warmed peer that does not answer is dropped', async () => {
    const conns = pool();
    try {
      expect(await conns.warm({ id: 'nobody', grpc: '127.0.0.1:1' })).toBe(false);
      expect(conns.has('nobody')).toBe(false);
    } finally {
      conns.close();
    }
  });

  it('closes a connection with no call for idleMs', async () => {
    const conns = pool({ idleMs: 1000 });
    try {
      const before = established();
      expect(await conns.warm({ id, grpc })).toBe(true);
      expect(established()).toBe(before + 1);
      await waitFor('the idle connection to be closed', () => !conns.has(id), 5000);
      await waitFor('the peer to see it closed', () => established() === before, 5000);
      // The next call opens a fresh one.
      expect(await conns.get({ id, grpc }).has([tree])).toEqual(new Set([tree]));
    } finally {
      conns.close();
    }
  });

  it('does not close a connection whose call is still running', async () => {
    // A peer that accepts and never answers: the call waits for its deadline (timeoutMs, 5 s).
    const mute = createServer(() => undefined);
    await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
    const conns = pool({ idleMs: 1000 });
    try {
      const peer = { id: 'mute', grpc: `127.0.0.1:${(mute.address() as AddressInfo).port}` };
      const call = conns.get(peer).has([tree]).then(
        () => 'answered',
        () => 'failed',
      );
      await new Promise((r) => setTimeout(r, 2500));
      expect(conns.has('mute')).toBe(true);
      expect(await call).toBe('failed');
      await waitFor('the connection to be closed once idle', () => !conns.has('mute'), 5000);
    } finally {
      conns.close();
      mute.close();
    }
  }, 20_000);

  it('a daemon opens its connection to a peer as soon as the peer appears on the mesh', async () => {
    const before = established();
    const calls = hasCalls(a);
    b = await makeNode('b');
    await startAll([b]);
    b.json(['node', 'join', a.addr()]);
    await waitFor('b to open a connection to a', () => established() >= before + 1 && hasCalls(a) >= calls + 1, 15_000);
    // b's first pull then finds it open: no new connection; and it stays open after the pull (the reader
    // stopping the bulk stream once it had every blob is not the peer's failure).
    const open = established();
    expect(b.json(['pull', tree]).fetched).toBeGreaterThan(0);
    expect(established()).toBe(open);
  }, 60_000);
});
