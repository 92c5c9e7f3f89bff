// Hints: small blobs that travel beside a tree without being part of it
// (a tree's trace, docs/lazy.md), named by a ref in the remote tiers only.
// A local ref names a tree (and pins it), so a hint never becomes one; the
// node keeps its own copy elsewhere (LMDB). What a tier hands back is
// bounded in size and checked against its digest here, and parsed by the
// caller as untrusted input.
import { hashBuffer, type Digest } from '../lib/digest.js';
import { isLocalError, type GuardedTier } from './guarded.js';
import { bufferSource, type BlobBody } from './tier.js';

export type HintFetch = { tier: string; bytes: Buffer } | { tier: string; problem: string };

/** Stores `bytes` (blob `digest`) in every writable tier it fits in, then points ref `name` at it there. One result per tier tried. */
export async function publishHint(tiers: readonly GuardedTier[], name: string, digest: Digest, bytes: Buffer): Promise<{ tier: string; error?: string }[]> {
  const fits = tiers.filter((t) => t.writable && (t.maxBlobBytes === undefined || bytes.byteLength <= t.maxBlobBytes));
  return Promise.all(
    fits.map(async (t) => {
      try {
        await t.put(digest, bufferSource(bytes));
        await t.setRef(name, { tree: digest }); // only once the blob is there: a ref never names what the tier lacks
        return { tier: t.name };
      } catch (e) {
        return { tier: t.name, error: (e as Error).message };
      }
    }),
  );
}

/**
 * The blob ref `name` names in the first tier that has the ref, read whole
 * (at most `maxBytes`) and checked against its digest; not admitted to the
 * local store. `problem` says why that tier's answer was refused;
 * undefined when no tier has the ref.
 */
export async function fetchHint(tiers: readonly GuardedTier[], name: string, maxBytes: number): Promise<HintFetch | undefined> {
  for (const tier of tiers) {
    let digest: Digest | undefined;
    try {
      digest = (await tier.getRef(name))?.tree;
    } catch {
      continue; // counted by the guard; a hint is never worth a failure
    }
    if (!digest) continue;
    let body: BlobBody | undefined;
    try {
      body = await tier.get(digest);
      if (!body) return { tier: tier.name, problem: `ref ${name} names blob ${digest}, which the tier lacks` };
      if ((body.size ?? 0) > maxBytes) {
        body.stream.destroy(); // refused before its bytes move
        return { tier: tier.name, problem: `blob ${digest} is ${body.size} bytes, more than ${maxBytes}` };
      }
      const bytes = await readAtMost(body, maxBytes);
      if (!bytes) return { tier: tier.name, problem: `blob ${digest} is more than ${maxBytes} bytes` };
      if (hashBuffer(bytes) !== digest) return { tier: tier.name, problem: `blob ${digest} does not hash to its name` };
      return { tier: tier.name, bytes };
    } catch (e) {
      body?.stream.destroy();
      if (isLocalError(e)) throw e;
      return { tier: tier.name, problem: (e as Error).message };
    }
  }
  return undefined;
}

/** A body read whole, or undefined (and the stream closed) once it passes `max` bytes. */
async function readAtMost(body: BlobBody, max: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of body.stream as AsyncIterable<Buffer>) {
    n += c.byteLength;
    if (n > max) {
      body.stream.destroy();
      return undefined;
    }
    chunks.push(c);
  }
  return Buffer.concat(chunks, n);
}
