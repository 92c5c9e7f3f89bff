// The mesh: a libp2p node in every daemon (TCP, pnet, noise, yamux,
// identify, gossipsub). Its job is membership and news, not bytes:
//
// - Membership: the libp2p private network key derived from the cluster
//   secret (cluster-auth.ts) gates every connection; a node with another
//   secret fails the pnet handshake and never joins.
// - News: every `announceIntervalMs` (and as soon as a peer subscribes)
//   a node publishes on the cluster's topic what it holds (holdings.ts)
//   and its gRPC address. Messages are signed by the sender's peer key.
//   The directory keeps each peer's last announcement; a peer silent for
//   three intervals (ten while connected to it), or that says goodbye, is
//   dropped.
// - Joining: `vrift node join <multiaddr>` dials a member and remembers
//   the address (LMDB meta.state) so the node dials it again after a
//   restart; members learnt from gossip are dialed too, so the mesh
//   survives the loss of the node one joined through. `vrift node leave`
//   forgets them all, says goodbye and refuses connections until the next
//   join (that too is remembered).
//
// Bytes move over gRPC and the bulk port (peer-service.ts), between
// nodes the directory names.
import '../../lib/polyfills.js';
import { networkInterfaces } from 'node:os';
import type { GossipSub, Message } from '@libp2p/gossipsub';
import type { Libp2p, PeerId, PrivateKey } from '@libp2p/interface';
import type { Digest } from '../../lib/digest.js';
import { MAX_FETCHING, parseAnnouncement, type Announcement } from './announcement.js';
import { listenError } from './listen-error.js';
import { VriftError } from '../../lib/errors.js';
import type { Metrics } from '../../lib/metrics.js';
import { Bloom } from './bloom.js';
import type { ClusterKeys } from './auth.js';
import type { ClusterConfig } from './config.js';
import { HoldingsSummary } from './holdings.js';
import type { Store } from '../store/store.js';

export interface PeerRecord {
  id: string;
  grpc: string;
  addrs: string[];
  trees: Set<Digest>;
  /** Trees it is fetching in a swarm, with how many pieces of each it held when it announced. */
  fetching: Map<Digest, number>;
  treeCount: number;
  blobs: number;
  bloom: Bloom | undefined;
  /** When its last announcement arrived (ms). */
  seen: number;
  connected: boolean;
}

/** A peer as the control socket reports it (`vrift node peers`, the peer tier). */
export interface PeerView {
  id: string;
  grpc: string;
  addrs: string[];
  connected: boolean;
  seenMsAgo: number;
  trees: number;
  blobs: number;
  /** It announced the tree asked about in full. */
  hasTree?: boolean;
  /** How many of the digests asked about its filter may hold. */
  mayHave?: number;
  penalizedUntil?: number;
  penalty?: string;
}

export interface MeshOptions {
  store: Store;
  cfg: ClusterConfig;
  keys: ClusterKeys;
  metrics: Metrics;
  log: (line: string) => void;
  /** host:port of this node's gRPC service, as peers must dial it. */
  grpcAddress: () => string;
}

type Node = Libp2p<{ pubsub: GossipSub; identify: unknown }>;

const STATE = 'mesh';
/** Peers the directory keeps at most. */
const MAX_DIRECTORY = 2048;
/** Keep this many connections at least, dialing members learnt from gossip. */
const WANT_CONNECTIONS = 8;
/** Announce intervals without a word after which a peer is dropped from the directory… */
const SILENCE = 3;
/** …or, while this node holds a connection to it, this many. */
const CONNECTED_SILENCE = 10;

