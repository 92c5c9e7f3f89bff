// The local store: CAS files + LMDB metadata, opened together. Everything
// that reads or writes blobs, trees and refs on this host goes through it
// (the CLI directly, the daemon as one of its components).
import { isDigest, type Digest } from '../../lib/digest.js';
import { errnoOf, fsError, hasCode, VriftError } from '../../lib/errors.js';
import { LruMap } from '../../lib/lru.js';
import { Metrics } from '../../lib/metrics.js';
import { Admission, FROM_LOCAL, type AdmissionSource } from './admission.js';
import { judge, recordGood, statBlob, type BlobStat } from './blob-check.js';
import { Cas, corruptBlob, hashFileSync, missingBlob } from './cas.js';
import { ensureHome, homeLayout, resolveHome, type HomeLayout } from './home.js';
import { Leases } from './leases.js';
import { Meta, type RefRecord } from './meta.js';
import { TreeBlobs } from './tree-blobs.js';
import { decodeCheckedTree, decodeTree, encodeSorted, sortEntries, summarize, treeId, type Tree, type TreeEntry, type TreeSummary } from './tree.js';
import type { WrittenBlob } from './blob-writer.js';

/** A tree ready to store: its id, sorted entries and encoding. */
export interface EncodedTree {
  id: Digest;
  sorted: TreeEntry[];
  encoded: Buffer;
}

export class Store {
  readonly layout: HomeLayout;
  readonly cas: Cas;
  readonly meta: Meta;
  /** The one door through which bytes become blobs (admission.ts). */
  readonly admission: Admission;
  /** What running operations rely on, kept by gc in any process (leases.ts). */
  readonly leases: Leases;
  /** Decoded trees, by id: a few hundred thousand entries at most (a daemon decodes the trees of every restore). */
  private readonly treeCache = new LruMap<Digest, TreeEntry[]>(500_000, (entries) => entries.length + 1);

  private constructor(layout: HomeLayout, metrics: Metrics) {
    this.layout = layout;
    ensureHome(layout);
    this.meta = Meta.open(layout.meta);
    this.cas = new Cas(layout, (digest) => this.meta.removeBlob(digest));
    this.admission = new Admission(this.cas, this.meta, metrics);
    this.leases = new Leases(this.meta);
  }

  /** Opens the store of `home` ($VRIFT_HOME by default); admissions are counted in `metrics`. */
  static open(home?: string, opts: { metrics?: Metrics } = {}): Store {
    return new Store(homeLayout(resolveHome(home)), opts.metrics ?? new Metrics());
  }

  async close(): Promise<void> {
    await this.meta.flush();
    await this.meta.close();
  }

  /** Makes (and records) the 0555 twin an executable tree entry links to. */
  ensureExecTwin(digest: Digest): void {
    const rec = this.meta.getBlob(digest);
    if (rec?.exec && this.cas.has(digest, true)) return;
    this.cas.ensureExecTwin(digest);
    if (rec) {
      // The twin was just copied from the blob (checked by the caller): its ctime is known good now.
      const twin = statBlob(this.cas, digest, true);
      this.meta.putBlob(digest, { ...rec, exec: true, twinCtimeNs: twin?.ctimeNs });
    }
  }

  /** Stores a blob from memory (verified when `expected` is given). */
  putBlob(buf: Uint8Array, expected?: Digest): WrittenBlob {
    return this.admission.buffer(buf, FROM_LOCAL, expected);
  }

  /** The blob is stored here (and indexed). */
  hasBlob(digest: Digest): boolean {
    return this.meta.hasBlob(digest) && this.cas.has(digest);
  }

  /**
   * Integrity check before a blob is handed out by link or open: present,
   * the right size, and unchanged since it was last known good (its inode
   * change time as the index recorded it: blob-check.ts). Anything else is
   * re-hashed; a corrupt blob is quarantined (and this throws
   * ERR_VRIFT_CAS_CORRUPT), a good one gets its record renewed. Returns
   * the ctime of the blob file (the twin's with `exec`) as it was found good.
   */
  checkBlob(digest: Digest, size: number, exec = false, stat?: BlobStat): bigint | undefined {
    const st = stat ?? statBlob(this.cas, digest, exec);
    if (!st) throw missingBlob(digest);
    if (judge(st, size, this.meta.getBlob(digest), exec) === 'ok') return st.ctimeNs;
    return this.recheck(digest, exec, size);
  }

