// One node's piece scheduler for one tree: which piece to ask whom for,
// whom to serve, and when to fall back to the origin. Transport-free: the
// daemon drives it with real peers, bench/swarm/ with simulated links, and
// both run this same code. Events come in as method calls; what the node
// should do goes out through a SwarmPort.
//
// The rules (BitTorrent's, with Kraken's and our origin budget):
// - rarest first among the pieces neighbours hold (RarityOrder); a fresh
//   have from a free neighbour is asked for at once (a new copy is rare);
// - at most `downloadSlots` requests to peers in flight, `maxPerPeer` per
//   peer, and `originSlots` to the origin;
// - at most `uploadSlots` uploads at once; a refused requester waits on a
//   short list and is unchoked when a slot frees, or retries after a backoff;
// - endgame: when every wanted piece is already asked for, ask a second
//   holder too and cancel the loser;
// - the origin: a piece fewer than two neighbours hold is fetched by its
//   ring primary once member views have settled, a piece none holds by its
//   secondary later (MemberRing), on their own `originSlots`;
//   a request no peer answers within `hedgeMs` is hedged to the origin,
//   and a node that got nothing for `starveMs` takes one piece from it
//   (never zero progress);
// - a piece counts (is announced and served) only once verified.
import { PieceSet } from './piece-set.js';
import { RarityOrder } from './rarity.js';
import { MemberRing, piecePoint } from './member-ring.js';

/** The origin's name in requests: S3 or Redis, whichever the chain reaches. */
export const ORIGIN = '@origin';

/** What the scheduler asks of its transport. */
export interface SwarmPort {
  /** Milliseconds, from any fixed start. */
  now(): number;
  /** Ask `peer` (or ORIGIN) for a piece; the answer comes back as requestAccepted/Refused, pieceArrived or requestFailed. */
  request(peer: string, piece: number): void;
  /** Withdraw a request that another peer answered first (endgame). */
  cancel(peer: string, piece: number): void;
  /** Tell neighbours this node holds `piece` (verified). */
  announce(piece: number): void;
  /** A requester refused earlier may ask again. */
  unchoke(peer: string): void;
  /** Call tick() at or after `ms`. */
  wakeAt(ms: number): void;
}

export interface SwarmOptions {
  pieces: number;
  /** This node's id (as on the member ring). */
  self: string;
  /** Spreads trees over the ring (e.g. the first word of the tree digest). */
  treeSeed: number;
  uploadSlots: number;
  downloadSlots: number;
  /** Origin requests in flight for ring duty (hedges may add to them). */
  originSlots: number;
  maxPerPeer: number;
  /** Neighbours (peers exchanging haves) this node keeps at most. */
  maxNeighbors: number;
  /** A peer request unanswered (neither accepted nor refused) this long is also sent to the origin. */
  hedgeMs: number;
  /** Nothing accepted and nothing arrived this long → one piece from the origin. */
  starveMs: number;
  /** After joining, wait this long for member views to settle before origin duty. */
  settleMs: number;
  /** After joining, a secondary fetches its pieces no neighbour holds after this long. */
  secondaryMs: number;
  /** A peer that refused is not asked again for this long (unless it unchokes first). */
  busyBackoffMs: number;
  /** Refused requesters an uploader remembers, to unchoke in turn. */
  waitlist: number;
  random: () => number;
  /** False when there is no origin (a cluster with no S3 or Redis): pieces come from peers only, and nothing is hedged. */
  origin?: boolean;
  /**
   * A swarm of at most this many members takes a duty piece from the
   * origin only when no neighbour holds it (one holder can feed a few
   * nodes; the second copy is for crowds). Default 0: always the rule below.
   */
  smallSwarm?: number;
  /**
   * Consecutive pieces that share one primary on the ring (default 1): a
   * transport whose origin serves large reads far better than many small
   * ones (S3) fetches a primary's run in one request.
   */
  dutyRun?: number;
}

