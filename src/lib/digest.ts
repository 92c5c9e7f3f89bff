// BLAKE3-256 digests: the names of everything vrift stores.
// Native hashing (@napi-rs/blake-hash) runs at several GB/s; a file is
// hashed in bounded chunks so a 4 GiB file never sits in memory.
import { createRequire } from 'node:module';
import type * as BlakeHash from '@napi-rs/blake-hash';
import { VriftError } from './errors.js';

// Loaded with require: the package is CommonJS, and importing it as ESM
// costs ~15 ms of start-up (every CLI command pays it).
const { blake3, Blake3Hasher } = createRequire(import.meta.url)('@napi-rs/blake-hash') as typeof BlakeHash;

/** A digest as vrift writes it: 64 lowercase hex characters. */
export type Digest = string;

const DIGEST_RE = /^[0-9a-f]{64}$/;

export function isDigest(s: string): boolean {
  return DIGEST_RE.test(s);
}

/** Throws a user-facing error unless `s` is a digest. */
export function assertDigest(s: string, what = 'digest'): Digest {
  if (!isDigest(s)) {
    throw new VriftError('ERR_VRIFT_DIGEST_INVALID', `${JSON.stringify(s)} is not a valid ${what}`, {
      hint: 'a digest is 64 lowercase hex characters (BLAKE3-256)',
    });
  }
  return s;
}

/** Digest of an in-memory buffer. */
export function hashBuffer(buf: Uint8Array): Digest {
  return blake3(buf).toString('hex');
}

/** An incremental hasher, for bytes that arrive in pieces. */
export class StreamHasher {
  private readonly h = new Blake3Hasher();
  private n = 0;

  update(chunk: Uint8Array): void {
    this.h.update(chunk as Buffer);
    this.n += chunk.byteLength;
  }

  get bytes(): number {
    return this.n;
  }

  digest(): Digest {
    return this.h.digest('hex');
  }
}
