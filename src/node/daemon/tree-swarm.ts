// One tree's swarm on this node (docs/peers.md, "Flash crowds"): the
// scheduler (scheduler.ts) driven by real channels to neighbours
// (channel.ts) and by the origin (every remote tier but the peers, through
// the chain). The same class fetches a tree (pieces from neighbours and the
// origin, served on as soon as they are verified) and serves one this node
// holds, whole or in part, to the nodes fetching it.
//
// Verification before anything is kept or served on: a piece of small
// blobs is hashed blob by blob (the CAS's admission); a chunk of a large
// blob is checked against the blob's digest through its Bao outboard,
// itself checked against the digest first (so a bad chunk is its sender's
// fault). A sender of a bad piece is penalized and dropped.
import { close, open, read } from 'node:fs';
import type { SealedSocket } from '../../lib/sealed-socket.js';
import { baoOutboardFile, baoVerifyOutboard, baoVerifyRange } from '../../lib/bao.js';
import type { Digest } from '../../lib/digest.js';
import { SingleFlight } from '../../lib/single-flight.js';
import type { Metrics } from '../../lib/metrics.js';
import type { Chain } from '../../tiers/chain.js';
import { isLocalError } from '../../tiers/guarded.js';
import type { VerifiedRanges } from '../store/admission.js';
import type { Store } from '../store/store.js';
import type { TreeEntry } from '../store/tree.js';
import { F, framedBytes, framedView, SwarmChannel } from '../swarm/channel.js';
import { MemberRing, hash32 } from '../swarm/member-ring.js';
import { PieceSet } from '../swarm/piece-set.js';
import { DEFAULT_SWARM_OPTIONS, ORIGIN, SwarmScheduler, type SwarmOptions, type SwarmPort } from '../swarm/scheduler.js';
import { largestPiece, planPieces, type BlobRef, type Piece, type TreePieces } from '../swarm/tree-pieces.js';

export interface SwarmMember {
  id: string;
  grpc: string;
  fetching: boolean;
  holds: boolean;
  /** Pieces it held when it last announced (its gossiped bitfield): the fuller, the better a neighbour. */
  pieces: number;
}

export interface SwarmContext {
  store: Store;
  /** Where the origin is (every tier but the peers); undefined: no origin, peers only. */
  chain: Chain | undefined;
  /** This node's peer id. */
  self: string;
  members(tree: Digest): SwarmMember[];
  /** A channel to `peer` for the tree (its bulk connection, ticket sent), or undefined when it is not in the swarm. */
  connect(peer: SwarmMember, tree: Digest, layout: string): Promise<SealedSocket | undefined>;
  penalize(peer: string, reason: string): void;
  /** Subscribes to news of members (announcements); returns the unsubscribe. */
  onNews(fn: () => void): () => void;
  hedgeMs: number;
  metrics: Metrics;
  log(line: string): void;
}

/** Called for each blob the swarm admitted, with where it came from ("peer", or the origin tier's name). */
export type OnSwarmBlob = (from: string, digest: Digest, size: number) => void;

/**
 * The scheduler's timings in a daemon: the simulation's, but member views
 * converge over gossip (tens to hundreds of ms), not at once.
 */
const DAEMON_TIMINGS = { settleMs: 300, starveMs: 600, secondaryMs: 3000, busyBackoffMs: 50 } as const;
/**
 * Requests in flight in a daemon: more than the simulation's, because a
 * real piece waits on disk reads, hashing and the event loop at both ends
 * besides the link; with only two in flight to a peer a lone fetcher
 * would leave its one holder's link idle half the time.
 */
const DAEMON_SLOTS = { downloadSlots: 8, maxPerPeer: 4, uploadSlots: 6 } as const;
/** Consecutive pieces with one primary (scheduler.ts, dutyRun). */
const DUTY_RUN = 8;
/** One origin read brings at most this many pieces (a primary's consecutive runs). */
const MAX_ORIGIN_READ = 32;
/** Up to this many fetching members, a piece one neighbour holds is not also taken from the origin (scheduler.ts, smallSwarm). */
const SMALL_SWARM = 16;
/** A swarm that gains no piece for this long gives up (the pull goes on without it). */
const STALL_MS = 20_000;
/** An origin piece that fails this many times ends the swarm (the pull then reports what is missing). */
const ORIGIN_TRIES = 3;
/** A dial that failed is not tried again for this long. */
const REDIAL_MS = 2000;
/** The hedge deadline never grows past this, however slowly neighbours answer. */
const MAX_HEDGE_MS = 2000;
/** How long an outboard asked of a neighbour may take. */
const OUTBOARD_ASK_MS = 3000;