export class Mesh {
  readonly name = 'mesh';
  private node: Node | undefined;
  private readonly directory = new Map<string, PeerRecord>();
  private readonly penalties = new Map<string, { until: number; reason: string }>();
  private readonly holdings: HoldingsSummary;
  private readonly dialing = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private soon: NodeJS.Timeout | undefined;
  private next: NodeJS.Immediate | undefined;
  private left = false;
  private topic = '';
  private multiaddr: ((s: string) => import('@multiformats/multiaddr').Multiaddr) | undefined;
  /** Trees this node fetches in a swarm (announced, with their bitfields), and who listens for news of other members. */
  private readonly fetching = new Map<Digest, () => Uint8Array>();
  private readonly listeners = new Set<() => void>();
  /** Who hears of a peer entering the directory (or announcing another gRPC address). */
  private readonly arrivals = new Set<(peer: { id: string; grpc: string }) => void>();

  constructor(private readonly opts: MeshOptions) {
    this.holdings = new HoldingsSummary(opts.store);
  }

  get peerId(): string {
    return this.node?.peerId.toString() ?? '';
  }

  /** The node's listen addresses with its peer id: what `vrift node join` takes. */
  multiaddrs(): string[] {
    return this.node?.getMultiaddrs().map(String) ?? [];
  }

