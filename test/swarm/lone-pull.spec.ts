// A node that pulls a tree no other node fetches pulls it alone
// (src/node/daemon/swarm-host.ts): after waiting ALONE_WAIT_MS for a crowd
// to form while some member lacks the tree (it could start fetching it
// too), and at once when every member already holds it (none can). Real
// daemons on loopback; which way each pull went is counted in
// `vrift_swarm_lone_pulls_total{why}`.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeNode, startAll, waitForPeers, type TestNode } from '../helpers/cluster.js';
import { tempDir } from '../helpers/tmp.js';
import { writeSampleTree } from '../helpers/trees.js';

// Every pull of these small trees is worth a swarm (the default is 32 MiB missing).
const env = { VRIFT_SWARM_MIN_BYTES: '0' };
let holder: TestNode;
let puller: TestNode;
let lacking: TestNode | undefined;

const lone = (n: TestNode, why: string): number => (n.status().metrics[`vrift_swarm_lone_pulls_total{why="${why}"}`] as number | undefined) ?? 0;

/** A tree of its own (a random file beside the sample), ingested by `n`. */
function ingestTree(n: TestNode): string {
  const src = tempDir();
  writeSampleTree(src);
  writeFileSync(join(src, 'own.bin'), randomBytes(256 << 10));
  return n.json(['ingest', src]).tree as string;
}

beforeAll(async () => {
  holder = await makeNode('holder', { env });
  puller = await makeNode('puller', { env });
  await startAll([holder, puller]);
  puller.run(['node', 'join', holder.addr()]);
}, 60_000);
afterAll(() => {
  lacking?.stop();
  puller?.stop();
  holder?.stop();
});

describe('a pull no other node fetches', () => {
  it('goes at once when every member holds the tree', async () => {
    const tree = ingestTree(holder);
    await waitForPeers(puller, [holder.peerId()], tree);
    const before = { all: lone(puller, 'all-hold'), none: lone(puller, 'none-came') };
    const r = puller.json(['pull', tree]);
    expect(r.fetched).toBeGreaterThan(0);
    expect(r.from.peer.blobs).toBe(r.fetched);
    expect(lone(puller, 'all-hold')).toBe(before.all + 1);
    expect(lone(puller, 'none-came')).toBe(before.none);
  }, 60_000);

  it('waits for a crowd while some member lacks the tree', async () => {
    lacking = await makeNode('lacking', { env });
    await startAll([lacking]);
    lacking.run(['node', 'join', holder.addr()]);
    // Another tree, held by the holder alone.
    const tree = ingestTree(holder);
    await waitForPeers(puller, [holder.peerId(), lacking.peerId()]);
    await waitForPeers(puller, [holder.peerId()], tree);
    const before = { all: lone(puller, 'all-hold'), none: lone(puller, 'none-came') };
    const r = puller.json(['pull', tree]);
    expect(r.fetched).toBeGreaterThan(0);
    expect(r.from.peer.blobs).toBe(r.fetched);
    expect(lone(puller, 'none-came')).toBe(before.none + 1);
    expect(lone(puller, 'all-hold')).toBe(before.all);
  }, 60_000);
});
