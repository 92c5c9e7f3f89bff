// The peer tier: other nodes of the cluster, asked before Redis and S3.
// Which peers exist and what they hold comes from this host's daemon
// (peer-directory.ts); bytes come straight from the peers (gRPC, and the
// bulk stream for archives: src/tiers/peer/client.ts).
//
// - fetchTree splits what is missing across up to `cluster.spread` peers
//   that announced the tree in full (by bytes, parts of at least
//   `cluster.minPartBytes`); the chain reads the parts at once. A part
//   whose stream is cut (the peer died) or that carried a blob that does
//   not hash to its name (the peer lied) is opened again on another
//   peer, for only what is still missing.
// - A peer that sent wrong bytes is penalised: counted
//   (vrift_peer_mismatch_total{peer=…}), reported to the daemon (so other
//   commands avoid it too) and not asked again for `cluster.penaltyMs`.
// - Read-only: a node only stores what it asked for, so the chain never
//   pushes blobs or refs into peers.
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { hashBuffer, StreamHasher, type Digest } from '../../lib/digest.js';
import { archiveHeader, endFrame } from '../../node/archive/format.js';
import { isReadStop } from '../../node/archive/reader.js';
import { clusterKeys } from '../../node/cluster/auth.js';
import type { ClusterTls } from '../../node/cluster/tls.js';
import { clusterSection, type ClusterConfig } from '../../node/cluster/config.js';
import { socketPathOf } from '../../node/control/paths.js';
import { PeerConnection, peerLabel } from './client.js';
import { PeerConnections } from './connections.js';
import { DaemonDirectory, type PeerDirectory, type PeerView } from './directory.js';
import { isTierError, refTargetOf, TierError, type ArchivePart, type BlobBody, type BlobSource, type RefInfo, type RefTarget, type Tier, type TierContext, type TierFactory } from '../tier.js';
import { readStoredRef } from '../ref-trust.js';

/** Up to this many peers, every peer is asked about blobs (their filters may lag a fresh ingest). */
const SMALL_CLUSTER = 8;
/** Peers asked at most about one blob or ref in a larger cluster. */
const ASK_AT_MOST = 8;
/** Blobs up to this size are read whole and checked before they are handed on (a liar is skipped at once). */
const WHOLE_BLOB = 4 << 20;
/** A peer that could not be reached is tried last for this long. */
const DOWN_MS = 10_000;

type SecretConfig = ClusterConfig & { secret: string };

export class PeerTier implements Tier {
  readonly name = 'peer';
  readonly writable = false;
  readonly parallelism = 16;
  readonly archiveParallelism: number;
  private readonly auth: Buffer;
  private readonly tls: ClusterTls;
  private self = 'vrift';
  /** The daemon's (warm, shared with its swarms) when the tier runs in it; else this tier's own. */
  private readonly conns: PeerConnections;
  private readonly ownConns: boolean;
  private readonly penalized = new Map<string, number>();
  private readonly down = new Map<string, number>();
  private readonly streams = new Map<string, { n: number; waiting: (() => void)[] }>();

  constructor(
    private readonly cfg: SecretConfig,
    private readonly ctx: TierContext,
    private readonly directory: PeerDirectory,
  ) {
    const keys = clusterKeys(cfg.secret);
    this.auth = keys.auth;
    this.tls = keys.tls;
    this.archiveParallelism = cfg.spread;
    this.ownConns = !ctx.peerConnections;
    this.conns =
      ctx.peerConnections ??
      new PeerConnections({ auth: this.auth, tls: this.tls, self: () => this.self, timeoutMs: cfg.timeoutMs, maxMessageBytes: cfg.maxMessageBytes, idleMs: cfg.idleMs, warmAtMost: 0 });
  }

  // --- peers ----------------------------------------------------------------

  private conn(p: PeerView): PeerConnection {
    return this.conns.get(p);
  }

  private isPenalized(id: string): boolean {
    return (this.penalized.get(id) ?? 0) > Date.now();
  }

  /** The peers worth asking, best first; unreachable ones of late go last. */
  private async look(ask: { tree?: Digest; digests?: readonly Digest[] } = {}): Promise<PeerView[]> {
    const a = await this.directory.lookup(ask);
    if (a.self) this.self = a.self;
    const now = Date.now();
    const ok = a.peers.filter((p) => !p.penalizedUntil && !this.isPenalized(p.id));
    const up = (p: PeerView) => (this.down.get(p.id) ?? 0) <= now;
    return [...ok.filter(up), ...ok.filter((p) => !up(p))];
  }

