// The small parts of the cluster, without daemons: generated types match
// the .proto, call credentials, the Bloom summary, splitting a backfill,
// and the archive writer of peers (also when its store lies).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hashBuffer } from '../../src/lib/digest.js';
import { archiveChunks } from '../../src/node/archive/chunks.js';
import { readArchive } from '../../src/node/archive/reader.js';
import { parseAnnouncement } from '../../src/node/cluster/announcement.js';
import { RingWriter, writeArchive } from '../../src/node/archive/ring-writer.js';
import { Bloom } from '../../src/node/cluster/bloom.js';
import { addressKey } from '../../src/node/cluster/conn-gate.js';
import { CallVerifier, clusterKeys, signCall } from '../../src/node/cluster/auth.js';
import { PEER_METHODS, packDigests, peerProto, unpackDigests } from '../../src/node/cluster/wire.js';
import { Store } from '../../src/node/store/store.js';
import { split } from '../../src/tiers/peer/peer.js';
import { ROOT } from '../helpers/cli.js';
import { corruptStoredBlobs } from '../helpers/lying-peer.js';
import { tempDir } from '../helpers/tmp.js';

const files = (d: string): string[] => readdirSync(d).flatMap((n) => (statSync(join(d, n)).isDirectory() ? files(join(d, n)) : [join(d, n)]));

describe('proto/peer.proto', () => {
  it('has up-to-date generated types in src/gen (run `node scripts/gen-proto.mjs` after changing it)', () => {
    const out = tempDir();
    execFileSync(process.execPath, [join(ROOT, 'scripts', 'gen-proto.mjs'), out], { cwd: ROOT, stdio: 'pipe' });
    const gen = join(ROOT, 'src', 'gen');
    const want = Object.fromEntries(files(out).map((f) => [relative(out, f), readFileSync(f, 'utf8')]));
    const mine = files(gen).filter((f) => relative(gen, f) !== 'layout.ts'); // gen-layout.mjs's, checked by layout-golden.spec.ts
    const have = Object.fromEntries(mine.map((f) => [relative(gen, f), readFileSync(f, 'utf8')]));
    expect(have).toEqual(want);
  });

  it('defines the methods the code calls, with the right streaming', () => {
    const { service } = peerProto();
    const paths = Object.fromEntries(Object.entries(service).map(([k, m]) => [k, [m.path, m.requestStream, m.responseStream]]));
    expect(paths).toEqual({
      Has: [PEER_METHODS.has, false, false],
      GetBlob: [PEER_METHODS.getBlob, false, true],
      GetArchive: [PEER_METHODS.getArchive, false, true],
      OpenBulk: [PEER_METHODS.openBulk, false, false],
      OpenSwarm: [PEER_METHODS.openSwarm, false, false],
      GetRef: [PEER_METHODS.getRef, false, false],
      ListRefs: [PEER_METHODS.listRefs, false, false],
    });
  });

  it('packs digests 32 bytes each, and refuses a ragged list', () => {
    const ds = [hashBuffer(Buffer.from('a')), hashBuffer(Buffer.from('b'))];
    expect(packDigests(ds).byteLength).toBe(64);
    expect(unpackDigests(packDigests(ds))).toEqual(ds);
    expect(unpackDigests(Buffer.alloc(33))).toBeUndefined();
  });
});

