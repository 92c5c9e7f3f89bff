// Loads the native addon (native/, built by scripts/build.mjs with
// node-gyp). The compiled JS runs from dist/src/node/ and tests import this
// file from src/node/, so the addon is found from the package root (the
// nearest directory with a package.json), not from this file's location.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LAYOUT } from '../gen/layout.js';
import { VriftError } from './errors.js';

/** The native VDir writer (see native/src/addon.cc for the batch encoding). */
export interface NativeVDirWriter {
  apply(upserts: Buffer, nUpserts: number, removals: Buffer, nRemovals: number): void;
  /** apply() of the entries whose path is free and whose parent is a directory; returns the indices of the others. */
  applyNew(upserts: Buffer, nUpserts: number): Uint32Array;
  /** Every entry of an encoded tree as one batch (ctimes: one per entry, 0 = unknown); returns the number of entries. */
  /** names: `tree` is a tree's names blob (files name 0…0). */
  applyTree(tree: Buffer, mtimeSec: number, ctimes?: BigUint64Array, names?: boolean): number;
  /** applyTree(names, mtimeSec, undefined, true) on a worker thread; the writer must not be used until it settles. */
  applyNamesAsync(names: Buffer, mtimeSec: number): Promise<number>;
  lookup(path: string): NativeVDirEntry | undefined;
  /** -1 when absent, else (mode & S_IFMT) + flags * 65536. */
  probe(path: string): number;
  list(dir: string): string[];
  stats(): NativeVDirStats;
  probeStats(): { maxProbe: number; displaced: number; tagCollisions: number };
  close(unlink: boolean): void;
  /** A copy of the whole shared-memory object (for `new VDirWriter(..., image, mtimeSec)`). */
  image(): Buffer;
  /** header.upper_published: upper-layer creates published so far (vrift_vdir.h section 6). */
  setUpperPublished(n: number, awake?: boolean): void;
}

export interface NativeVDirEntry {
  mode: number;
  size: number;
  mtimeSec: number;
  flags: number;
  index: number;
  check: number;
  digest?: string;
  /** Files: the blob's ctime (ns) the entry carries, 0n = unknown. */
  ctimeNs?: bigint;
  target?: string;
  nchildren?: number;
  claimIno?: number;
}

export interface NativeVDirStats {
  /** Live entries, the root included. */
  entries: number;
  /** Entry slots in the current object. */
  capacity: number;
  buckets: number;
  /** Highest entry slot ever used. */
  highWater: number;
  /** Bytes of the shared-memory object. */
  mappedBytes: number;
  poolUsed: number;
  poolCapacity: number;
  poolGarbage: number;
  /** The seqlock generation (even between batches). */
  generation: number;
  /** Objects this writer replaced by bigger ones. */
  resizes: number;
  compactions: number;
  /** The stable name readers open: /dev/shm/vrift.<uid>.<name>. */
  shmPath: string;
}

/** Tree walks and link farms on native threads (native/src/fast_fs.cc, link_farm.cc). */
export interface NativeFastFs {
  /** Walks a tree (see fast_fs.cc): relative paths, 8 stats per entry, symlink targets, the first error. */
  scanTree(root: string): { paths: Buffer; stats: Float64Array; targets: Buffer; error?: { errno: number; path: string } };
  /** Blob files a tree would link that are missing (1) or not untouched (2): [entryIndex, problem, …], sorted by entry. Off the JS thread. */
  /** Problems [entryIndex, problem, …]; with `all`, every distinct blob file [entryIndex, problem, ctimeSec, ctimeNsec, …]. */
  checkTree(encodedTree: Buffer, casDir: string, threads: number, all?: boolean): Promise<Float64Array>;
  /** Materializes a tree as a link farm, off the JS thread; failures [phase (1 mkdir, 2 link, 3 symlink), entryIndex, errno, …]. */
  linkTree(encodedTree: Buffer, root: string, casDir: string, threads: number): Promise<{ dirs: number; files: number; symlinks: number; failures: number[] }>;
  /** Sets each path's mtime to sec[i] s + nsec[i] ns exactly (no symlink followed, atime left); failures [index, errno, …]. */
  setMtimes(paths: string[], sec: Float64Array, nsec: Float64Array): Float64Array;
  /** [dev, ino, …] of each named blob file ("<digest>" or "<digest>.x", NUL-terminated) in the CAS; -1, -1 when absent. */
  blobInodes(casDir: string, names: Buffer, threads: number): Promise<Float64Array>;
}

