// BLAKE3-256 digests: the names of everything vrift stores.
// One implementation: the official BLAKE3 C code vendored in the addon
// (native/src/blake3_hash.cc, SIMD chosen at run time), the same code that
// hashes files and verifies batches on native threads. The addon is loaded
// at the first hash, not on import: commands that only check a digest's
// spelling never load it.
import { VriftError } from './errors.js';
import { loadNative, type NativeBlake3 } from './native.js';

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

let native: NativeBlake3 | undefined;

function blake3(): NativeBlake3 {
  return (native ??= loadNative().blake3);
}

/** Digest of an in-memory buffer. */
export function hashBuffer(buf: Uint8Array): Digest {
  return blake3().hash(buf);
}

/** An incremental hasher, for bytes that arrive in pieces. */
export class StreamHasher {
  private readonly h = new (blake3().Hasher)();
  private n = 0;

  update(chunk: Uint8Array): void {
    this.h.update(chunk);
    this.n += chunk.byteLength;
  }

  get bytes(): number {
    return this.n;
  }

  /** The digest of every byte so far (more may still be added). */
  digest(): Digest {
    return this.h.digest();
  }
}
