// A client of one peer's service (proto/peer.proto) and bulk port
// (bulk-server.ts). It moves bytes and maps failures; it trusts nothing:
// what it returns is read and verified by the caller (the archive reader,
// the local tier's `admit`).
//
// Failures are TierErrors of the "peer" tier whose message names the
// peer; absence (NOT_FOUND) is undefined. A stream that stays silent for
// `timeoutMs` is cut, so a peer that hangs cannot hold a restore forever.
import type { ChunkPump } from '../../node/archive/reader.js';
import { Readable } from 'node:stream';
import type * as Grpc from '@grpc/grpc-js';
import type { Digest } from '../../lib/digest.js';
import { isTierError, TierError, type TierFailure } from '../tier.js';
import { AUTH_METADATA, signCall } from '../../node/cluster/auth.js';
import { checkPinned, TLS_SERVERNAME, type ClusterTls } from '../../node/cluster/tls.js';
import { cutError, type SealedFrame, SealedSocket, sealKeys } from '../../lib/sealed-socket.js';
import { BULK_MAGIC, MAX_HAS, packDigests, PEER_METHODS, peerProto, type PeerClient } from '../../node/cluster/wire.js';
import type { BulkTicket__Output } from '../../gen/vrift/peer/v1/BulkTicket.js';
import type { HasReply__Output } from '../../gen/vrift/peer/v1/HasReply.js';
import type { ListRefsReply__Output } from '../../gen/vrift/peer/v1/ListRefsReply.js';
import type { RefReply__Output } from '../../gen/vrift/peer/v1/RefReply.js';

export interface PeerEndpoint {
  /** libp2p peer id. */
  id: string;
  /** host:port of its gRPC service. */
  grpc: string;
}

export interface PeerClientOptions {
  /** The cluster's gRPC auth key (cluster-auth.ts). */
  auth: Buffer;
  /** The cluster's TLS identity (tls.ts): presented to the peer, and the only certificate accepted from it. */
  tls: ClusterTls;
  /** Who is calling (this node's peer id): the server bounds streams per caller. */
  self: string;
  timeoutMs: number;
  maxMessageBytes: number;
}

export interface ArchiveAsk {
  tree: Digest;
  /** Only these blobs (all of the tree's when absent). */
  want?: Iterable<Digest>;
  have?: Iterable<Digest>;
}

export interface ArchiveStream {
  stream: Readable;
  blobs: number;
  bytes: number;
  via: 'bulk' | 'grpc';
  /** Bytes of the stream received so far. */
  received(): number;
}

/** A short name for messages: "peer 12D3…x7Yq (127.0.0.1:7402)". */
export function peerLabel(p: PeerEndpoint): string {
  return `peer ${p.id.length > 12 ? `${p.id.slice(0, 4)}…${p.id.slice(-6)}` : p.id} (${p.grpc})`;
}

export class PeerConnection {
  private readonly client: PeerClient;
  private readonly grpc: typeof Grpc;
  /** Calls in progress, and when one last started or ended (connections.ts closes a connection idle for long). */
  private active = 0;
  private lastCall = Date.now();

  constructor(
    readonly peer: PeerEndpoint,
    private readonly opts: PeerClientOptions,
  ) {
    const { grpc, Client } = peerProto();
    this.grpc = grpc;
    const { tls } = opts;
    const creds = grpc.credentials.createSsl(Buffer.from(tls.cert), Buffer.from(tls.key), Buffer.from(tls.cert), { checkServerIdentity: (_host, cert) => checkPinned(tls, cert) });
    this.client = new Client(peer.grpc, creds, {
      // The certificate names no address: send a fixed SNI name; checkServerIdentity pins the certificate instead.
      'grpc.ssl_target_name_override': TLS_SERVERNAME,
      'grpc.max_receive_message_length': opts.maxMessageBytes,
      'grpc.max_send_message_length': opts.maxMessageBytes,
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 2000,
      // HTTP/2's default 64 KiB window holds a stream to ~0.1 GB/s here; streams carry MiBs.
      'grpc-node.flow_control_window': 16 << 20,
    });
  }

  close(): void {
    this.client.close();
  }

  /** How long no call has been in progress here (0 while one is). */
  idleMs(now = Date.now()): number {
    return this.active > 0 ? 0 : now - this.lastCall;
  }

  /**
   * Opens the channel now (TCP, the TLS handshake, HTTP/2) with one
   * authenticated call that asks for nothing (a Has of no digest), so the
   * first real call finds it ready; and the peer's gate counts the
   * connection as a member's (it closes one that carries no authenticated
   * call within `handshakeMs`). Resolves when the peer answered.
   */
  async warm(): Promise<void> {
    await this.unary<HasReply__Output>('has', PEER_METHODS.has, (m, o, cb) => this.client.Has({ digests: Buffer.alloc(0) }, m, o, cb));
  }

