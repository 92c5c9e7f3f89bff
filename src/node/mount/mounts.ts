// Mounts: a tree published at a directory through its own VDir (shared
// memory the shim reads). Mounts are recorded in LMDB, so a restarted
// daemon serves every mount that was active, and pin their trees.
import { mkdirSync, renameSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Digest } from '../../lib/digest.js';
import { fsError, VriftError } from '../../lib/errors.js';
import { MountImageCache } from './image-cache.js';
import { mountPointRefusal } from './mount-point.js';
import { newVDirName, vdirNameTaken } from './vdir-name.js';
import { clearOverlay, flushOverlay, mergedEntries, overlayOf, setOverlays } from './overlay.js';
import type { Store } from '../store/store.js';
import { decodeCheckedTree, type TreeEntry } from '../store/tree.js';
import { decodeLazyHead } from '../store/lazy-index.js';
import { listingOfNames, NO_DIGEST_YET } from '../store/names.js';
import { Journal, type Announcement } from './journal.js';
import { dropUpperDir, ensureUpperDir, sweepDroppedUppers, upperDir } from './upper.js';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, VDIR_F_REMOTE, VDIR_F_UPPER, VDir, type VDirEntry, type VDirEntryInput } from './vdir.js';

/** A blob found good with inode change time `ctimeNs`, and the paths of a mount that name it. */
export interface BlobCtime {
  digest: Digest;
  rels: readonly string[];
  ctimeNs: bigint;
}

/** A partial mount's VDir built ahead of mount() (MountManager.buildFromNames), with the name and time it was built for. */
export interface PrebuiltVDir {
  name: string;
  mountedAt: number;
  vdir: VDir;
}

export interface MountRecord {
  path: string;
  tree: Digest;
  project: string;
  /** The VDir's name (its object is /dev/shm/vrift.<uid>.<name>). */
  name: string;
  mountedAt: number;
  /** Mounted from the tree's lazy index with this head (docs/lazy.md "Partial metadata"): the tree itself may not be here. */
  lazy?: Digest;
}

export interface MountInfo extends MountRecord {
  shmPath: string;
  entries: number;
  vdirBytes: number;
  /** Changes programs made in the upper layer, as the journal saw them (since the daemon started). */
  journal: { wakes: number; batches: number; changes: number };
}

/**
 * The VDir entries of a tree (the root "" is the VDir's own). With
 * `checkLocal: false` no blob is stat()ed (50 000 of them cost ~100 ms of a
 * mount) and none is flagged VDIR_F_REMOTE: the shim finds a missing blob
 * when it opens it (ENOENT -> FETCH through the daemon -> EIO if that fails).
 * Each file carries its blob's ctime as the index last knew it good (the
 * twin's for an executable): the shim compares it on open (vrift_vdir.h).
 */
export function vdirEntries(store: Store, entries: TreeEntry[], mtimeSec: number, opts: { checkLocal?: boolean } = {}): VDirEntryInput[] {
  const check = opts.checkLocal ?? true;
  return entries.map((e) => {
    if (e.kind === 'dir') return { path: e.path, mode: S_IFDIR | e.mode, size: 0, mtimeSec };
    if (e.kind === 'symlink') return { path: e.path, mode: S_IFLNK | 0o777, size: e.size, mtimeSec, target: e.target! };
    const exec = e.mode === 0o755;
    const local = !check || store.cas.has(e.digest!, exec);
    const rec = store.meta.getBlob(e.digest!);
    const ctimeNs = exec ? rec?.twinCtimeNs : rec?.ctimeNs;
    return { path: e.path, mode: S_IFREG | e.mode, size: e.size, mtimeSec, digest: e.digest!, flags: local ? 0 : VDIR_F_REMOTE, ctimeNs };
  });
}

/** The digests of a tree's executable files (opened through their exec twins). */
function execBlobs(entries: readonly TreeEntry[]): Digest[] {
  const out: Digest[] = [];
  for (const e of entries) if (e.kind === 'file' && e.mode === 0o755) out.push(e.digest!);
  return out;
}

/**
 * Per entry of a tree, its blob's ctime as the index last knew it good (the
 * twin's for an executable; 0 = unknown), as vdirEntries gives each file;
 * undefined when the index knows none of them (a cold node).
 */