export const DEFAULT_SWARM_OPTIONS = {
  uploadSlots: 4,
  downloadSlots: 4,
  originSlots: 4,
  maxPerPeer: 2,
  maxNeighbors: 40,
  hedgeMs: 30,
  starveMs: 250,
  settleMs: 40,
  secondaryMs: 1500,
  busyBackoffMs: 50,
  waitlist: 8,
} as const;

interface Request {
  peer: string;
  accepted: boolean;
  askedAt: number;
}

/**
 * A duty piece comes from the origin while fewer neighbours than this hold
 * it: one holder (a lone seed) cannot feed a crowd, and one copy from the
 * origin per piece is within budget.
 */
const DUTY_BELOW = 2;

/** A peer that left a request unanswered past hedgeMs is not asked again for this many backoffs. */
const SILENT_BACKOFF = 10;

/** How many wanted pieces one pick looks at before deciding every holder is busy. */
const SCAN_LIMIT = 64;

interface Neighbor {
  id: string;
  pieces: PieceSet;
  /** How many of its pieces this node still wants (BitTorrent's "interested"). */
  wanted: number;
  outstanding: number;
  /** Of those, accepted (it is sending): its other requests wait behind them, so they are not hedged. */
  sending: number;
  /** When it last answered (accepted, refused or delivered): a request's hedge deadline runs from then at the earliest. */
  heard: number;
  busyUntil: number;
}

export class SwarmScheduler {
  readonly have: PieceSet;
  private readonly rarity: RarityOrder;
  private readonly neighbors = new Map<string, Neighbor>();
  /** Piece → requests for it (more than one only in the endgame). */
  private readonly pending = new Map<number, Request[]>();
  /** Requests in flight to peers, and to the origin (each has its own slots: the origin's first byte is slow). */
  private outstanding = 0;
  private fromOrigin = 0;
  private accepted = 0;
  private uploads = 0;
  private readonly waiters: string[] = [];
  private ring: MemberRing | undefined;
  private primary: number[] = [];
  private secondary: number[] = [];
  private joinedAt = -1;
  private lastProgress = 0;
  private wake = Infinity;
  /** No backoff ends before this (kept so deadlines need not scan the neighbours). */
  private busyEnd = Infinity;
  /** Pieces received from the origin (for the origin budget). */
  originPieces = 0;
  /** The hedge deadline now (setHedgeMs: a transport may stretch it to what its peers' answers take). */
  private hedgeMs: number;
  /** Requests sent to the origin, by why (what spends the origin budget). */
  readonly originAsks = { duty: 0, hedge: 0, starve: 0 };

  constructor(
    private readonly port: SwarmPort,
    private readonly o: SwarmOptions,
    have?: PieceSet,
  ) {
    for (const k of ['uploadSlots', 'downloadSlots', 'originSlots', 'maxPerPeer', 'maxNeighbors'] as const) {
      if (!(Number.isInteger(o[k]) && o[k] >= 1)) throw new RangeError(`swarm ${k} must be a whole number ≥ 1, not ${o[k]}`);
    }
    this.hedgeMs = o.hedgeMs;
    this.have = have ?? new PieceSet(o.pieces);
    if (this.have.size !== o.pieces) throw new RangeError(`held set has ${this.have.size} pieces, the tree ${o.pieces}`);
    this.rarity = new RarityOrder(o.pieces, o.random);
    for (const p of this.have) this.rarity.remove(p);
  }

  get complete(): boolean {
    return this.have.complete;
  }

  get neighborCount(): number {
    return this.neighbors.size;
  }

  /** Whether this node takes another neighbour. */
  get wantsNeighbor(): boolean {
    return this.neighbors.size < this.o.maxNeighbors;
  }

  isNeighbor(peer: string): boolean {
    return this.neighbors.has(peer);
  }

