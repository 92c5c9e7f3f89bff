// The one interface every storage tier implements (local CAS, peers, Redis,
// S3) and the chain that strings them together (itself a Tier).
//
// Contract, checked by test/compliance/tier-suite.ts against every tier:
// - Absence is a value: a blob or ref a tier does not hold is `undefined`
//   (or simply not in the set `has` returns). Absence never throws.
// - Failure throws a TierError (below): a stable `code`, the tier's name,
//   and whether it is `transient` (worth a retry / trying again later).
// - Bytes a tier hands out are NOT trusted. Only the store's admission
//   (src/node/store/admission.ts) turns bytes into a blob, after hashing them.
import { Readable } from 'node:stream';
import { isDigest, type Digest } from '../lib/digest.js';
import { VriftError, type ErrorCode } from '../lib/errors.js';
import type { TreeEntry } from '../node/store/tree.js';
import type { ConfigSection } from '../node/config/schema.js';
import type { Store } from '../node/store/store.js';
import type { Metrics } from '../lib/metrics.js';
import type { PeerDirectory } from './peer/directory.js';
import type { PeerConnections } from './peer/connections.js';
import type { RefCodec } from './ref-trust.js';

/** Tree blobs are held in memory to be validated; this bounds what a tier may send (or a compressed listing inflate to). */
export const MAX_TREE_BYTES = 1 << 30;

/** A blob's bytes as a tier serves them: a stream, unverified. */
export interface BlobBody {
  stream: Readable;
  /** Size the tier reports (Content-Length, STRLEN), when it knows it. */
  size?: number;
  /**
   * Other blobs the tier read on the way, whole (the rest of an S3 pack's
   * zstd frame), once the stream has ended: free to keep, unverified like
   * the body. A lazy mount's next opens are often these (the files of one
   * package sit together in a pack).
   */
  neighbors?: () => { digest: Digest; bytes: Buffer }[];
}

/** Bytes to store in a tier: re-openable, so a retry can read them again. */
export interface BlobSource {
  size: number;
  /** A fresh stream of the bytes (errors at the end if they do not match their digest). */
  open(): Readable;
  /** The bytes whole: only for sizes a tier keeps in memory (Redis values, small objects). */
  readAll(): Promise<Buffer>;
  /** The local file that holds the bytes, when there is one (a tier may read it directly: S3 computes a large blob's outboard from it). */
  path?: string;
}

/** What a ref points at: a tree, and the blob of its files' modification times when the writer recorded them (src/node/store/times.ts). */
export interface RefTarget {
  tree: Digest;
  times?: Digest;
  /** The head of the tree's lazy index in this tier (src/node/store/lazy-index.ts), when it holds one: only a signed record vouches for it. */
  lazy?: Digest;
  /** The signed record (JSON) a shared tier held, when it carried a signature that was checked (not part of what a ref names). */
  record?: string;
}

export interface RefInfo extends RefTarget {
  name: string;
  /** Milliseconds since the epoch; 0 when the tier does not know. */
  updatedAt: number;
}

/**
 * One stream in the archive format (docs/archive-format.md). A tier that
 * can serve many blobs in one stream (S3 packs, a peer's backfill) returns
 * a list of these from `fetchTree`; the caller reads, verifies and admits.
 */
export interface ArchivePart {
  /** For messages: "s3 pack packs/ab…", "peer 10.0.0.2 backfill". */
  name: string;
  /** Bytes of the stream, when known (progress only). */
  bytes?: number;
  open(): Promise<Readable>;
  /**
   * How many times the caller may open this part again after a stream
   * failed (cut, or abandoned after `onReject`). Each open streams only
   * what the local store still lacks, from wherever the tier chooses: a
   * peer's backfill resumes from another peer. Absent: never reopened.
   */
  reopen?: number;
  /** Told of each blob of this part the reader rejected; it may throw to abandon the stream (the part is then reopened). */
  onReject?(digest: Digest, reason: string): void;
  /** Told of each blob of this part admitted (counters: metered.ts). */
  onAdmit?(digest: Digest, size: number): void;
}

