// The content-addressed store on disk: one read-only file per content,
// named by its BLAKE3 digest. See home.ts for the layout (its names and
// numbers are shim/vrift_layout.h's, through src/gen/layout.ts).
import {
  chmodSync,
  closeSync,
  copyFileSync,
  constants as C,
  existsSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  unlinkSync,
  utimesSync,
  type Stats,
} from 'node:fs';
import { open as openAsync } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { hashBuffer, StreamHasher, type Digest } from '../../lib/digest.js';
import { errnoError, errnoOf, fsError, VriftError } from '../../lib/errors.js';
import { LAYOUT } from '../../gen/layout.js';
import { BLOB_MTIME_MS, BLOB_MTIME_SEC, BlobWriter, tempPath, writeHashedBuffer, type WrittenBlob } from './blob-writer.js';
import type { HomeLayout } from './home.js';
import { loadNative } from '../../lib/native.js';
import type { StatLike } from './scan.js';

const { shardHex: SHARD_HEX, execSuffix: EXEC_SUFFIX, execMode: EXEC_MODE } = LAYOUT.blob;

/** Files up to this size are read whole; larger ones stream in chunks. */
const WHOLE_FILE_LIMIT = 8 << 20;
const CHUNK = 4 << 20;

export interface FileBlob extends WrittenBlob {
  /** The source file's stat taken while its bytes were read (for the re-ingest cache). */
  source: Stats;
}

export class Cas {
  private readonly shards = new Set<string>();

  /**
   * @param onQuarantine called whenever a corrupt blob is moved aside, so
   *   the blob index (LMDB) forgets it too and the blob is fetched again.
   */
  constructor(
    readonly layout: HomeLayout,
    private readonly onQuarantine?: (digest: Digest) => void,
  ) {}

  /** Where a blob lives; `exec` names its executable twin. */
  pathOf(digest: Digest, exec = false): string {
    return join(this.layout.cas, digest.slice(0, SHARD_HEX), exec ? digest + EXEC_SUFFIX : digest);
  }

  /** Opens a stored blob for reading (a descriptor); one that is not there is ERR_VRIFT_CAS_MISSING. */
  openRead(digest: Digest): number {
    const path = this.pathOf(digest);
    try {
      return openSync(path, 'r');
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') throw missingBlob(digest);
      throw fsError(e, path, 'reading a blob');
    }
  }

  has(digest: Digest, exec = false): boolean {
    return existsSync(this.pathOf(digest, exec));
  }

  statOf(digest: Digest, exec = false): Stats | undefined {
    try {
      return lstatSync(this.pathOf(digest, exec));
    } catch {
      return undefined;
    }
  }

  ensureShard(digest: Digest): void {
    const shard = digest.slice(0, SHARD_HEX);
    if (this.shards.has(shard)) return;
    mkdirSync(join(this.layout.cas, shard), { recursive: true });
    this.shards.add(shard);
  }

  /** A writer for bytes that arrive in pieces (tiers, peers, the shim's commits). */
  writer(opts: { hash?: boolean } = {}): BlobWriter {
    return new BlobWriter(this, opts);
  }

  /** Stores an in-memory buffer; `expected` makes it a verified admission. */
  putBuffer(buf: Uint8Array, expected?: Digest): WrittenBlob {
    const digest = hashBuffer(buf);
    if (expected !== undefined && digest !== expected) {
      throw new VriftError('ERR_VRIFT_CAS_DIGEST_MISMATCH', `content does not match its name: expected ${expected}, got ${digest}`, {
        hint: 'the source sent corrupt or wrong bytes; they were discarded',
      });
    }
    const existing = this.statOf(digest);
    if (existing) return { digest, size: buf.byteLength, created: false };
    return writeHashedBuffer(this, buf, digest);
  }

