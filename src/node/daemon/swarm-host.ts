// A daemon's swarms, one per tree (tree-swarm.ts): those it fetches, and
// those it serves to others (a tree it holds, whole or in part, asked for
// by a member fetching it). The peer service's OpenSwarm comes here for a
// channel (SwarmDoor); the resolver asks here to fetch a tree in a swarm.
// A swarm that fetches nothing and has had no channel for LINGER_MS is
// dropped (and made again when a peer asks).
import type { SealedSocket } from '../../lib/sealed-socket.js';
import type { Digest } from '../../lib/digest.js';
import type { Metrics } from '../../lib/metrics.js';
import type { Chain } from '../../tiers/chain.js';
import { isLocalError } from '../../tiers/guarded.js';
import type { PeerConnections } from '../../tiers/peer/connections.js';
import type { ClusterConfig } from '../cluster/config.js';
import type { Mesh } from '../cluster/mesh.js';
import type { SwarmDoor } from '../cluster/peer-service.js';
import type { Store } from '../store/store.js';
import type { TreeEntry } from '../store/tree.js';
import { DEFAULT_SWARM_OPTIONS } from '../swarm/scheduler.js';
import { TreeSwarm, type OnSwarmBlob, type SwarmContext } from './tree-swarm.js';

/**
 * How long a node that sees no other fetcher of a tree waits for one
 * before it pulls the tree alone (members of a crowd that start within
 * this of each other swarm from the first byte). A node that pulls alone
 * hands what it still lacks to a swarm as soon as another node starts
 * fetching (`whenOthersFetch`), so this is what a lone node pays, not
 * what keeps a crowd off the origin. It is not paid when every member
 * already holds the tree: none of them can start fetching it.
 */
const ALONE_WAIT_MS = 40;
/** A swarm with nothing to do is kept this long after its last channel closed. */
const LINGER_MS = 30_000;
/** Why a pull went alone: no other fetcher came within ALONE_WAIT_MS, or every member holds the tree (no wait). */
const LONE_REASONS = ['none-came', 'all-hold'] as const;

export interface SwarmHostOptions {
  store: Store;
  mesh: Mesh;
  cfg: ClusterConfig;
  /** The daemon's connections to its peers (shared with its peer tier). */
  conns: PeerConnections;
  metrics: Metrics;
  log: (line: string) => void;
}

export class SwarmHost implements SwarmDoor {
  readonly name = 'swarms';
  private readonly swarms = new Map<Digest, TreeSwarm>();
  private sweeper: NodeJS.Timeout | undefined;
  private readonly ctx: SwarmContext;

  constructor(private readonly opts: SwarmHostOptions) {
    const { mesh, cfg } = opts;
    this.ctx = {
      store: opts.store,
      chain: undefined,
      get self() {
        return mesh.peerId;
      },
      members: (tree) => mesh.swarmPeers(tree),
      connect: (peer, tree, layout) => opts.conns.get(peer).openSwarm(tree, layout),
      penalize: (peer, reason) => mesh.penalize(peer, reason),
      onNews: (fn) => mesh.onNews(fn),
      hedgeMs: cfg.swarmHedgeMs,
      metrics: opts.metrics,
      log: opts.log,
    };
    for (const from of ['peer', 'origin']) opts.metrics.declare('vrift_swarm_pieces_total', { from });
    for (const why of LONE_REASONS) opts.metrics.declare('vrift_swarm_lone_pulls_total', { why });
  }