  /** checkBlob as a yes/no: false when the blob is missing or was found corrupt (and quarantined). */
  blobIntact(digest: Digest, size: number, exec = false): boolean {
    try {
      this.checkBlob(digest, size, exec);
      return true;
    } catch (e) {
      if (hasCode(e, 'ERR_VRIFT_CAS_CORRUPT') || hasCode(e, 'ERR_VRIFT_CAS_MISSING')) return false;
      throw e;
    }
  }

  /**
   * Re-hashes a blob (and its twin, if any): a good one gets the canonical
   * mtime back and its ctimes recorded as known good; a corrupt one is
   * quarantined (the index forgets it) and this throws. Returns the ctime
   * recorded for the blob file (the twin's with `exec`).
   */
  recheck(digest: Digest, exec = false, size?: number): bigint | undefined {
    for (const which of exec ? [true, false] : [false, true]) {
      const path = this.cas.pathOf(digest, which);
      let actual: Digest;
      try {
        actual = hashFileSync(path);
      } catch (e) {
        if (errnoOf(e) === 'ENOENT') {
          if (which === exec) throw missingBlob(digest);
          continue; // no twin
        }
        throw fsError(e, path, 'checking a blob');
      }
      if (actual !== digest) {
        this.cas.quarantine(digest);
        throw corruptBlob(digest);
      }
    }
    this.cas.resetMtime(digest);
    const bytes = size ?? this.meta.getBlob(digest)?.size ?? statBlob(this.cas, digest)?.size ?? 0;
    const good = recordGood(this.cas, this.meta, digest, bytes, { checkedAt: Date.now() });
    return exec ? good.twinCtimeNs : good.ctimeNs;
  }

  /** Removes a blob from disk and index, e.g. after a corrupt read. */
  forgetBlob(digest: Digest): number {
    const freed = this.cas.remove(digest);
    this.meta.removeBlob(digest);
    return freed;
  }

  /** Quarantines a blob found corrupt (the CAS tells the index to forget it). */
  quarantineBlob(digest: Digest): void {
    this.cas.quarantine(digest);
  }

  // --- trees ---------------------------------------------------------

  /** Sorts, checks and encodes a tree, without storing it (so a lease can name it first). */
  encodeTree(entries: TreeEntry[]): EncodedTree {
    const sorted = sortEntries(entries);
    const encoded = encodeSorted(sorted); // checks what decodeTree would
    return { id: treeId(encoded), sorted, encoded };
  }

  /** Encodes (unless given encoded), stores and records a tree; returns its id. */
  putTree(tree: TreeEntry[] | EncodedTree): Digest {
    const { id, sorted, encoded } = Array.isArray(tree) ? this.encodeTree(tree) : tree;
    this.admission.buffer(encoded, FROM_LOCAL, id);
    if (!this.meta.trees.doesExist(id)) void this.meta.trees.put(id, { ...summarize(sorted), createdAt: Date.now() });
    this.treeCache.set(id, sorted);
    return id;
  }

  /**
   * Admits a tree blob that came from elsewhere (`source`): checked,
   * verified, recorded. Not decoded (a lazy mount is published from the
   * encoding, treeBytes): getTree decodes it when first asked.
   */
  admitTree(id: Digest, encoded: Uint8Array, source: AdmissionSource): void {
    const summary = this.admission.tree(id, encoded, source);
    if (!this.meta.trees.doesExist(id)) void this.meta.trees.put(id, { ...summary, createdAt: Date.now() });
    this.admittedTree = { id, encoded: Buffer.from(encoded.buffer, encoded.byteOffset, encoded.byteLength) };
  }

  /** The tree admitted last, until it is decoded: its record may not be committed yet, and its bytes need no second read. */
  private admittedTree?: { id: Digest; encoded: Buffer };

  /** A tree's encoded bytes, verified (read from the CAS, unless it was admitted just now). */
  treeBytes(id: Digest): Buffer {
    return this.admittedTree?.id === id ? this.admittedTree.encoded : this.readTreeBlob(id);
  }

  /** A tree's counts, from its record (or its blob when the record is missing). */
  treeSummary(id: Digest): TreeSummary {
    const rec = this.meta.trees.get(id);
    if (rec) return { entries: rec.entries, files: rec.files, dirs: rec.dirs, symlinks: rec.symlinks, bytes: rec.bytes };
    return summarize(this.getTree(id).entries);
  }

  hasTree(id: Digest): boolean {
    return this.treeCache.has(id) || this.admittedTree?.id === id || (this.meta.trees.doesExist(id) && this.cas.has(id));
  }