describe('cluster credentials', () => {
  const keys = clusterKeys('a secret of sufficient length');

  it('derives distinct keys, the same on every node', () => {
    const again = clusterKeys('a secret of sufficient length');
    expect(again.auth.equals(keys.auth)).toBe(true);
    expect(Buffer.from(keys.psk).toString()).toMatch(/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}$/);
    expect(Buffer.from(keys.psk).toString()).not.toContain(keys.auth.toString('hex'));
    expect(clusterKeys('another secret, as long').id).not.toBe(keys.id);
  });

  it('accepts a credential once, for its method, within the time window', () => {
    const v = new CallVerifier(keys.auth);
    const now = Date.now();
    const cred = signCall(keys.auth, 'peer-1', PEER_METHODS.has, now);
    expect(v.verify(cred, PEER_METHODS.getRef, now)).toMatchObject({ ok: false, reason: 'wrong cluster secret' });
    expect(v.verify(cred, PEER_METHODS.has, now)).toEqual({ ok: true, peer: 'peer-1' });
    expect(v.verify(cred, PEER_METHODS.has, now)).toMatchObject({ ok: false, reason: 'credentials replayed' });
    expect(v.verify(signCall(clusterKeys('the wrong secret entirely').auth, 'x', PEER_METHODS.has), PEER_METHODS.has)).toMatchObject({ ok: false, reason: 'wrong cluster secret' });
    expect(v.verify(signCall(keys.auth, 'x', PEER_METHODS.has, now - 10 * 60_000), PEER_METHODS.has, now)).toMatchObject({ ok: false, reason: expect.stringMatching(/expired/) });
    expect(v.verify(undefined, PEER_METHODS.has)).toMatchObject({ ok: false, reason: expect.stringMatching(/no credentials/) });
    expect(v.verify('v1.a.b.c.d', PEER_METHODS.has)).toMatchObject({ ok: false, reason: 'malformed credentials' });
  });

  it('bounds the memory of nonces it keeps', () => {
    const v = new CallVerifier(keys.auth, 3);
    for (let i = 0; i < 3; i++) expect(v.verify(signCall(keys.auth, 'p', 'm'), 'm').ok).toBe(true);
    expect(v.verify(signCall(keys.auth, 'p', 'm'), 'm')).toMatchObject({ ok: false, reason: expect.stringMatching(/too many/) });
  });
});

describe('the blob summary (Bloom filter)', () => {
  it('never forgets a blob, and rarely claims one it lacks', () => {
    const held = Array.from({ length: 20_000 }, () => randomBytes(32).toString('hex'));
    const bloom = Bloom.sized(held.length);
    for (const d of held) bloom.add(d);
    expect(held.every((d) => bloom.mayHave(d))).toBe(true);
    const others = Array.from({ length: 20_000 }, () => randomBytes(32).toString('hex'));
    expect(others.filter((d) => bloom.mayHave(d)).length / others.length).toBeLessThan(0.03);
    expect(bloom.bits.byteLength).toBeLessThanOrEqual(256 << 10);
  });
});

describe('announcements from the wire', () => {
  const good = { v: 1, grpc: '10.0.0.5:7402', addrs: ['/ip4/10.0.0.5/tcp/7401/p2p/12D3KooWx'], trees: [hashBuffer(Buffer.from('t'))], treeCount: 1, blobs: 3, bloom: Buffer.alloc(128).toString('base64'), bloomK: 7 };
  const enc = (v: unknown) => Buffer.from(JSON.stringify(v));

  it('takes a well-formed one', () => {
    expect(parseAnnouncement(enc(good))).toEqual(good);
    expect(parseAnnouncement(enc({ v: 1, grpc: '[::1]:7402', addrs: [], bye: true }))).toMatchObject({ bye: true });
    // A node fetching a tree in a swarm says so, with its bitfield.
    const swarming = { ...good, fetching: [good.trees[0]], have: [Buffer.from([0xf0, 0x80]).toString('base64')] };
    expect(parseAnnouncement(enc(swarming))).toEqual(swarming);
  });

  it('drops anything malformed', () => {
    const bad = [
      Buffer.from('not json'),
      enc(null),
      enc({ ...good, v: 2 }),
      enc({ ...good, grpc: 'host:port; rm -rf /' }),
      enc({ ...good, trees: ['nope'] }),
      enc({ ...good, trees: Array.from({ length: 1001 }, () => good.trees[0]) }),
      enc({ ...good, addrs: Array.from({ length: 17 }, () => 'x') }),
      enc({ ...good, blobs: -0.5 }),
      enc({ ...good, bloom: Buffer.alloc(100).toString('base64') }), // not a power of two
      enc({ ...good, bloom: Buffer.alloc(512 << 10).toString('base64') }), // too large
      enc({ ...good, bloomK: 9 }),
      enc({ ...good, fetching: ['nope'] }),
      enc({ ...good, fetching: Array.from({ length: 17 }, () => good.trees[0]) }),
      enc({ ...good, fetching: [good.trees[0]], have: [] }), // a bitfield per tree
      enc({ ...good, fetching: [good.trees[0]], have: ['A'.repeat(20_000)] }), // too large
    ];
    for (const b of bad) expect(parseAnnouncement(b)).toBeUndefined();
  });
});