function blobCtimes(store: Store, entries: readonly TreeEntry[]): BigUint64Array | undefined {
  let out: BigUint64Array | undefined;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    if (e.kind !== 'file') continue;
    const rec = store.meta.getBlob(e.digest!);
    const ctimeNs = e.mode === 0o755 ? rec?.twinCtimeNs : rec?.ctimeNs;
    if (ctimeNs === undefined) continue;
    out ??= new BigUint64Array(entries.length);
    out[i] = ctimeNs;
  }
  return out;
}

export class MountManager {
  private readonly vdirs = new Map<string, VDir>();
  /** The records of published mounts (LMDB writes are asynchronous: a request right after MOUNT must still find it). */
  private readonly live = new Map<string, MountRecord>();
  /** Each mount's journal of changes the shims announced (journal.ts). */
  private readonly journals = new Map<string, Journal>();
  /** Publishes announced changes in order (set by writes.ts, which knows how); `fresh`: in their turn, not replayed. */
  applyAnnouncements: (rec: MountRecord, vdir: VDir, list: readonly Announcement[], fresh: boolean, onError: (a: Announcement, e: Error) => void) => void = () => undefined;

  /** VDir images of recently mounted trees: a new mount of one of them is a copy (mount-image-cache.ts). */
  readonly images: MountImageCache;

  constructor(
    private readonly store: Store,
    private readonly log: (line: string) => void,
    opts: { imageCacheBytes?: number } = {},
  ) {
    this.images = new MountImageCache(opts.imageCacheBytes);
  }


  records(): MountRecord[] {
    const stored = [...this.store.meta.state.getRange({ start: ['mount', ''], end: ['mount', '\uffff'] })].map(({ value }) => value as MountRecord);
    // plus mounts published since whose (asynchronous) LMDB write is not committed yet
    const seen = new Set(stored.map((r) => r.path));
    return [...stored, ...[...this.live.values()].filter((r) => !seen.has(r.path))];
  }

  /** Re-publishes every recorded mount (daemon start). */
  restore(): void {
    sweepDroppedUppers(this.store);
    for (const rec of this.records()) {
      // A record of a place no mount may go (written before the daemon checked, or planted): dropped, not replayed.
      const refused = mountPointRefusal(rec.path, this.store.layout.root);
      if (refused) {
        this.log(`mount: not restoring ${rec.path}: ${refused.message}; its record is dropped`);
        this.forget(rec);
        continue;
      }
      try {
        // The name is on record and was visible in /dev/shm: after a reboot another user may hold it now.
        if (vdirNameTaken(rec.name)) this.rename(rec);
        this.publish(rec);
        this.log(`mount: restored ${rec.path} (tree ${rec.tree})`);
      } catch (e) {
        this.log(`mount: could not restore ${rec.path}: ${(e as Error).message}`);
      }
    }
  }

  /**
   * Publishes `treeish` at `path`. `coldListing`: its listing arrived from
   * another tier just now (a cold lazy mount), so it is published from its
   * encoding alone: no blob ctime is looked up (one index read per file,
   * for blobs almost never here) and no exec twin made; a local blob gets
   * both from the daemon at its first open (FETCH) instead.
   */
  mount(treeish: string, path: string, project?: string, opts: { coldListing?: boolean; partial?: { lazy: Digest; names: Buffer; prebuilt?: PrebuiltVDir } } = {}): MountRecord {
    const prebuilt = opts.partial?.prebuilt;
    try {
      return this.mountNow(treeish, path, project, opts);
    } catch (e) {
      if (prebuilt && this.vdirs.get(resolve(path)) !== prebuilt.vdir) prebuilt.vdir.close({ unlink: true }); // (not published)
      throw e;
    }
  }