/** Batched blob I/O on native threads (native/src/blob_io.cc documents the layouts). */
export interface NativeBlobIo {
  /** Reads whole files; stats per file: [status, size, mtimeMs, ctimeMs, dev, ino]. */
  readFiles(paths: Buffer, expectedSizes: Float64Array, threads: number, hash: boolean): Promise<{ data: Buffer; stats: Float64Array; digests: Buffer }>;
  /**
   * Writes blobs into the CAS (canonical mtime); per blob [status (0 or errno), created (1/0), 0].
   * With `verify`, a blob whose bytes do not hash to its digest is not written and gets status -1.
   */
  writeBlobs(tmpPrefix: string, casDir: string, data: Buffer, offsets: Float64Array, digests: Buffer, threads: number, verify?: boolean): Promise<Float64Array>;
}

/** BLAKE3-256 in native code (native/src/blake3_hash.cc), vrift's only one; digests are 64 lowercase hex characters. */
export interface NativeBlake3 {
  /** The digest of a Buffer or Uint8Array (any other typed array is a TypeError). */
  hash(buf: Uint8Array): string;
  /** A file's digest, hashed on `threads` native threads in bounded memory; null when the file shrank meanwhile. */
  hashFile(path: string, threads: number): Promise<string | null>;
  Hasher: new () => { update(buf: Uint8Array): void; digest(): string };
  /** The vendored BLAKE3 C version. */
  version: string;
}

/** Verified streaming, Bao style (native/src/bao_*.cc; src/lib/bao.ts wraps it). Roots are 64-hex digests. */
export interface NativeBao {
  outboard(buf: Uint8Array, groupLog: number): { outboard: Buffer; root: string };
  /** null when the file shrank while it was read; rejects with an Error whose `code` is the errno. */
  outboardFile(path: string, groupLog: number, threads: number): Promise<{ outboard: Buffer; root: string; size: number } | null>;
  encodeCombined(buf: Uint8Array, groupLog: number): Buffer;
  verifyRange(root: string, size: number, groupLog: number, outboard: Uint8Array, offset: number, bytes: Uint8Array): boolean;
  verifyOutboard(root: string, size: number, groupLog: number, outboard: Uint8Array): boolean;
  /** With an outboard push takes content and returns the verified prefix (-1: mismatch); without, the combined encoding and returns the verified content as pieces (null: mismatch). */
  StreamVerifier: new (root: string, size: number, groupLog: number, outboard: Uint8Array | null) => NativeBaoStream;
}

export interface NativeBaoStream {
  push(bytes: Uint8Array): number | Uint8Array[] | null;
  readonly verified: number;
  readonly complete: boolean;
  /** Content offset of the node that did not match, or -1. */
  readonly failedAt: number;
}

/**
 * The constants of shim/vrift_layout.h as the addon was compiled with them
 * (native/src/layout.cc). TypeScript reads them from src/gen/layout.ts,
 * written from this at build time; blobPath is the addon's own blob path.
 */
export interface NativeLayout {
  home: typeof LAYOUT.home;
  blob: typeof LAYOUT.blob;
  tree: typeof LAYOUT.tree;
  blobPath(casDir: string, digest: string, exec: boolean): string;
}

export interface NativeZstdStream {
  /** With `maxOut` (decompression): stops after about that many output bytes; see consumed() and pending(). */
  transform(input: Buffer, end: boolean, maxOut?: number): Promise<Buffer>;
  /** Input bytes the last transform read. */
  consumed(): number;
  /** The last transform filled its output: the decompressor may hold more (ask again, even without input). */
  pending(): boolean;
}

