// The local tier: this host's CAS and refs, behind the Tier interface.
// What is put into it enters through the store's one door (admission:
// hashed on the way in, named only if it matches).
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Transform, type TransformCallback } from 'node:stream';
import { StreamHasher, type Digest } from '../lib/digest.js';
import { errnoOf, fsError } from '../lib/errors.js';
import { corruptBlob, missingBlob } from '../node/store/cas.js';
import type { Store } from '../node/store/store.js';
import type { BlobBody, BlobSource, RefInfo, RefTarget, Tier, TierContext, TierFactory } from './tier.js';

export class LocalTier implements Tier {
  readonly name = 'local';
  readonly writable = true;
  readonly parallelism = 64;

  constructor(readonly store: Store) {}

  async has(digests: readonly Digest[]): Promise<Set<Digest>> {
    return new Set(digests.filter((d) => this.store.cas.has(d)));
  }

  async get(digest: Digest): Promise<BlobBody | undefined> {
    const st = this.store.cas.statOf(digest);
    if (!st) return undefined;
    return { stream: createReadStream(this.store.cas.pathOf(digest)), size: st.size };
  }

  async put(digest: Digest, source: BlobSource): Promise<void> {
    await this.store.admission.stream(digest, { stream: source.open(), size: source.size }, this.name, source.size);
  }

  async getRef(name: string): Promise<RefTarget | undefined> {
    return this.store.getRefTarget(name);
  }

  async setRef(name: string, target: RefTarget): Promise<void> {
    this.store.setRef(name, target.tree, { times: target.times });
    await this.store.meta.flush(); // LMDB writes are asynchronous: read-your-writes needs the commit
  }

  async listRefs(prefix: string, limit = 100): Promise<RefInfo[]> {
    return this.store
      .listRefs()
      .filter((r) => r.name.startsWith(prefix))
      .sort((a, b) => b.updatedAt - a.updatedAt)
      .slice(0, limit);
  }

  async close(): Promise<void> {
    await this.store.meta.flush();
  }

  /** The local bytes of a blob, as a source for a remote tier (verified as they are read). */
  source(digest: Digest, size: number): BlobSource {
    return casSource(this.store, digest, size);
  }
}

/** A local blob as a BlobSource: read whole or streamed, hashed either way. */
export function casSource(store: Store, digest: Digest, size: number): BlobSource {
  const path = store.cas.pathOf(digest);
  const check = (actual: Digest, bytes: number): void => {
    if (actual !== digest || bytes !== size) {
      store.quarantineBlob(digest);
      throw corruptBlob(digest);
    }
  };
  return {
    size,
    path,
    open: () => {
      const hasher = new StreamHasher();
      const verify = new Transform({
        transform(chunk: Buffer, _enc: string, cb: TransformCallback) {
          hasher.update(chunk);
          cb(null, chunk);
        },
        flush(cb: TransformCallback) {
          try {
            check(hasher.digest(), hasher.bytes);
            cb();
          } catch (e) {
            cb(e as Error);
          }
        },
      });
      const file = createReadStream(path);
      file.on('error', (e) => verify.destroy(errnoOf(e) === 'ENOENT' ? missingBlob(digest) : fsError(e, path, 'reading a blob')));
      return file.pipe(verify);
    },
    readAll: async () => {
      let buf: Buffer;
      try {
        buf = await readFile(path);
      } catch (e) {
        if (errnoOf(e) === 'ENOENT') throw missingBlob(digest);
        throw fsError(e, path, 'reading a blob');
      }
      const h = new StreamHasher();
      h.update(buf);
      check(h.digest(), buf.byteLength);
      return buf;
    },
  };
}

export const localTier: TierFactory = {
  name: 'local',
  create: (ctx: TierContext) => new LocalTier(ctx.store),
};