  /** Peers to ask about blobs: all of a small cluster, else those whose filter may hold them. */
  private forBlobs(peers: PeerView[]): PeerView[] {
    if (peers.length <= SMALL_CLUSTER) return peers;
    return peers.filter((p) => (p.mayHave ?? 1) > 0).slice(0, ASK_AT_MOST);
  }

  private noteFailure(p: PeerView, e: unknown): void {
    if (isTierError(e) && e.failure !== 'unavailable') return;
    this.down.set(p.id, Date.now() + DOWN_MS);
    // A fresh channel next time: grpc-js would refuse calls while it backs off from the dead one.
    this.conns.drop(p.id);
  }

  /** A peer sent bytes that do not hash to their name: count it, tell the daemon, avoid it. */
  private blame(p: PeerView, why: string): void {
    if (this.isPenalized(p.id)) return;
    this.penalized.set(p.id, Date.now() + this.cfg.penaltyMs);
    this.ctx.metrics.inc('vrift_peer_mismatch_total', { peer: p.id });
    this.ctx.log('warn', `peer: ${peerLabel(p)} ${why}; it is avoided for ${Math.round(this.cfg.penaltyMs / 1000)}s`);
    void this.directory.penalize(p.id, why).catch(() => undefined);
  }

  /** One of the `streamsPerPeer` archive streams to a peer (waits for one to end). */
  private async slot(id: string): Promise<() => void> {
    let s = this.streams.get(id);
    if (!s) this.streams.set(id, (s = { n: 0, waiting: [] }));
    const st = s;
    while (st.n >= this.cfg.streamsPerPeer) await new Promise<void>((r) => st.waiting.push(r));
    st.n++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      st.n--;
      st.waiting.shift()?.();
    };
  }

  /** Runs `fn` on each peer; their answers, or the first failure when none answered. */
  private async askAll<T>(peers: PeerView[], fn: (c: PeerConnection) => Promise<T>): Promise<T[]> {
    const results = await Promise.allSettled(peers.map((p) => fn(this.conn(p))));
    const ok: T[] = [];
    let failure: unknown;
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') ok.push(r.value);
      else {
        failure ??= r.reason;
        this.noteFailure(peers[i]!, r.reason);
      }
    });
    if (ok.length === 0 && failure !== undefined) throw failure;
    return ok;
  }

  // --- Tier -------------------------------------------------------------------

  async has(digests: readonly Digest[]): Promise<Set<Digest>> {
    if (digests.length === 0) return new Set();
    const peers = this.forBlobs(await this.look({ digests }));
    const found = new Set<Digest>();
    for (const set of await this.askAll(peers, (c) => c.has(digests))) for (const d of set) found.add(d);
    return found;
  }

  async get(digest: Digest): Promise<BlobBody | undefined> {
    const peers = this.forBlobs(await this.look({ digests: [digest] }));
    let failure: unknown;
    let answered = false;
    for (const p of peers) {
      try {
        const body = await this.conn(p).getBlob(digest);
        answered = true;
        if (!body) continue;
        if (body.size > WHOLE_BLOB) return { stream: this.verifying(p, digest, body.stream), size: body.size };
        const buf = await readUpTo(body.stream, body.size);
        if (buf === undefined || buf.byteLength !== body.size || hashBuffer(buf) !== digest) {
          this.blame(p, `sent blob ${digest} whose bytes do not hash to its name`);
          continue;
        }
        return { stream: Readable.from([buf]), size: buf.byteLength };
      } catch (e) {
        failure ??= e;
        this.noteFailure(p, e);
      }
    }
    if (!answered && failure !== undefined) throw failure;
    return undefined;
  }

  /** A large blob's stream, hashed on the way: wrong bytes fail it at the end and penalise the peer. */
  private verifying(p: PeerView, digest: Digest, source: Readable): Readable {
    const hasher = new StreamHasher();
    const check = new Transform({
      transform(chunk: Buffer, _enc: string, cb: TransformCallback) {
        hasher.update(chunk);
        cb(null, chunk);
      },
      flush: (cb: TransformCallback) => {
        if (hasher.digest() === digest) return cb();
        this.blame(p, `sent blob ${digest} whose bytes do not hash to its name`);
        cb(new TierError('peer', 'corrupt', `${peerLabel(p)}: blob ${digest} failed verification and was rejected`));
      },
    });
    source.on('error', (e) => check.destroy(e));
    return source.pipe(check);
  }

  async fetchTree(tree: Digest, want: ReadonlySet<Digest>): Promise<ArchivePart[] | undefined> {
    const all = await this.look({ tree });
    let order = all.filter((p) => p.hasTree);
    if (order.length === 0) {
      // Announcements lag a fresh ingest by up to one interval: ask who holds the tree blob.
      const asked = all.slice(0, ASK_AT_MOST);
      const res = await Promise.allSettled(asked.map((p) => this.conn(p).has([tree])));
      res.forEach((r, i) => r.status === 'rejected' && this.noteFailure(asked[i]!, r.reason));
      const failed = res.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (asked.length > 0 && failed.length === asked.length) throw failed[0]!.reason;
      order = asked.filter((_, i) => res[i]!.status === 'fulfilled' && (res[i] as PromiseFulfilledResult<Set<Digest>>).value.has(tree));
    }
    if (order.length === 0) return undefined;
    if (want.size === 0) return [];
    const sizes = this.ctx.store.hasTree(tree) ? new Map(this.ctx.store.getTree(tree).entries.filter((e) => e.kind === 'file').map((e) => [e.digest!, e.size])) : undefined;
    const list = [...want];
    const total = sizes ? list.reduce((n, d) => n + (sizes.get(d) ?? 0), 0) : 0;
    const k = Math.max(1, Math.min(this.cfg.spread, order.length, sizes ? Math.floor(total / this.cfg.minPartBytes) : 1));
    // One part that wants every blob of the tree (a node that has none of it) asks for the tree whole: an empty
    // `want`, not 32 bytes per blob (which the peer would parse and look up, and which for a tree of 260 000
    // blobs would not fit in one message).
    const whole = k === 1 && sizes !== undefined && list.length === sizes.size;
    return split(list, k, sizes).map((bin, i) => {
      // Each part starts with a different peer; the others are its fallbacks, in order.
      const peers = [...order.slice(i % order.length), ...order.slice(0, i % order.length)];
      const bytes = sizes ? bin.reduce((n, d) => n + (sizes.get(d) ?? 0), 0) : undefined;
      return this.part(tree, bin, peers, `peer backfill ${i + 1}/${k} (${bin.length} blobs)`, bytes, whole);
    });
  }

  /** One share of a backfill: opened on its first peer, reopened on the next after a cut or a lie. */
  private part(tree: Digest, blobs: Digest[], order: PeerView[], name: string, bytes: number | undefined, whole: boolean): ArchivePart {
    const tried = new Set<string>();
    let current: { peer: PeerView; stream: Readable } | undefined;
    let opens = 0;
    const open = async (): Promise<Readable> => {
      // First, the blobs the index said were missing a moment ago (a stat per blob would cost ~1 ms per 100);
      // a reopen asks only for what is still missing.
      const first = opens++ === 0;
      const left = first ? blobs : blobs.filter((d) => !this.ctx.store.cas.has(d));
      if (left.length === 0) return Readable.from([Buffer.concat([archiveHeader(), endFrame(0, 0)])]);
      const previous = current?.peer;
      const errors: string[] = [];
      for (const p of order) {
        if (tried.has(p.id) || this.isPenalized(p.id)) continue;
        tried.add(p.id);
        const release = await this.slot(p.id);
        let got;
        try {
          got = await this.conn(p).archive({ tree, want: first && whole ? undefined : left }, this.cfg.bulk);
        } catch (e) {
          release();
          this.noteFailure(p, e);
          errors.push((e as Error).message);
          continue;
        }
        if (!got) {
          release();
          errors.push(`${peerLabel(p)} does not hold tree ${tree}`);
          continue;
        }
        if (previous) {
          this.ctx.metrics.inc('vrift_peer_resumed_total');
          this.ctx.log('info', `peer: resuming ${name} from ${peerLabel(p)} (${left.length} blobs left after ${peerLabel(previous)} failed)`);
        }
        current = { peer: p, stream: got.stream };
        // Handed to the reader as it is (no wrapper: at GB/s every layer of iteration shows).
        got.stream.once('error', (e) => {
          // (the reader stops a bulk stream once it has every blob it wanted: the peer did nothing wrong)
          if (isReadStop(e)) return;
          // A bulk frame that failed its tag: nothing of it was used, but the connection lied (or was tampered with).
          if (isTierError(e) && e.failure === 'corrupt') this.blame(p, `sent a bulk frame that failed its authentication tag`);
          this.noteFailure(p, e);
        });
        got.stream.once('close', () => {
          release();
          this.ctx.metrics.inc('vrift_peer_bytes_received_total', { peer: p.id }, got.received());
        });
        return got.stream;
      }
      throw new TierError('peer', 'unavailable', `no peer could serve ${name} of tree ${tree}${errors.length > 0 ? ` (${errors.join('; ')})` : ''}`, {
        hint: 'the peers holding it are down or penalised; the next tiers are tried',
      });
    };
    return {
      name,
      bytes,
      reopen: order.length,
      open,
      onReject: (d, reason) => {
        const c = current;
        if (!c) return;
        this.blame(c.peer, `sent blob ${d} that was rejected (${reason})`);
        // Abandon the liar's stream at once (throwing stops the reader mid-chunk); the part is reopened on another peer.
        const err = new TierError('peer', 'corrupt', `${peerLabel(c.peer)} sent wrong bytes; its stream was abandoned`);
        c.stream.destroy(err);
        throw err;
      },
    };
  }

  async put(_digest: Digest, _source: BlobSource): Promise<void> {
    throw readOnly();
  }

  async getRef(name: string): Promise<RefTarget | undefined> {
    const peers = (await this.look()).slice(0, ASK_AT_MOST * 2);
    const refs = (await this.askAll(peers, (c) => c.getRef(name))).flatMap((r) => (r ? [this.checked(name, r)] : [])).filter((r) => r !== undefined);
    refs.sort((a, b) => b.updatedAt - a.updatedAt);
    return refTargetOf(refs[0]);
  }

  /**
   * A ref a peer served, if its record passes the same checks as Redis's and
   * S3's (signed, by a key refs.trust allows for the name); a peer that
   * sends no record is an unsigned one. Without a checker (a tier built
   * alone, in tests) it is taken as it is.
   */
  private checked(name: string, r: { tree: Digest; updatedAt: number; record: string }): RefInfo | undefined {
    const record = r.record || JSON.stringify({ tree: r.tree, updatedAt: r.updatedAt });
    try {
      const ref = readStoredRef(this.ctx.refs, 'peer', name, record, 'the peer serves a damaged ref record');
      // The record must name what the reply names.
      return ref && ref.tree === r.tree ? ref : undefined;
    } catch {
      return undefined;
    }
  }

  async setRef(_name: string, _target: RefTarget): Promise<void> {
    throw readOnly();
  }

  async listRefs(prefix: string, limit = 100): Promise<RefInfo[]> {
    const peers = (await this.look()).slice(0, ASK_AT_MOST * 2);
    const byName = new Map<string, RefInfo>();
    for (const list of await this.askAll(peers, (c) => c.listRefs(prefix, limit))) {
      for (const served of list) {
        const r = this.checked(served.name, served);
        if (r && (byName.get(r.name)?.updatedAt ?? -1) < r.updatedAt) byName.set(r.name, r);
      }
    }
    return [...byName.values()].sort((a, b) => b.updatedAt - a.updatedAt).slice(0, limit);
  }

  async close(): Promise<void> {
    if (this.ownConns) this.conns.close();
    this.directory.close();
  }
}