  /**
   * A partial mount's VDir, built from its names on the addon's worker
   * thread for mount() to publish (opts.partial.prebuilt): the ~40 ms of a
   * 100 000-entry build leave the daemon's thread to the network meanwhile
   * (a traced start's first files arrive by the time MOUNT answers).
   */
  async buildFromNames(path: string, names: Buffer): Promise<PrebuiltVDir> {
    const abs = resolve(path);
    this.assertMountable(abs); // (fails before the work; mount() checks again)
    const name = newVDirName();
    const mountedAt = Date.now();
    const vdir = await VDir.fromNamesAsync(name, { casRoot: this.store.layout.cas, mountRoot: abs, names, mtimeSec: Math.floor(mountedAt / 1000) });
    return { name, mountedAt, vdir };
  }

  private mountNow(treeish: string, path: string, project: string | undefined, opts: { coldListing?: boolean; partial?: { lazy: Digest; names: Buffer; prebuilt?: PrebuiltVDir } }): MountRecord {
    const abs = resolve(path);
    this.assertMountable(abs);
    const tree = this.store.resolve(treeish);
    if (!opts.partial && !this.store.hasTree(tree)) this.store.readTreeBlob(tree); // fails clearly
    try {
      mkdirSync(abs, { recursive: true });
    } catch (e) {
      throw fsError(e, abs, 'creating the mount point');
    }
    const prebuilt = opts.partial?.prebuilt;
    const rec: MountRecord = { path: abs, tree, project: project ?? abs, name: prebuilt?.name ?? newVDirName(), mountedAt: prebuilt?.mountedAt ?? Date.now() };
    if (opts.partial) rec.lazy = opts.partial.lazy;
    // a fresh mount starts from its tree
    clearOverlay(this.store, rec.name);
    dropUpperDir(this.store, rec.name);
    // The record is committed first, in a synchronous transaction (about a millisecond): a daemon killed
    // once MOUNT has answered restores the mount. (An asynchronous put waited for the VDir's build and
    // then for LMDB's write thread behind the event loop's other work: 40-80 ms of a lazy MOUNT.) A disk
    // too full to commit fails the MOUNT with one line, before anything is published.
    this.store.meta.transact(() => this.store.meta.state.put(['mount', abs], rec));
    try {
      this.publish(rec, opts.coldListing || opts.partial !== undefined, opts.partial?.names, prebuilt?.vdir);
    } catch (e) {
      void this.store.meta.state.remove(['mount', abs]); // (no mount to restore)
      throw e;
    }
    // (a partial mount's tree may not be here: gc then keeps its lazy index and the blobs it named, store/gc.ts)
    this.store.pin(tree, `mount:${abs}`);
    return rec;
  }

  unmount(path: string): void {
    const abs = resolve(path);
    const rec = this.live.get(abs) ?? (this.store.meta.state.get(['mount', abs]) as MountRecord | undefined);
    if (!rec) throw new VriftError('ERR_VRIFT_MOUNT_NOT_FOUND', `${abs} is not mounted`, { hint: 'see `vrift status`', exitCode: 1 });
    this.journals.get(abs)?.close();
    this.journals.delete(abs);
    this.vdirs.get(abs)?.close({ unlink: true });
    this.vdirs.delete(abs);
    this.live.delete(abs);
    this.forget(rec);
  }

  /** Gives a recorded mount a new VDir name (its old one is held by someone else), keeping its upper layer and overlay. */
  private rename(rec: MountRecord): void {
    const old = rec.name;
    rec.name = newVDirName();
    this.log(`mount: ${rec.path}: its VDir name ${old} is held by another user in /dev/shm; renamed to ${rec.name}`);
    try {
      renameSync(upperDir(this.store, old), upperDir(this.store, rec.name));
    } catch {
      /* no upper layer yet */
    }
    setOverlays(this.store, rec.name, [...overlayOf(this.store, old)]);
    flushOverlay(this.store);
    clearOverlay(this.store, old);
    void this.store.meta.state.put(['mount', rec.path], rec);
  }

  /** Removes a mount's record, pin and upper layer. */
  private forget(rec: MountRecord): void {
    this.store.unpin(rec.tree, `mount:${rec.path}`);
    clearOverlay(this.store, rec.name);
    dropUpperDir(this.store, rec.name);
    void this.store.meta.state.remove(['mount', rec.path]);
  }