  /**
   * Stores a regular file's content. The file is stat'ed before and after
   * its bytes are read; if it changed meanwhile the result is refused
   * (ERR_VRIFT_INGEST_CHANGED), because the bytes read are not a snapshot
   * of any one state of the file. `listed` is a stat the caller took just
   * before (ingest's directory walk); it saves one fstat.
   */
  putFile(path: string, listed?: StatLike): FileBlob {
    let fd: number;
    try {
      fd = openSync(path, C.O_RDONLY | C.O_NOFOLLOW);
    } catch (e) {
      throw fsError(e, path, 'opening');
    }
    try {
      const before: StatLike = listed ?? fstatSync(fd);
      if ((before.mode & C.S_IFMT) !== C.S_IFREG) {
        throw new VriftError('ERR_VRIFT_INGEST_NOT_FILE', `${path}: not a regular file`, { hint: 'only regular files have content to store' });
      }
      let blob: WrittenBlob;
      if (before.size <= WHOLE_FILE_LIMIT) {
        let buf: Buffer;
        try {
          buf = readFileSync(fd);
        } catch (e) {
          throw fsError(e, path, 'reading');
        }
        const digest = hashBuffer(buf);
        const existing = this.statOf(digest);
        blob = existing
          ? { digest, size: buf.byteLength, created: false }
          : writeHashedBuffer(this, buf, digest);
      } else {
        blob = this.streamFile(fd, path);
      }
      const after = fstatSync(fd);
      if (
        after.ino !== before.ino ||
        after.dev !== before.dev ||
        after.size !== before.size ||
        after.mtimeMs !== before.mtimeMs ||
        after.ctimeMs !== before.ctimeMs ||
        blob.size !== after.size
      ) {
        throw new VriftError('ERR_VRIFT_INGEST_CHANGED', `${path}: file changed while it was being read`, {
          hint: 'stop whatever is writing it, then ingest again',
        });
      }
      return { ...blob, source: after };
    } finally {
      closeSync(fd);
    }
  }

  private streamFile(fd: number, path: string): WrittenBlob {
    const w = this.writer();
    const buf = Buffer.allocUnsafe(CHUNK);
    try {
      for (;;) {
        let n: number;
        try {
          n = readSync(fd, buf, 0, CHUNK, null);
        } catch (e) {
          throw fsError(e, path, 'reading');
        }
        if (n === 0) break;
        w.write(n === CHUNK ? buf : buf.subarray(0, n));
      }
    } catch (e) {
      w.abort();
      throw e;
    }
    return w.commit();
  }

  /**
   * Makes the executable twin of a blob: a hard link shares its inode's
   * mode, so a tree entry marked +x links to a 0555 copy.
   */
  ensureExecTwin(digest: Digest): void {
    const twin = this.pathOf(digest, true);
    if (existsSync(twin)) return;
    const tmp = tempPath(this.layout.tmp);
    try {
      // FICLONE shares extents where the filesystem can (btrfs, xfs); a plain copy elsewhere.
      copyFileSync(this.pathOf(digest), tmp, C.COPYFILE_FICLONE);
      chmodSync(tmp, EXEC_MODE);
      utimesSync(tmp, BLOB_MTIME_SEC, BLOB_MTIME_SEC);
      renameSync(tmp, twin);
    } catch (e) {
      try {
        unlinkSync(tmp);
      } catch {
        /* nothing to clean */
      }
      throw fsError(e, twin, 'creating an executable copy of a blob');
    }
  }

  /** Removes a blob and its twin. Returns the bytes freed. */
  remove(digest: Digest): number {
    let freed = 0;
    for (const exec of [false, true]) {
      const p = this.pathOf(digest, exec);
      try {
        const st = lstatSync(p);
        unlinkSync(p);
        freed += st.size;
      } catch (e) {
        if (errnoOf(e) !== 'ENOENT') throw fsError(e, p, 'removing a blob');
      }
    }
    return freed;
  }

  /** Moves a corrupt blob (and its twin) out of the store, keeping it for inspection. */
  quarantine(digest: Digest): void {
    this.onQuarantine?.(digest);
    for (const exec of [false, true]) {
      const p = this.pathOf(digest, exec);
      try {
        renameSync(p, join(this.layout.quarantine, `${exec ? digest + EXEC_SUFFIX : digest}.${Date.now()}`));
      } catch (e) {
        if (errnoOf(e) !== 'ENOENT') throw fsError(e, p, 'quarantining a corrupt blob');
      }
    }
  }

  /** An untouched blob: the right size and the canonical mtime. */
  static untouched(st: { size: number; mtimeMs: number }, size: number): boolean {
    return st.size === size && st.mtimeMs === BLOB_MTIME_MS;
  }

  /** Puts a blob (and its twin) back to the canonical mtime after it was re-hashed and found good. */
  resetMtime(digest: Digest): void {
    for (const exec of [false, true]) {
      try {
        utimesSync(this.pathOf(digest, exec), BLOB_MTIME_SEC, BLOB_MTIME_SEC);
      } catch {
        /* no twin, or gone: nothing to reset */
      }
    }
  }

