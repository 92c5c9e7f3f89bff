// Refs served by peers are signed too (issue 13, hole 5): a node serves its
// refs as records signed by its key, and a reader checks them as it checks
// Redis's and S3's (refs.trust). Real daemons joined in a mesh.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clusterKeys } from '../../src/node/cluster/auth.js';
import { parseRefRecord, RefSigner, verifyRefRecord } from '../../src/lib/ref-signature.js';
import { PeerConnection } from '../../src/tiers/peer/client.js';
import { makeNode, SECRET, startAll, waitForPeers, type TestNode } from '../helpers/cluster.js';
import { vriftJson } from '../helpers/cli.js';
import { startS3, tierEnv } from '../helpers/s3-server.js';
import { tempDir } from '../helpers/tmp.js';
import { writeSampleTree } from '../helpers/trees.js';

let a: TestNode;
let b: TestNode;
let tree: string;
let keyA: string;

beforeAll(async () => {
  [a, b] = await Promise.all([makeNode('a'), makeNode('b')]);
  await startAll([a, b]);
  b.json(['node', 'join', a.addr()]);
  await waitForPeers(b, [a.peerId()]);
  const src = tempDir();
  writeSampleTree(src);
  tree = a.json(['ingest', src, '--ref', 'ci/peer-ref']).tree as string;
  keyA = a.json(['ref', 'key']).key as string;
  await waitForPeers(b, [a.peerId()], tree);
});
afterAll(() => {
  a?.stop();
  b?.stop();
});

describe('refs from peers', () => {
  it('a node serves its refs as records signed by its key', async () => {
    const c = new PeerConnection({ id: 'a', grpc: a.status().addresses.grpc }, { auth: clusterKeys(SECRET).auth, tls: clusterKeys(SECRET).tls, self: 'test', timeoutMs: 5000, maxMessageBytes: 4 << 20 });
    try {
      const got = await c.getRef('ci/peer-ref');
      const rec = parseRefRecord(got!.record);
      expect(typeof rec).toBe('object');
      if (typeof rec === 'string') return;
      expect(rec).toMatchObject({ tree, key: keyA });
      expect(verifyRefRecord('ci/peer-ref', rec)).toBe(true);
      const listed = await c.listRefs('ci/', 10);
      expect(listed.find((r) => r.name === 'ci/peer-ref')!.record).toBe(got!.record);
    } finally {
      c.close();
    }
  });

  it("a reader takes a peer's ref when refs.trust allows its key, and refuses it, saying why, when it does not", () => {
    // (refused first: an accepted ref is recorded on B, and local refs are B's own)
    const refused = b.run(['restore', 'ci/peer-ref', join(tempDir(), 'out')], { VRIFT_REF_TRUST: 'ci/=ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(new RegExp(`refs: peer's ref "ci/peer-ref" .* was refused: it is signed by ${keyA.replace(/[-+]/g, '\\$&')}, which may not write refs under "ci/"`));
    const ok = b.run(['restore', 'ci/peer-ref', join(tempDir(), 'out'), '--json'], { VRIFT_REF_TRUST: `ci/=${keyA}` });
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout).tree).toBe(tree);
  });
});

describe('a ref a node learned from a shared tier', () => {
  it("is served by that node with its writer's record, so a reader that trusts only the writer takes it from the peer", async () => {
    const s3 = await startS3(['vrift-learned']);
    const s3Env = tierEnv({ s3 });
    // A CI job with its own key saves the ref to S3; node L restores it from S3 (and learns it); node R has no S3, only L.
    const keyFile = join(tempDir(), 'ci.pem');
    writeFileSync(keyFile, RefSigner.generatePem(), { mode: 0o600 });
    const job = tempDir();
    const src = tempDir();
    writeSampleTree(src);
    const saved = vriftJson(['save', 'ci/learned', src], { home: job, env: { ...s3Env, VRIFT_SIGNING_KEY: keyFile } });
    const ciKey = vriftJson<{ key: string }>(['ref', 'key'], { home: job, env: { VRIFT_SIGNING_KEY: keyFile } }).key;
    const [l, r] = await Promise.all([makeNode('l', { env: s3Env }), makeNode('r')]);
    try {
      await startAll([l, r]);
      r.json(['node', 'join', l.addr()]);
      await waitForPeers(r, [l.peerId()]);
      expect(l.json(['restore', 'ci/learned', join(tempDir(), 'out')]).tree).toBe(saved.tree);
      expect(l.json(['ref', 'list']).refs.find((x: { name: string }) => x.name === 'ci/learned')).toMatchObject({ tree: saved.tree, signedBy: ciKey });
      await waitForPeers(r, [l.peerId()], saved.tree);
      const got = r.run(['restore', 'ci/learned', join(tempDir(), 'out'), '--json'], { VRIFT_REF_TRUST: `ci/=${ciKey}` });
      expect(got.code, got.stderr).toBe(0);
      expect(JSON.parse(got.stdout)).toMatchObject({ tree: saved.tree, refFrom: 'peer' });
    } finally {
      l.stop();
      r.stop();
      await s3.stop();
    }
  });
});