/** AES-256-GCM for one direction of a bulk connection (native/src/gcm.h): in place, the nonce a counter of its own. */
export interface NativeGcmCipher {
  /** Encrypts `body` in place with the next nonce; writes the 16-byte tag. */
  seal(aad: Uint8Array, body: Uint8Array, tag: Uint8Array): void;
  /** Decrypts `body` in place with the next nonce; false when the tag does not verify. */
  open(aad: Uint8Array, body: Uint8Array, tag: Uint8Array): boolean;
  /**
   * Authenticates the next frame (the next nonce); false when its tag does not verify. `body` may stay
   * ciphertext (the VAES path: nothing is decrypted before the tag verifies): `plain` then decrypts it.
   */
  check(aad: Uint8Array, body: Uint8Array, tag: Uint8Array): boolean;
  /** The plaintext of `src`, bytes of the last frame `check` passed from `at` bytes into its body, into `dst` (as long; may be `src`). */
  plain(src: Uint8Array, at: number, dst: Uint8Array): void;
}

export interface NativeAddon {
  VDirWriter: {
    new (name: string, casRoot: string, mountRoot: string, capacity: number, poolBytes: number): NativeVDirWriter;
    /** A copy of `image` published as `name` at `mountRoot`, every mtime set to `mtimeSec` (-1: kept). */
    new (name: string, casRoot: string, mountRoot: string, image: Buffer, mtimeSec: number): NativeVDirWriter;
  };
  vdirLayoutVersion: number;
  /** An extended attribute of `path` (not followed if a symlink); null when it has none of that name. */
  lgetxattr(path: string, name: string): Buffer | null;
  /** The 64-hex name of a mount path's file in the upper layer (vrift_vdir_upper_name; the shim computes the same). */
  upperName(rel: string): string;
  /** An encoded tree checked as decodeTree checks it, UTF-8 aside (native/src/tree_parse.h): [entries, files, dirs, symlinks, bytes of files]. Throws "malformed tree: …" (code EINVAL). */
  checkTreeEncoding(tree: Buffer): Float64Array;
  /** A names blob checked as checkTreeEncoding checks a tree; fileStarts[i]: where file i's entry begins. */
  checkNames(names: Buffer): { counts: Float64Array; fileStarts: Uint32Array };
  /** checkNames on a worker thread (rejects as checkNames throws). */
  checkNamesAsync(names: Buffer): Promise<{ counts: Float64Array; fileStarts: Uint32Array }>;
  /** An encoded tree's distinct file blobs in tree order, and an index of them (native/src/tree_blobs.cc). Throws "malformed tree: …" (code EINVAL). */
  treeBlobList(tree: Buffer): { digests: Buffer; sizes: Float64Array; exec: Uint8Array; table: Int32Array; bytes: number; first: Int32Array; next: Int32Array; paths: Float64Array };
  fastFs: NativeFastFs;
  blobIo: NativeBlobIo;
  blake3: NativeBlake3;
  bao: NativeBao;
  layout: NativeLayout;
  zstdAvailable: boolean;
  ZstdStream: new (compress: boolean, level: number) => NativeZstdStream;
  GcmCipher: new (key: Uint8Array, encrypt: boolean) => NativeGcmCipher;
}

let cached: NativeAddon | undefined;
let root: string | undefined;

/** The package root: the nearest ancestor of this module with a package.json. */
export function packageRoot(): string {
  if (root !== undefined) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new VriftError('ERR_VRIFT_NATIVE_MISSING', 'cannot find the vrift package root (no package.json above the module)');
    dir = up;
  }
  root = dir;
  return dir;
}

/** The addon, loaded once. Throws a VriftError with a fix when it was never built. */
export function loadNative(): NativeAddon {
  if (cached) return cached;
  const file = join(packageRoot(), 'native', 'build', 'Release', 'vrift_native.node');
  if (!existsSync(file)) {
    throw new VriftError('ERR_VRIFT_NATIVE_MISSING', `native addon not built: ${file} is missing`, {
      hint: 'run `npm run build` (or `node scripts/build.mjs native`); it needs a C++ toolchain',
    });
  }
  cached = createRequire(import.meta.url)(file) as NativeAddon;
  return cached;
}
