// The blob index read in pages (Meta.blobDigestsAfter): a lazy mount
// counts its local blobs from the index a page per turn of the event loop
// when the index is the smaller side; every digest once, in key order,
// whatever the page size, and a page that resumes after a digest removed
// meanwhile skips nothing.
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { Store } from '../../src/node/store/store.js';
import { tempDir } from '../helpers/tmp.js';

const opened: Store[] = [];
afterAll(async () => {
  for (const s of opened.splice(0)) await s.close();
});

describe('blob index pages', () => {
  it('gives every digest once, in order, for any page size, and resumes after a removed digest', async () => {
    const store = Store.open(tempDir());
    opened.push(store);
    const digests = Array.from({ length: 23 }, () => randomBytes(32).toString('hex')).sort();
    for (const d of digests) store.meta.putBlob(d, { size: 1, lastUse: 0 });
    await store.meta.flush();
    expect(store.meta.blobDigestsAfter(undefined, 100)).toEqual(digests);
    for (const page of [1, 2, 5, 22, 23]) {
      const seen: string[] = [];
      let after: string | undefined;
      for (;;) {
        const keys = store.meta.blobDigestsAfter(after, page);
        expect(keys.length).toBeLessThanOrEqual(page);
        seen.push(...keys);
        if (keys.length < page) break;
        after = keys[keys.length - 1];
      }
      expect(seen, `page ${page}`).toEqual(digests);
    }
    // Resuming after a digest that is no longer there.
    store.meta.removeBlob(digests[4]!);
    await store.meta.flush();
    await new Promise((r) => setTimeout(r, 2)); // (lmdb renews its read snapshot on the next macrotask)
    expect(store.meta.blobDigestsAfter(digests[4], 3)).toEqual(digests.slice(5, 8));
    expect(store.meta.blobDigestsAfter(digests[3], 3)).toEqual(digests.slice(5, 8));
  });
});