/** What `pushTree` needs to store a whole tree in a tier's bulk form. */
export interface TreePush {
  tree: Digest;
  /** The tree blob (docs/tree-format.md). */
  encoded: Buffer;
  entries: TreeEntry[];
  /** Trees the tier may hold already (the ref's previous value, …): their blobs need not move again. */
  bases: Digest[];
  /** The local bytes of a blob of this tree. */
  source(digest: Digest, size: number): BlobSource;
  /** The local bytes of these blobs as one archive stream (docs/archive-format.md), verified as read. */
  archive(blobs: { digest: Digest; size: number }[], onBlob?: (digest: Digest, size: number) => void): AsyncIterable<Buffer>;
  /** Entries of a base tree: from the local store, else undefined (the tier may fetch it itself). */
  baseEntries(tree: Digest): TreeEntry[] | undefined;
  onBytes?(n: number): void;
  /**
   * Blobs programs opened first when the tree (or an earlier tree of its
   * ref) was mounted lazily, in that order (its trace): a tier that packs
   * blobs puts these first, so a cold start reads the front of one pack.
   */
  startup?: readonly Digest[];
}

/** A part of a tree's lazy index (src/node/store/lazy-index.ts), as a tier keeps it. */
export type LazyPart =
  | { kind: 'head' }
  /** The names blob, decompressed, at most `bytes` (the head's). */
  | { kind: 'names'; bytes: number }
  /** The locator records of file ordinals [first, end): 64 bytes each (S3: src/tiers/s3/locator.ts). */
  | { kind: 'records'; first: number; end: number };

/** What prepareTree loads: `indexes: false` leaves the packs' indexes (a mount from the lazy index reads by locator record). */
export interface PrepareOptions {
  indexes?: boolean;
}

export interface PushResult {
  /** Blobs and bytes that actually moved. */
  blobs: number;
  bytes: number;
  /** The tree was already complete in the tier: nothing moved. */
  present?: boolean;
  /** The base tree whose content was reused, if any. */
  base?: Digest;
  /** The head of the tree's lazy index the tier now holds (src/node/store/lazy-index.ts): a ref set there names it. */
  lazy?: Digest;
}

export interface Tier {
  /** Name in config, metrics and messages: "local", "peer", "redis", "s3", "chain". */
  readonly name: string;
  /** False for read-only tiers (or read-only mode): the chain never writes to them. */
  readonly writable: boolean;
  /** Largest blob this tier stores; larger ones are skipped (not an error). */
  readonly maxBlobBytes?: number;
  /** How many concurrent `get`s suit this tier (pipelined Redis: many; S3: fewer). */
  readonly parallelism: number;
  /** How many of its archive parts may be read at once (default 1: in order, stopping once nothing is missing). */
  readonly archiveParallelism?: number;
  /**
   * Blobs of at least this size are never in the tier's archives (S3 keeps them
   * loose): a pull fetches them one by one alongside the archives, not after.
   */
  readonly looseBlobBytes?: number;

  /** Batch presence: the subset of `digests` this tier holds. */
  has(digests: readonly Digest[]): Promise<Set<Digest>>;
  /** A blob's bytes, unverified; undefined when absent. */
  get(digest: Digest): Promise<BlobBody | undefined>;
  /** Stores a blob (idempotent: same name, same bytes). */
  put(digest: Digest, source: BlobSource): Promise<void>;

  getRef(name: string): Promise<RefTarget | undefined>;
  setRef(name: string, target: RefTarget): Promise<void>;
  /** Refs whose names start with `prefix`, newest first, at most `limit` (default 100). */
  listRefs(prefix: string, limit?: number): Promise<RefInfo[]>;