  async start(): Promise<void> {
    this.sweeper = setInterval(() => this.sweep(), 5000);
    this.sweeper.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.sweeper);
    for (const s of this.swarms.values()) s.close();
    this.swarms.clear();
  }

  /** The resolver's chain: the origin is every tier of it but the peers. */
  useChain(chain: Chain): void {
    this.ctx.chain = chain;
  }

  /** Whether a pull missing this many bytes should swarm. */
  wants(missingBytes: number): boolean {
    const { cfg } = this.opts;
    return cfg.swarm && cfg.bulk && !this.opts.mesh.hasLeft && this.opts.mesh.peerId !== '' && missingBytes >= cfg.swarmMinBytes;
  }

  /**
   * Fetches what this node lacks of `tree` in its swarm (announced on the
   * mesh meanwhile). Resolves with what came from where; "alone" when
   * nodes hold the tree and no other node fetches it (the caller pulls it
   * from them its own way, then calls `done`); undefined when the swarm could not finish (logged: the
   * pull goes on without it). Rejects only on a local failure (a full disk).
   */
  async fetch(tree: Digest, entries: readonly TreeEntry[], onBlob: OnSwarmBlob): Promise<TreeSwarm['stats'] | 'alone' | undefined> {
    let s = this.swarms.get(tree);
    if (!s) {
      s = new TreeSwarm(this.ctx, tree, entries);
      this.swarms.set(tree, s);
    }
    const swarm = s;
    this.opts.mesh.startFetching(tree, () => swarm.sched.have.encode());
    // No other node fetches it (within ALONE_WAIT_MS): pulling it its own way (a holder's backfill, S3's
    // packs) is faster for one node. This one stays a member and offers what arrives, so nodes that come
    // later swarm with it; and the caller hands what it still lacks to this swarm when one comes.
    const others = await this.othersFetch(tree);
    if (others !== 'yes') {
      this.opts.metrics.inc('vrift_swarm_lone_pulls_total', { why: others });
      return 'alone';
    }
    try {
      await s.fetch(onBlob);
      return s.stats;
    } catch (e) {
      if (isLocalError(e)) throw e;
      this.opts.log(`swarm ${tree.slice(0, 12)}: stopped (${(e as Error).message}); the pull goes on without it`);
      return undefined;
    } finally {
      this.done(tree);
    }
  }

  /**
   * Whether another node fetches `tree`, now or within ALONE_WAIT_MS (it
   * announces as it starts); without waiting when every member holds it
   * (a node that joins meanwhile and fetches it finds this one fetching,
   * and this pull hands over as it would after the wait).
   */
  private othersFetch(tree: Digest): Promise<'yes' | (typeof LONE_REASONS)[number]> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        unwatch();
        resolve('none-came');
      }, ALONE_WAIT_MS);
      const unwatch = this.whenOthersFetch(tree, () => {
        clearTimeout(timer);
        resolve('yes');
      });
      if (!this.opts.mesh.someMemberLacks(tree)) {
        clearTimeout(timer);
        unwatch();
        resolve('all-hold'); // (a no-op when a fetcher was seen above: the promise is settled)
      }
    });
  }

  /** Calls `fn` once, when (or if already) another node fetches `tree`; returns the way to stop watching. */
  whenOthersFetch(tree: Digest, fn: () => void): () => void {
    const seen = () => this.opts.mesh.swarmPeers(tree).some((m) => m.fetching);
    if (seen()) {
      fn();
      return () => undefined;
    }
    const stop = this.opts.mesh.onNews(() => {
      if (!seen()) return;
      stop();
      fn();
    });
    return stop;
  }

  /** The pull of `tree` is over: this node no longer says it fetches it. */
  done(tree: Digest): void {
    this.opts.mesh.doneFetching(tree);
    const s = this.swarms.get(tree);
    if (s) s.idleSince = Date.now();
  }

  openChannel(tree: Digest, layout: string, peer: string): { attach(conn: SealedSocket): void } | { refuse: 'not-found' | 'refused'; why: string } {
    let s = this.swarms.get(tree);
    if (!s) {
      const { store } = this.opts;
      if (!store.hasTree(tree)) return { refuse: 'not-found', why: `this node has no tree ${tree}` };
      s = new TreeSwarm(this.ctx, tree, store.getTree(tree).entries);
      this.swarms.set(tree, s);
    }
    if (s.layout.layout !== layout) return { refuse: 'refused', why: `this node cuts tree ${tree} as ${s.layout.layout}, the caller as ${layout} (another vrift version?)` };
    if (s.sessionCount >= DEFAULT_SWARM_OPTIONS.maxNeighbors) return { refuse: 'refused', why: `this node has ${s.sessionCount} channels for tree ${tree} already` };
    const swarm = s;
    return { attach: (conn) => void swarm.addSession(peer, conn) };
  }

  /** Swarms in progress, for status. */
  status(): { tree: Digest; fetching: boolean; channels: number; pieces: number; have: number; stats: TreeSwarm['stats']; originAsks: TreeSwarm['sched']['originAsks'] }[] {
    return [...this.swarms.values()].map((s) => ({
      tree: s.tree,
      fetching: s.fetching,
      channels: s.sessionCount,
      pieces: s.layout.pieces.length,
      have: s.sched.have.count,
      stats: s.stats,
      originAsks: s.sched.originAsks,
    }));
  }

  private sweep(): void {
    const now = Date.now();
    for (const [tree, s] of this.swarms) {
      if (!s.fetching && s.sessionCount === 0 && now - s.idleSince > LINGER_MS) {
        s.close();
        this.swarms.delete(tree);
      }
    }
  }
}