  async start(): Promise<void> {
    const { cfg, keys } = this.opts;
    // Loaded here: a node without a cluster never loads libp2p.
    const [{ createLibp2p }, { tcp }, { noise }, { yamux }, { identify }, { gossipsub }, { preSharedKey }, { multiaddr }] = await Promise.all([
      import('libp2p'),
      import('@libp2p/tcp'),
      import('@chainsafe/libp2p-noise'),
      import('@chainsafe/libp2p-yamux'),
      import('@libp2p/identify'),
      import('@libp2p/gossipsub'),
      import('@libp2p/pnet'),
      import('@multiformats/multiaddr'),
    ]);
    this.multiaddr = multiaddr;
    this.left = this.opts.store.meta.state.get([STATE, 'left']) === true;
    const ip = cfg.host.includes(':') ? 'ip6' : 'ip4';
    const announceHost = this.opts.cfg.announceHost;
    const node = (await createLibp2p({
      privateKey: await this.privateKey(),
      addresses: {
        listen: [`/${ip}/${cfg.host}/tcp/${cfg.p2pPort}`],
        ...(announceHost ? { announce: [`/${announceHost.includes(':') ? 'ip6' : 'ip4'}/${announceHost}/tcp/${cfg.p2pPort}`] } : {}),
      },
      // Before the pnet handshake anyone can connect: libp2p's own bounds hold them (an upgrade must finish
      // in inboundUpgradeTimeout; at most maxIncomingPendingConnections upgrade at once; more than
      // inboundConnectionThreshold connections a second from one host are refused); tcp's maxConnections
      // caps the sockets.
      transports: [tcp({ maxConnections: cfg.maxConnections })],
      connectionManager: {
        inboundUpgradeTimeout: cfg.handshakeMs,
        maxIncomingPendingConnections: 10,
        inboundConnectionThreshold: 5,
      },
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionProtector: preSharedKey({ psk: keys.psk, timeout: Math.min(cfg.timeoutMs, 5000) }),
      connectionGater: { denyInboundConnection: () => this.left },
      services: {
        identify: identify(),
        pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, emitSelf: false, maxInboundDataLength: 1 << 20 }),
      },
    }).catch((e: unknown) => {
      throw listenError(e, { what: "the cluster's libp2p mesh", host: cfg.host, port: cfg.p2pPort, portKey: 'p2pPort' });
    })) as unknown as Node;
    this.node = node;
    this.topic = `/vrift/${keys.id}/announce/1`;
    const pubsub = node.services.pubsub;
    pubsub.subscribe(this.topic);
    pubsub.addEventListener('message', (ev) => this.onMessage(ev.detail));
    pubsub.addEventListener('subscription-change', (ev) => {
      if (ev.detail.subscriptions.some((s) => s.topic === this.topic && s.subscribe)) this.announceSoon();
    });
    node.addEventListener('peer:connect', (ev) => this.setConnected(ev.detail, true));
    node.addEventListener('peer:disconnect', (ev) => this.setConnected(ev.detail, false));
    this.timer = setInterval(() => this.tick(), cfg.announceIntervalMs);
    this.timer.unref();
    if (!this.left) {
      for (const addr of [...cfg.bootstrap, ...this.remembered()]) void this.dialQuietly(addr);
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    clearTimeout(this.soon);
    clearImmediate(this.next);
    const node = this.node;
    if (!node) return;
    if (!this.left) await this.publish({ bye: true }).catch(() => undefined);
    this.node = undefined;
    await node.stop();
  }

  // --- membership ---------------------------------------------------------

  /** Dials a member and remembers its address; throws a clear error when it cannot join. */
  async join(addr: string): Promise<{ peer: string; addr: string }> {
    const node = this.started();
    const ma = this.parse(addr);
    const target = ma.getComponents().find((c) => c.name === 'p2p')?.value;
    if (target === this.peerId) throw new VriftError('ERR_VRIFT_MESH_JOIN', `${addr} is this node`, { hint: 'join another node of the cluster' });
    if (this.left) {
      this.left = false;
      await this.opts.store.meta.state.put([STATE, 'left'], false);
    }
    let peer: string;
    try {
      peer = (await node.dial(ma, { signal: AbortSignal.timeout(this.opts.cfg.timeoutMs) })).remotePeer.toString();
    } catch (e) {
      throw joinError(addr, e);
    }
    await this.opts.store.meta.state.put([STATE, `join:${addr}`], { at: Date.now(), peer });
    this.announceSoon();
    return { peer, addr };
  }

  /** Forgets one remembered address (and hangs up on it), or leaves the mesh altogether. */
  async leave(addr?: string): Promise<{ forgot: string[]; left: boolean }> {
    const node = this.started();
    const state = this.opts.store.meta.state;
    if (addr !== undefined) {
      const ma = this.parse(addr);
      const had = state.doesExist([STATE, `join:${addr}`]);
      await state.remove([STATE, `join:${addr}`]);
      await node.hangUp(ma).catch(() => undefined);
      return { forgot: had ? [addr] : [], left: false };
    }
    const forgot = this.remembered();
    for (const a of forgot) await state.remove([STATE, `join:${a}`]);
    await this.publish({ bye: true }).catch(() => undefined);
    this.left = true;
    await state.put([STATE, 'left'], true);
    await Promise.all(node.getConnections().map((c) => c.close().catch(() => c.abort(new Error('leaving')))));
    this.directory.clear();
    return { forgot, left: true };
  }

  get hasLeft(): boolean {
    return this.left;
  }

  /** Addresses `join` remembered. */
  remembered(): string[] {
    const out: string[] = [];
    for (const key of this.opts.store.meta.state.getKeys({ start: [STATE, 'join:'], end: [STATE, 'join;'] })) out.push(key[1].slice(5));
    return out;
  }

  // --- the directory --------------------------------------------------------

  /** Peers, best first: those that hold `tree` in full, then by how many of `digests` they may hold. */
  peers(ask: { tree?: Digest; digests?: Digest[] } = {}): PeerView[] {
    const now = Date.now();
    const out: PeerView[] = [];
    for (const r of this.directory.values()) {
      const v: PeerView = { id: r.id, grpc: r.grpc, addrs: r.addrs, connected: r.connected, seenMsAgo: now - r.seen, trees: r.treeCount, blobs: r.blobs };
      if (ask.tree) v.hasTree = r.trees.has(ask.tree);
      if (ask.digests) v.mayHave = r.bloom ? ask.digests.filter((d) => r.bloom!.mayHave(d)).length : ask.digests.length;
      const p = this.penalties.get(r.id);
      if (p && p.until > now) {
        v.penalizedUntil = p.until;
        v.penalty = p.reason;
      }
      out.push(v);
    }
    const rank = (v: PeerView) => (v.penalizedUntil ? 0 : 4) + (v.hasTree ? 2 : 0) + (v.connected ? 1 : 0);
    return out.sort((a, b) => rank(b) - rank(a) || (b.mayHave ?? 0) - (a.mayHave ?? 0) || a.seenMsAgo - b.seenMsAgo);
  }

  // --- swarms ------------------------------------------------------------------

  /** Says (at once, and in every announcement until `done`, with what `have` says it holds) that this node fetches `tree` in a swarm. */
  startFetching(tree: Digest, have: () => Uint8Array): void {
    if (this.fetching.has(tree) || this.fetching.size >= MAX_FETCHING) return;
    this.fetching.set(tree, have);
    this.announceNow();
  }

  doneFetching(tree: Digest): void {
    // Once the caller is done (a pull's reply has gone out): an announcement refreshes the holdings and signs a message, ~10 ms.
    if (this.fetching.delete(tree)) this.announceNext();
  }

  /** The members of `tree`'s swarm besides this node: peers fetching it, and peers holding it whole (not penalized). */
  swarmPeers(tree: Digest): { id: string; grpc: string; fetching: boolean; holds: boolean; pieces: number }[] {
    const now = Date.now();
    const out = [];
    for (const r of this.directory.values()) {
      const fetching = r.fetching.has(tree);
      const holds = r.trees.has(tree);
      if (!fetching && !holds) continue;
      if ((this.penalties.get(r.id)?.until ?? 0) > now) continue;
      out.push({ id: r.id, grpc: r.grpc, fetching, holds, pieces: r.fetching.get(tree) ?? 0 });
    }
    return out;
  }

  /**
   * Whether a member might still start fetching `tree`: one that does not
   * hold it whole, as far as the directory knows (true while no member is
   * known at all).
   */
  someMemberLacks(tree: Digest): boolean {
    if (this.directory.size === 0) return true;
    for (const r of this.directory.values()) if (!r.trees.has(tree)) return true;
    return false;
  }

  /** Calls `fn` after each announcement received (a swarm looks for new members); returns the unsubscribe. */
  onNews(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Calls `fn` with each peer that enters the directory, or announces another gRPC address; returns the unsubscribe. */
  onArrival(fn: (peer: { id: string; grpc: string }) => void): () => void {
    this.arrivals.add(fn);
    return () => this.arrivals.delete(fn);
  }

  /** Avoid a peer that sent wrong bytes (reported by this node's own peer tier, or a CLI's). */
  penalize(id: string, reason: string): void {
    this.penalties.set(id, { until: Date.now() + this.opts.cfg.penaltyMs, reason });
    this.opts.metrics.inc('vrift_peer_mismatch_total', { peer: id });
    this.opts.log(`mesh: peer ${id} penalized for ${Math.round(this.opts.cfg.penaltyMs / 1000)}s: ${reason}`);
  }

  // --- internals ---------------------------------------------------------------

  private started(): Node {
    if (!this.node) throw new VriftError('ERR_VRIFT_MESH_DOWN', 'the mesh is not running', { hint: 'check the daemon log' });
    return this.node;
  }

  private parse(addr: string): import('@multiformats/multiaddr').Multiaddr {
    let ma;
    try {
      ma = this.multiaddr!(addr);
    } catch {
      ma = undefined;
    }
    if (!ma || !ma.getComponents().some((c) => c.name === 'tcp')) {
      throw new VriftError('ERR_VRIFT_MESH_ADDR', `${JSON.stringify(addr)} is not a libp2p TCP multiaddr`, {
        hint: 'use the address another node shows in `vrift status`, e.g. /ip4/10.0.0.5/tcp/7401/p2p/12D3KooW…',
      });
    }
    return ma;
  }

  /** The node's libp2p identity, kept in LMDB so its peer id (and so its multiaddr) survives restarts. */
  private async privateKey(): Promise<PrivateKey> {
    const { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } = await import('@libp2p/crypto/keys');
    const state = this.opts.store.meta.state;
    const saved = state.get([STATE, 'key']);
    if (saved instanceof Uint8Array) return privateKeyFromProtobuf(saved);
    const key = await generateKeyPair('Ed25519');
    await state.put([STATE, 'key'], Buffer.from(privateKeyToProtobuf(key)));
    return key;
  }

  private setConnected(peer: PeerId, connected: boolean): void {
    const r = this.directory.get(peer.toString());
    // (events may still arrive while the node stops)
    if (r) r.connected = connected || (this.node?.getConnections(peer).length ?? 0) > 0;
  }

  private tick(): void {
    if (!this.node || this.left) return;
    void this.announce();
    const now = Date.now();
    const connected = new Set(this.node.getConnections().map((c) => c.remotePeer.toString()));
    for (const [id, r] of this.directory) {
      // A peer still connected gets longer: its announcements may wait behind work it does (a seeder
      // serving a 100 000-blob tree went 1.5 s without one at a 500 ms interval, and was dropped six
      // times mid-pull). A peer that is gone closes its connection, and is dropped after 3 intervals.
      if (now - r.seen > (connected.has(id) ? CONNECTED_SILENCE : SILENCE) * this.opts.cfg.announceIntervalMs) {
        this.directory.delete(id);
        this.opts.log(`mesh: peer ${id} (${r.grpc}) went silent; dropped`);
      }
    }
    for (const [id, p] of this.penalties) if (p.until <= now) this.penalties.delete(id);
    // Redial what we were told to keep, then members learnt from gossip while we have few connections.
    for (const addr of [...this.opts.cfg.bootstrap, ...this.remembered()]) void this.dialQuietly(addr);
    let budget = WANT_CONNECTIONS - connected.size;
    for (const r of this.directory.values()) {
      if (budget <= 0) break;
      if (connected.has(r.id) || r.addrs.length === 0) continue;
      budget--;
      void this.dialQuietly(r.addrs[0]!);
    }
  }

  private async dialQuietly(addr: string): Promise<void> {
    const node = this.node;
    if (!node || this.left || this.dialing.has(addr)) return;
    this.dialing.add(addr);
    try {
      const ma = this.multiaddr!(addr);
      const id = ma.getComponents().find((c) => c.name === 'p2p')?.value;
      if (id === this.peerId) return;
      if (id && node.getConnections().some((c) => c.remotePeer.toString() === id)) return;
      await node.dial(ma, { signal: AbortSignal.timeout(this.opts.cfg.timeoutMs) });
    } catch {
      /* down for now: the next tick tries again */
    } finally {
      this.dialing.delete(addr);
    }
  }

  /** Announces now (a swarm's members must learn of a new one quickly); at most one at a time. */
  private announceNow(): void {
    clearTimeout(this.soon);
    this.soon = undefined;
    void this.announce();
  }

  /** Announces at the next turn of the event loop, after what runs now; at most one waits. */
  private announceNext(): void {
    if (this.next) return;
    this.next = setImmediate(() => {
      this.next = undefined;
      this.announceNow();
    });
  }

  private announceSoon(): void {
    if (this.soon) return;
    this.soon = setTimeout(() => {
      this.soon = undefined;
      void this.announce();
    }, 100);
    this.soon.unref();
  }

  private async announce(): Promise<void> {
    if (!this.node || this.left) return;
    try {
      const h = this.holdings.refresh();
      await this.publish({
        trees: h.trees,
        treeCount: h.treeCount,
        blobs: h.blobs,
        bloom: h.bloom.bits.toString('base64'),
        bloomK: h.bloom.k,
        fetching: [...this.fetching.keys()],
        have: [...this.fetching.values()].map((have) => Buffer.from(have()).toString('base64')),
      });
    } catch (e) {
      this.opts.log(`mesh: announcing failed: ${(e as Error).message}`);
    }
  }

  private async publish(body: Partial<Announcement>): Promise<void> {
    const node = this.node;
    if (!node) return;
    const msg: Announcement = { v: 1, grpc: this.opts.grpcAddress(), addrs: this.multiaddrs(), trees: [], treeCount: 0, blobs: 0, bloom: '', bloomK: 1, ...body };
    await node.services.pubsub.publish(this.topic, Buffer.from(JSON.stringify(msg)));
  }

  private onMessage(msg: Message): void {
    if (msg.topic !== this.topic || msg.type !== 'signed' || this.left) return;
    const id = msg.from.toString();
    if (id === this.peerId) return;
    const a = parseAnnouncement(msg.data);
    if (!a) {
      this.opts.metrics.inc('vrift_peer_bad_announcement_total', { peer: id });
      return;
    }
    if (a.bye) {
      if (this.directory.delete(id)) this.opts.log(`mesh: peer ${id} (${a.grpc}) left`);
      this.tellListeners();
      return;
    }
    const was = this.directory.get(id);
    const known = was !== undefined;
    if (!known && this.directory.size >= MAX_DIRECTORY) return; // bounded: each entry may hold a 256 KiB filter
    this.directory.set(id, {
      id,
      grpc: a.grpc,
      addrs: a.addrs,
      trees: new Set(a.trees),
      fetching: new Map((a.fetching ?? []).map((t, i) => [t, bitCount(a.have?.[i])])),
      treeCount: a.treeCount,
      blobs: a.blobs,
      bloom: a.bloom ? new Bloom(Buffer.from(a.bloom, 'base64'), a.bloomK) : undefined,
      seen: Date.now(),
      connected: (this.node?.getConnections(msg.from).length ?? 0) > 0,
    });
    if (!known) this.opts.log(`mesh: peer ${id} at ${a.grpc} (${a.treeCount} trees, ${a.blobs} blobs)`);
    if (was?.grpc !== a.grpc) for (const fn of this.arrivals) fn({ id, grpc: a.grpc });
    this.tellListeners();
  }

  private tellListeners(): void {
    for (const fn of this.listeners) {
      try {
        fn();
      } catch (e) {
        this.opts.log(`mesh: a listener failed: ${(e as Error).message}`);
      }
    }
  }
}