  /**
   * Optional bulk fetch: archive streams that hold the blobs of `tree`
   * listed in `want` (they may hold others too; the reader skips them).
   * undefined when the tier has no bulk form of this tree.
   */
  fetchTree?(tree: Digest, want: ReadonlySet<Digest>): Promise<ArchivePart[] | undefined>;
  /** Optional bulk store of a whole tree (S3 packs). Without it the chain puts blob by blob. */
  pushTree?(push: TreePush): Promise<PushResult>;
  /**
   * Optional: one blob of `tree` from the tier's bulk form of that tree
   * (S3: a ranged GET of the pack that holds it, found by the pack's
   * index), for a blob the tier does not keep on its own (`get` misses).
   * Unverified, like `get`; undefined when the tier cannot serve it this way.
   */
  getInTree?(tree: Digest, digest: Digest): Promise<BlobBody | undefined>;
  /**
   * Optional: the blob of tree `tree` (its listing) from a smaller form the
   * tier keeps of it (S3: `trees/<tree>.zst`, decompressed on the way),
   * so a lazy mount moves less than the blob itself. Unverified like
   * `get`; undefined when the tier has no such form (then `get` reads it).
   */
  getTreeBlob?(tree: Digest): Promise<BlobBody | undefined>;
  /**
   * Optional: many blobs of `tree` out of the tier's bulk form at once (S3:
   * the packs' frames that hold them, merged into few ranged GETs), for a
   * prefetch of the blobs a mount will open first. `onBlob` is called for
   * each blob read (those asked for, and others the reads held), awaited;
   * unverified like `get`. Blobs the tier cannot serve this way are left
   * out; a failure is thrown once the rest are done.
   */
  getManyInTree?(tree: Digest, digests: readonly Digest[], onBlob: (digest: Digest, bytes: Buffer) => Promise<void>): Promise<void>;
  /**
   * Optional: gets ready to read blobs of `tree` out of its bulk form (S3:
   * loads the tree's manifest and its packs' indexes), so the first
   * `getInTree` of a lazy mount does not wait for them. With `indexes:
   * false`, only what reads by locator record need (S3: the manifest, not
   * the packs' indexes): a mount from the lazy index. Never needed for
   * correctness; a failure shows again on the read that meets it.
   */
  prepareTree?(tree: Digest, opts?: PrepareOptions): Promise<void>;
  /**
   * Optional: starts reading the bytes of `digests` of `tree` (in that
   * order, those under `blobMax` bytes, up to `maxBytes` of them) out of
   * its bulk form, kept in memory for a `getManyInTree` of the tree soon
   * after (S3: the frames of a lazy mount's start-up set, read while its
   * listing arrives). Stores nothing; never needed for correctness.
   */
  warmInTree?(tree: Digest, digests: readonly Digest[], maxBytes: number, blobMax: number): Promise<void>;
  /**
   * Optional: a part of the lazy index with head `head` (docs/tree-format.md
   * "Lazy index"), unverified (the caller checks it against the signed
   * head); undefined when the tier has none.
   */
  getLazyPart?(head: Digest, part: LazyPart): Promise<Buffer | undefined>;
  /**
   * Optional: blob `digest` of `tree` from where its locator record
   * (verified by the caller, but its place unsigned) says it is. Unverified
   * like `get`; undefined when the record locates nothing here.
   */
  getLocated?(tree: Digest, digest: Digest, record: Buffer): Promise<BlobBody | undefined>;
  /**
   * Optional: many blobs of `tree` where their (checked) locator records
   * place them, one read per place they share (S3: a pack frame); `onBlob`
   * gets those asked for, unverified. What cannot be read so is left out.
   */
  getManyLocated?(tree: Digest, wants: readonly { digest: Digest; record: Buffer }[], onBlob: (digest: Digest, bytes: Buffer) => Promise<void>): Promise<void>;
  /**
   * Optional: a large blob's Bao outboard (docs/bao.md: the chaining
   * values of its hash tree over 16 KiB groups), so a reader can verify
   * its bytes in order as they arrive instead of only at the end (a lazy
   * mount streams large files: docs/lazy.md). Untrusted like any byte from
   * a tier: a wrong one fails verification. undefined when the tier has none.
   */
  getOutboard?(digest: Digest): Promise<Buffer | undefined>;
  /**
   * Optional: bytes [offset, offset + length) of a blob the tier keeps on
   * its own (S3: one ranged GET of its object): a swarm's piece of a large
   * blob (src/node/swarm/). Unverified; undefined when the tier lacks it.
   */
  getRange?(digest: Digest, offset: number, length: number): Promise<BlobBody | undefined>;
  /**
   * Optional: gets ready for the first request (loads an SDK, opens a
   * connection), so the first one a program waits for does not pay for it.
   * Never throws: a failure shows on the request that meets it.
   */
  warm?(): Promise<void>;

  close(): Promise<void>;
}