  /**
   * Moves the hedge deadline (never below the configured one): a daemon
   * sets it from how long its neighbours take to answer, so a loaded
   * cluster whose answers all come late does not send every request to
   * the origin too.
   */
  setHedgeMs(ms: number): void {
    this.hedgeMs = Math.max(this.o.hedgeMs, ms);
  }

  /** Whether this node is the piece's primary on the member ring (it fetches the piece from the origin when no neighbour holds it). */
  isPrimary(piece: number): boolean {
    return this.ring !== undefined && this.ring.rank(this.o.self, piecePoint(this.o.treeSeed, Math.floor(piece / (this.o.dutyRun ?? 1)))) === 0;
  }

  /** Start fetching: from now on, wanted pieces are requested. */
  start(): void {
    this.joinedAt = this.lastProgress = this.port.now();
    this.fill();
  }

  /** The members of this tree's swarm as this node sees them (from the gossip mesh). */
  setMembers(ring: MemberRing): void {
    this.ring = ring;
    this.primary = [];
    this.secondary = [];
    if (this.complete) return;
    for (let p = 0; p < this.o.pieces; p++) {
      if (this.have.has(p)) continue;
      const r = ring.rank(this.o.self, piecePoint(this.o.treeSeed, Math.floor(p / (this.o.dutyRun ?? 1))));
      if (r === 0) this.primary.push(p);
      else if (r === 1) this.secondary.push(p);
    }
    this.fill();
  }

  /** A peer became a neighbour, holding `pieces` (its bitfield). */
  addNeighbor(peer: string, pieces: PieceSet): void {
    if (pieces.size !== this.o.pieces) throw new RangeError(`peer ${peer} sent a bitfield of ${pieces.size} pieces for a tree of ${this.o.pieces}`);
    if (this.neighbors.has(peer)) this.removeNeighbor(peer);
    const n = { id: peer, pieces, wanted: 0, outstanding: 0, sending: 0, heard: 0, busyUntil: 0 };
    this.neighbors.set(peer, n);
    for (const p of pieces) {
      this.rarity.increment(p);
      if (!this.have.has(p)) n.wanted++;
    }
    this.fill();
  }

  /** A neighbour left (closed, died, or was dropped for a bad piece): its pieces and requests are lost. */
  removeNeighbor(peer: string): void {
    const n = this.neighbors.get(peer);
    if (!n) return;
    this.neighbors.delete(peer);
    for (const p of n.pieces) this.rarity.decrement(p);
    for (const [piece, reqs] of [...this.pending]) if (reqs.some((q) => q.peer === peer)) this.dropRequest(piece, peer);
    const w = this.waiters.indexOf(peer);
    if (w >= 0) this.waiters.splice(w, 1);
    this.fill();
  }

  /** A neighbour announced a verified piece. */
  peerHave(peer: string, piece: number): void {
    const n = this.neighbors.get(peer);
    if (!n || !n.pieces.add(piece)) return;
    this.rarity.increment(piece);
    if (this.have.has(piece)) return;
    n.wanted++;
    // A free slot and a free neighbour with a piece nobody is fetching: ask for it at once. A piece
    // just announced is a fresh copy, among the rarest; the full rarest-first pass runs whenever a slot
    // frees, and this keeps a have O(1) (a crowd sends tens of millions).
    const now = this.port.now();
    if (this.joinedAt < 0 || this.outstanding >= this.o.downloadSlots || this.pending.has(piece) || !this.isFree(n, now)) return;
    this.ask(peer, piece);
    this.deadlines(now);
  }

  /** The peer started sending the piece. */
  requestAccepted(peer: string, piece: number): void {
    const q = this.find(piece, peer);
    if (!q || q.accepted) return;
    q.accepted = true;
    this.accepted++;
    const n = this.neighbors.get(peer);
    if (n) {
      n.sending++;
      n.heard = this.port.now();
    }
    this.lastProgress = this.port.now();
  }

