// The contract every tier keeps, run against each one (local, redis, s3,
// peer, the chain) with a real server behind it. A new tier passes this
// suite before it joins the chain. A read-only tier (peers: a node stores
// only what it asks for) is given its content through the fixture's
// `seed`, straight into the backend, and must refuse writes.
// A test that does not apply to a tier is reported as skipped, with the
// reason: the tier's own (it is writable, has no size limit) or the one
// its fixture gives in `notApplicable`.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashBuffer, type Digest } from '../../src/lib/digest.js';
import { archiveChunks } from '../../src/node/archive/chunks.js';
import { readArchive } from '../../src/node/archive/reader.js';
import { ingest } from '../../src/node/store/ingest.js';
import { Store } from '../../src/node/store/store.js';
import { casSource } from '../../src/tiers/local.js';
import { bufferSource, isTierError, type BlobBody, type Tier, type TreePush } from '../../src/tiers/tier.js';
import { tempDir } from '../helpers/tmp.js';
import { writeSampleTree } from '../helpers/trees.js';

/** The tests a fixture may opt out of, each with the reason it does not apply to the tier. */
export interface NotApplicable {
  /** No `largeBlobBytes`: why the tier has no large-object path. */
  largeBlob?: string;
  /** No `fetchTree`: why the tier has no bulk (archive) form. */
  bulk?: string;
  /** No `breakIt`: why the tier cannot be failed by stopping its backend. */
  outage?: string;
}

export interface TierFixture {
  tier: Tier;
  /** A size above the tier's single-request limit (S3: the multipart part size; peers: one gRPC message), to test the large-object path. */
  largeBlobBytes?: number;
  /** For a read-only tier: puts content into its backend directly (what `put`/`setRef` do for the others). */
  seed?: {
    blob(digest: Digest, buf: Buffer): Promise<void>;
    ref(name: string, tree: Digest, times?: Digest): Promise<void>;
    /** Stores the tree at `dir` in the backend; resolves with its id once the tier can serve it. */
    tree(dir: string): Promise<Digest>;
  };
  /** Makes the tier's backend fail (stop its server); absent for tiers that cannot fail that way. */
  breakIt?(): Promise<void>;
  fixIt?(): Promise<void>;
  notApplicable?: NotApplicable;
  cleanup(): Promise<void>;
}

