// The daemon's side of shim/journal.c: the changes programs made in a
// mount's upper layer themselves (a create, a mkdir's claim, an unlink of
// an upper file), announced without a round trip. Each writing process
// appends records to its own file in upper/<vdir name>/.journal/
// (vrift_proto.h, "The journal"); each record carries its number in the
// mount's `.issued` count.
//
// The daemon publishes records in number order and stores how far it got
// in the VDir header (`upperPublished`), which is what readers compare
// with `.issued`. A shim wakes the daemon (a JOURNAL message) only when
// everything before its change was already published; otherwise the
// daemon is still working and finds the record itself. So a burst of
// creates (tar -x) costs a batch per wake-up here, not a message each.
//
// A number whose record never comes (its writer was killed between
// counting and recording) is skipped after GAP_MS, so readers stop
// waiting; if the record turns up later it is applied then. Records are
// applied against the upper layer as it is (the real files are the
// truth), so applying one late or twice changes nothing: that is also how
// a restarted daemon replays the files it finds.
import { closeSync, fstatSync, mkdirSync, openSync, readdirSync, readSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { LAYOUT } from '../../gen/layout.js';
import type { VDir } from './vdir.js';

/** What a record says was done (vrift_proto.h VRIFT_CHANGE_*). */
export const Change = { FILE: 1, DIR: 2, GONE: 3 } as const;

export interface Announcement {
  seq: number;
  change: number;
  rel: string;
  mode: number;
}

const REC_HEADER = 24;
/** How long a missing number holds up the ones after it. */
const GAP_MS = 2000;
/**
 * After a batch the daemon looks again every POLL_MS, IDLE_POLLS times
 * without news, before it sleeps: a burst (tar -x) goes in batches of a
 * millisecond's changes and wakes it only at its start; a lone change is
 * published at once.
 */
const POLL_MS = 1;
const IDLE_POLLS = 3;
/**
 * A stream too slow to fill a batch in POLL_MS (sqlite: a create and an
 * unlink of its journal file per transaction, ~2 records a millisecond)
 * cost a batch of one or two records every millisecond: ~1 000 turns of
 * the event loop a second, and each journal file published and removed
 * again. After a batch smaller than FULL_BATCH the pause doubles (to
 * MAX_POLL_MS at most), after a full one it halves, so such a stream comes
 * in batches of a few dozen records whose create/unlink pairs cancel
 * (short-lived.ts), while a burst (tar -x: ~50 creates a millisecond)
 * keeps POLL_MS. Nobody waits for it: until a change is published readers
 * look at the real files (shim/upper.c), and a listing, a change request
 * or a snapshot has the journal applied at once (wake(true), waitAll).
 */
const FULL_BATCH = 32;
const MAX_POLL_MS = 16;
/** Records applied before yielding to other connections. */
const BATCH = 4096;
/** Even with no wake-up (a writer killed before sending one), the journal is looked at this often. */
const SWEEP_MS = 250;

interface FileState {
  fd: number;
  off: number;
  pid: number;
  /** When its process was last seen alive (checked at most once a second). */
  aliveAt: number;
}

export class Journal {
  private readonly files = new Map<string, FileState>();
  /** Records read whose turn has not come (an earlier number is missing). */
  private readonly ahead = new Map<number, Announcement>();
  private gapSince = 0;
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private readonly sweep: NodeJS.Timeout;
  private readonly buf = Buffer.alloc(1 << 20);
  private closed = false;
  /** For `vrift status`: wake-ups asked for (shims and sweeps), batches applied, changes in them. */
  readonly counts = { wakes: 0, batches: 0, changes: 0 };
  private issuedFd: number | undefined;
  /** Polls left before sleeping (see IDLE_POLLS). */
  private polls = 0;
  /** The pause before the next look while a stream goes on (see FULL_BATCH). */
  private pollMs = POLL_MS;
  /** Records in `ahead` whose turn has passed. */
  private late = 0;
  private readonly u64 = Buffer.alloc(8);

  constructor(
    private readonly upperDir: string,
    private readonly vdir: () => VDir | undefined,
    private readonly apply: (list: readonly Announcement[], fresh: boolean, onError: (a: Announcement, e: Error) => void) => void,
    private readonly log: (line: string) => void,
  ) {
    this.sweep = setInterval(() => {
      const vdir = this.vdir();
      if (vdir && !this.closed) {
        // (records to apply late, files of processes gone to delete)
        for (const [name, f] of this.files) this.readFile(name, f, vdir.upperPublished);
        this.readNewFiles(vdir.upperPublished);
        this.applyLate(vdir.upperPublished);
      }
      if (!this.timer && !this.immediate && this.behind()) this.schedule('now');
    }, SWEEP_MS).unref();
  }

  get dir(): string {
    return join(this.upperDir, LAYOUT.home.upperJournal);
  }

  /** The shims' `.issued` count. */
  issued(): number {
    try {
      this.issuedFd ??= openSync(join(this.upperDir, LAYOUT.home.upperIssued), 'r');
      readSync(this.issuedFd, this.u64, 0, 8, 0);
      return Number(this.u64.readBigUInt64LE(0));
    } catch {
      return 0; // no upper layer: nothing is ever announced
    }
  }

  /** A shim says the journal has news (`now`: a reader waits for it). */
  wake(now = false): void {
    this.counts.wakes++;
    if (this.closed || this.immediate || (this.timer && !now)) return;
    this.schedule('now');
  }

  private schedule(when: 'now' | 'soon' | 'later'): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const run = (): void => {
      this.timer = undefined;
      this.immediate = undefined;
      const next = this.drain();
      if (next !== 'idle') this.schedule(next);
    };
    if (when === 'now') this.immediate = setImmediate(run);
    else this.timer = setTimeout(run, when === 'soon' ? POLL_MS : this.pollMs);
  }

  /** A record that came over the socket (its writer could not append it). */
  receive(a: Announcement): void {
    this.take(a, this.vdir()?.upperPublished ?? 0);
    this.wake(true);
  }

  /**
   * Applies what is there. Then: 'idle' when every counted change is
   * published and the daemon may sleep until woken; 'later' to look again
   * after the paced pause (a stream is on: AWAKE stays set, shims do not
   * wake us); 'soon' in POLL_MS (a record is still being written); 'now'
   * when there is more to apply.
   */
  drain(): 'idle' | 'soon' | 'later' | 'now' {
    const vdir = this.vdir();
    if (!vdir || this.closed) return 'idle';
    let pub = vdir.upperPublished;
    this.readFiles(pub);
    this.applyLate(pub);
    const turn: Announcement[] = [];
    for (let a = this.ahead.get(pub + 1); a && turn.length < BATCH; a = this.ahead.get(pub + 1)) {
      this.ahead.delete(a.seq);
      turn.push(a);
      pub = a.seq;
    }
    const n = turn.length;
    if (n > 0) {
      this.counts.batches++;
      this.counts.changes += n;
      this.apply(turn, true, this.failed);
      this.polls = IDLE_POLLS;
      this.gapSince = 0;
      this.pollMs = n >= FULL_BATCH ? Math.max(POLL_MS, this.pollMs / 2) : Math.min(MAX_POLL_MS, this.pollMs * 2);
    }
    if (n >= BATCH) {
      vdir.setUpperPublished(pub, true);
      return 'now';
    }
    let issued = this.issued();
    if (issued <= pub && this.polls > 0) {
      // Caught up, but a burst may go on: stay awake a little (shims see AWAKE and do not wake us).
      this.polls--;
      vdir.setUpperPublished(pub, true);
      return 'later';
    }
    if (issued <= pub) {
      // Going to sleep: AWAKE cleared first, then .issued read again — a
      // shim that counted meanwhile and saw AWAKE did not wake us.
      vdir.setUpperPublished(pub, false); // (a full barrier: see shim/journal.c)
      issued = this.issued();
      if (issued <= pub) {
        this.gapSince = 0;
        this.pollMs = POLL_MS; // (the next burst starts at full pace)
        return 'idle';
      }
    }
    // Behind: the next number's record is not there yet (most often it was
    // written after this batch was read; else its writer is between counting
    // and writing it: looked for every POLL_MS from the next look on).
    const now = Date.now();
    const first = this.gapSince === 0;
    if (first) this.gapSince = now;
    else if (now - this.gapSince > GAP_MS) {
      this.log(`mount ${this.upperDir}: change ${pub + 1} was counted but never recorded (its program was killed?); going on without it`);
      pub++;
      this.gapSince = 0;
    }
    vdir.setUpperPublished(pub, true);
    if (this.ahead.has(pub + 1)) return 'now';
    return first ? 'later' : 'soon';
  }

  /** Until every change counted so far is published (rmdir, moving a directory, snapshot). */
  async waitAll(): Promise<void> {
    const want = this.issued();
    while (!this.closed && (this.vdir()?.upperPublished ?? want) < want) {
      if (this.drain() !== 'idle') await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    clearInterval(this.sweep);
    if (this.issuedFd !== undefined) closeSync(this.issuedFd);
    for (const f of this.files.values()) closeSync(f.fd);
    this.files.clear();
  }

  private behind(): boolean {
    const vdir = this.vdir();
    return vdir !== undefined && this.issued() > vdir.upperPublished;
  }

  /** A change that cannot be published (its directory was removed meanwhile …) stays out of the VDir. */
  private readonly failed = (a: Announcement, e: Error): void => {
    this.log(`mount ${this.upperDir}: change ${a.seq} (${a.rel}) not published: ${e.message}`);
  };

  /** A record read: applied in its turn, or — if that has passed (late, replayed) — with the others late, in their order. */
  private take(a: Announcement, published: number): void {
    this.ahead.set(a.seq, a);
    if (a.seq <= published) this.late++;
  }

  private applyLate(published: number): void {
    if (this.late === 0) return;
    const late = [...this.ahead.values()].filter((a) => a.seq <= published).sort((a, b) => a.seq - b.seq);
    for (const a of late) this.ahead.delete(a.seq);
    this.late = 0;
    this.apply(late, false, this.failed);
  }

  /**
   * After a restart: the changes the journal holds are applied again (the
   * LMDB record of the last ones may not have been written), in their
   * order, before any request is served.
   */
  replay(): void {
    const vdir = this.vdir();
    if (!vdir) return;
    this.readNewFiles(vdir.upperPublished);
    this.applyLate(vdir.upperPublished);
  }

  /**
   * Reads what is new in the files known, and looks for new files (a
   * process's first change) only when the next record is still missing:
   * a burst from one process costs one read() per batch.
   */
  private readFiles(published: number): void {
    for (const [name, f] of this.files) this.readFile(name, f, published);
    if (!this.ahead.has(published + 1) && this.issued() > published) this.readNewFiles(published);
  }

  private readNewFiles(published: number): void {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return; // no journal yet (or the mount is going away)
    }
    for (const name of names) {
      if (this.files.has(name)) continue;
      let f: FileState;
      try {
        f = { fd: openSync(join(this.dir, name), 'r'), off: 0, pid: Number.parseInt(name, 10), aliveAt: Date.now() };
      } catch {
        continue;
      }
      this.files.set(name, f);
      this.readFile(name, f, published);
    }
  }

  private readFile(name: string, f: FileState, published: number): void {
    for (;;) {
      const got = readSync(f.fd, this.buf, 0, this.buf.length, f.off);
      let at = 0;
      while (got - at >= REC_HEADER) {
        const len = this.buf.readUInt32LE(at);
        const rellen = this.buf.readUInt32LE(at + 20);
        if (len !== REC_HEADER + rellen || len > this.buf.length) {
          // not a record: a torn write (a full disk); nothing after it is readable
          this.log(`mount ${this.upperDir}: journal ${name} is damaged at byte ${f.off + at}; its later records are lost`);
          f.off = Number.MAX_SAFE_INTEGER;
          return;
        }
        if (got - at < len) break; // the rest is still being written
        this.take(
          {
            change: this.buf.readUInt32LE(at + 4),
            seq: this.buf.readUInt32LE(at + 8) + this.buf.readUInt32LE(at + 12) * 2 ** 32, // (no BigInt per record)
            mode: this.buf.readUInt32LE(at + 16),
            rel: this.buf.toString('utf8', at + REC_HEADER, at + len),
          },
          published,
        );
        at += len;
      }
      f.off += at;
      if (got < this.buf.length) break;
    }
    this.forgetIfDone(name, f);
  }

  /** A file read to its end whose process is gone will get no more records. */
  private forgetIfDone(name: string, f: FileState): void {
    const now = Date.now();
    if (now - f.aliveAt < 1000) return;
    f.aliveAt = now;
    if (processAlive(f.pid)) return;
    if (f.off !== Number.MAX_SAFE_INTEGER && fstatSync(f.fd).size > f.off) return;
    closeSync(f.fd);
    this.files.delete(name);
    try {
      unlinkSync(join(this.dir, name));
    } catch {
      /* removed with the mount */
    }
  }
}

function processAlive(pid: number): boolean {
  if (!(pid > 0)) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Makes the journal directory of an upper layer (upper.ts ensureUpperDir). */
export function ensureJournalDir(upperDir: string): void {
  mkdirSync(join(upperDir, LAYOUT.home.upperJournal), { recursive: true, mode: 0o700 });
}