  /** Counts a call in progress until `ended` is called (once). */
  private begin(): () => void {
    this.active++;
    this.lastCall = Date.now();
    let open = true;
    return () => {
      if (!open) return;
      open = false;
      this.active--;
      this.lastCall = Date.now();
    };
  }

  /** A streaming call counts as in progress until its status arrives. */
  private counted<C extends Grpc.ClientReadableStream<unknown>>(call: C): C {
    const ended = this.begin();
    call.once('status', ended); // (grpc-js emits it once at the end of every call: done, failed or cancelled)
    return call;
  }

  private meta(method: string): Grpc.Metadata {
    const m = new this.grpc.Metadata();
    m.set(AUTH_METADATA, signCall(this.opts.auth, this.opts.self, method));
    return m;
  }

  private deadline(): Grpc.CallOptions {
    return { deadline: Date.now() + this.opts.timeoutMs };
  }

  /** A gRPC failure as a TierError naming this peer (NOT_FOUND is handled by the callers). */
  fail(e: unknown, op: string): TierError {
    const S = this.grpc.status;
    const code = (e as { code?: number }).code;
    const details = ((e as { details?: string }).details ?? (e as Error).message ?? String(e)).replace(/^vrift: /, '');
    let failure: TierFailure = 'unavailable';
    let hint = 'the peer is down or overloaded; other peers and tiers are tried';
    // A TLS handshake with a node of another cluster fails on its certificate (not signed by, or not, ours).
    if (code === S.UNAUTHENTICATED || code === S.PERMISSION_DENIED || /self-signed certificate|cluster's certificate|certificate required/.test(details)) {
      failure = 'auth';
      hint = 'every node of a cluster needs the same secret (VRIFT_CLUSTER_SECRET or cluster.secret)';
    } else if (code === S.INVALID_ARGUMENT || code === S.UNIMPLEMENTED || code === S.OUT_OF_RANGE) {
      failure = 'config';
      hint = 'the peer runs an incompatible vrift version';
    }
    return new TierError('peer', failure, `${peerLabel(this.peer)}: ${op} failed: ${details}`, { hint, cause: e });
  }

  private isNotFound(e: unknown): boolean {
    return (e as { code?: number }).code === this.grpc.status.NOT_FOUND;
  }

  private unary<Res>(op: string, method: string, call: (meta: Grpc.Metadata, opts: Grpc.CallOptions, cb: Grpc.requestCallback<Res>) => unknown): Promise<Res | undefined> {
    const ended = this.begin();
    return new Promise((resolve, reject) => {
      call(this.meta(method), this.deadline(), (err, res) => {
        ended();
        if (!err) resolve(res!);
        else if (this.isNotFound(err)) resolve(undefined);
        else reject(this.fail(err, op));
      });
    });
  }

  async has(digests: readonly Digest[]): Promise<Set<Digest>> {
    const out = new Set<Digest>();
    for (let i = 0; i < digests.length; i += MAX_HAS) {
      const batch = digests.slice(i, i + MAX_HAS);
      const res = await this.unary<HasReply__Output>('has', PEER_METHODS.has, (m, o, cb) => this.client.Has({ digests: packDigests(batch) }, m, o, cb));
      const bits = res?.present ?? Buffer.alloc(0);
      batch.forEach((d, j) => {
        if (((bits[j >> 3] ?? 0) >> (j & 7)) & 1) out.add(d);
      });
    }
    return out;
  }

  /** The ref as this peer serves it: `record` is its signed record ("" from a peer that does not sign). */
  async getRef(name: string): Promise<{ tree: Digest; updatedAt: number; record: string } | undefined> {
    const res = await this.unary<RefReply__Output>('getRef', PEER_METHODS.getRef, (m, o, cb) => this.client.GetRef({ name }, m, o, cb));
    if (!res) return undefined;
    if (res.tree.byteLength !== 32) throw new TierError('peer', 'corrupt', `${peerLabel(this.peer)}: ref ${JSON.stringify(name)} names no valid tree`);
    return { tree: res.tree.toString('hex'), updatedAt: res.updatedAt, record: res.record ?? '' };
  }

  async listRefs(prefix: string, limit: number): Promise<{ name: string; tree: Digest; updatedAt: number; record: string }[]> {
    const res = await this.unary<ListRefsReply__Output>('listRefs', PEER_METHODS.listRefs, (m, o, cb) => this.client.ListRefs({ prefix, limit }, m, o, cb));
    return (res?.refs ?? []).filter((r) => r.tree.byteLength === 32).map((r) => ({ name: r.name, tree: r.tree.toString('hex'), updatedAt: r.updatedAt, record: r.record ?? '' }));
  }