/** Pieces set in a base64 bitfield (0 when absent). */
function bitCount(b64: string | undefined): number {
  let n = 0;
  for (let b of Buffer.from(b64 ?? '', 'base64')) for (; b; b &= b - 1) n++;
  return n;
}

/** Why a dial failed, in words a user can act on. */
function joinError(addr: string, e: unknown): VriftError {
  const err = e as Error & { code?: string; errors?: Error[] };
  const all = [err, ...(err.errors ?? [])].map((x) => `${x.name}: ${x.message}`).join('; ');
  let why = all;
  let hint = 'check the address (`vrift status` on that node shows it) and that the node is up';
  if (/Encryption|ECONNRESET|pnet|handshake|nonce/i.test(all)) {
    why = `the handshake failed (${err.name})`;
    hint = 'both nodes need the same cluster secret (VRIFT_CLUSTER_SECRET or cluster.secret)';
  } else if (/ECONNREFUSED/.test(all)) {
    why = 'nothing listens there';
  } else if (/Abort|timeout|timed out/i.test(all)) {
    // A wrong pre-shared key garbles the handshake: the other side may wait for bytes that never come.
    why = 'no handshake in time';
    hint = 'both nodes need the same cluster secret (VRIFT_CLUSTER_SECRET or cluster.secret); check also the address and that the node is up';
  }
  return new VriftError('ERR_VRIFT_MESH_JOIN', `could not join ${addr}: ${why}`, { hint, cause: e });
}

/** This host's first external IPv4 address (what peers dial when the node listens on a wildcard). */
export function externalIPv4(): string | undefined {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return undefined;
}
