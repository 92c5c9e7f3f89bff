// Leases: what running operations rely on, so that `vrift gc`, in this
// process or another, never evicts it from under them.
//
// An operation (ingest, save, restore, pull, materialize …) holds a lease
// while it runs: a record in LMDB naming its process (pid and the process's
// start time, so a reused pid is not taken for the owner), when it began,
// and the trees it relies on, added as they become known. gc keeps
//   - every blob of a tree a live lease names, and
//   - every CAS file whose inode changed (ctime: the blob writer sets the
//     mtime and renames the file into cas/) since the oldest live lease
//     began: blobs an operation admitted before it knew its tree.
// No write per blob is needed. Leases of dead processes are ignored (and
// removed by gc).
//
// A lease that begins or grows while gc works is never broken:
//   - begin and addTree bump a lease generation, in the write transaction
//     that records them;
//   - gc evicts in batches; the write transaction that removes a batch's
//     index records first checks the generation is the one gc computed
//     what to keep at (else gc computes it again), and leaves a marker
//     while the batch's files are unlinked;
//   - begin and addTree return only once every batch that passed its check
//     before them has unlinked its files and dropped its marker.
// So once `await lease.addTree(t)` returns, each blob of t either stays, or
// is already gone from the index *and* from disk: an operation that then
// looks up what it lacks (pull does) simply fetches it again. An operation
// that admits blobs before it knows its tree (ingest) calls
// lease.evictedSince() after addTree: if false, nothing left the store
// while it ran; if true it checks its tree's blobs on disk.
//
// Usage (try/finally, so a failure releases the lease too):
//   const lease = await store.leases.begin(`restore ${ref}`); // or begin(what, [tree]) when the tree is known
//   try {
//     await lease.addTree(tree); // before looking up what is missing (or trusting meta.treeComplete)
//     …                          // fetch what the index lacks, materialize, push …
//   } finally {
//     lease.release();           // committed with the next write or store.close()
//   }
// A lease can be handed down (ingest takes `opts.lease`): save names the
// tree ingest made and keeps it through the push.
import { randomBytes } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Digest } from '../../lib/digest.js';
import type { Meta } from './meta.js';

/** The process holding a lease (or running a gc batch). */
export interface Owner {
  pid: number;
  /** Start time of the process in clock ticks since boot (/proc/<pid>/stat field 22); 0 when unknown. */
  start: number;
  /** /proc/sys/kernel/random/boot_id: a lease from before a reboot is dead. */
  boot: string;
  /** The pid namespace (/proc/self/ns/pid): pids of another one cannot be checked from here. */
  pidns: string;
}

export interface LeaseRecord {
  id: string;
  what: string;
  owner: Owner;
  /** When the lease began (ms since the epoch). */
  startedAt: number;
  trees: Digest[];
}

interface GcBatchRecord {
  owner: Owner;
  at: number;
}

const LEASE = 'lease';
const GC_BATCH = 'gc-batch';
const GENERATION_KEY: [string, string] = ['leases', 'generation'];

/**
 * A lease whose owner lives in another pid namespace (a container sharing
 * the store) cannot be checked: it counts as live for this long.
 */
export const FOREIGN_LEASE_MS = 24 * 60 * 60 * 1000;
/** A gc batch unlinks a few hundred files; a marker older than this is left over from a gc that hung or died. */
const GC_BATCH_STALE_MS = 60 * 1000;
const POLL_MS = 5;

let self: Owner | undefined;

/** This process, as a lease owner. */
export function selfOwner(): Owner {
  self ??= { pid: process.pid, start: procStart(process.pid) ?? 0, boot: readOr('/proc/sys/kernel/random/boot_id'), pidns: linkOr('/proc/self/ns/pid') };
  return self;
}

/** Field 22 (starttime) of /proc/<pid>/stat, or undefined when there is no such process. */
function procStart(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid …": comm may hold spaces and parentheses, so count from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const start = Number(fields[19]);
  return Number.isFinite(start) ? start : undefined;
}

function readOr(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return '';
  }
}

function linkOr(path: string): string {
  try {
    return readlinkSync(path);
  } catch {
    return '';
  }
}

/**
 * Whether the owner of a record that began at `since` still runs. A pid
 * alone is not enough: pids are reused, so its start time must match too.
 */
