// Peers that die or lie in the middle of a backfill: the restore completes
// from another peer, every blob is verified, and a liar is penalised.
// A is first a slow peer (test/helpers/slow-peer.mjs paces what it serves),
// so it can be killed mid-stream, then a liar: blobs changed on its disk
// behind its back (test/helpers/lying-peer.ts), which it serves as they are.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashBuffer } from '../../src/lib/digest.js';
import { clusterSection } from '../../src/node/cluster/config.js';
import { loadNodeConfig } from '../../src/node/ops/node-config.js';
import { Store } from '../../src/node/store/store.js';
import { Metrics } from '../../src/lib/metrics.js';
import type { PeerDirectory } from '../../src/tiers/peer/directory.js';
import { PeerTier } from '../../src/tiers/peer/peer.js';
import { vriftAsync } from '../helpers/cli.js';
import { makeNode, slowPeerEnv, waitForPeers, type TestNode } from '../helpers/cluster.js';
import { corruptStoredBlobs } from '../helpers/lying-peer.js';
import { tempDir } from '../helpers/tmp.js';
import { snapshotTree, treeMode } from '../helpers/trees.js';

let a: TestNode;
let b: TestNode;
let c: TestNode;
const ids: Record<string, string> = {};
const same = (dir: string) => snapshotTree(dir, { mode: treeMode });
/** Split every backfill in two (one part per holder), whatever its size. */
const SPLIT = { VRIFT_PEER_MIN_PART: '1M', VRIFT_PEER_SPREAD: '2' };

/** `files` files of `size` bytes, distinct per seed; ingested on A and B under `ref`. */
function shared(ref: string, files: number, size: number, seed: number): { src: string; tree: string; blobs: string[] } {
  const src = join(tempDir(), 'src');
  mkdirSync(src);
  for (let i = 0; i < files; i++) {
    const buf = Buffer.alloc(size);
    for (let j = 0; j < size; j += 4) buf.writeUInt32LE((Math.imul(j + 1, 2654435761) ^ (seed * 7919 + i)) >>> 0, j);
    writeFileSync(join(src, `f${i}.bin`), buf);
  }
  const { tree } = a.json(['ingest', src, '--ref', ref]);
  expect(b.json(['ingest', src, '--ref', ref]).tree).toBe(tree);
  const blobs = (a.json(['ls', tree]).entries as { digest?: string }[]).flatMap((e) => (e.digest ? [e.digest] : []));
  expect(blobs).toHaveLength(files);
  return { src, tree, blobs };
}

beforeAll(async () => {
  // (scrub off: a liar's own scrub would find what it was made to serve)
  const noScrub = { env: { VRIFT_SCRUB_BYTES_PER_SEC: '0' } };
  [a, b, c] = await Promise.all([makeNode('a', noScrub), makeNode('b', noScrub), makeNode('c', noScrub)]);
  await Promise.all([a.startAsync(slowPeerEnv(2 << 20)), b.startAsync(), c.startAsync()]);
  for (const n of [a, b, c]) ids[n.name] = n.peerId();
  b.json(['node', 'join', a.addr()]);
  c.json(['node', 'join', b.addr()]);
  await waitForPeers(c, [ids.a!, ids.b!]);
});
afterAll(() => {
  for (const n of [a, b, c]) n?.stop();
});

