// Three real daemons on loopback form a mesh (libp2p + gossip), and a tree
// ingested on one is restored on another from its peers alone: no Redis,
// no S3. Joins are remembered across restarts; leaving is too.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeNode, startAll, waitFor, waitForPeers, type TestNode } from '../helpers/cluster.js';
import { tempDir } from '../helpers/tmp.js';
import { snapshotTree, treeMode, writeSampleTree } from '../helpers/trees.js';

let a: TestNode;
let b: TestNode;
let c: TestNode;
const ids: Record<string, string> = {};

beforeAll(async () => {
  [a, b, c] = await Promise.all([makeNode('a'), makeNode('b'), makeNode('c')]);
  await startAll([a, b, c]);
  for (const n of [a, b, c]) ids[n.name] = n.peerId();
  // B and C join through A only; C learns of B by gossip.
  b.json(['node', 'join', a.addr()]);
  c.json(['node', 'join', a.addr()]);
  await Promise.all([waitForPeers(a, [ids.b!, ids.c!]), waitForPeers(b, [ids.a!, ids.c!]), waitForPeers(c, [ids.a!, ids.b!])]);
});
afterAll(() => {
  for (const n of [a, b, c]) n?.stop();
});

describe('the mesh', () => {
  it('status shows the libp2p multiaddrs and the gRPC address', () => {
    const st = a.status();
    expect(st.cluster).toMatchObject({ enabled: true, peerId: ids.a, left: false });
    expect(st.addresses.p2p).toContain(`/ip4/127.0.0.1/tcp/${a.env.VRIFT_P2P_PORT}/p2p/${ids.a}`);
    expect(st.addresses.grpc).toBe(`127.0.0.1:${a.env.VRIFT_GRPC_PORT}`);
    expect(st.addresses.bulk).toMatch(/^127\.0\.0\.1:\d+$/);
    const human = a.run(['status']).stdout;
    expect(human).toContain(`p2p: /ip4/127.0.0.1/tcp/${a.env.VRIFT_P2P_PORT}/p2p/${ids.a}`);
  });

  it('lists every peer, with the address each announced', () => {
    const peers = c.json(['node', 'peers']).peers as { id: string; grpc: string }[];
    expect(peers.map((p) => p.id).sort()).toEqual([ids.a, ids.b].sort());
    expect(peers.find((p) => p.id === ids.b)!.grpc).toBe(`127.0.0.1:${b.env.VRIFT_GRPC_PORT}`);
  });

  it('restores on C a tree A ingested, from the peers alone (no Redis, no S3)', async () => {
    const src = join(tempDir(), 'src');
    writeSampleTree(src);
    for (let i = 0; i < 5; i++) writeFileSync(join(src, `blob-${i}.bin`), Buffer.alloc(700_000 + i, i + 1));
    const { tree } = a.json(['ingest', src, '--ref', 'ci/mesh']);
    await waitForPeers(c, [ids.a!], tree);
    expect(Object.keys(c.env).filter((k) => /REDIS|S3/.test(k))).toEqual([]);
    const out = join(tempDir(), 'out');
    const r = c.json(['restore', 'ci/mesh', out]);
    expect(r).toMatchObject({ tree, refFrom: 'peer', local: 0 });
    expect(Object.keys(r.from)).toEqual(['peer']);
    expect(r.from.peer.blobs).toBe(r.fetched);
    expect(snapshotTree(out, { mode: treeMode })).toEqual(snapshotTree(src, { mode: treeMode }));
    expect(c.json(['verify']).ok).toBe(true);
    // The next restore is local, and C now announces the tree too.
    expect(c.json(['restore', 'ci/mesh', join(tempDir(), 'again')]).fetched).toBe(0);
    await waitForPeers(b, [ids.a!, ids.c!], tree);
  });

  it('remembers a join across a restart; `node leave` forgets it and stays left until the next join', async () => {
    const remembered = c.status().cluster.remembered as string[];
    expect(remembered).toEqual([a.addr()]);
    c.stop();
    await waitFor('A to drop C after its goodbye', () => !a.json(['node', 'peers']).peers.some((p: { id: string }) => p.id === ids.c));
    c.start();
    expect(c.peerId()).toBe(ids.c); // same identity: its multiaddr stays valid
    await waitForPeers(c, [ids.a!, ids.b!]);

    const left = c.json(['node', 'leave']);
    expect(left).toEqual({ forgot: [a.addr()], left: true });
    await waitFor('A and B to drop C', () => [a, b].every((n) => !n.json(['node', 'peers']).peers.some((p: { id: string }) => p.id === ids.c)));
    c.stop();
    c.start();
    await new Promise((r) => setTimeout(r, 1500)); // several announce intervals
    expect(c.json(['node', 'peers'])).toMatchObject({ left: true, peers: [] });
    expect(c.run(['node', 'peers']).stdout).toMatch(/no peers \(this node left the mesh/);

    c.json(['node', 'join', b.addr()]);
    await waitForPeers(c, [ids.a!, ids.b!]);
    expect(c.status().cluster).toMatchObject({ left: false, remembered: [b.addr()] });
  });

  it('keeps a peer that is frozen but connected (a busy seeder announces late), and drops one that is killed', async () => {
    // Announce interval 400 ms: three silent intervals are 1.2 s. A is stopped (SIGSTOP) for 2.5 s: its
    // connections stay open (the kernel holds them), and B keeps it.
    const pidOf = (n: TestNode) => Number(readFileSync(join(n.home, 'run', 'vriftd.pid'), 'utf8'));
    await waitForPeers(b, [ids.a!]);
    const log = () => readFileSync(join(b.home, 'run', 'vriftd.log'), 'utf8');
    const silentBefore = log().split(`mesh: peer ${ids.a} `).filter((l) => l.includes('went silent')).length;
    process.kill(pidOf(a), 'SIGSTOP');
    try {
      await new Promise((r) => setTimeout(r, 2500));
      expect(b.json(['node', 'peers']).peers.map((p: { id: string }) => p.id)).toContain(ids.a);
    } finally {
      process.kill(pidOf(a), 'SIGCONT');
    }
    expect(log().split(`mesh: peer ${ids.a} `).filter((l) => l.includes('went silent')).length).toBe(silentBefore);
    // Killed: its connections close, and it is dropped after three intervals.
    a.crash();
    await waitFor('B to drop the killed A', () => !b.json(['node', 'peers']).peers.some((p: { id: string }) => p.id === ids.a), 10_000);
    expect(log()).toMatch(new RegExp(`mesh: peer ${ids.a} \\(.*\\) went silent; dropped`));
  });
});