  /** The peer has no free upload slot. */
  requestRefused(peer: string, piece: number): void {
    if (!this.find(piece, peer)) return;
    this.dropRequest(piece, peer);
    const n = this.neighbors.get(peer);
    if (n) {
      n.busyUntil = this.port.now() + this.o.busyBackoffMs;
      this.busyEnd = Math.min(this.busyEnd, n.busyUntil);
    }
    this.fill();
  }

  /** A request broke off (connection lost, timeout). */
  requestFailed(peer: string, piece: number): void {
    if (!this.find(piece, peer)) return;
    this.dropRequest(piece, peer);
    this.fill();
  }

  /** A refused request may be repeated. */
  unchoked(peer: string): void {
    const n = this.neighbors.get(peer);
    if (!n) return;
    n.busyUntil = 0;
    this.fill();
  }

  /**
   * The bytes of a piece arrived and were checked against its digest.
   * A bad piece drops the peer that sent it (it is never served on).
   */
  pieceArrived(peer: string, piece: number, verified: boolean): void {
    if (!this.find(piece, peer)) return;
    this.dropRequest(piece, peer);
    if (!verified) {
      if (peer !== ORIGIN) this.removeNeighbor(peer);
      this.fill();
      return;
    }
    if (peer === ORIGIN) this.originPieces++;
    this.gained(piece);
    this.fill();
  }

  /** A piece this node got another way (a whole blob from the origin covered it): held and announced; requests for it are withdrawn. */
  pieceFound(piece: number): void {
    this.gained(piece);
    this.fill();
  }

  private gained(piece: number): void {
    if (!this.have.add(piece)) return;
    this.rarity.remove(piece);
    for (const n of this.neighbors.values()) if (n.pieces.has(piece)) n.wanted--;
    this.lastProgress = this.port.now();
    for (const other of [...(this.pending.get(piece) ?? [])]) {
      this.port.cancel(other.peer, piece);
      this.dropRequest(piece, other.peer);
    }
    this.port.announce(piece);
  }

  /** A peer asks for a piece: true = serve it now (call uploadEnded after), false = refused. */
  uploadRequested(peer: string, piece: number): boolean {
    if (!this.have.has(piece)) return false;
    if (this.uploads < this.o.uploadSlots) {
      this.uploads++;
      return true;
    }
    if (this.waiters.length < this.o.waitlist && !this.waiters.includes(peer)) this.waiters.push(peer);
    return false;
  }

  /** An upload finished, failed or was cancelled: its slot goes to the next waiter. */
  uploadEnded(): void {
    if (this.uploads === 0) throw new RangeError('uploadEnded without an upload in progress');
    this.uploads--;
    const next = this.waiters.shift();
    if (next !== undefined) this.port.unchoke(next);
  }

  /** Timer: deadlines (hedge, settle, backoffs) may have passed. */
  tick(): void {
    this.wake = Infinity;
    this.fill();
  }

  private find(piece: number, peer: string): Request | undefined {
    return this.pending.get(piece)?.find((q) => q.peer === peer);
  }

  private dropRequest(piece: number, peer: string): void {
    const reqs = this.pending.get(piece)!;
    const i = reqs.findIndex((q) => q.peer === peer);
    const accepted = reqs[i]!.accepted;
    if (accepted) this.accepted--;
    reqs.splice(i, 1);
    if (reqs.length === 0) this.pending.delete(piece);
    if (peer === ORIGIN) this.fromOrigin--;
    else this.outstanding--;
    const n = this.neighbors.get(peer);
    if (n) {
      n.outstanding--;
      if (accepted) n.sending--;
      n.heard = this.port.now();
    }
  }

  private ask(peer: string, piece: number): void {
    const reqs = this.pending.get(piece);
    const q = { peer, accepted: false, askedAt: this.port.now() };
    if (reqs) reqs.push(q);
    else this.pending.set(piece, [q]);
    if (peer === ORIGIN) this.fromOrigin++;
    else this.outstanding++;
    const n = this.neighbors.get(peer);
    if (n) n.outstanding++;
    this.port.request(peer, piece);
  }

