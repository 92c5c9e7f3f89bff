// Signed ref records (docs/security.md "Refs: who may point them"). A ref
// in a shared tier (Redis, S3) is a JSON record naming a tree; anyone who
// can write to the tier could point it at a tree of their own (cache
// poisoning, the class of CVE-2025-36852). Each writer signs its records
// with an Ed25519 key; readers check the signature, and whether that key
// may write that ref's namespace (src/tiers/ref-trust.ts).
//
// Record: {"tree":"<hex>","times":"<hex>"?,"lazy":"<hex>"?,"updatedAt":<ms>,"key":"ed25519:<base64url>","sig":"<base64url>","lazySig":"<base64url>"?}
// The signature covers "vrift-ref-v1\0<name>\0<tree>\0<updatedAt>", or
// with the tree's times blob (src/node/store/times.ts) "vrift-ref-v2\0<name>
// \0<tree>\0<updatedAt>\0<times>": a record copied to another ref name, an
// older record replayed with a newer time, or times added, removed or
// swapped, does not verify. The head of the tree's lazy index
// (src/node/store/lazy-index.ts) has a signature of its own by the same
// key, `lazySig`, over "vrift-ref-lazy1\0<name>\0<tree>\0<updatedAt>\0
// <times or empty>\0<lazy>", so a vrift that predates it still verifies
// `sig` (and ignores the rest); dropping both only costs a reader the
// lazy index.
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { isDigest, type Digest } from './digest.js';

const KEY_PREFIX = 'ed25519:';
/** DER prefix of an Ed25519 SubjectPublicKeyInfo: the 32 raw key bytes follow. */
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export interface RefRecord {
  tree: Digest;
  /** The blob of the tree's files' modification times, when the writer recorded them. */
  times?: Digest;
  /** The head of the tree's lazy index (names, then digests in pieces), when the tier holds one. */
  lazy?: Digest;
  updatedAt: number;
  /** The writer's public key ("ed25519:<base64url>"); absent in an unsigned (older) record. */
  key?: string;
  sig?: string;
  /** The signature over the lazy index's head (with everything `sig` covers); present exactly when `lazy` is. */
  lazySig?: string;
}

function signedBytes(name: string, tree: Digest, updatedAt: number, times: Digest | undefined): Buffer {
  if (times === undefined) return Buffer.from(`vrift-ref-v1\0${name}\0${tree}\0${updatedAt}`, 'utf8');
  return Buffer.from(`vrift-ref-v2\0${name}\0${tree}\0${updatedAt}\0${times}`, 'utf8');
}

function lazySignedBytes(name: string, tree: Digest, updatedAt: number, times: Digest | undefined, lazy: Digest): Buffer {
  return Buffer.from(`vrift-ref-lazy1\0${name}\0${tree}\0${updatedAt}\0${times ?? ''}\0${lazy}`, 'utf8');
}

/** A writer's signing key. */
export class RefSigner {
  /** The public key as records and trust lists name it. */
  readonly keyId: string;

  private constructor(private readonly key: KeyObject) {
    const spki = createPublicKey(key).export({ format: 'der', type: 'spki' });
    this.keyId = KEY_PREFIX + spki.subarray(SPKI_PREFIX.length).toString('base64url');
  }

  /** From a PEM (PKCS#8) Ed25519 private key; throws if it is not one. */
  static fromPem(pem: string): RefSigner {
    const key = createPrivateKey(pem);
    if (key.asymmetricKeyType !== 'ed25519') throw new Error(`a ${key.asymmetricKeyType ?? 'non-asymmetric'} key, not Ed25519`);
    return new RefSigner(key);
  }

  /** A new key, as PEM (PKCS#8). */
  static generatePem(): string {
    return generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  }

  /** The record for `name` → `tree` (and its times blob and lazy index), signed now. */
  record(name: string, tree: Digest, times?: Digest, updatedAt = Date.now(), lazy?: Digest): RefRecord {
    const sig = sign(null, signedBytes(name, tree, updatedAt, times), this.key).toString('base64url');
    const rec: RefRecord = { tree, ...(times === undefined ? {} : { times }), updatedAt, key: this.keyId, sig };
    if (lazy !== undefined) [rec.lazy, rec.lazySig] = [lazy, sign(null, lazySignedBytes(name, tree, updatedAt, times, lazy), this.key).toString('base64url')];
    return rec;
  }
}

/** Parses a record; a string saying what is wrong when it is not one. */
export function parseRefRecord(value: string): RefRecord | string {
  let data: Record<string, unknown>;
  try {
    data = JSON.parse(value) as Record<string, unknown>;
  } catch {
    return 'not JSON';
  }
  if (typeof data !== 'object' || data === null) return 'not a record';
  if (typeof data.tree !== 'string' || !isDigest(data.tree)) return 'no tree id';
  if (data.times !== undefined && (typeof data.times !== 'string' || !isDigest(data.times))) return 'a malformed times id';
  if (data.lazy !== undefined && (typeof data.lazy !== 'string' || !isDigest(data.lazy))) return 'a malformed lazy index id';
  const updatedAt = typeof data.updatedAt === 'number' && Number.isSafeInteger(data.updatedAt) ? data.updatedAt : 0;
  const extra = { ...(data.times === undefined ? {} : { times: data.times }), ...(data.lazy === undefined ? {} : { lazy: data.lazy }) };
  if (data.key === undefined && data.sig === undefined) return { tree: data.tree, ...extra, updatedAt };
  if (typeof data.key !== 'string' || typeof data.sig !== 'string') return 'a malformed signature';
  if ((data.lazy === undefined) !== (data.lazySig === undefined) || (data.lazySig !== undefined && typeof data.lazySig !== 'string')) return 'a malformed signature';
  return { tree: data.tree, ...extra, updatedAt, key: data.key, sig: data.sig, ...(data.lazySig === undefined ? {} : { lazySig: data.lazySig as string }) };
}

/** Whether a signed record's signature is its key's, over `name` and its fields. */
export function verifyRefRecord(name: string, rec: RefRecord): boolean {
  if (!rec.key?.startsWith(KEY_PREFIX) || rec.sig === undefined) return false;
  const raw = Buffer.from(rec.key.slice(KEY_PREFIX.length), 'base64url');
  if (raw.length !== 32) return false;
  try {
    const pub = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
    if (!verify(null, signedBytes(name, rec.tree, rec.updatedAt, rec.times), pub, Buffer.from(rec.sig, 'base64url'))) return false;
    if (rec.lazy === undefined && rec.lazySig === undefined) return true;
    if (rec.lazy === undefined || rec.lazySig === undefined) return false;
    return verify(null, lazySignedBytes(name, rec.tree, rec.updatedAt, rec.times, rec.lazy), pub, Buffer.from(rec.lazySig, 'base64url'));
  } catch {
    return false;
  }
}

/** Whether `s` looks like a key id ("ed25519:" and 32 bytes, base64url). */
export function isRefKeyId(s: string): boolean {
  return s.startsWith(KEY_PREFIX) && /^[A-Za-z0-9_-]{43}$/.test(s.slice(KEY_PREFIX.length));
}