  list(): MountInfo[] {
    return this.records().map((rec) => {
      const st = this.vdirs.get(rec.path)?.stats();
      const journal = { ...(this.journals.get(rec.path)?.counts ?? { wakes: 0, batches: 0, changes: 0 }) };
      return { ...rec, shmPath: st?.shmPath ?? '', entries: st?.entries ?? 0, vdirBytes: st?.mappedBytes ?? 0, journal };
    });
  }

  vdirOf(path: string): VDir | undefined {
    return this.vdirs.get(resolve(path));
  }

  /**
   * renewBlobCtime for the non-executable entries at each blob's `rels`
   * still naming its `digest`, in one batch: blobs prefetched into a lazy
   * mount or brought by its bulk pull, so their files open without asking
   * the daemon (an executable one keeps asking: it opens through its exec
   * twin). Returns the entries changed.
   */
  renewBlobCtimes(mountRoot: string, blobs: readonly BlobCtime[]): number {
    return this.renew(mountRoot, blobs, { skipExec: true });
  }

  /**
   * After a bulk pull: every non-executable lower file whose blob the index
   * holds now but whose entry still says remote, or carries another ctime,
   * names the blob's ctime and is local, in one batch, so the shim opens it
   * without asking the daemon (each such open was a FETCH round trip: a
   * `tar -c` of 100 000 files after the pull spent most of its time there).
   * Returns how many entries changed.
   */
  publishArrived(mountRoot: string): number {
    const named = this.restateFiles(mountRoot, (t, e) => {
      if (t.mode & 0o111 || e.mode & 0o111 || e.digest !== t.digest) return undefined;
      const ctimeNs = this.store.meta.getBlob(t.digest!)?.ctimeNs;
      if (ctimeNs === undefined || (e.ctimeNs === ctimeNs && !(e.flags & VDIR_F_REMOTE))) return undefined;
      return { path: t.path, mode: e.mode, size: e.size, mtimeSec: e.mtimeSec, digest: t.digest!, flags: e.flags & ~VDIR_F_REMOTE, ctimeNs };
    });
    const tree = this.live.get(mountRoot)?.tree;
    if (named > 0 && tree) this.images.forget(tree);
    return named;
  }

  /**
   * Each lower file of the mount's tree (its full listing, here) with its
   * VDir entry (a regular file, not in the upper layer): `restate` gives
   * the entry it becomes, or undefined to leave it. One VDir batch; returns
   * the entries changed.
   */
  private restateFiles(mountRoot: string, restate: (t: TreeEntry, e: VDirEntry) => VDirEntryInput | undefined): number {
    const vdir = this.vdirs.get(mountRoot);
    const rec = this.live.get(mountRoot);
    if (!vdir || !rec || !this.store.hasTree(rec.tree)) return 0;
    const batch: VDirEntryInput[] = [];
    for (const t of this.store.getTree(rec.tree).entries) {
      if (t.kind !== 'file') continue;
      const e = vdir.lookup(t.path);
      if (!e || (e.mode & S_IFMT) !== S_IFREG || e.flags & VDIR_F_UPPER) continue;
      const next = restate(t, e);
      if (next) batch.push(next);
    }
    if (batch.length > 0) vdir.apply(batch);
    return batch.length;
  }

  /**
   * A program opened `rel` and the daemon found its blob good with ctime
   * `ctimeNs` (FETCH): the entry carries that ctime from now on, so the
   * shim's next open of it is checked without asking (a hard link, e.g. a
   * materialize, moves a blob's ctime). Nothing changes when the entry is
   * no longer that lower file.
   */
  renewBlobCtime(mountRoot: string, rel: string, digest: Digest, ctimeNs: bigint): void {
    this.renew(mountRoot, [{ digest, rels: [rel], ctimeNs }], { skipExec: false });
  }

