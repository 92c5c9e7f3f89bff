// A flash crowd on a real cluster (issue 14): six daemons on loopback, a
// tree only in s3rver, every node restoring it at once. Each output must
// be exact, S3 must serve at most about two copies of the tree (the swarm
// takes pieces from the other nodes, each piece verified before it is
// served on), and a node killed mid-crowd must cost only its own pieces.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, vriftJson } from '../helpers/cli.js';
import { makeNode, waitFor, type TestNode } from '../helpers/cluster.js';
import { startS3, tierEnv, type S3Server } from '../helpers/s3-server.js';
import { tempDir } from '../helpers/tmp.js';
import { freePort } from '../helpers/ports.js';
import { serverProcess } from '../helpers/server-process.js';
import { snapshotTree, treeMode } from '../helpers/trees.js';
import { corruptStoredBlobs } from '../helpers/lying-peer.js';
import { Store } from '../../src/node/store/store.js';

const NODES = 6;
let s3: S3Server;
let tiers: Record<string, string>;
let nodes: TestNode[] = [];
const same = (dir: string) => snapshotTree(dir, { mode: treeMode });
const sources: Record<string, string> = {};

/** Large files (cut into chunk pieces, checked through their Bao trees) and many small ones (grouped whole). */
function crowdTree(seed: number, large: number, small: number): string {
  const dir = tempDir('vrift-crowd-');
  for (let i = 0; i < large; i++) writeFileSync(join(dir, `big-${seed}-${i}.bin`), randomBytes(9 << 20));
  for (let i = 0; i < small; i++) {
    const sub = join(dir, `pkg${i % 13}`);
    mkdirSync(sub, { recursive: true });
    writeFileSync(join(sub, `f${seed}-${i}.bin`), randomBytes(40_000 + ((i * 7919) % 90_000)));
  }
  return dir;
}

/** Bytes S3 holds (s3rver keeps each object's bytes in `<key>._S3rver_object`): one full copy of everything saved. */
function bucketBytes(): number {
  let n = 0;
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else if (name.endsWith('._S3rver_object')) n += st.size;
    }
  };
  walk(s3.dir);
  return n;
}

/** Runs `vrift restore` on every node at once; resolves with each exit code and output. */
function restoreAll(ref: string, among: TestNode[]): Promise<{ node: TestNode; out: string; code: number; stdout: string; stderr: string }[]> {
  return Promise.all(
    among.map(
      (node) =>
        new Promise<{ node: TestNode; out: string; code: number; stdout: string; stderr: string }>((resolve) => {
          const out = join(tempDir('vrift-out-'), 'out');
          const p = spawn(process.execPath, [join(ROOT, 'bin', 'vrift.js'), 'restore', ref, out, '--json'], { env: { ...process.env, VRIFT_HOME: node.home, ...node.env } });
          let stdout = '';
          let stderr = '';
          p.stdout.on('data', (c) => (stdout += c));
          p.stderr.on('data', (c) => (stderr += c));
          p.on('close', (code) => resolve({ node, out, code: code ?? -1, stdout, stderr }));
        }),
    ),
  );
}

const metric = (node: TestNode, name: string) => (node.status().metrics[name] as number | undefined) ?? 0;
const s3Wire = (node: TestNode) => metric(node, 'vrift_tier_wire_bytes_received_total{tier="s3"}');
/** Pieces a node fetched in a swarm (from the origin or from peers). */
const swarmPieces = (node: TestNode) => metric(node, 'vrift_swarm_pieces_total{from="origin"}') + metric(node, 'vrift_swarm_pieces_total{from="peer"}');

/** Saves `src` to S3 as `ref` from a fresh home; returns the bytes that added to the bucket. */
function saveToS3(ref: string, src: string): number {
  const before = bucketBytes();
  expect(vriftJson(['save', ref, src], { home: tempDir('vrift-saver-'), env: tiers }).tiers[0].ok).toBe(true);
  return bucketBytes() - before;
}