  /** A blob's bytes from `offset` (unverified), and its whole size; undefined when the peer lacks it. */
  async getBlob(digest: Digest, offset = 0): Promise<{ size: number; stream: Readable } | undefined> {
    const call = this.counted(this.client.GetBlob({ digest: Buffer.from(digest, 'hex'), offset }, this.meta(PEER_METHODS.getBlob)));
    const first = await this.firstMessage(call, 'getBlob');
    if (!first) return undefined;
    return { size: first.value.size, stream: this.rest(call, first.value.data, first.it, 'getBlob') };
  }

  /**
   * The archive of the blobs of a tree this peer holds and the caller
   * lacks: over the bulk port when the peer offers it, else over gRPC.
   * undefined when the peer does not hold the tree.
   */
  async archive(ask: ArchiveAsk, bulk: boolean): Promise<ArchiveStream | undefined> {
    const req = { tree: Buffer.from(ask.tree, 'hex'), want: packDigests(ask.want ?? []), have: packDigests(ask.have ?? []) };
    if (bulk) {
      let ticket;
      try {
        ticket = await this.unary<BulkTicket__Output>('openBulk', PEER_METHODS.openBulk, (m, o, cb) => this.client.OpenBulk(req, m, o, cb));
      } catch (e) {
        if ((e as { cause?: { code?: number } }).cause?.code !== this.grpc.status.FAILED_PRECONDITION) throw e;
        ticket = null; // the peer has bulk off: gRPC below
      }
      if (ticket === undefined) return undefined;
      if (ticket) {
        const stream = new BulkStream(await this.sealed(ticket, 'bulk'), this.opts.timeoutMs, peerLabel(this.peer));
        return { stream, blobs: ticket.blobs, bytes: ticket.bytes, via: 'bulk', received: () => stream.sock.bytesRead };
      }
    }
    const call = this.counted(this.client.GetArchive(req, this.meta(PEER_METHODS.getArchive)));
    const first = await this.firstMessage(call, 'getArchive');
    if (!first) return undefined;
    let n = 0;
    const stream = this.rest(call, first.value.data, first.it, 'getArchive', (k) => (n += k));
    return { stream, blobs: first.value.blobs, bytes: first.value.bytes, via: 'grpc', received: () => n };
  }

  /**
   * A swarm channel with this peer for `tree` (src/node/swarm/channel.ts):
   * the connection on its bulk port, ticket and proof sent; undefined when
   * the peer neither fetches nor holds the tree. Refusals (another layout,
   * already connected, bulk off) are TierErrors.
   */
  async openSwarm(tree: Digest, layout: string): Promise<SealedSocket | undefined> {
    const req = { tree: Buffer.from(tree, 'hex'), layout };
    const ticket = await this.unary<BulkTicket__Output>('openSwarm', PEER_METHODS.openSwarm, (m, o, cb) => this.client.OpenSwarm(req, m, o, cb));
    return ticket ? this.sealed(ticket, 'swarm') : undefined;
  }

  /**
   * A connection to the bulk port for `ticket`: the ticket id, then the
   * first sealed frame (the id again) that proves the session key
   * (bulk-server.ts). Resolves once connected; the server answers only if
   * the proof opens.
   */
  private sealed(ticket: BulkTicket__Output, what: 'bulk' | 'swarm'): Promise<SealedSocket> {
    if (ticket.key.byteLength !== 32 || ticket.token.byteLength !== 32) {
      return Promise.reject(new TierError('peer', 'config', `${peerLabel(this.peer)}: its ${what} ticket carries no session key`, { hint: 'the peer runs an incompatible vrift version' }));
    }
    const host = this.peer.grpc.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
    const conn = SealedSocket.connect(host, ticket.port, sealKeys(ticket.key, ticket.token, 'client'));
    return new Promise((resolve, reject) => {
      conn.socket.once('connect', () => {
        conn.socket.cork();
        conn.socket.write(Buffer.concat([BULK_MAGIC, ticket.token]));
        conn.write(Buffer.from(ticket.token));
        conn.socket.uncork();
        resolve(conn);
      });
      conn.socket.once('error', (e) => reject(this.fail(e, `${what} connect to port ${ticket.port}`)));
    });
  }