/** What a factory gets to build its tier. */
export interface TierContext {
  store: Store;
  metrics: Metrics;
  log: TierLog;
  /** Where the peer tier learns which peers exist (the daemon's mesh, when the chain runs in the daemon). */
  peers?: PeerDirectory;
  /** The daemon's connections to its peers (opened as peers appear, shared with its swarms); a command makes its own. */
  peerConnections?: PeerConnections;
  /** Signs the refs shared tiers keep, and checks those they hand out (ref-trust.ts). */
  refs?: RefCodec;
}

export type TierLog = (level: 'warn' | 'info', message: string) => void;

/**
 * A tier's file exports one of these; src/tiers/index.ts lists them in
 * chain order. `create` must not import the tier's SDK: the tier imports
 * it on first use, so commands that never reach the tier never load it.
 */
export interface TierFactory<C = unknown> {
  readonly name: string;
  /** The tier's section of the config (schema + environment variables). */
  readonly config?: ConfigSection<C>;
  /** The tier, or undefined when its config does not enable it. */
  create(ctx: TierContext, config: C | undefined): Tier | undefined;
}

// --- errors ------------------------------------------------------------

/** Why a tier failed. Transient kinds are retried and trip the circuit breaker. */
export type TierFailure = 'unavailable' | 'auth' | 'config' | 'corrupt' | 'io';

const CODES: Record<TierFailure, ErrorCode> = {
  unavailable: 'ERR_VRIFT_TIER_UNAVAILABLE',
  auth: 'ERR_VRIFT_TIER_AUTH',
  config: 'ERR_VRIFT_TIER_CONFIG',
  corrupt: 'ERR_VRIFT_TIER_CORRUPT',
  io: 'ERR_VRIFT_TIER_IO',
};

/** A tier failed. Checked by `code` (like every VriftError), never by instanceof. */
export class TierError extends VriftError {
  readonly tier: string;
  readonly failure: TierFailure;
  readonly transient: boolean;

  constructor(tier: string, failure: TierFailure, message: string, opts: { hint?: string; cause?: unknown } = {}) {
    super(CODES[failure], `${tier}: ${message}`, { ...opts, exitCode: 2 });
    this.tier = tier;
    this.failure = failure;
    this.transient = failure === 'unavailable' || failure === 'io';
  }
}

/** True for a TierError (checked by shape, not instanceof, like every VriftError). */
export function isTierError(e: unknown): e is TierError {
  return typeof e === 'object' && e !== null && (e as { name?: unknown }).name === 'VriftError' && typeof (e as { tier?: unknown }).tier === 'string';
}

/** True for errors worth retrying: a TierError marked transient. */
export function isTransient(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { transient?: unknown }).transient === true;
}

/** A source over bytes already in memory. */
export function bufferSource(buf: Buffer): BlobSource {
  return { size: buf.byteLength, open: () => Readable.from([buf]), readAll: async () => buf };
}

/** The target of a ref record (without its name and time). */
export function refTargetOf(ref: RefTarget | undefined): RefTarget | undefined {
  if (!ref) return undefined;
  const out: RefTarget = { tree: ref.tree };
  if (ref.times !== undefined) out.times = ref.times;
  if (ref.lazy !== undefined) out.lazy = ref.lazy;
  if (ref.record !== undefined) out.record = ref.record;
  return out;
}

/** A ref as remote tiers store it unsigned: {"tree","times"?,"updatedAt"}. */
export function encodeRef(target: RefTarget): string {
  return JSON.stringify(target.times === undefined ? { tree: target.tree, updatedAt: Date.now() } : { tree: target.tree, times: target.times, updatedAt: Date.now() });
}

/** Reads a ref a remote tier holds; a value that names no tree is a corrupt-ref TierError with the tier's fix. */
export function decodeRef(tier: string, name: string, value: string, hint: string): RefInfo {
  let data: { tree?: unknown; times?: unknown; updatedAt?: unknown } | undefined;
  try {
    data = JSON.parse(value) as typeof data;
  } catch {
    data = undefined;
  }
  if (typeof data?.tree !== 'string' || !isDigest(data.tree)) {
    throw new TierError(tier, 'corrupt', `ref ${JSON.stringify(name)} holds ${JSON.stringify(value.slice(0, 80))}, not a tree id`, { hint });
  }
  const times = typeof data.times === 'string' && isDigest(data.times) ? { times: data.times } : {};
  return { name, tree: data.tree, ...times, updatedAt: typeof data.updatedAt === 'number' ? data.updatedAt : 0 };
}