  /** A tree's encoded bytes, read from the CAS and verified against its id. */
  readTreeBlob(id: Digest): Buffer {
    if (!this.cas.has(id)) {
      throw new VriftError('ERR_VRIFT_TREE_NOT_FOUND', `tree ${id} is not in the local store`, {
        hint: 'check the id with `vrift ref list`, or pull the tree from a shared tier',
        exitCode: 1,
      });
    }
    return this.cas.readVerified(id);
  }

  /** A tree by id, read from the CAS and verified. */
  getTree(id: Digest): Tree {
    const cached = this.treeCache.get(id);
    if (cached) return { id, entries: cached };
    // (the listing admitted just now: checked then, in the addon)
    const admitted = this.admittedTree?.id === id ? this.admittedTree.encoded : undefined;
    const entries = admitted ? decodeCheckedTree(admitted) : decodeTree(this.readTreeBlob(id));
    this.treeCache.set(id, entries);
    if (admitted) this.admittedTree = undefined;
    return { id, entries };
  }

  /** The distinct file blobs of a tree, in tree order (tree-blobs.ts); kept for the last few trees asked for. */
  blobsOf(id: Digest): TreeBlobs {
    let blobs = this.treeBlobs.get(id);
    if (!blobs) this.treeBlobs.set(id, (blobs = new TreeBlobs(this.treeBytes(id))));
    return blobs;
  }
  private readonly treeBlobs = new LruMap<Digest, TreeBlobs>(8);

  /** Resolves a tree id or a ref name to a tree id. */
  resolve(treeish: string): Digest {
    if (isDigest(treeish)) return treeish;
    const ref = this.meta.refs.get(treeish);
    if (ref) return ref.tree;
    throw new VriftError('ERR_VRIFT_REF_NOT_FOUND', `no tree or ref named ${JSON.stringify(treeish)}`, {
      hint: 'list refs with `vrift ref list`; a tree id is 64 hex characters',
      exitCode: 1,
    });
  }

  // --- refs ----------------------------------------------------------

  /**
   * Points ref `name` at `tree`, with the blob of its files' times when there
   * is one, and the writer's signed record when the ref came from a shared
   * tier (peers serve that record as it is: ref-signature.ts).
   */
  setRef(name: string, tree: Digest, extra: { times?: Digest; record?: string } = {}): void {
    assertRefName(name);
    const rec: RefRecord = { tree, updatedAt: Date.now() };
    if (extra.times !== undefined) rec.times = extra.times;
    if (extra.record !== undefined) rec.record = extra.record;
    void this.meta.refs.put(name, rec);
  }

  getRef(name: string): Digest | undefined {
    return this.meta.refs.get(name)?.tree;
  }

  getRefTarget(name: string): { tree: Digest; times?: Digest } | undefined {
    const r = this.meta.refs.get(name);
    if (!r) return undefined;
    return r.times === undefined ? { tree: r.tree } : { tree: r.tree, times: r.times };
  }

  removeRef(name: string): boolean {
    if (!this.meta.refs.doesExist(name)) return false;
    void this.meta.refs.remove(name);
    return true;
  }

  listRefs(): ({ name: string } & RefRecord)[] {
    return [...this.meta.refs.getRange()].map(({ key, value }) => ({ name: key, ...value }));
  }

  pin(tree: Digest, reason: string): void {
    void this.meta.pins.put([tree, reason], { at: Date.now() });
  }

  unpin(tree: Digest, reason: string): void {
    void this.meta.pins.remove([tree, reason]);
  }
}

/** Ref names: printable, no whitespace or ':', not a digest (those name trees), at most 512 bytes. */
export function assertRefName(name: string): void {
  let why: string | undefined;
  if (name.length === 0) why = 'it is empty';
  else if (Buffer.byteLength(name) > 512) why = 'it is longer than 512 bytes';
  else if (/[\s\0-\x1f\x7f]/.test(name)) why = 'it contains whitespace or control characters';
  else if (name.includes(':')) why = 'it contains ":" (reserved for <tree>:<path>)';
  else if (isDigest(name)) why = 'it looks like a tree id';
  else if (name.startsWith('-')) why = 'it starts with "-"';
  if (why) {
    throw new VriftError('ERR_VRIFT_REF_NAME', `invalid ref name ${JSON.stringify(name)}: ${why}`, {
      hint: 'use names like ci/node_modules/<key>',
    });
  }
}