beforeAll(async () => {
  s3 = await startS3(['vrift-crowd']);
  tiers = tierEnv({ s3, bucket: 'vrift-crowd' });
  // Small announce interval (the helper's), small trees swarm too.
  // (scrub off: the liar's own scrub would find what it is made to serve)
  nodes = await Promise.all(Array.from({ length: NODES }, (_, i) => makeNode(`n${i}`, { env: { ...tiers, VRIFT_SWARM_MIN_BYTES: '1M', VRIFT_SCRUB_BYTES_PER_SEC: '0' } })));
  await Promise.all(nodes.map((n) => n.startAsync()));
  for (const n of nodes.slice(1)) n.json(['node', 'join', nodes[0]!.addr()]);
  const ids = nodes.map((n) => n.peerId());
  await waitFor('every node to see the others', () => nodes.every((n, i) => (n.json(['node', 'peers']).peers as { id: string }[]).length >= ids.filter((_, j) => j !== i).length), 30_000);
}, 120_000);

afterAll(async () => {
  for (const n of nodes) n.stop();
  await s3?.stop();
});

describe('a flash crowd on six daemons', () => {
  it('every node restores the tree exactly, S3 serves at most two copies, and the nodes serve each other', async () => {
    const src = (sources.one = crowdTree(1, 3, 400));
    const packed = saveToS3('crowd/one', src); // (the first tree in the bucket)

    const before = nodes.map(s3Wire);
    const runs = await restoreAll('crowd/one', nodes);
    for (const r of runs) expect(r.code, `${r.node.name}: ${r.stderr}`).toBe(0);
    for (const r of runs) expect(same(r.out)).toEqual(same(src));

    const fromS3 = nodes.reduce((n, node, i) => n + s3Wire(node) - before[i]!, 0);
    const fromPeers = nodes.reduce((n, node) => n + metric(node, 'vrift_swarm_received_bytes_total{from="peer"}'), 0);
    const why = nodes.map((n) => `${n.name} ${JSON.stringify(n.status().swarms.map((w: { originAsks: unknown }) => w.originAsks))}`).join('; ');
    // eslint-disable-next-line no-console
    console.log(`origin requests by reason: ${why}\ncrowd: S3 sent ${(fromS3 / 1e6).toFixed(1)} MB for a tree of ${(packed / 1e6).toFixed(1)} MB in S3 (${(fromS3 / packed).toFixed(2)} copies); peers sent ${(fromPeers / 1e6).toFixed(1)} MB`);
    expect(fromS3, `origin requests by reason: ${why}`).toBeLessThanOrEqual(2 * packed);
    expect(fromPeers).toBeGreaterThan(2 * packed);
    for (const r of runs) expect(JSON.parse(r.stdout).from.peer?.blobs ?? 0, `${r.node.name} took nothing from its peers`).toBeGreaterThan(0);
  }, 180_000);

  it('a node alone takes the tree its own way: about one copy from S3, no pieces', async () => {
    const src = crowdTree(3, 1, 200);
    const packed = saveToS3('crowd/alone', src);
    const loner = nodes[4]!;
    const wire0 = s3Wire(loner);
    const pieces0 = swarmPieces(loner);
    const [r] = await restoreAll('crowd/alone', [loner]);
    expect(r!.code, r!.stderr).toBe(0);
    expect(same(r!.out)).toEqual(same(src));
    expect(s3Wire(loner) - wire0).toBeLessThanOrEqual(1.1 * packed);
    expect(swarmPieces(loner)).toBe(pieces0);
    expect(JSON.parse(r!.stdout).from.s3.blobs).toBeGreaterThan(0);
  }, 120_000);

  it('a node pulling a tree alone hands what it still lacks to a swarm as soon as a second node starts fetching it', async () => {
    const src = crowdTree(4, 2, 300);
    const packed = saveToS3('crowd/late', src);
    // Two new nodes that reach S3 over a slow link (2 MB/s a connection): a pull alone takes several seconds.
    const port = await freePort();
    const slow = serverProcess('throttle-proxy', process.execPath, [join(ROOT, 'test', 'helpers', 'throttle-proxy.mjs'), String(port), String(s3.port), String(2 << 20)], port, 10_000);
    await slow.start();
    const env = { ...tiers, VRIFT_S3_ENDPOINT: `http://127.0.0.1:${port}`, VRIFT_SWARM_MIN_BYTES: '1M' };
    const [early, late] = await Promise.all(['early', 'late'].map((name) => makeNode(name, { env })));
    try {
      for (const n of [early!, late!]) {
        n.start();
        n.json(['node', 'join', nodes[0]!.addr()]);
      }
      await waitFor('the two to see each other', () => (early!.json(['node', 'peers']).peers as { id: string }[]).some((p) => p.id === late!.peerId()), 30_000);
      const first = restoreAll('crowd/late', [early!]);
      await waitFor('the early node to be pulling alone', () => s3Wire(early!) > 1e6, 30_000);
      const second = restoreAll('crowd/late', [late!]);
      for (const [r] of [await first, await second]) {
        expect(r!.code, `${r!.node.name}: ${r!.stderr}`).toBe(0);
        expect(same(r!.out)).toEqual(same(src));
      }
      // The early node started alone (a plain pull from S3) and finished in the swarm.
      expect(swarmPieces(early!), 'the early node never joined the swarm').toBeGreaterThan(0);
      expect(s3Wire(early!) + s3Wire(late!)).toBeLessThanOrEqual(2 * packed);
    } finally {
      early!.stop();
      late!.stop();
      await slow.stop();
    }
  }, 180_000);

  it('a node killed in the middle of the crowd costs only its own pieces: the others finish exactly', async () => {
    const src = crowdTree(2, 6, 600);
    saveToS3('crowd/two', src);

    const victim = nodes[2]!;
    const runs = restoreAll('crowd/two', nodes);
    // Mid-way: once the victim has served something, or at the latest after a moment.
    await waitFor('the victim to serve a piece', () => metric(victim, 'vrift_swarm_served_bytes_total') > 0, 20_000).catch(() => undefined);
    victim.crash();
    const done = await runs;
    for (const r of done) {
      if (r.node === victim) continue;
      expect(r.code, `${r.node.name}: ${r.stderr}`).toBe(0);
      expect(same(r.out)).toEqual(same(src));
    }
  }, 180_000);

  it('a node that serves wrong bytes is caught piece by piece, penalized and dropped; the newcomer still restores exactly', async () => {
    // n1 holds crowd/one; its blobs are changed behind its back (test/helpers/lying-peer.ts), so it serves them wrong.
    const liar = nodes[1]!;
    const listing = liar.json(['ls', 'crowd/one']);
    const tree = listing.tree as string;
    const digests = (listing.entries as { digest?: string }[]).flatMap((e) => (e.digest ? [e.digest] : []));
    const store = Store.open(liar.home);
    try {
      corruptStoredBlobs(store, digests);
    } finally {
      await store.close();
    }
    // Two newcomers at once (they swarm together, with the holders).
    const newcomers = await Promise.all(['newcomer-a', 'newcomer-b'].map((name) => makeNode(name, { env: { ...tiers, VRIFT_SWARM_MIN_BYTES: '1M' } })));
    nodes.push(...newcomers);
    for (const n of newcomers) {
      n.start();
      n.json(['node', 'join', nodes[0]!.addr()]);
    }
    for (const n of newcomers) {
      await waitFor(`${n.name} to see the holders`, () => (n.json(['node', 'peers', '--tree', tree]).peers as { hasTree?: boolean }[]).filter((p) => p.hasTree).length >= 4, 30_000);
    }
    const runs = await restoreAll('crowd/one', newcomers);
    for (const r of runs) {
      expect(r.code, r.stderr).toBe(0);
      expect(same(r.out)).toEqual(same(sources.one!));
    }
    // The liar's pieces were refused (by the swarm's check, or the peer tier's when a newcomer pulled alone) and it is avoided.
    const penalties = newcomers.map((n) => (n.json(['node', 'peers']).peers as { id: string; penalty?: string }[]).find((p) => p.id === liar.peerId())?.penalty);
    expect(penalties.some((p) => p !== undefined), JSON.stringify(penalties)).toBe(true);
    const rejected = newcomers.reduce((sum, n) => sum + metric(n, 'vrift_swarm_rejected_pieces_total') + metric(n, `vrift_peer_mismatch_total{peer="${liar.peerId()}"}`), 0);
    expect(rejected).toBeGreaterThan(0);
  }, 180_000);
});