function readOnly(): TierError {
  return new TierError('peer', 'config', 'peers are read-only: a node stores only what it asks for', {
    hint: 'push to Redis or S3; peers fetch trees themselves',
  });
}

/** A stream read whole, or undefined as soon as it runs past `limit` bytes. */
async function readUpTo(stream: Readable, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of stream as AsyncIterable<Buffer>) {
    n += c.byteLength;
    if (n > limit) {
      stream.destroy();
      return undefined;
    }
    chunks.push(c);
  }
  return Buffer.concat(chunks, n);
}

/** Splits digests into `k` shares of about equal bytes (largest first, each to the lightest share). */
export function split(list: Digest[], k: number, sizes: Map<Digest, number> | undefined): Digest[][] {
  if (k <= 1) return [list];
  const bins = Array.from({ length: k }, () => ({ bytes: 0, blobs: [] as Digest[] }));
  const sorted = sizes ? [...list].sort((a, b) => (sizes.get(b) ?? 0) - (sizes.get(a) ?? 0)) : list;
  for (const d of sorted) {
    let best = bins[0]!;
    for (const b of bins) if (b.bytes < best.bytes || (b.bytes === best.bytes && b.blobs.length < best.blobs.length)) best = b;
    best.blobs.push(d);
    best.bytes += sizes?.get(d) ?? 1;
  }
  return bins.map((b) => b.blobs).filter((b) => b.length > 0);
}

export const peerTier: TierFactory<ClusterConfig> = {
  name: 'peer',
  // The cluster section is shared with the daemon (mesh, peer service); listing it here puts it in the config.
  config: clusterSection,
  create: (ctx, cfg) => (cfg?.secret ? new PeerTier(cfg as SecretConfig, ctx, ctx.peers ?? new DaemonDirectory(socketPathOf(ctx.store.layout.run))) : undefined),
};
