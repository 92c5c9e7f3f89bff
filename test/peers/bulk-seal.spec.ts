// The bulk port speaks sealed frames (AES-256-GCM under a session key
// that only the member who asked for the ticket over authenticated gRPC
// holds: docs/peers.md, "The bulk stream"). With real daemons on
// loopback: the archive is on the wire only encrypted; a wrong key, a
// tampered proof, a replayed ticket or an old TLS client gets no byte;
// and a node whose frames arrive altered is caught, counted as a liar,
// and the restore completes exact from another holder.
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeNode, tamperPeerEnv, waitForPeers, type TestNode } from '../helpers/cluster.js';
import { bulkHello, memberTls, openBulkTicket, openFrames, rawBulk } from '../helpers/peer-tls.js';
import { tempDir } from '../helpers/tmp.js';
import { snapshotTree, treeMode } from '../helpers/trees.js';

let a: TestNode; // an honest holder
let t: TestNode; // a holder whose bulk frames arrive altered (test/helpers/tamper-peer.mjs)
let c: TestNode; // restores
let src: string;
let tree: string;
let sample: Buffer; // bytes of one file: never on the wire in clear
const ids: Record<string, string> = {};

beforeAll(async () => {
  [a, t, c] = await Promise.all([makeNode('a'), makeNode('t'), makeNode('c')]);
  await Promise.all([a.startAsync(), t.startAsync(tamperPeerEnv()), c.startAsync()]);
  for (const n of [a, t, c]) ids[n.name] = n.peerId();
  src = join(tempDir(), 'src');
  mkdirSync(src);
  for (let i = 0; i < 8; i++) writeFileSync(join(src, `f${i}.bin`), randomBytes(1 << 20));
  sample = randomBytes(3 << 20);
  writeFileSync(join(src, 'big.bin'), sample);
  tree = a.json(['ingest', src, '--ref', 'ci/sealed']).tree;
  expect(t.json(['ingest', src, '--ref', 'ci/sealed']).tree).toBe(tree);
  c.json(['node', 'join', a.addr()]);
  t.json(['node', 'join', a.addr()]);
  await waitForPeers(c, [ids.a!, ids.t!], tree);
});
afterAll(() => {
  for (const n of [a, t, c]) n?.stop();
});

const bulkPort = (n: TestNode) => Number(n.status().addresses.bulk.split(':')[1]);
const refused = (n: TestNode, reason: string) => (n.status().metrics[`vrift_peer_refused_total{reason="${reason}"}`] as number | undefined) ?? 0;
/** A run of the sample's bytes, to look for on the wire. */
const needle = () => sample.subarray(1 << 20, (1 << 20) + 4096);

describe('the bulk port', () => {
  it('sends the archive only sealed: the wire never holds it in clear; the session key opens it', async () => {
    const ticket = await openBulkTicket(a.status().addresses.grpc, tree);
    const wire = await rawBulk(bulkPort(a), bulkHello(ticket));
    expect(wire.byteLength).toBeGreaterThan(ticket.bytes);
    expect(wire.includes(needle())).toBe(false);
    const { plain, ended } = openFrames(ticket, wire);
    expect(ended).toBe(true);
    expect(plain.includes(needle())).toBe(true);
  });

  it('gives a wrong key nothing, and keeps the ticket for the member who holds the right one', async () => {
    const ticket = await openBulkTicket(a.status().addresses.grpc, tree);
    const before = refused(a, 'bulk-proof');
    const forged = await rawBulk(bulkPort(a), bulkHello({ token: ticket.token, key: randomBytes(32) }));
    expect(forged.byteLength).toBe(0);
    expect(refused(a, 'bulk-proof')).toBe(before + 1);
    const wire = await rawBulk(bulkPort(a), bulkHello(ticket));
    expect(openFrames(ticket, wire).ended).toBe(true);
  });

  it('gives a tampered proof nothing: a flipped bit in its ciphertext, its tag or its length', async () => {
    const ticket = await openBulkTicket(a.status().addresses.grpc, tree);
    const hello = bulkHello(ticket);
    const before = refused(a, 'bulk-proof');
    // Bytes 40…43 are the sealed proof's length (its top byte: past the 1 MiB limit), then its ciphertext, then its tag.
    for (const at of [40, 40 + 4 + 5, hello.byteLength - 1]) {
      const bad = Buffer.from(hello);
      bad[at]! ^= 0x01;
      expect((await rawBulk(bulkPort(a), bad)).byteLength).toBe(0);
    }
    expect(refused(a, 'bulk-proof')).toBe(before + 3);
  });

  it('gives a replayed ticket nothing: an eavesdropper who saw a member use it', async () => {
    const ticket = await openBulkTicket(a.status().addresses.grpc, tree);
    const hello = bulkHello(ticket); // what went over the wire, in full
    expect(openFrames(ticket, await rawBulk(bulkPort(a), hello)).ended).toBe(true);
    const before = refused(a, 'bulk-ticket');
    expect((await rawBulk(bulkPort(a), hello)).byteLength).toBe(0);
    expect(refused(a, 'bulk-ticket')).toBe(before + 1);
  });

  it('gives an old TLS client (and a stranger) no byte', async () => {
    const before = refused(a, 'bulk-ticket');
    const got = await new Promise<number>((resolve) => {
      const s = memberTls(bulkPort(a));
      let bytes = 0;
      s.on('secureConnect', () => s.write(Buffer.concat([Buffer.from('VRIFTBK1'), Buffer.alloc(32, 7)])));
      s.on('data', (d: Buffer) => (bytes += d.byteLength));
      s.on('error', () => undefined);
      s.on('close', () => resolve(bytes));
    });
    expect(got).toBe(0);
    expect((await rawBulk(bulkPort(a), Buffer.concat([Buffer.from('VRIFTBK2'), randomBytes(32)]))).byteLength).toBe(0);
    expect(refused(a, 'bulk-ticket')).toBe(before + 2);
  });
});

describe('a peer whose frames arrive altered', () => {
  it('is caught before a byte is used, counted as a liar and avoided; the restore completes exact from the honest holder', async () => {
    const out = join(tempDir(), 'out');
    // Split the backfill in two, one part per holder: the tampered one fails, its part is reopened on the other.
    const r = c.run(['restore', 'ci/sealed', out, '--json'], { VRIFT_PEER_MIN_PART: '1M', VRIFT_PEER_SPREAD: '2' });
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout);
    expect(res.tree).toBe(tree);
    expect(snapshotTree(out, { mode: treeMode })).toEqual(snapshotTree(src, { mode: treeMode }));
    expect(r.stderr).toMatch(/failed its authentication tag/);
    expect(res.metrics[`vrift_peer_mismatch_total{peer="${ids.t}"}`]).toBe(1);
    expect(res.metrics[`vrift_peer_mismatch_total{peer="${ids.a}"}`]).toBeUndefined();
    expect(c.json(['verify'])).toMatchObject({ ok: true, corrupt: [] });
    const liar = (c.json(['node', 'peers']).peers as { id: string; penalizedUntil?: number; penalty?: string }[]).find((p) => p.id === ids.t)!;
    expect(liar.penalizedUntil).toBeGreaterThan(Date.now());
    expect(liar.penalty).toMatch(/authentication tag/);
  });
});