describe('peer failures', () => {
  it('completes from B when A is killed mid-transfer', async () => {
    const { src, tree } = shared('ci/killed', 24, 1 << 20, 1); // 24 MiB; A's half takes ~6 s at 2 MiB/s
    await waitForPeers(c, [ids.a!, ids.b!], tree);
    const out = join(tempDir(), 'out');
    const restore = vriftAsync(['restore', 'ci/killed', out, '--json'], { home: c.home, env: { ...c.env, ...SPLIT } });
    await new Promise((r) => setTimeout(r, 2500));
    a.crash();
    const r = await restore;
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout);
    expect(res.tree).toBe(tree);
    expect(r.stderr).toMatch(/peer: resuming peer backfill \d\/2 \(12 blobs\) from peer .* after peer .* failed/);
    const fromA = res.metrics[`vrift_peer_bytes_received_total{peer="${ids.a}"}`] as number;
    expect(fromA).toBeGreaterThan(0); // A did serve part of it …
    expect(fromA).toBeLessThan(12 << 20); // … and was cut short
    expect(res.metrics.vrift_peer_resumed_total).toBeGreaterThanOrEqual(1);
    expect(res.from.peer.blobs).toBe(24);
    expect(same(out)).toEqual(same(src));
    expect(c.json(['verify']).ok).toBe(true);
  });

  it('detects a peer lying mid-archive, takes the right bytes from another, and avoids the liar', async () => {
    a.stop(); // (already down after the test above)
    a.start(); // no longer slow
    await waitForPeers(c, [ids.a!, ids.b!]);
    const { src, tree, blobs } = shared('ci/lies', 8, 300_000, 2);
    await waitForPeers(c, [ids.a!, ids.b!], tree);
    await withStores(([from, to]) => {
      // C holds the tree blob already (as after an earlier pull), so the liar is met in the backfill, not on the tree.
      to!.admitTree(tree, from!.cas.readVerified(tree), 'test');
      corruptStoredBlobs(from!, blobs); // A now lies about every blob of the tree
    }, a.home, c.home);
    const out = join(tempDir(), 'out');
    const r = c.run(['restore', 'ci/lies', out, '--json'], SPLIT);
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout);
    expect(r.stderr).toMatch(/peer: blob [0-9a-f]{64} in peer backfill \d\/2 \(4 blobs\) rejected: its bytes do not hash to its name/);
    expect(r.stderr).toMatch(/peer: peer \S+ \(127\.0\.0\.1:\d+\) sent blob [0-9a-f]{64} that was rejected .*; it is avoided for 600s/);
    expect(r.stderr).toMatch(/peer: resuming peer backfill \d\/2 \(4 blobs\) from peer/);
    expect(res.metrics[`vrift_peer_mismatch_total{peer="${ids.a}"}`]).toBe(1);
    expect(res.metrics['vrift_tier_mismatch_total{tier="peer"}'], r.stderr).toBe(1);
    expect(res.from.peer.blobs).toBe(8);
    expect(same(out)).toEqual(same(src));
    expect(c.json(['verify'])).toMatchObject({ ok: true, corrupt: [] });

    // C's daemon was told: the liar is avoided by later commands too (and listed last).
    const peers = c.json(['node', 'peers']).peers as { id: string; penalizedUntil?: number; penalty?: string }[];
    const liar = peers.find((p) => p.id === ids.a)!;
    expect(liar.penalizedUntil).toBeGreaterThan(Date.now());
    expect(liar.penalty).toMatch(/rejected/);
    expect(peers[peers.length - 1]!.id).toBe(ids.a);
    expect(c.json(['status']).metrics[`vrift_peer_mismatch_total{peer="${ids.a}"}`]).toBe(1);
  });

  it('detects a peer lying about one blob (GetBlob) and serves it from another', async () => {
    const blob = shared('ci/lies-blob', 1, 5000, 3).blobs[0]!;
    await withStores(([onA]) => corruptStoredBlobs(onA!, [blob]), a.home); // A now lies about it
    const penalized: string[] = [];
    const directory: PeerDirectory = {
      // A first: the liar is asked before the honest peer.
      lookup: async () => ({ self: 'test', peers: [a, b].map((n) => ({ id: ids[n.name]!, grpc: n.status().addresses.grpc, addrs: [], connected: true, seenMsAgo: 0, trees: 1, blobs: 1 })) }),
      penalize: async (peer) => void penalized.push(peer),
      close: () => undefined,
    };
    const store = Store.open(tempDir());
    const metrics = new Metrics();
    const cfg = loadNodeConfig({ home: c.home, env: c.env }).get(clusterSection) as ConstructorParameters<typeof PeerTier>[0];
    const tier = new PeerTier(cfg, { store, metrics, log: () => undefined }, directory);
    try {
      const body = await tier.get(blob);
      const chunks: Buffer[] = [];
      for await (const ch of body!.stream as AsyncIterable<Buffer>) chunks.push(ch);
      expect(hashBuffer(Buffer.concat(chunks))).toBe(blob);
      expect(penalized).toEqual([ids.a]);
      expect(metrics.get('vrift_peer_mismatch_total', { peer: ids.a! })).toBe(1);
      // Penalised: not asked again.
      await tier.get(blob);
      expect(penalized).toEqual([ids.a]);
    } finally {
      await tier.close();
      await store.close();
    }
  });
});

/** Runs `fn` with these homes' stores open in this process (beside their daemons: LMDB is multi-process). */
async function withStores(fn: (stores: Store[]) => void, ...homes: string[]): Promise<void> {
  const stores = homes.map((h) => Store.open(h));
  try {
    fn(stores);
  } finally {
    await Promise.all(stores.map((s) => s.close()));
  }
}