  /** Waits for a stream's first message: undefined on NOT_FOUND, a TierError on failure. */
  private async firstMessage<M>(call: Grpc.ClientReadableStream<M>, op: string): Promise<{ value: M; it: AsyncIterator<M> } | undefined> {
    const it = (call as AsyncIterable<M>)[Symbol.asyncIterator]();
    const timer = setTimeout(() => call.cancel(), this.opts.timeoutMs);
    try {
      const n = await it.next();
      if (n.done) throw new TierError('peer', 'unavailable', `${peerLabel(this.peer)}: ${op} ended before its first message`);
      return { value: n.value, it };
    } catch (e) {
      if (this.isNotFound(e)) return undefined;
      throw isTierError(e) ? e : this.fail(e, op);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The byte stream of a call's messages' `data`, starting with the first one's; cut after `timeoutMs` of silence. */
  private rest<M extends { data: Buffer }>(call: Grpc.ClientReadableStream<M>, first: Buffer, it: AsyncIterator<M>, op: string, onBytes?: (n: number) => void): Readable {
    const self = this;
    const timeoutMs = this.opts.timeoutMs;
    async function* bytes(): AsyncGenerator<Buffer> {
      let timer: NodeJS.Timeout | undefined;
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => call.cancel(), timeoutMs);
      };
      try {
        onBytes?.(first.byteLength);
        if (first.byteLength > 0) yield first;
        for (;;) {
          arm();
          let n: IteratorResult<M>;
          try {
            n = await it.next();
          } catch (e) {
            throw self.fail(e, op);
          }
          if (n.done) return;
          onBytes?.(n.value.data.byteLength);
          if (n.value.data.byteLength > 0) yield n.value.data;
        }
      } finally {
        clearTimeout(timer);
        call.cancel(); // a no-op after a clean end; stops the peer when the reader gave up
      }
    }
    return Readable.from(bytes(), { objectMode: false });
  }
}

/**
 * A bulk connection (sealed: src/lib/sealed-socket.ts). For the archive
 * reader it is a ChunkPump: the socket reads straight into the sealed
 * socket's frame buffer, each frame's tag is checked there and the frame
 * goes to the reader synchronously, which decrypts each blob's bytes
 * straight into its batch (pumpLazy), with no allocation, no copy after
 * the cipher and no stream machinery — at GB/s that is most of the
 * receiving cost. For anything else it is an
 * ordinary Readable (chunks copied out of the reused buffer).
 */
export class BulkStream extends Readable implements ChunkPump {
  readonly sock: SealedSocket['socket'];
  private sink: ((chunk: Uint8Array) => boolean | void) | undefined;
  private lazySink: ((frame: SealedFrame) => boolean | void) | undefined;
  private settle: ((e?: Error) => void) | undefined;
  private ended = false;
  private failure: Error | undefined;

  constructor(
    private readonly conn: SealedSocket,
    timeoutMs: number,
    label: string,
  ) {
    super();
    // Failures reach the consumer through `pump` or the iterator; nobody need listen for 'error'.
    this.on('error', () => undefined);
    this.sock = conn.socket;
    this.sock.setTimeout(timeoutMs, () => this.destroy(new TierError('peer', 'unavailable', `${label}: bulk stream silent for ${timeoutMs} ms`)));
    conn.readFrames(
      (frame) => this.onFrame(frame),
      () => {
        // The server's end frame: the archive is whole.
        this.ended = true;
        if (this.settle) {
          this.settle();
          this.destroy();
        } else this.push(null);
      },
    );
    this.sock.on('error', (e) => {
      const forged = (e as { code?: string }).code === 'ERR_VRIFT_PEER_FORGED';
      this.destroy(forged ? new TierError('peer', 'corrupt', `${label}: ${e.message}; the stream was abandoned`, { cause: e }) : e);
    });
    // After the last frame that came was read (a paused reader gets them after the socket closed).
    conn.onClose(() => {
      if (!this.ended) this.destroy(this.failure ?? cutError('the bulk connection'));
    });
  }

  private onFrame(frame: SealedFrame): boolean {
    if (this.lazySink || this.sink) {
      try {
        // false: the reader is busy writing; the socket pauses until resumePump().
        return (this.lazySink ? this.lazySink(frame) : this.sink!(frame.view(0, frame.byteLength))) !== false;
      } catch (e) {
        this.destroy(e as Error);
        return false;
      }
    }
    return this.push(Buffer.from(frame.view(0, frame.byteLength))); // false pauses the socket until _read
  }

  override _read(): void {
    this.conn.resume();
  }

  resumePump(): void {
    if (!this.destroyed) this.conn.resume();
  }

  pump(sink: (chunk: Uint8Array) => boolean | void): Promise<void> {
    this.sink = sink;
    return this.pumped();
  }

  /** As pump, with each frame checked but decrypted only as the reader takes its bytes (LazyChunk). */
  pumpLazy(sink: (frame: SealedFrame) => boolean | void): Promise<void> {
    this.lazySink = sink;
    return this.pumped();
  }

  private pumped(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<void>((resolve, reject) => {
      this.settle = (e) => {
        this.settle = undefined;
        if (e) reject(e);
        else resolve();
      };
      if (this.ended) this.settle();
    });
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.failure ??= err ?? undefined;
    this.sock.destroy();
    this.settle?.(err ?? (this.ended ? undefined : new Error('the bulk stream was abandoned')));
    cb(err);
  }
}