  /** The files at each blob's `rels` still naming its `digest` carry its `ctimeNs` and are no longer remote (one VDir batch). */
  private renew(mountRoot: string, blobs: readonly BlobCtime[], { skipExec }: { skipExec: boolean }): number {
    const vdir = this.vdirs.get(mountRoot);
    if (!vdir) return 0;
    const batch: VDirEntryInput[] = [];
    for (const { digest, rels, ctimeNs } of blobs) {
      for (const rel of rels) {
        const e = vdir.lookup(rel);
        if (!e || (e.mode & S_IFMT) !== S_IFREG || e.digest !== digest || e.flags & VDIR_F_UPPER || (skipExec && e.mode & 0o111)) continue;
        if (e.ctimeNs === ctimeNs && !(e.flags & VDIR_F_REMOTE)) continue;
        batch.push({ path: rel, mode: e.mode, size: e.size, mtimeSec: e.mtimeSec, digest, flags: e.flags & ~VDIR_F_REMOTE, ctimeNs });
      }
    }
    if (batch.length === 0) return 0;
    vdir.apply(batch);
    // The cached image of the tree carries the stale ctime too: the next mount of it is built afresh.
    const tree = this.live.get(mountRoot)?.tree;
    if (tree) this.images.forget(tree);
    return batch.length;
  }

  /** The journal of a published mount. */
  journalOf(path: string): Journal | undefined {
    return this.journals.get(resolve(path));
  }

  /** The record of a published mount. */
  recordOf(path: string): MountRecord | undefined {
    return this.live.get(resolve(path));
  }

  /** Closes the VDirs but leaves their objects: running programs keep reading them. */
  stop(): void {
    for (const j of this.journals.values()) j.close();
    this.journals.clear();
    flushOverlay(this.store);
    for (const v of this.vdirs.values()) v.close({ unlink: false });
    this.vdirs.clear();
    this.live.clear();
  }

  /**
   * A partial mount's names blob (names.ts: the listing whose files name no
   * digest yet), from its lazy index in the local CAS; undefined for a
   * mount of a tree that is here.
   */
  private partialNames(rec: MountRecord): Buffer | undefined {
    if (rec.lazy === undefined || this.store.hasTree(rec.tree)) return undefined;
    const head = decodeLazyHead(this.store.cas.readVerified(rec.lazy), rec.lazy, rec.tree);
    if ('problem' in head) throw new Error(`its lazy index's head was refused: ${head.problem}`);
    return this.store.cas.readVerified(head.names);
  }

  /**
   * A program opened `rel` of a partial mount and the daemon learned its
   * digest from the tree's lazy index (checked): the entry names it from
   * now on, so its blob is found in the CAS (`remote`: not yet, the open
   * asks for it). Nothing changes when the entry is no longer that lower
   * file.
   */
  learnDigest(mountRoot: string, rel: string, digest: Digest, remote = false): void {
    const vdir = this.vdirs.get(mountRoot);
    const e = vdir?.lookup(rel);
    if (!vdir || !e || (e.mode & S_IFMT) !== S_IFREG || e.flags & VDIR_F_UPPER || e.digest !== NO_DIGEST_YET) return;
    vdir.apply([{ path: rel, mode: e.mode, size: e.size, mtimeSec: e.mtimeSec, digest, flags: remote ? e.flags | VDIR_F_REMOTE : e.flags, ctimeNs: e.ctimeNs }]);
  }

  /**
   * A partial mount whose tree's full listing is here now: every file that
   * still names no digest gets its digest from the listing (one VDir
   * batch), so the mount is like any other from then on (its accounting,
   * prefetch and bulk switch work on the listing). Returns the files named.
   */
  upgradePartial(mountRoot: string): number {
    return this.restateFiles(mountRoot, (t, e) =>
      e.digest === NO_DIGEST_YET ? { path: t.path, mode: e.mode, size: e.size, mtimeSec: e.mtimeSec, digest: t.digest!, flags: e.flags, ctimeNs: e.ctimeNs } : undefined,
    );
  }