describe('splitting a backfill', () => {
  it('gives each peer about the same bytes', () => {
    const sizes = new Map<string, number>();
    const list = Array.from({ length: 200 }, (_, i) => {
      const d = hashBuffer(Buffer.from(String(i)));
      sizes.set(d, (i % 17) * 1000 + 1);
      return d;
    });
    const bins = split(list, 3, sizes);
    expect(bins).toHaveLength(3);
    expect(bins.flat().sort()).toEqual([...list].sort());
    const bytes = bins.map((b) => b.reduce((n, d) => n + sizes.get(d)!, 0));
    expect(Math.max(...bytes) - Math.min(...bytes)).toBeLessThanOrEqual(16_001);
    expect(split(list, 1, sizes)).toEqual([list]);
  });
});

describe('the archive writer of peers', () => {
  /** What writeArchive sends, collected from a sink. */
  async function written(store: Store, blobs: { digest: string; size: number }[]): Promise<Buffer> {
    const parts: Buffer[] = [];
    const out = new RingWriter({ write: (b, done) => (parts.push(Buffer.from(b)), setImmediate(done)), closed: () => undefined });
    await writeArchive(store, blobs, out);
    await out.flush();
    await out.drained();
    return Buffer.concat(parts);
  }

  it('writes what archiveChunks writes, byte for byte', async () => {
    const src = Store.open(tempDir());
    try {
      const blobs = [Buffer.from('first'), Buffer.alloc(3 << 20, 7), Buffer.alloc(0), randomBytes(1500)].map((b) => src.putBlob(b));
      const list = blobs.map((b) => ({ digest: b.digest, size: b.size }));
      const ref: Buffer[] = [];
      for await (const c of archiveChunks(src, list)) ref.push(c);
      expect((await written(src, list)).equals(Buffer.concat(ref))).toBe(true);
    } finally {
      await src.close();
    }
  });

  it('sends blobs changed on disk behind its back as they are (size and mtime untouched), framed, so the reader rejects each and reads on', async () => {
    const src = Store.open(tempDir());
    const dst = Store.open(tempDir());
    try {
      const blobs = [Buffer.from('first'), Buffer.alloc(3 << 20, 7), Buffer.alloc(0), Buffer.from('last')].map((b) => src.putBlob(b));
      const want = new Set(blobs.map((b) => b.digest));
      corruptStoredBlobs(src, blobs.filter((b) => b.size > 0).map((b) => b.digest)); // the empty blob has no byte to change
      const arc = await written(src, blobs.map((b) => ({ digest: b.digest, size: b.size })));
      const res = await readArchive(dst.admission, [arc], { from: 'test', want: (d) => want.has(d) });
      expect(res.blobs).toBe(4);
      // Sorted: a batched blob (≤ 1 MiB) is rejected when its batch is written, after a streamed one that came later.
      expect(res.rejected.map((r) => r.digest).sort()).toEqual(blobs.filter((b) => b.size > 0).map((b) => b.digest).sort());
      expect(res.admitted).toBe(1); // the empty blob
    } finally {
      await Promise.all([src.close(), dst.close()]);
    }
  });
});

describe('connection gate: what one address is', () => {
  it('an IPv4 address (also IPv4-mapped), or an IPv6 /64', () => {
    expect(addressKey('10.0.0.7')).toBe('10.0.0.7');
    expect(addressKey('::ffff:10.0.0.7')).toBe('10.0.0.7');
    expect(addressKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8:1:2:bbbb:cccc:dddd:eeee')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:DB8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
  });
});