interface Session {
  peer: string;
  channel: SwarmChannel;
  hello: boolean;
  /** Pieces it cancelled before their bytes went out. */
  cancelled: Set<number>;
  /** Outboards asked of it: piece asked with → answer. */
  asks: Map<number, (outboard: Buffer | undefined) => void>;
}

interface Partial {
  ranges: VerifiedRanges;
  chunks: Set<number>;
  count: number;
}

export class TreeSwarm {
  readonly layout: TreePieces;
  readonly sched: SwarmScheduler;
  private readonly sessions = new Map<string, Session>();
  private readonly connecting = new Set<string>();
  private readonly failedAt = new Map<string, number>();
  /** Requests this node made of peers (`${piece}/${peer}`), and when. */
  private readonly asked = new Map<string, number>();
  /** How long neighbours take to answer a request (smoothed, and its spread), as TCP times its round trips. */
  private answerMs = 0;
  private answerSpread = 0;
  private readonly originCancelled = new Set<number>();
  /** Origin reads on their way, by each piece they bring. */
  private readonly originFlights = new Map<number, Promise<Map<number, number>>>();
  private readonly originFailures = new Map<number, number>();
  private readonly partials = new Map<Digest, Partial>();
  private readonly outboards = new Map<Digest, Buffer>();
  private readonly outboardFlights = new SingleFlight<Digest, Buffer | undefined>();
  private timer: NodeJS.Timeout | undefined;
  private wake = Infinity;
  private membersKey = '';
  private unsubscribe: (() => void) | undefined;
  private poll: NodeJS.Timeout | undefined;
  private finish: { resolve: () => void; reject: (e: Error) => void } | undefined;
  private lastGain = Date.now();
  private startedAt = 0;
  private closed = false;
  private onBlob: OnSwarmBlob = () => undefined;
  private readonly pool: PiecePool;
  /** Blob → the piece it is in (a large blob: its first chunk). */
  private readonly pieceOf: Map<Digest, number>;
  private readonly unadmit: () => void;
  /** Pieces this swarm is verifying and storing now (their admissions are its own). */
  private readonly keeping = new Set<number>();
  private readonly files = new OpenFiles();
  /** When the last session closed (a seeder with none for a while is dropped). */
  idleSince = Date.now();
  readonly stats = { fromPeers: 0, fromOrigin: 0, bytesFromPeers: 0, bytesFromOrigin: 0, served: 0, bytesServed: 0, rejected: 0 };

  constructor(
    private readonly ctx: SwarmContext,
    readonly tree: Digest,
    entries: readonly TreeEntry[],
  ) {
    this.layout = planPieces(tree, entries);
    this.pool = new PiecePool(this.layout.pieceBytes, 2 * (DAEMON_SLOTS.downloadSlots + DAEMON_SLOTS.uploadSlots) * this.layout.pieceBytes);
    const n = this.layout.pieces.length;
    const have = this.heldPieces();
    const port: SwarmPort = {
      now: () => performance.now(),
      request: (peer, piece) => this.request(peer, piece),
      cancel: (peer, piece) => this.cancel(peer, piece),
      announce: (piece) => this.announce(piece),
      unchoke: (peer) => this.sessions.get(peer)?.channel.send(F.UNCHOKE, 0),
      wakeAt: (ms) => this.wakeAt(ms),
    };
    const options: SwarmOptions = {
      ...DEFAULT_SWARM_OPTIONS,
      ...DAEMON_TIMINGS,
      ...DAEMON_SLOTS,
      hedgeMs: ctx.hedgeMs,
      pieces: n,
      self: ctx.self,
      treeSeed: hash32(tree),
      random: Math.random,
      origin: ctx.chain?.hasOrigin() ?? false,
      smallSwarm: SMALL_SWARM,
      dutyRun: DUTY_RUN,
    };
    this.sched = new SwarmScheduler(port, options, have);
    // Blobs that arrive another way (a pull beside the swarm, a lazy mount's opens) are offered too.
    this.pieceOf = new Map();
    this.layout.pieces.forEach((p, i) => {
      if (p.kind === 'blobs') for (const b of p.blobs) this.pieceOf.set(b.digest, i);
      else if (p.offset === 0) this.pieceOf.set(p.blob.digest, i);
    });
    this.unadmit = ctx.store.admission.onAdmit((digest) => this.admitted(digest));
  }

  /** A blob entered the store: the pieces it completes are held now (unless this swarm is bringing them itself). */
  private admitted(digest: Digest): void {
    const i = this.pieceOf.get(digest);
    if (i === undefined || this.closed) return;
    const p = this.layout.pieces[i]!;
    const meta = this.ctx.store.meta;
    const cas = this.ctx.store.cas;
    if (p.kind === 'blobs') {
      if (this.sched.have.has(i) || this.keeping.has(i)) return;
      if (p.blobs.every((b) => b.digest === digest || meta.hasBlob(b.digest) || cas.has(b.digest))) this.sched.pieceFound(i);
      return;
    }
    const c = this.layout.chunksOf.get(digest)!;
    for (let q = c.first; q < c.first + c.count; q++) if (!this.sched.have.has(q) && !this.keeping.has(q)) this.sched.pieceFound(q);
  }