async function bytesOf(body: BlobBody | undefined): Promise<Buffer | undefined> {
  if (!body) return undefined;
  const chunks: Buffer[] = [];
  for await (const c of body.stream as AsyncIterable<Buffer>) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

function blob(n: number): { digest: Digest; buf: Buffer } {
  const buf = randomBytes(n);
  return { digest: hashBuffer(buf), buf };
}

export function tierSuite(name: string, make: () => Promise<TierFixture>): void {
  describe(`tier contract: ${name}`, () => {
    let fx: TierFixture;
    let tier: Tier;
    // A run-unique namespace, so suites sharing a server do not see each other's refs.
    const ns = `t${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;

    beforeAll(async () => {
      fx = await make();
      tier = fx.tier;
    });
    /** Skips the running test with the fixture's reason, or fails when the fixture gives none. */
    const notApplicable = (skip: (note: string) => never, what: keyof NotApplicable, lacking: string): never => {
      const why = fx.notApplicable?.[what];
      if (!why) throw new Error(`the ${name} fixture has no ${lacking}: give it one, or say why the test does not apply in notApplicable.${what}`);
      return skip(why);
    };
    const put = (digest: Digest, buf: Buffer): Promise<void> => (tier.writable ? tier.put(digest, bufferSource(buf)) : fx.seed!.blob(digest, buf));
    const setRef = (name: string, tree: Digest, times?: Digest): Promise<void> =>
      tier.writable ? tier.setRef(name, times === undefined ? { tree } : { tree, times }) : fx.seed!.ref(name, tree, times);
    afterAll(async () => {
      await fx?.cleanup();
    });

    it('reports absence as a value, never as an error', async () => {
      const { digest } = blob(10);
      expect(await tier.get(digest)).toBeUndefined();
      expect([...(await tier.has([digest]))]).toEqual([]);
      expect(await tier.getRef(`${ns}/absent`)).toBeUndefined();
      expect(await tier.listRefs(`${ns}/absent/`)).toEqual([]);
    });

    it('stores and serves blobs byte for byte (empty, small, a megabyte)', async () => {
      for (const size of [0, 1, 4096, 1 << 20]) {
        if (tier.maxBlobBytes !== undefined && size > tier.maxBlobBytes) continue;
        const b = blob(size);
        await put(b.digest, b.buf);
        expect((await bytesOf(await tier.get(b.digest)))!.equals(b.buf)).toBe(true);
      }
    });

    it('streams a large blob in and out (multipart where the tier has it)', async ({ skip }) => {
      if (!fx.largeBlobBytes) return notApplicable(skip, 'largeBlob', 'largeBlobBytes');
      const b = blob(fx.largeBlobBytes);
      await put(b.digest, b.buf);
      const body = await tier.get(b.digest);
      expect(body?.size).toBe(b.buf.length);
      expect((await bytesOf(body))!.equals(b.buf)).toBe(true);
    });

    it('refuses writes with a typed error when read-only (and has a way to be given content)', async ({ skip }) => {
      if (tier.writable) return skip('the tier is writable (the other tests write to it); it has no writes to refuse');
      expect(fx.seed).toBeDefined();
      const b = blob(10);
      await expect(tier.put(b.digest, bufferSource(b.buf))).rejects.toMatchObject({ code: 'ERR_VRIFT_TIER_CONFIG', tier: tier.name });
      await expect(tier.setRef(`${ns}/ro`, { tree: b.digest })).rejects.toMatchObject({ code: 'ERR_VRIFT_TIER_CONFIG', tier: tier.name });
      expect(await tier.get(b.digest)).toBeUndefined();
    });

    it('skips (does not fail on) blobs above its size limit', async ({ skip }) => {
      if (tier.maxBlobBytes === undefined) return skip('the tier has no blob size limit (maxBlobBytes)');
      const b = blob(tier.maxBlobBytes + 1);
      await put(b.digest, b.buf);
      expect(await tier.get(b.digest)).toBeUndefined();
    });

    it('answers presence for a large batch in one call', async () => {
      const stored = [blob(100), blob(200)];
      for (const b of stored) await put(b.digest, b.buf);
      const absent = Array.from({ length: 1500 }, () => blob(8).digest);
      const asked = [...absent.slice(0, 700), stored[0]!.digest, ...absent.slice(700), stored[1]!.digest];
      const got = await tier.has(asked);
      expect([...got].sort()).toEqual(stored.map((b) => b.digest).sort());
    });

    it('treats put as idempotent', async () => {
      const b = blob(333);
      await put(b.digest, b.buf);
      await put(b.digest, b.buf);
      expect((await bytesOf(await tier.get(b.digest)))!.equals(b.buf)).toBe(true);
    });

    it('sets, overwrites and lists refs, newest first', async () => {
      const [t1, t2, t3] = [blob(1).digest, blob(2).digest, blob(3).digest];
      await setRef(`${ns}/refs/a`, t1);
      await setRef(`${ns}/refs/a`, t2);
      expect(await tier.getRef(`${ns}/refs/a`)).toEqual({ tree: t2 });
      await new Promise((r) => setTimeout(r, 1100)); // S3 LastModified has 1 s resolution
      await setRef(`${ns}/refs/ünïcödé/b`, t3);
      expect(await tier.getRef(`${ns}/refs/ünïcödé/b`)).toEqual({ tree: t3 });
      const listed = await tier.listRefs(`${ns}/refs/`);
      expect(listed.map((r) => [r.name, r.tree])).toEqual([
        [`${ns}/refs/ünïcödé/b`, t3],
        [`${ns}/refs/a`, t2],
      ]);
      expect((await tier.listRefs(`${ns}/refs/`, 1)).length).toBe(1);
    });

    it('keeps the times blob a ref names beside its tree', async () => {
      const [tree, times] = [blob(1).digest, blob(2).digest];
      await setRef(`${ns}/timed/a`, tree, times);
      expect(await tier.getRef(`${ns}/timed/a`)).toEqual({ tree, times });
      expect((await tier.listRefs(`${ns}/timed/`)).map((r) => [r.name, r.tree, r.times])).toEqual([[`${ns}/timed/a`, tree, times]]);
      await setRef(`${ns}/timed/a`, tree); // a later save without times drops them
      expect(await tier.getRef(`${ns}/timed/a`)).toEqual({ tree });
    });

    it('stores a whole tree in bulk and serves it as archives', async ({ skip }) => {
      if (!tier.fetchTree) return notApplicable(skip, 'bulk', 'fetchTree');
      expect(tier.pushTree ?? fx.seed?.tree, 'a tier that serves archives has a way to be given a whole tree').toBeDefined();
      const home = tempDir('vrift-suite-src-');
      const src = tempDir('vrift-suite-tree-');
      writeSampleTree(src);
      const store = Store.open(home);
      try {
        const { tree } = await ingest(store, src);
        const entries = store.getTree(tree).entries;
        if (tier.pushTree) {
          const push: TreePush = {
            tree,
            encoded: store.cas.readVerified(tree),
            entries,
            bases: [],
            source: (d, size) => casSource(store, d, size),
            archive: (list, onBlob) => archiveChunks(store, list, { onBlob }),
            baseEntries: () => undefined,
          };
          await tier.pushTree(push);
          expect((await tier.pushTree(push)).present).toBe(true);
        } else {
          expect(await fx.seed!.tree(src)).toBe(tree);
        }
        const want = new Set(entries.filter((e) => e.kind === 'file').map((e) => e.digest!));
        const parts = await tier.fetchTree(tree, want);
        expect(parts?.length).toBeGreaterThan(0);
        const dest = Store.open(tempDir('vrift-suite-dst-'));
        try {
          for (const p of parts!) {
            await readArchive(dest.admission, await p.open(), { from: 'test', want: (d) => want.has(d), onAdmit: (d) => want.delete(d) });
          }
          // What packs do not hold (large blobs) the tier serves one by one.
          for (const d of [...want]) {
            if (await tier.get(d)) want.delete(d);
          }
          expect(want.size).toBe(0);
        } finally {
          await dest.close();
        }
        expect(await tier.fetchTree(blob(5).digest, new Set())).toBeUndefined();
      } finally {
        await store.close();
      }
    });

    it('serves one blob of a tree stored in bulk by its tree (getInTree), and nothing else', async ({ skip }) => {
      if (!tier.getInTree) return skip('the tier has no per-tree form of get (getInTree)');
      if (!tier.pushTree && !fx.seed?.tree) return notApplicable(skip, 'bulk', 'pushTree');
      const home = tempDir('vrift-suite-src-');
      const src = tempDir('vrift-suite-tree-');
      writeSampleTree(src);
      const store = Store.open(home);
      try {
        const { tree } = await ingest(store, src);
        const entries = store.getTree(tree).entries;
        if (tier.pushTree) {
          await tier.pushTree({
            tree,
            encoded: store.cas.readVerified(tree),
            entries,
            bases: [],
            source: (d, size) => casSource(store, d, size),
            archive: (list, onBlob) => archiveChunks(store, list, { onBlob }),
            baseEntries: () => undefined,
          });
        } else {
          expect(await fx.seed!.tree(src)).toBe(tree);
        }
        let served = 0;
        for (const e of entries.filter((x) => x.kind === 'file')) {
          const got = await bytesOf(await tier.getInTree(tree, e.digest!));
          // A blob the tier keeps on its own (S3: a large one) may be left to `get`.
          if (got === undefined) expect(await tier.get(e.digest!)).toBeDefined();
          else {
            expect(got.equals(store.cas.readVerified(e.digest!)), e.path).toBe(true);
            served++;
          }
        }
        expect(served).toBeGreaterThan(0);
        expect(await tier.getInTree(tree, blob(6).digest)).toBeUndefined();
        expect(await tier.getInTree(blob(7).digest, entries.find((x) => x.kind === 'file')!.digest!)).toBeUndefined();
      } finally {
        await store.close();
      }
    });

    it('fails with a typed, transient error when its backend is down', async ({ skip }) => {
      if (!fx.breakIt) return notApplicable(skip, 'outage', 'breakIt');
      await fx.breakIt();
      try {
        const err = await tier.get(blob(4).digest).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(isTierError(err)).toBe(true);
        expect((err as { code: string }).code).toBe('ERR_VRIFT_TIER_UNAVAILABLE');
        expect((err as { transient: boolean }).transient).toBe(true);
        expect((err as Error).message).toMatch(new RegExp(`^${tier.name}: `));
      } finally {
        await fx.fixIt?.();
      }
      // Back in service once the backend is (within the tier's reconnect and breaker cool-down: a few seconds at most).
      const b = blob(77);
      await put(b.digest, b.buf);
      let got: Buffer | undefined;
      for (const deadline = Date.now() + 10_000; !got && Date.now() < deadline; ) {
        got = await bytesOf(await tier.get(b.digest).catch(() => undefined));
        if (!got) await new Promise((r) => setTimeout(r, 200));
      }
      expect(got?.equals(b.buf)).toBe(true);
    });
  });
}