export function ownerAlive(o: Owner, since: number, now = Date.now()): boolean {
  const me = selfOwner();
  if (o.boot !== me.boot) return false; // a reboot ended every process of before
  if (o.pidns !== me.pidns) return now - since < FOREIGN_LEASE_MS;
  if (o.pid === me.pid) return o.start === me.start;
  const start = procStart(o.pid);
  if (start !== undefined) return o.start === 0 || start === o.start;
  if (me.start !== 0) return false; // /proc works here and has no such process
  try {
    process.kill(o.pid, 0); // no /proc: the pid alone
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class Leases {
  constructor(private readonly meta: Meta) {}

  /**
   * Begins a lease for `what` (a few words naming the operation), naming
   * `trees` already (as addTree would, in the same commit). When this
   * resolves the lease is committed and every gc batch that did not see it
   * is over. Release it in a finally block.
   */
  async begin(what: string, trees: Digest[] = []): Promise<Lease> {
    const rec: LeaseRecord = { id: `${process.pid}.${randomBytes(6).toString('hex')}`, what, owner: selfOwner(), startedAt: Date.now(), trees: [...new Set(trees)] };
    const { batches, blobGeneration } = this.meta.transact(() => {
      void this.meta.state.put([LEASE, rec.id], rec);
      this.bump();
      return { batches: this.batchesInFlight(), blobGeneration: this.meta.blobGeneration() };
    });
    await this.waitFor(batches);
    return new Lease(this, this.meta, rec, blobGeneration);
  }

  /** The leases whose owners still run, oldest first. */
  live(): LeaseRecord[] {
    const now = Date.now();
    return this.records().filter((r) => ownerAlive(r.owner, r.startedAt, now)).sort((a, b) => a.startedAt - b.startedAt);
  }

  /** Changes whenever a lease begins or names another tree (gc re-checks it before each batch it evicts). */
  generation(): number {
    return (this.meta.state.get(GENERATION_KEY) as number | undefined) ?? 0;
  }

  /**
   * For gc, inside a write transaction: the generation and the live
   * leases, on the latest state; records of dead owners are removed.
   */
  snapshotForGc(): { generation: number; leases: LeaseRecord[] } {
    const now = Date.now();
    const leases: LeaseRecord[] = [];
    for (const r of this.records()) {
      if (ownerAlive(r.owner, r.startedAt, now)) leases.push(r);
      else void this.meta.state.remove([LEASE, r.id]);
    }
    return { generation: this.generation(), leases };
  }

  /** For gc, inside the write transaction that drops a batch from the index: marks the batch in flight. */
  markGcBatch(id: string): void {
    const rec: GcBatchRecord = { owner: selfOwner(), at: Date.now() };
    void this.meta.state.put([GC_BATCH, id], rec);
  }

  /** For gc, once the batch's files are unlinked. */
  clearGcBatch(id: string): void {
    void this.meta.state.remove([GC_BATCH, id]);
  }

  /** Inside a write transaction: names this lease's tree (and bumps the generation); returns the gc batches in flight. */
  addTreeIn(rec: LeaseRecord, tree: Digest): string[] {
    if (!rec.trees.includes(tree)) rec.trees.push(tree);
    // Rewritten whole, also when gc took the owner for dead (a pid namespace it cannot see into).
    void this.meta.state.put([LEASE, rec.id], rec);
    this.bump();
    return this.batchesInFlight();
  }

  removeIn(id: string): void {
    void this.meta.state.remove([LEASE, id]);
  }

  /** Waits until none of these gc batches is in flight (their markers gone, or their gc dead). */
  async waitFor(batches: string[]): Promise<void> {
    let pending = batches;
    while (pending.length > 0) {
      await sleep(POLL_MS); // a new macrotask: lmdb reads a fresh snapshot
      const now = Date.now();
      pending = pending.filter((id) => {
        const r = this.meta.state.get([GC_BATCH, id]) as GcBatchRecord | undefined;
        return r !== undefined && now - r.at < GC_BATCH_STALE_MS && ownerAlive(r.owner, r.at, now);
      });
    }
  }

  private bump(): void {
    void this.meta.state.put(GENERATION_KEY, this.generation() + 1);
  }

  private batchesInFlight(): string[] {
    const now = Date.now();
    const out: string[] = [];
    for (const { key, value } of this.meta.state.getRange({ start: [GC_BATCH, ''], end: [GC_BATCH, '\uffff'] })) {
      const r = value as GcBatchRecord;
      if (now - r.at < GC_BATCH_STALE_MS && ownerAlive(r.owner, r.at, now)) out.push(key[1]);
      else void this.meta.state.remove(key);
    }
    return out;
  }

  private records(): LeaseRecord[] {
    const out: LeaseRecord[] = [];
    for (const { value } of this.meta.state.getRange({ start: [LEASE, ''], end: [LEASE, '\uffff'] })) {
      const r = value as LeaseRecord | undefined;
      if (r && typeof r.owner === 'object' && Array.isArray(r.trees)) out.push(r);
    }
    return out;
  }
}

/** One operation's lease; see the top of this file. */
export class Lease {
  private released = false;

  constructor(
    private readonly leases: Leases,
    private readonly meta: Meta,
    private readonly rec: LeaseRecord,
    private readonly blobGenerationAtBegin: string,
  ) {}

  get id(): string {
    return this.rec.id;
  }

  get startedAt(): number {
    return this.rec.startedAt;
  }

  get trees(): readonly Digest[] {
    return this.rec.trees;
  }

  /**
   * Names a tree the operation relies on. When this resolves, gc keeps
   * every blob of it; a blob evicted before is gone from the index and
   * from disk, so look up what is missing *after* this.
   */
  async addTree(tree: Digest): Promise<void> {
    if (this.released) throw new Error('Lease.addTree after release');
    const batches = this.meta.transact(() => this.leases.addTreeIn(this.rec, tree));
    await this.leases.waitFor(batches);
  }

  /**
   * True when some blob left the store (gc, verify, a quarantine) since
   * this lease began. False means every blob the operation stored or found
   * stored is still there; call it after addTree.
   */
  evictedSince(): boolean {
    return this.meta.latest(() => this.meta.blobGeneration()) !== this.blobGenerationAtBegin;
  }

  /** Ends the lease (idempotent). The record goes with the next commit (`store.close()` flushes it). */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.leases.removeIn(this.rec.id);
  }
}