  /** Requests what it can, then looks at the deadlines. */
  private fill(): void {
    if (this.joinedAt < 0 || this.complete) return;
    const now = this.port.now();
    this.pick(now);
    this.deadlines(now);
  }

  /** Fills free slots: origin duty on the origin's, the rarest piece a free neighbour holds (or the endgame) on the peers'. */
  private pick(now: number): void {
    while (this.fromOrigin < this.o.originSlots) {
      const duty = this.dutyPiece(now);
      if (duty < 0) break;
      this.originAsks.duty++;
      this.ask(ORIGIN, duty);
    }
    let free: Neighbor[] | undefined;
    while (this.outstanding < this.o.downloadSlots) {
      free ??= this.freeNeighbors(now);
      if (free.length === 0) break;
      const pick = this.peerPiece(free) ?? this.endgamePiece(free);
      if (!pick) break;
      this.ask(pick.peer.id, pick.piece);
      if (pick.peer.outstanding >= this.o.maxPerPeer) free = free.filter((n) => n !== pick.peer);
    }
  }

  private deadlines(now: number): void {
    let nextWake = Infinity;
    if (this.o.origin === false) {
      // Nothing to hedge to or starve into: only backoffs ending can make a request possible.
      if (this.busyEnd <= now) this.busyEnd = this.nextBusyEnd(now);
      if (this.busyEnd < this.wake || this.wake <= now) {
        this.wake = this.busyEnd;
        if (this.busyEnd < Infinity) this.port.wakeAt(this.busyEnd);
      }
      return;
    }
    if (this.outstanding < this.o.downloadSlots || this.fromOrigin < this.o.originSlots) {
      // Something may become possible later: a backoff ending, or duty starting.
      if (this.busyEnd <= now) this.busyEnd = this.nextBusyEnd(now);
      nextWake = Math.min(nextWake, this.busyEnd);
      if (this.ring && now < this.joinedAt + this.o.secondaryMs) {
        nextWake = Math.min(nextWake, now < this.joinedAt + this.o.settleMs ? this.joinedAt + this.o.settleMs : this.joinedAt + this.o.secondaryMs);
      }
    }
    nextWake = Math.min(nextWake, this.hedgeUnanswered(now));
    if (this.accepted === 0 && !this.complete) {
      const starveAt = this.lastProgress + this.o.starveMs;
      if (now >= starveAt && !this.originBusy()) this.starving(now);
      else nextWake = Math.min(nextWake, Math.max(starveAt, now + 1));
    }
    if (nextWake < this.wake || this.wake <= now) {
      this.wake = nextWake;
      if (nextWake < Infinity) this.port.wakeAt(nextWake);
    }
  }

  /** When the soonest backoff now running ends (Infinity: none). */
  private nextBusyEnd(now: number): number {
    let end = Infinity;
    for (const n of this.neighbors.values()) if (n.busyUntil > now && n.busyUntil < end) end = n.busyUntil;
    return end;
  }

  private originBusy(): boolean {
    for (const reqs of this.pending.values()) if (reqs.some((q) => q.peer === ORIGIN)) return true;
    return false;
  }

  /** Peer requests with no answer after hedgeMs go to the origin too; returns when to look again. */
  private hedgeUnanswered(now: number): number {
    let next = Infinity;
    for (const [p, reqs] of this.pending) {
      let at = Infinity;
      for (const q of reqs) {
        // Answered, or queued behind pieces the peer is sending now (it is alive, and answers in turn).
        if (q.peer === ORIGIN || q.accepted || (this.neighbors.get(q.peer)?.sending ?? 0) > 0) {
          at = Infinity;
          break;
        }
        at = Math.min(at, Math.max(q.askedAt, this.neighbors.get(q.peer)?.heard ?? 0) + this.hedgeMs);
      }
      if (at === Infinity) continue;
      if (now < at) {
        if (at < next) next = at;
        continue;
      }
      // The silent peers are withdrawn from and left alone for a while: hung, or far too slow.
      for (const q of [...reqs]) {
        this.port.cancel(q.peer, p);
        this.dropRequest(p, q.peer);
        const n = this.neighbors.get(q.peer);
        if (n) n.busyUntil = now + SILENT_BACKOFF * this.o.busyBackoffMs;
      }
      this.originAsks.hedge++;
      this.ask(ORIGIN, p);
    }
    return next;
  }