  get complete(): boolean {
    return this.sched.complete;
  }

  /** A fetch is running (not done, not failed). */
  get fetching(): boolean {
    return this.finish !== undefined;
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  /**
   * Fetches what this node lacks of the tree, with its swarm; resolves once
   * every piece is here (every blob admitted), rejects when the swarm
   * stalls or the origin lacks a piece (the caller's pull goes on).
   */
  fetch(onBlob: OnSwarmBlob): Promise<void> {
    this.onBlob = onBlob;
    if (this.complete) return Promise.resolve();
    const done = new Promise<void>((resolve, reject) => (this.finish = { resolve, reject }));
    this.unsubscribe = this.ctx.onNews(() => this.refreshMembers());
    this.poll = setInterval(() => {
      this.refreshMembers();
      if (Date.now() - this.lastGain > STALL_MS) this.fail(new Error(`no piece arrived for ${STALL_MS / 1000} s`));
    }, 500);
    this.poll.unref();
    this.sched.start();
    this.refreshMembers();
    this.startedAt = performance.now();
    return done;
  }

  /** A channel with `peer` (dialed by either side); false when one exists already or the swarm is closed. */
  addSession(peer: string, conn: SealedSocket): boolean {
    if (this.closed || this.sessions.has(peer)) {
      conn.destroy();
      return false;
    }
    const s: Session = { peer, hello: false, cancelled: new Set(), asks: new Map(), channel: undefined as unknown as SwarmChannel };
    const maxPiece = largestPiece(this.layout);
    let maxBlob = 0;
    for (const c of this.layout.chunksOf.values()) maxBlob = Math.max(maxBlob, c.size);
    s.channel = new SwarmChannel(
      conn,
      { pieces: this.layout.pieces.length, maxPiece, maxOutboard: Math.ceil(maxBlob / 256) + 64 },
      { frame: (type, piece, body) => this.onFrame(s, type, piece, body), closed: (why, forged) => this.onClosed(s, why, forged), pieceBuffer: (len) => this.pool.take(len) },
    );
    this.sessions.set(peer, s);
    s.channel.send(F.HELLO, 0, Buffer.from(this.sched.have.encode()));
    return true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unadmit();
    clearTimeout(this.timer);
    clearInterval(this.poll);
    this.unsubscribe?.();
    for (const s of [...this.sessions.values()]) s.channel.close('the swarm closed');
    for (const p of this.partials.values()) p.ranges.abort();
    this.partials.clear();
    this.files.closeAll();
  }

  // --- what the scheduler asks -------------------------------------------------

  private request(peer: string, piece: number): void {
    if (peer === ORIGIN) {
      this.originCancelled.delete(piece);
      void this.fromOrigin(piece);
      return;
    }
    const s = this.sessions.get(peer);
    if (!s) {
      queueMicrotask(() => this.sched.requestFailed(peer, piece));
      return;
    }
    this.asked.set(`${piece}/${peer}`, performance.now());
    s.channel.send(F.REQUEST, piece);
  }

  private cancel(peer: string, piece: number): void {
    if (peer === ORIGIN) {
      this.originCancelled.add(piece);
      return;
    }
    this.asked.delete(`${piece}/${peer}`);
    this.sessions.get(peer)?.channel.send(F.CANCEL, piece);
  }

  private announce(piece: number): void {
    this.lastGain = Date.now();
    for (const s of this.sessions.values()) s.channel.send(F.HAVE, piece);
    if (this.sched.complete && this.finish) {
      const f = this.finish;
      this.finish = undefined;
      this.stopFetching();
      const st = this.stats;
      this.ctx.log(
        `swarm ${this.tree.slice(0, 12)}: done in ${Math.round(performance.now() - this.startedAt)} ms: ${st.fromPeers} pieces (${mb(st.bytesFromPeers)}) from ${this.sessions.size} neighbours, ${st.fromOrigin} (${mb(st.bytesFromOrigin)}) from the origin; served ${st.served} (${mb(st.bytesServed)})`,
      );
      f.resolve();
    }
  }

  private wakeAt(ms: number): void {
    if (ms >= this.wake && this.timer) return;
    clearTimeout(this.timer);
    this.wake = ms;
    this.timer = setTimeout(() => {
      this.wake = Infinity;
      this.timer = undefined;
      if (!this.closed) this.sched.tick();
    }, Math.max(0, ms - performance.now()));
    this.timer.unref();
  }

  private fail(e: Error): void {
    const f = this.finish;
    if (!f) return;
    this.finish = undefined;
    this.stopFetching();
    f.reject(e);
  }

  /** Fetching is over (done or failed): no more member news; sessions stay, to serve. */
  private stopFetching(): void {
    clearInterval(this.poll);
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  // --- members and neighbours ----------------------------------------------------

  private refreshMembers(): void {
    if (this.closed || !this.finish) return;
    const members = this.ctx.members(this.tree);
    const fetchers = members.filter((m) => m.fetching).map((m) => m.id);
    const key = [this.ctx.self, ...fetchers].sort().join(' ');
    if (key !== this.membersKey) {
      this.membersKey = key;
      this.sched.setMembers(MemberRing.of([this.ctx.self, ...fetchers]));
    }
    const now = Date.now();
    // Best sources first when neighbours are few to choose: holders, then the fullest fetchers.
    members.sort((a, b) => Number(b.holds) - Number(a.holds) || b.pieces - a.pieces);
    for (const m of members) {
      if (this.sessions.size + this.connecting.size >= DEFAULT_SWARM_OPTIONS.maxNeighbors) break;
      if (this.sessions.has(m.id) || this.connecting.has(m.id)) continue;
      // Between two fetchers the smaller id dials (one channel per pair); holders are dialed by fetchers.
      if (!m.holds && !(this.ctx.self < m.id)) continue;
      if (now - (this.failedAt.get(m.id) ?? 0) < REDIAL_MS) continue;
      this.connecting.add(m.id);
      void this.dial(m);
    }
  }

  private async dial(m: SwarmMember): Promise<void> {
    try {
      const conn = await this.ctx.connect(m, this.tree, this.layout.layout);
      if (!conn) this.failedAt.set(m.id, Date.now());
      else if (!this.addSession(m.id, conn)) this.failedAt.set(m.id, Date.now());
    } catch (e) {
      if (!this.failedAt.has(m.id)) this.ctx.log(`swarm ${this.tree.slice(0, 12)}: no channel to ${m.id.slice(-8)}: ${(e as Error).message}`);
      this.failedAt.set(m.id, Date.now());
    } finally {
      this.connecting.delete(m.id);
    }
  }

  // --- frames from a neighbour ----------------------------------------------------

  private onFrame(s: Session, type: number, piece: number, body: Buffer | undefined): void {
    switch (type) {
      case F.HELLO:
        if (s.hello) return;
        s.hello = true;
        this.sched.addNeighbor(s.peer, PieceSet.decode(this.layout.pieces.length, body!));
        return;
      case F.HAVE:
        return this.sched.peerHave(s.peer, piece);
      case F.REQUEST:
        return void this.serve(s, piece);
      case F.ACCEPT:
        this.answered(s.peer, piece);
        return this.sched.requestAccepted(s.peer, piece);
      case F.REFUSE:
        this.answered(s.peer, piece);
        this.asked.delete(`${piece}/${s.peer}`);
        return this.sched.requestRefused(s.peer, piece);
      case F.CANCEL:
        s.cancelled.add(piece);
        return;
      case F.UNCHOKE:
        return this.sched.unchoked(s.peer);
      case F.PIECE:
        return void this.received(s, piece, body!);
      case F.OUTBOARD_ASK:
        return void this.answerOutboard(s, piece);
      case F.OUTBOARD:
      case F.NO_OUTBOARD: {
        const answer = s.asks.get(piece);
        s.asks.delete(piece);
        answer?.(body);
        return;
      }
    }
  }

  /**
   * A neighbour answered a request: the hedge deadline follows how long
   * answers take (smoothed time plus four spreads, RFC 6298's rule), so
   * a loaded cluster does not hedge every request to the origin.
   */
  private answered(peer: string, piece: number): void {
    const at = this.asked.get(`${piece}/${peer}`);
    if (at === undefined) return;
    const ms = performance.now() - at;
    if (this.answerMs === 0) {
      this.answerMs = ms;
      this.answerSpread = ms / 2;
    } else {
      this.answerSpread = 0.75 * this.answerSpread + 0.25 * Math.abs(this.answerMs - ms);
      this.answerMs = 0.875 * this.answerMs + 0.125 * ms;
    }
    this.sched.setHedgeMs(Math.min(MAX_HEDGE_MS, this.answerMs + 4 * this.answerSpread));
  }

  private onClosed(s: Session, why: string, forged = false): void {
    if (forged) {
      this.stats.rejected++;
      this.ctx.log(`swarm ${this.tree.slice(0, 12)}: peer ${s.peer} ${why}; dropped and penalized`);
      this.ctx.penalize(s.peer, `sent a swarm frame that failed its authentication tag`);
    }
    if (this.sessions.get(s.peer) !== s) return;
    this.sessions.delete(s.peer);
    if (this.sessions.size === 0) this.idleSince = Date.now();
    for (const answer of s.asks.values()) answer(undefined);
    s.asks.clear();
    for (const key of [...this.asked.keys()]) if (key.endsWith(`/${s.peer}`)) this.asked.delete(key);
    this.sched.removeNeighbor(s.peer);
    if (this.finish && why !== 'the swarm closed') this.ctx.log(`swarm ${this.tree.slice(0, 12)}: channel to ${s.peer.slice(-8)} closed: ${why}`);
  }

  /** A neighbour asks for a piece: served when a slot is free and the piece is held, refused otherwise. */
  private async serve(s: Session, piece: number): Promise<void> {
    if (!this.sched.uploadRequested(s.peer, piece)) {
      s.channel.send(F.REFUSE, piece);
      return;
    }
    s.cancelled.delete(piece);
    s.channel.send(F.ACCEPT, piece);
    let bytes: Buffer;
    try {
      bytes = await this.readPiece(piece);
    } catch (e) {
      this.ctx.log(`swarm ${this.tree.slice(0, 12)}: cannot read piece ${piece}: ${(e as Error).message}`);
      s.channel.send(F.REFUSE, piece);
      this.sched.uploadEnded();
      return;
    }
    if (s.cancelled.delete(piece) || !s.channel.open) {
      this.pool.give(bytes);
      this.sched.uploadEnded();
      return;
    }
    this.stats.served++;
    this.stats.bytesServed += bytes.byteLength;
    this.ctx.metrics.inc('vrift_swarm_served_bytes_total', undefined, bytes.byteLength);
    s.channel.sendPiece(piece, bytes, () => {
      this.pool.give(bytes);
      this.sched.uploadEnded();
    });
  }

  /** Bytes of a piece arrived from a neighbour. */
  private async received(s: Session, piece: number, bytes: Buffer): Promise<void> {
    const key = `${piece}/${s.peer}`;
    if (!this.asked.delete(key)) return this.pool.give(bytes); // not asked for (or cancelled): dropped unread
    let verdict: 'ok' | 'bad' | 'unknown';
    this.keeping.add(piece);
    try {
      verdict = await this.keep(piece, bytes, 'peer');
    } catch (e) {
      this.localFailure(e);
      return;
    } finally {
      this.keeping.delete(piece);
    }
    this.pool.give(bytes); // written (or rejected): the buffer is free
    if (verdict === 'unknown') {
      this.sched.requestFailed(s.peer, piece);
      return;
    }
    if (verdict === 'bad') {
      this.stats.rejected++;
      this.ctx.metrics.inc('vrift_swarm_rejected_pieces_total');
      const why = `sent piece ${piece} of tree ${this.tree} that does not match the tree`;
      this.ctx.log(`swarm ${this.tree.slice(0, 12)}: peer ${s.peer} ${why}; dropped and penalized`);
      this.ctx.penalize(s.peer, why);
      this.sched.pieceArrived(s.peer, piece, false);
      s.channel.close('sent a bad piece');
      return;
    }
    this.stats.fromPeers++;
    this.stats.bytesFromPeers += bytes.byteLength;
    this.ctx.metrics.inc('vrift_swarm_pieces_total', { from: 'peer' });
    this.ctx.metrics.inc('vrift_swarm_received_bytes_total', { from: 'peer' }, bytes.byteLength);
    this.sched.pieceArrived(s.peer, piece, true);
  }

  /**
   * A piece from the origin (the chain's tiers but the peers), in one read
   * with the pieces after it in its duty run that this node lacks and one
   * read can bring (chunks of the same blob; small blobs, which S3 reads
   * as one pack run): S3 serves one large read far better than many small
   * ones. A piece asked for while its run is on its way waits for it.
   */
  private async fromOrigin(piece: number): Promise<void> {
    let got: Map<number, number>;
    try {
      const pending = this.originFlights.get(piece);
      if (pending) got = await pending;
      else {
        const batch = this.originBatch(piece);
        for (const q of batch) this.keeping.add(q);
        const flight = this.fetchFromOrigin(batch);
        for (const q of batch) this.originFlights.set(q, flight);
        try {
          got = await flight;
        } finally {
          for (const q of batch) {
            this.originFlights.delete(q);
            this.keeping.delete(q);
          }
        }
        for (const [q, bytes] of got) {
          this.stats.fromOrigin++;
          this.stats.bytesFromOrigin += bytes;
          this.ctx.metrics.inc('vrift_swarm_pieces_total', { from: 'origin' });
          this.ctx.metrics.inc('vrift_swarm_received_bytes_total', { from: 'origin' }, bytes);
          if (q !== piece && !this.sched.have.has(q)) this.sched.pieceFound(q);
        }
      }
    } catch (e) {
      this.localFailure(e);
      return;
    }
    if (got.has(piece)) {
      // Withdrawn meanwhile (a peer was faster, or the request was dropped): kept all the same.
      if (this.originCancelled.delete(piece)) {
        if (!this.sched.have.has(piece)) this.sched.pieceFound(piece);
        return;
      }
      this.sched.pieceArrived(ORIGIN, piece, true);
      return;
    }
    const tries = (this.originFailures.get(piece) ?? 0) + 1;
    this.originFailures.set(piece, tries);
    if (tries >= ORIGIN_TRIES && !this.sched.have.has(piece)) {
      this.fail(new Error(`the origin (${this.ctx.chain ? 'every tier but the peers' : 'none configured'}) could not give piece ${piece} (${describe(this.layout.pieces[piece]!)})`));
      return;
    }
    // Not at once: the scheduler may ask the origin again right away.
    setTimeout(() => this.sched.pieceArrived(ORIGIN, piece, false), 200).unref();
  }

  /** `piece` and the pieces right after it in its duty run that one origin read can bring with it. */
  private originBatch(piece: number): number[] {
    const pieces = this.layout.pieces;
    const p = pieces[piece]!;
    const out = [piece];
    // A hedge or a starving node's piece comes alone: only a primary reads its run (its duty), and
    // on into the next runs it is primary for too (a node alone is primary for all: S3 serves big reads best).
    if (!this.sched.isPrimary(piece)) return out;
    for (let q = piece + 1; q < pieces.length && out.length < MAX_ORIGIN_READ; q++) {
      const x = pieces[q]!;
      if (q % DUTY_RUN === 0 && !this.sched.isPrimary(q)) break;
      if (this.sched.have.has(q) || this.originFlights.has(q)) break;
      if (p.kind === 'chunk' ? !(x.kind === 'chunk' && x.blob.digest === p.blob.digest) : x.kind !== 'blobs') break;
      out.push(q);
    }
    return out;
  }

  /** One origin read for consecutive pieces (as originBatch makes them): the pieces kept, with their bytes. */
  private async fetchFromOrigin(batch: number[]): Promise<Map<number, number>> {
    const chain = this.ctx.chain;
    const got = new Map<number, number>();
    if (!chain) return got;
    const pieces = batch.map((q) => this.layout.pieces[q]!);
    const first = pieces[0]!;
    if (first.kind === 'blobs') {
      const blobs = pieces.flatMap((x) => (x.kind === 'blobs' ? x.blobs : []));
      const missing = new Set(await chain.originBlobs(this.tree, blobs, (tier, digest, size) => this.onBlob(tier, digest, size)));
      pieces.forEach((x, i) => {
        if (x.kind === 'blobs' && x.blobs.every((b) => !missing.has(b.digest))) got.set(batch[i]!, x.bytes);
      });
      return got;
    }
    const blob = first.blob;
    const outboard = await this.outboard(blob);
    if (!outboard) {
      // No outboard anywhere (a blob put without one): the whole blob, verified by its digest, covers all its pieces.
      const from = await chain.originBlob(blob.digest, blob.size);
      if (from === undefined) return got;
      this.onBlob(from, blob.digest, blob.size);
      const c = this.layout.chunksOf.get(blob.digest)!;
      for (let q = c.first; q < c.first + c.count; q++) got.set(q, this.layout.pieces[q]!.bytes);
      return got;
    }
    const offset = first.kind === 'chunk' ? first.offset : 0;
    const length = pieces.reduce((n, x) => n + x.bytes, 0);
    const read = await chain.originRange(blob.digest, offset, length);
    if (!read) return got;
    let at = 0;
    pieces.forEach((x, i) => {
      const bytes = read.bytes.subarray(at, at + x.bytes);
      at += x.bytes;
      if (x.kind === 'chunk' && this.keepChunk(x, bytes, outboard, read.tier) === 'ok') got.set(batch[i]!, x.bytes);
    });
    return got;
  }

  // --- keeping and reading pieces --------------------------------------------------

  /** Verifies a piece's bytes and keeps them: "ok", "bad" (they do not match), or "unknown" (no outboard to judge a chunk by). */
  private async keep(piece: number, bytes: Buffer, source: string): Promise<'ok' | 'bad' | 'unknown'> {
    const p = this.layout.pieces[piece]!;
    if (bytes.byteLength !== p.bytes) return 'bad';
    if (p.kind === 'chunk') {
      const outboard = await this.outboard(p.blob);
      return outboard ? this.keepChunk(p, bytes, outboard, source) : 'unknown';
    }
    const slices = [];
    let offset = 0;
    for (const b of p.blobs) {
      slices.push({ digest: b.digest, offset, size: b.size });
      offset += b.size;
    }
    const r = await this.ctx.store.admission.batch(bytes, slices, source);
    if (r.mismatched.length > 0) return 'bad';
    for (const b of p.blobs) this.onBlob(source, b.digest, b.size);
    return 'ok';
  }

  /** A chunk checked through the blob's Bao tree, written in place; the blob is admitted once all its chunks are in. */
  private keepChunk(p: Extract<Piece, { kind: 'chunk' }>, bytes: Buffer, outboard: Buffer, source: string): 'ok' | 'bad' {
    if (!baoVerifyRange(p.blob.digest, p.blob.size, outboard, p.offset, bytes)) return 'bad';
    const { digest, size } = p.blob;
    if (this.ctx.store.cas.has(digest)) return 'ok';
    const c = this.layout.chunksOf.get(digest)!;
    let part = this.partials.get(digest);
    if (!part) {
      part = { ranges: this.ctx.store.admission.ranges(size, source), chunks: new Set(), count: c.count };
      this.partials.set(digest, part);
    }
    part.ranges.writeAt(bytes, p.offset);
    part.chunks.add(p.offset / this.layout.pieceBytes);
    if (part.chunks.size === part.count) {
      this.partials.delete(digest);
      part.ranges.commit(digest);
      this.onBlob(source, digest, size);
    }
    return 'ok';
  }

  /** A piece's bytes, read straight into one buffer (fs.promises.readFile reads 512 KiB at a time: ~100x slower here with many at once), from files kept open. */
  private async readPiece(piece: number): Promise<Buffer> {
    const p = this.layout.pieces[piece]!;
    const cas = this.ctx.store.cas;
    const buf = this.pool.take(p.bytes);
    if (p.kind === 'blobs') {
      let at = 0;
      await Promise.all(
        p.blobs.map((b) => {
          const into = at;
          at += b.size;
          return this.files.read(cas.pathOf(b.digest), buf, into, b.size, 0);
        }),
      );
      return buf;
    }
    const path = cas.has(p.blob.digest) ? cas.pathOf(p.blob.digest) : this.partials.get(p.blob.digest)?.ranges.tmp;
    if (!path) throw new Error(`blob ${p.blob.digest} is no longer here`);
    await this.files.read(path, buf, 0, p.bytes, p.offset);
    return buf;
  }

  /** Pieces whose bytes this node holds now (a restart keeps whole blobs; chunks of a blob not yet whole are fetched again). */
  private heldPieces(): PieceSet {
    const have = new PieceSet(this.layout.pieces.length);
    const meta = this.ctx.store.meta;
    this.layout.pieces.forEach((p, i) => {
      if (p.kind === 'blobs' ? p.blobs.every((b) => meta.hasBlob(b.digest)) : meta.hasBlob(p.blob.digest)) have.add(i);
    });
    return have;
  }

  // --- outboards of large blobs ------------------------------------------------------

  /** The blob's outboard, verified against its digest: computed when the blob is here, else from the origin, else from a neighbour. */
  private outboard(blob: BlobRef): Promise<Buffer | undefined> {
    const known = this.outboards.get(blob.digest);
    if (known) return Promise.resolve(known);
    return this.outboardFlights.run(blob.digest, async () => {
      const good = (ob: Buffer | undefined) => ob !== undefined && baoVerifyOutboard(blob.digest, blob.size, ob);
      let ob: Buffer | undefined;
      if (this.ctx.store.cas.has(blob.digest)) ob = (await baoOutboardFile(this.ctx.store.cas.pathOf(blob.digest))).outboard;
      if (!good(ob)) ob = (await this.ctx.chain?.originOutboard(blob.digest).catch(() => undefined))?.outboard;
      if (!good(ob)) ob = await this.outboardFromNeighbors(blob, good);
      if (!good(ob)) return undefined;
      this.outboards.set(blob.digest, ob!);
      return ob;
    }).result;
  }

  private async outboardFromNeighbors(blob: BlobRef, good: (ob: Buffer | undefined) => boolean): Promise<Buffer | undefined> {
    const first = this.layout.chunksOf.get(blob.digest)!.first;
    for (const s of [...this.sessions.values()].slice(0, 4)) {
      if (s.asks.has(first)) continue;
      const ob = await new Promise<Buffer | undefined>((resolve) => {
        const t = setTimeout(() => {
          s.asks.delete(first);
          resolve(undefined);
        }, OUTBOARD_ASK_MS);
        t.unref();
        s.asks.set(first, (b) => {
          clearTimeout(t);
          resolve(b);
        });
        s.channel.send(F.OUTBOARD_ASK, first);
      });
      if (good(ob)) return ob;
    }
    return undefined;
  }

  private async answerOutboard(s: Session, piece: number): Promise<void> {
    const p = this.layout.pieces[piece]!;
    if (p.kind !== 'chunk') return s.channel.send(F.NO_OUTBOARD, piece);
    const ob = this.outboards.get(p.blob.digest) ?? (this.ctx.store.cas.has(p.blob.digest) ? await this.outboard(p.blob).catch(() => undefined) : undefined);
    s.channel.send(ob ? F.OUTBOARD : F.NO_OUTBOARD, piece, ob);
  }

  /** A local failure (a full disk): the swarm cannot go on; the pull reports it. */
  private localFailure(e: unknown): void {
    if (!isLocalError(e)) this.ctx.log(`swarm ${this.tree.slice(0, 12)}: ${(e as Error).message}`);
    this.fail(e instanceof Error ? e : new Error(String(e)));
  }
}

/**
 * Files a swarm serves from, kept open: the same blobs are read again and
 * again (a large blob's chunks, a piece for each neighbour), and an
 * open and a close per read cost more than the read. At most MAX_OPEN;
 * the least recently used idle one is closed first. A blob replaced in
 * the store meanwhile is read from its old inode: receivers verify
 * every piece anyway.
 */
class OpenFiles {
  private readonly files = new Map<string, { fd: Promise<number>; users: number }>();

  /** `length` bytes of the file at `position`, into `buf` at `at`. */
  async read(path: string, buf: Buffer, at: number, length: number, position: number): Promise<void> {
    let f = this.files.get(path);
    if (f) this.files.delete(path); // most recently used last
    else f = { fd: openFd(path), users: 0 };
    this.files.set(path, f);
    f.users++;
    try {
      const fd = await f.fd;
      let done = 0;
      while (done < length) {
        const n = await readFd(fd, buf, at + done, length - done, position + done);
        if (n === 0) throw new Error(`${path} is shorter than the tree says`);
        done += n;
      }
    } catch (e) {
      if (this.files.get(path) === f) this.files.delete(path);
      throw e;
    } finally {
      f.users--;
      this.trim();
    }
  }

  closeAll(): void {
    for (const f of this.files.values()) void f.fd.then((fd) => close(fd, () => undefined), () => undefined);
    this.files.clear();
  }

  private trim(): void {
    if (this.files.size <= MAX_OPEN) return;
    for (const [path, f] of this.files) {
      if (this.files.size <= MAX_OPEN) break;
      if (f.users > 0) continue;
      this.files.delete(path);
      void f.fd.then((fd) => close(fd, () => undefined), () => undefined);
    }
  }
}

/** Files a swarm keeps open at most (OpenFiles). */
const MAX_OPEN = 64;

function openFd(path: string): Promise<number> {
  return new Promise((resolve, reject) => open(path, 'r', (e, fd) => (e ? reject(e) : resolve(fd))));
}

function readFd(fd: number, buf: Buffer, at: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => read(fd, buf, at, length, position, (e, n) => (e ? reject(e) : resolve(n))));
}

/**
 * Piece buffers, reused: a node moves hundreds of megabytes in megabyte
 * pieces, and a fresh buffer for each keeps the garbage collector busy
 * (each one is memory outside the JavaScript heap, and every 64 MiB of
 * those starts a full collection: measured in a crowd of six, 42 of them
 * in 15 s per daemon, a quarter of its CPU). Memory comes in size classes,
 * powers of two from the piece size up (most pieces have the piece size;
 * a group of small blobs, or a blob alone, can be larger), and at most
 * `budget` bytes wait for reuse. Each buffer has room for its frame header
 * (framedView), so a piece read into one is served with one socket write.
 */
class PiecePool {
  private readonly free = new Map<number, Buffer[]>();
  /** Each body handed out, and the memory it lives in. */
  private readonly memoryOf = new WeakMap<Buffer, Buffer>();
  private kept = 0;

  constructor(
    private readonly size: number,
    private readonly budget: number,
  ) {}

  private classOf(length: number): number {
    let c = framedBytes(this.size);
    while (c < framedBytes(length)) c *= 2;
    return c;
  }

  take(length: number): Buffer {
    const c = this.classOf(length);
    let memory = this.free.get(c)?.pop();
    if (memory) this.kept -= c;
    else memory = Buffer.allocUnsafeSlow(c);
    const body = framedView(memory, length);
    this.memoryOf.set(body, memory);
    return body;
  }

  give(body: Buffer): void {
    const memory = this.memoryOf.get(body);
    if (!memory) return;
    this.memoryOf.delete(body);
    const c = memory.byteLength;
    if (this.kept + c > this.budget) return;
    let list = this.free.get(c);
    if (!list) this.free.set(c, (list = []));
    list.push(memory);
    this.kept += c;
  }
}

function mb(n: number): string {
  return `${(n / 1e6).toFixed(1)} MB`;
}

function describe(p: Piece): string {
  return p.kind === 'blobs' ? `${p.blobs.length} blobs, first ${p.blobs[0]!.digest}` : `bytes ${p.offset}-${p.offset + p.bytes} of blob ${p.blob.digest}`;
}