  /** Re-hashes a stored blob (or its twin). */
  async rehash(digest: Digest, exec = false): Promise<Digest> {
    return hashFile(this.pathOf(digest, exec));
  }

  /**
   * Reads a whole blob and checks its digest; a corrupt blob is quarantined
   * and never returned.
   */
  readVerified(digest: Digest): Buffer {
    let buf: Buffer;
    try {
      buf = readFileSync(this.pathOf(digest));
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') throw missingBlob(digest);
      throw fsError(e, this.pathOf(digest), 'reading a blob');
    }
    if (hashBuffer(buf) !== digest) {
      this.quarantine(digest);
      throw corruptBlob(digest);
    }
    return buf;
  }
}

export function missingBlob(digest: Digest): VriftError {
  return new VriftError('ERR_VRIFT_CAS_MISSING', `blob ${digest} is not in the local store`, {
    hint: 'ingest or pull the tree again, or restore it from a shared tier',
    exitCode: 1,
  });
}

export function corruptBlob(digest: Digest): VriftError {
  return new VriftError('ERR_VRIFT_CAS_CORRUPT', `blob ${digest} is corrupt on disk (changed since it was stored) and was quarantined`, {
    hint: '`vrift restore` the tree from a shared tier, or ingest the files again; `vrift verify` checks the whole store',
  });
}

/** Hashes a file in bounded chunks, synchronously (for checks inside synchronous work). */
export function hashFileSync(path: string): Digest {
  const fd = openSync(path, 'r');
  try {
    const hasher = new StreamHasher();
    const buf = Buffer.allocUnsafe(CHUNK);
    for (let n; (n = readSync(fd, buf, 0, CHUNK, null)) > 0; ) hasher.update(n === CHUNK ? buf : buf.subarray(0, n));
    return hasher.digest();
  } finally {
    closeSync(fd);
  }
}

/** Native threads hashing one file (hashFile): BLAKE3's tree is split between them. */
const HASH_THREADS = Math.max(2, Math.min(4, availableParallelism()));

/**
 * Hashes a file on native threads (native/src/blake3_hash.cc): BLAKE3
 * subtrees of 4 MiB are mapped and hashed in parallel straight from the
 * page cache and joined in order; memory stays bounded (one segment mapped
 * per thread). A file that shrank meanwhile is hashed again by hashFileJs.
 * Errors carry the errno's code (ENOENT …), as from node:fs.
 */
export async function hashFile(path: string): Promise<Digest> {
  let digest: string | null;
  try {
    digest = await loadNative().blake3.hashFile(path, HASH_THREADS);
  } catch (e) {
    const errno = (e as { code?: unknown }).code;
    if (typeof errno === 'number' && errno > 0) throw errnoError(errno, (e as Error).message.startsWith('open') ? 'open' : 'read', path);
    throw e;
  }
  return digest ?? hashFileJs(path);
}

/**
 * Hashes a file in JavaScript with reads and hashing overlapped: the next
 * chunk is read on libuv's thread pool while this thread hashes the
 * current one (the fallback of hashFile, and its reference in tests).
 */
export async function hashFileJs(path: string): Promise<Digest> {
  const fh = await openAsync(path, 'r');
  try {
    const size = (await fh.stat()).size;
    const hasher = new StreamHasher();
    const bufs = [Buffer.allocUnsafe(CHUNK), Buffer.allocUnsafe(CHUNK)];
    let pos = 0;
    let turn = 0;
    let pending = fh.read(bufs[0]!, 0, CHUNK, pos);
    for (;;) {
      const { bytesRead, buffer } = await pending;
      if (bytesRead === 0) break;
      pos += bytesRead;
      turn ^= 1;
      // Start the next read before hashing this chunk.
      pending = pos < size ? fh.read(bufs[turn]!, 0, CHUNK, pos) : Promise.resolve({ bytesRead: 0, buffer: bufs[turn]! });
      hasher.update(bytesRead === CHUNK ? buffer : buffer.subarray(0, bytesRead));
    }
    // A file that grew after the stat: hash the rest too.
    for (;;) {
      const { bytesRead, buffer } = await fh.read(bufs[0]!, 0, CHUNK, pos);
      if (bytesRead === 0) break;
      pos += bytesRead;
      hasher.update(buffer.subarray(0, bytesRead));
    }
    return hasher.digest();
  } finally {
    await fh.close();
  }
}