  private publish(rec: MountRecord, coldListing = false, names = this.partialNames(rec), prebuilt?: VDir): void {
    const overlay = overlayOf(this.store, rec.name);
    const noUpper = ensureUpperDir(this.store, rec.name);
    if (noUpper) this.log(`mount: ${rec.path} has no upper layer (writes in it fail with EROFS): ${noUpper.message}`);
    const mtimeSec = Math.floor(rec.mountedAt / 1000);
    const casRoot = this.store.layout.cas;
    // A tree mounted before (and still cached) with no changes on top: copy its image.
    const cached = overlay.size === 0 && !names ? this.images.get(rec.tree) : undefined;
    let vdir: VDir;
    if (prebuilt && overlay.size > 0) prebuilt.close({ unlink: true }); // (a fresh mount has no overlay: never so)
    if (prebuilt && overlay.size === 0) {
      vdir = prebuilt;
    } else if (cached) {
      for (const d of cached.execDigests) if (this.store.cas.has(d)) this.store.ensureExecTwin(d);
      vdir = VDir.fromImage(rec.name, { casRoot, mountRoot: rec.path, image: cached.image, mtimeSec });
    } else if (overlay.size === 0) {
      // The tree alone: the addon reads its encoding (no JS record per entry: most of a large mount's cost).
      // A cold listing is not even decoded here (the first open does it): its blobs are almost never here, and
      // one that is gets its exec twin and ctime when first opened (FETCH).
      const entries = coldListing || names ? undefined : this.store.getTree(rec.tree).entries;
      const execDigests = entries ? execBlobs(entries) : [];
      for (const d of execDigests) if (this.store.cas.has(d)) this.store.ensureExecTwin(d);
      const ctimes = entries && blobCtimes(this.store, entries);
      vdir = names
        ? VDir.fromNames(rec.name, { casRoot, mountRoot: rec.path, names, mtimeSec })
        : VDir.fromTree(rec.name, { casRoot, mountRoot: rec.path, tree: this.store.treeBytes(rec.tree), mtimeSec, ctimes });
      // (not a cold listing's: its first open renews an entry, which drops the image, and the copy costs ~10-20 ms before MOUNT answers)
      if (!coldListing && !names) this.images.set(rec.tree, { image: vdir.image(), execDigests });
    } else {
      // The tree as mounted, plus the changes programs made in it since (mount-overlay.ts).
      const { entries, mtimes, uppers } = mergedEntries(names ? decodeCheckedTree(listingOfNames(names)) : this.store.getTree(rec.tree).entries, overlay);
      const execDigests: Digest[] = [];
      for (const e of entries) if (e.kind === 'file' && e.mode === 0o755 && !uppers.has(e.path)) execDigests.push(e.digest!);
      for (const d of execDigests) if (this.store.cas.has(d)) this.store.ensureExecTwin(d);
      const upserts = vdirEntries(this.store, entries, mtimeSec, { checkLocal: false });
      if (mtimes.size > 0) for (const u of upserts) u.mtimeSec = mtimes.get(u.path) ?? u.mtimeSec;
      if (uppers.size > 0) for (const u of upserts) if (uppers.has(u.path)) u.flags = VDIR_F_UPPER;
      vdir = VDir.create(rec.name, { casRoot, mountRoot: rec.path, ...VDir.sizeFor(upserts) });
      vdir.apply(upserts);
      // (no image kept: an overlay is this mount's own)
    }
    this.vdirs.get(rec.path)?.close({ unlink: false });
    this.vdirs.set(rec.path, vdir);
    this.live.set(rec.path, rec);
    // Changes announced before (by programs still running across a
    // restart) count as published, and the journal files left are applied
    // again as late records (applying one twice changes nothing).
    this.journals.get(rec.path)?.close();
    const journal = new Journal(upperDir(this.store, rec.name), () => this.vdirs.get(rec.path), (list, fresh, onError) => this.applyAnnouncements(rec, this.vdirs.get(rec.path)!, list, fresh, onError), this.log);
    this.journals.set(rec.path, journal);
    vdir.setUpperPublished(journal.issued());
    journal.replay();
  }

  private assertMountable(abs: string): void {
    const refused = mountPointRefusal(abs, this.store.layout.root);
    if (refused) throw refused;
    for (const rec of this.records()) {
      if (rec.path === abs) throw new VriftError('ERR_VRIFT_MOUNT_EXISTS', `${abs} is already mounted (tree ${rec.tree})`, { hint: 'unmount it first' });
      if (abs.startsWith(`${rec.path}/`) || rec.path.startsWith(`${abs}/`)) {
        throw new VriftError('ERR_VRIFT_MOUNT_NESTED', `${abs} overlaps the mount at ${rec.path}`, { hint: 'mounts cannot nest' });
      }
    }
  }
}