  /** Nothing came for starveMs: the rarest wanted piece from the origin, once per starveMs. */
  private starving(now: number): void {
    const r = this.rarity;
    for (let i = 0; i < r.length; i++) {
      const p = r.at(i);
      if (!this.find(p, ORIGIN)) {
        this.lastProgress = now;
        this.originAsks.starve++;
        this.ask(ORIGIN, p);
        return;
      }
    }
  }

  /** A piece this node must take from the origin now (fewer than DUTY_BELOW neighbours hold it), or -1. */
  private dutyPiece(now: number): number {
    if (this.o.origin === false || !this.ring || now < this.joinedAt + this.o.settleMs) return -1;
    const mine = (list: number[], below: number) => {
      for (const p of list) if (this.rarity.isWanted(p) && this.rarity.availability(p) < below && !this.pending.has(p)) return p;
      return -1;
    };
    const p = mine(this.primary, this.ring.size <= (this.o.smallSwarm ?? 0) ? 1 : DUTY_BELOW);
    // A secondary steps in only for a piece no neighbour holds at all (its primary died or stalls).
    return p >= 0 || now < this.joinedAt + this.o.secondaryMs ? p : mine(this.secondary, 1);
  }

  /** The rarest wanted piece some free neighbour holds, and that neighbour. */
  private peerPiece(free: Neighbor[]): Pick | undefined {
    const r = this.rarity;
    // A bounded scan: past it, the free neighbours hold only common pieces or none we want.
    const end = Math.min(r.length, r.firstWithAvailability(1) + SCAN_LIMIT);
    for (let i = r.firstWithAvailability(1); i < end; i++) {
      const p = r.at(i);
      if (this.pending.has(p)) continue;
      const peer = holderOf(free, p, undefined, this.o.random);
      if (peer) return { peer, piece: p };
    }
    return undefined;
  }

  /** Endgame: every wanted piece is asked for; ask one more holder for one of them. */
  private endgamePiece(free: Neighbor[]): Pick | undefined {
    if (this.pending.size < this.rarity.length) return undefined;
    for (const [p, reqs] of this.pending) {
      if (reqs.length > 1) continue;
      const peer = holderOf(free, p, reqs[0]!.peer, this.o.random);
      if (peer) return { peer, piece: p };
    }
    return undefined;
  }

  /** Neighbours not backing off and with room for another request. */
  private freeNeighbors(now: number): Neighbor[] {
    const out: Neighbor[] = [];
    for (const n of this.neighbors.values()) if (this.isFree(n, now)) out.push(n);
    return out;
  }

  /** Holds something wanted, is not backing off, and has room for a request. */
  private isFree(n: Neighbor, now: number): boolean {
    return n.wanted > 0 && n.busyUntil <= now && n.outstanding < this.o.maxPerPeer;
  }
}

interface Pick {
  peer: Neighbor;
  piece: number;
}

/** One of `free` holding `piece` (not `except`), starting at a random one so load spreads. */
function holderOf(free: Neighbor[], piece: number, except: string | undefined, random: () => number): Neighbor | undefined {
  const start = Math.floor(random() * free.length);
  for (let k = 0; k < free.length; k++) {
    const n = free[(start + k) % free.length]!;
    if (n.pieces.has(piece) && n.id !== except) return n;
  }
  return undefined;
}
