// The gRPC peer service (proto/peer.proto): how other nodes of the
// cluster read this node's blobs, trees and refs. A daemon component.
//
// Every call must carry the cluster credential (auth.ts), or it fails
// UNAUTHENTICATED when its headers arrive, before a byte of its message is
// read (an interceptor checks it), and a connection that has not carried
// an authenticated call is then closed. Connections are mutual TLS with
// the cluster's certificate (tls.ts), so a call's credential is a second
// check, inside a channel only members can open. The port is a plain net.Server
// whose sockets pass a ConnectionGate (conn-gate.ts: per address, in
// total, a deadline to authenticate) before grpc-js sees them. Requests are untrusted
// input: digests are checked, lists are bounded (and grpc-js refuses any
// message above `maxMessageBytes` with RESOURCE_EXHAUSTED), and a bad
// request is INVALID_ARGUMENT — the daemon keeps serving. Archive streams
// (GetArchive, and OpenBulk's tickets) are bounded in total and per peer.
import { createReadStream } from 'node:fs';
import type { ServerHttp2Stream } from 'node:http2';
import { createServer, type Server as NetServer } from 'node:net';
import type * as Grpc from '@grpc/grpc-js';
import type { Digest } from '../../lib/digest.js';
import { isVriftError } from '../../lib/errors.js';
import type { Metrics } from '../../lib/metrics.js';
import type { ArchiveRequest__Output } from '../../gen/vrift/peer/v1/ArchiveRequest.js';
import type { SwarmRequest__Output } from '../../gen/vrift/peer/v1/SwarmRequest.js';
import type { SealedSocket } from '../../lib/sealed-socket.js';
import type { PeerHandlers } from '../../gen/vrift/peer/v1/Peer.js';
import { RingWriter, writeArchive } from '../archive/ring-writer.js';
import type { BulkServer } from './bulk-server.js';
import { AUTH_METADATA, CallVerifier, type ClusterKeys } from './auth.js';
import type { ClusterConfig } from './config.js';
import { MAX_HAS, PEER_METHODS, peerProto, unpackDigests } from './wire.js';
import { assertRefName, type Store } from '../store/store.js';
import { refSigner } from '../store/ref-key.js';
import type { RefSigner } from '../../lib/ref-signature.js';
import { decodeTree, type TreeEntry } from '../store/tree.js';
import { listenError } from './listen-error.js';
import { ConnectionGate } from './conn-gate.js';
import { intakeLimits, RequestIntake } from './request-intake.js';

/** gRPC messages of an archive or blob stream carry at most this much. */
const MESSAGE_CHUNK = 1 << 20;
/**
 * GetBlob streams in flight, in all and per peer. grpc-js queues whatever
 * a server stream writes, whether or not the client reads it: each stream
 * writes its next message only when the last one has left (at most one
 * BLOB_CHUNK waits per stream, and one more is read ahead), and the
 * number of streams is bounded: a member that opens many and reads none
 * makes this node hold about BLOB_STREAMS x 2 x BLOB_CHUNK (32 MiB).
 */
const BLOB_STREAMS = 64;
const BLOB_STREAMS_PER_PEER = 16;
const BLOB_CHUNK = 256 << 10;
/**
 * HTTP/2 streams one connection may have open at once. A peer's channel
 * carries its GetBlob (16), archive (streamsPerPeer) and unary calls.
 */
const STREAMS_PER_CONNECTION = 100;
/** Metadata the auth interceptor sets to the caller's verified peer id (and strips from what callers send). */
const VERIFIED_PEER = 'x-vrift-verified-peer';

/** Archive streams in flight: at most `total`, at most `perPeer` for one peer. */
export class StreamSlots {
  private used = 0;
  private readonly byPeer = new Map<string, number>();

  constructor(
    private readonly total: number,
    private readonly perPeer: number,
  ) {}

  /** A release function, or undefined when no slot is free. */
  acquire(peer: string): (() => void) | undefined {
    const mine = this.byPeer.get(peer) ?? 0;
    if (this.used >= this.total || mine >= this.perPeer) return undefined;
    this.used++;
    this.byPeer.set(peer, mine + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.used--;
      const n = (this.byPeer.get(peer) ?? 1) - 1;
      if (n <= 0) this.byPeer.delete(peer);
      else this.byPeer.set(peer, n);
    };
  }

  get inUse(): number {
    return this.used;
  }
}

export interface PeerServiceOptions {
  /** The key file the refs this node serves are signed with (default: the node's own key). */
  signingKey?: string;
  store: Store;
  cfg: ClusterConfig;
  keys: ClusterKeys;
  bulk?: BulkServer;
  metrics: Metrics;
  log: (line: string) => void;
}

type Status = { code: number; details: string; message: string };

/** The node's swarms (src/node/swarm/swarm-host.ts), as the service sees them. */
export interface SwarmDoor {
  /** A channel with `peer` for `tree`: what to hand its connection to, or why not. */
  openChannel(tree: Digest, layout: string, peer: string): { attach(sock: SealedSocket): void } | { refuse: 'not-found' | 'refused'; why: string };
}

export class PeerService {
  readonly name = 'peer-service';
  /** Set once the node's swarms exist (they need the mesh, which starts after this). */
  swarms: SwarmDoor | undefined;
  port = 0;
  readonly slots: StreamSlots;
  /** GetBlob streams in flight (BLOB_STREAMS). */
  readonly blobSlots: StreamSlots;
  private server: Grpc.Server | undefined;
  private listener: NetServer | undefined;
  readonly gate: ConnectionGate;
  /** Bytes of members' unfinished requests (request-intake.ts). */
  readonly intake: RequestIntake;
  private readonly verifier: CallVerifier;
  /** Decoded trees recently served (a backfill asks for the same tree many times). */
  private readonly trees = new Map<Digest, TreeEntry[]>();
  private lastRefusalLog = 0;

  private signer: RefSigner | undefined;

  /**
   * A ref this node set itself, as a record signed by this node's key:
   * readers check it as they check Redis's and S3's (docs/security.md).
   * The signature says "this node points it there"; a reader whose
   * refs.trust does not allow this node's key for the name asks the other
   * tiers. A ref learned from a shared tier is served with the record it
   * came with (its writer's signature), not through this.
   */
  private signedRef(name: string, tree: Digest, times: Digest | undefined, updatedAt: number): string {
    this.signer ??= refSigner(this.opts.store.layout.root, this.opts.signingKey);
    return JSON.stringify(this.signer.record(name, tree, times, updatedAt));
  }

  constructor(private readonly opts: PeerServiceOptions) {
    this.verifier = new CallVerifier(opts.keys.auth);
    this.slots = new StreamSlots(opts.cfg.serveStreams, opts.cfg.streamsPerPeer);
    this.blobSlots = new StreamSlots(BLOB_STREAMS, BLOB_STREAMS_PER_PEER);
    const { cfg } = opts;
    this.gate = new ConnectionGate({ total: cfg.maxConnections, perAddress: cfg.connectionsPerAddress, handshakeMs: cfg.handshakeMs }, (reason) =>
      opts.metrics.inc('vrift_peer_refused_total', { reason: `grpc-${reason}` }),
    );
    this.intake = new RequestIntake(intakeLimits(cfg.maxMessageBytes, cfg.timeoutMs), (reason) => {
      opts.metrics.inc('vrift_peer_refused_total', { reason: `grpc-${reason}` });
      if (Date.now() - this.lastRefusalLog > 1000) {
        this.lastRefusalLog = Date.now();
        opts.log(`peer-service: reset a member's call (${reason}): its unfinished request went past the bound (docs/security.md)`);
      }
    });
  }

  async start(): Promise<void> {
    const { grpc, service } = peerProto();
    const { cfg } = this.opts;
    const max = cfg.maxMessageBytes;
    const server = new grpc.Server({
      'grpc.max_receive_message_length': max,
      'grpc.max_send_message_length': Math.max(max, MESSAGE_CHUNK + 4096),
      'grpc.max_concurrent_streams': STREAMS_PER_CONNECTION,
      // No call for idleMs: GOAWAY. A peer whose side died is found by pings.
      'grpc.max_connection_idle_ms': cfg.idleMs,
      'grpc.keepalive_time_ms': 60_000,
      'grpc.keepalive_timeout_ms': Math.min(cfg.timeoutMs, 20_000),
      interceptors: [this.authInterceptor(grpc)],
    });
    server.addService(service, this.handlers(grpc));
    // grpc-js never listens itself: each socket our listener accepts and the gate admits is handed to it.
    // Mutual TLS with the cluster's certificate (tls.ts): a client without the secret cannot finish the handshake.
    const { tls } = this.opts.keys;
    const creds = grpc.ServerCredentials.createSsl(Buffer.from(tls.cert), [{ private_key: Buffer.from(tls.key), cert_chain: Buffer.from(tls.cert) }], true);
    const injector = server.createConnectionInjector(creds);
    const listener = createServer({ noDelay: true }, (sock) => {
      if (this.gate.admit(sock)) injector.injectConnection(sock);
    });
    await new Promise<void>((resolve, reject) => {
      listener.once('error', (e) => reject(listenError(e, { what: "the cluster's gRPC peer service", host: cfg.host, port: cfg.grpcPort, portKey: 'grpcPort' })));
      listener.listen(cfg.grpcPort, cfg.host, () => resolve());
    });
    listener.on('error', (e) => this.opts.log(`peer-service: ${e.message}`));
    this.port = (listener.address() as { port: number }).port;
    this.listener = listener;
    this.server = server;
  }

  async stop(): Promise<void> {
    const server = this.server;
    const listener = this.listener;
    this.server = undefined;
    this.listener = undefined;
    if (!server || !listener) return;
    const closed = new Promise<void>((resolve) => listener.close(() => resolve()));
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, 2000);
      server.tryShutdown(() => {
        clearTimeout(t);
        resolve();
      });
    });
    this.gate.closeAll();
    await closed;
  }

  /**
   * Checks each call's credential when its headers arrive: a refused call
   * is answered UNAUTHENTICATED before its message is read (grpc-js reads
   * a request only once the handler asks), so no bytes are buffered for it,
   * and its connection, unless it carried an authenticated call before, is
   * closed. An accepted call reaches its handler with the verified peer id.
   */
  private authInterceptor(grpc: typeof Grpc): Grpc.ServerInterceptor {
    return (method, call) =>
      new grpc.ServerInterceptingCall(call, {
        start: (next) =>
          next({
            onReceiveMetadata: (metadata, pass) => {
              metadata.remove(VERIFIED_PEER);
              const cred = metadata.get(AUTH_METADATA)[0];
              const r = this.verifier.verify(typeof cred === 'string' ? cred : undefined, method.path);
              const remote = call.getPeer();
              if (r.ok) {
                this.gate.authenticated(remote);
                // grpc-js's own call (the one interceptor's `call`) holds the HTTP/2 stream: its request bytes are counted.
                const stream = (call as unknown as { stream?: ServerHttp2Stream }).stream;
                if (stream) this.intake.track(stream);
                else this.opts.log('peer-service: cannot bound members\' requests: grpc-js no longer exposes the call\'s stream');
                metadata.set(VERIFIED_PEER, r.peer);
                pass(metadata);
                return;
              }
              this.opts.metrics.inc('vrift_peer_requests_total', { method: method.path });
              this.opts.metrics.inc('vrift_peer_refused_total', { reason: 'auth' });
              if (Date.now() - this.lastRefusalLog > 1000) {
                this.lastRefusalLog = Date.now();
                this.opts.log(`peer-service: refused a call from ${remote}: ${r.reason}`);
              }
              call.sendStatus({ code: grpc.status.UNAUTHENTICATED, details: `vrift: ${r.reason}` });
              this.gate.refuse(remote);
            },
          }),
      });
  }

  private handlers(grpc: typeof Grpc): PeerHandlers {
    const S = grpc.status;
    const status = (code: number, details: string): Status => ({ code, details, message: details });
    const count = (method: string) => this.opts.metrics.inc('vrift_peer_requests_total', { method });

    /** The caller's peer id, as the auth interceptor verified it (a call reaches here only then). */
    const authorize = (call: Grpc.ServerUnaryCall<unknown, unknown> | Grpc.ServerWritableStream<unknown, unknown>): string | Status => {
      const peer = call.metadata.get(VERIFIED_PEER)[0];
      return typeof peer === 'string' ? peer : status(S.UNAUTHENTICATED, 'vrift: no credentials');
    };

    const internal = (e: unknown): Status => {
      if (isVriftError(e)) return status(S.UNAVAILABLE, `vrift: ${e.message}`); // a local problem (disk, a corrupt blob quarantined)
      this.opts.log(`peer-service: ${(e as Error)?.stack ?? String(e)}`);
      return status(S.INTERNAL, `vrift: internal error: ${(e as Error)?.message ?? String(e)}`);
    };

    const unary = <Req, Res>(method: string, body: (req: Req, peer: string) => Res | Promise<Res>): Grpc.handleUnaryCall<Req, Res> => {
      return (call, callback) => {
        count(method);
        const peer = authorize(call);
        if (typeof peer !== 'string') return callback(peer);
        Promise.resolve()
          .then(() => body(call.request, peer))
          .then(
            (res) => callback(null, res),
            (e: unknown) => callback(isStatus(e) ? e : internal(e)),
          );
      };
    };

    const streaming = <Req, Res>(method: string, body: (call: Grpc.ServerWritableStream<Req, Res>, peer: string) => Promise<void>): Grpc.handleServerStreamingCall<Req, Res> => {
      return (call) => {
        count(method);
        const peer = authorize(call);
        if (typeof peer !== 'string') return void call.emit('error', peer);
        body(call, peer).then(
          () => {
            if (!call.cancelled) call.end();
          },
          (e: unknown) => {
            if (!call.cancelled) call.emit('error', isStatus(e) ? e : internal(e));
          },
        );
      };
    };

    const digestOf = (b: Buffer, what: string): Digest => {
      if (b.byteLength !== 32) throw status(S.INVALID_ARGUMENT, `vrift: ${what} must be 32 bytes (a BLAKE3-256 digest), got ${b.byteLength}`);
      return b.toString('hex');
    };

    const digestsOf = (b: Buffer, what: string): Digest[] => {
      const list = unpackDigests(b);
      if (!list) throw status(S.INVALID_ARGUMENT, `vrift: ${what} must be packed 32-byte digests, got ${b.byteLength} bytes`);
      return list;
    };

    /** The blobs an archive request asks for that this node holds, in tree order. */
    const plan = (req: ArchiveRequest__Output): { digest: Digest; size: number }[] => {
      const tree = digestOf(req.tree, 'tree');
      const want = req.want.byteLength > 0 ? new Set(digestsOf(req.want, 'want')) : undefined;
      const have = new Set(digestsOf(req.have, 'have'));
      const entries = this.treeEntries(tree);
      if (!entries) throw status(S.NOT_FOUND, `vrift: tree ${tree} is not here`);
      const out: { digest: Digest; size: number }[] = [];
      const seen = new Set<Digest>();
      for (const e of entries) {
        if (e.kind !== 'file' || seen.has(e.digest!)) continue;
        seen.add(e.digest!);
        if ((want && !want.has(e.digest!)) || have.has(e.digest!) || !this.opts.store.hasBlob(e.digest!)) continue;
        out.push({ digest: e.digest!, size: e.size });
      }
      return out;
    };

    const slot = (peer: string): (() => void) => {
      const release = this.slots.acquire(peer);
      if (release) return release;
      this.opts.metrics.inc('vrift_peer_refused_total', { reason: 'busy' });
      throw status(S.RESOURCE_EXHAUSTED, `vrift: too many archive streams (${this.slots.inUse} in flight); try another peer or later`);
    };

    /** Writes one message and waits until it has left (or the call ended): one message queued per stream at most. */
    const sent = <Res>(call: Grpc.ServerWritableStream<unknown, Res>, msg: Res): Promise<void> =>
      new Promise<void>((resolve) => {
        const done = () => {
          call.off('cancelled', done);
          call.off('close', done);
          resolve();
        };
        call.once('cancelled', done);
        call.once('close', done);
        call.write(msg, done);
      });

    return {
      Has: unary(PEER_METHODS.has, (req: { digests: Buffer }) => {
        const digests = digestsOf(req.digests, 'digests');
        if (digests.length > MAX_HAS) throw status(S.INVALID_ARGUMENT, `vrift: at most ${MAX_HAS} digests per Has call, got ${digests.length}`);
        const present = Buffer.alloc(Math.ceil(digests.length / 8));
        digests.forEach((d, i) => {
          if (this.opts.store.hasBlob(d)) present[i >> 3]! |= 1 << (i & 7);
        });
        return { present };
      }),

      GetBlob: streaming(PEER_METHODS.getBlob, async (call, peer) => {
        const digest = digestOf(call.request.digest, 'digest');
        const store = this.opts.store;
        const st = store.cas.statOf(digest);
        if (!st) throw status(S.NOT_FOUND, `vrift: blob ${digest} is not here`);
        try {
          store.checkBlob(digest, st.size); // cheap unless the file changed; a corrupt blob is quarantined
        } catch {
          throw status(S.NOT_FOUND, `vrift: blob ${digest} is not here`);
        }
        const offset = call.request.offset;
        if (!Number.isSafeInteger(offset) || offset < 0 || offset > st.size) throw status(S.OUT_OF_RANGE, `vrift: offset ${offset} is beyond the blob's ${st.size} bytes`);
        const release = this.blobSlots.acquire(peer);
        if (!release) {
          this.opts.metrics.inc('vrift_peer_refused_total', { reason: 'busy' });
          throw status(S.RESOURCE_EXHAUSTED, `vrift: too many blob streams (${this.blobSlots.inUse} in flight); try another peer or later`);
        }
        const source = createReadStream(store.cas.pathOf(digest), { start: offset, highWaterMark: BLOB_CHUNK });
        let first = true;
        let bytes = 0;
        try {
          if (st.size === offset) await sent(call, { data: Buffer.alloc(0), size: st.size });
          for await (const chunk of source as AsyncIterable<Buffer>) {
            if (call.cancelled) break;
            await sent(call, { data: chunk, size: first ? st.size : 0 });
            first = false;
            bytes += chunk.byteLength;
          }
        } finally {
          source.destroy();
          release();
        }
        this.opts.metrics.inc('vrift_peer_served_bytes_total', { via: 'blob' }, bytes);
      }),

      GetArchive: streaming(PEER_METHODS.getArchive, async (call, peer) => {
        const blobs = plan(call.request);
        const release = slot(peer);
        // Each buffer of the writer's ring becomes one message; the first also says what is coming.
        let first = true;
        const total = blobs.reduce((n, b) => n + b.size, 0);
        const out = new RingWriter({
          write: (data, done) => {
            call.write(first ? { data, blobs: blobs.length, bytes: total } : { data }, done);
            first = false;
          },
          closed: (cb) => {
            call.once('cancelled', cb);
            call.once('close', cb);
          },
        });
        try {
          await writeArchive(this.opts.store, blobs, out);
          await out.flush();
          await out.drained();
        } finally {
          release();
          this.opts.metrics.inc('vrift_peer_served_bytes_total', { via: 'grpc' }, out.bytes);
        }
      }),

      OpenBulk: unary(PEER_METHODS.openBulk, (req: ArchiveRequest__Output, peer) => {
        const bulk = this.opts.bulk;
        if (!bulk) throw status(S.FAILED_PRECONDITION, 'vrift: this node serves archives over gRPC only (cluster.bulk is off)');
        const blobs = plan(req);
        const release = slot(peer);
        const { token, key } = bulk.issue({ blobs, peer, release });
        return { port: bulk.port, token, key, blobs: blobs.length, bytes: blobs.reduce((n, b) => n + b.size, 0) };
      }),

      OpenSwarm: unary(PEER_METHODS.openSwarm, (req: SwarmRequest__Output, peer) => {
        const bulk = this.opts.bulk;
        const swarms = this.swarms;
        if (!bulk || !swarms) throw status(S.FAILED_PRECONDITION, 'vrift: this node does not swarm (cluster.bulk is off)');
        const tree = digestOf(req.tree, 'tree');
        const r = swarms.openChannel(tree, req.layout, peer);
        if ('refuse' in r) throw status(r.refuse === 'not-found' ? S.NOT_FOUND : S.FAILED_PRECONDITION, `vrift: ${r.why}`);
        const { token, key } = bulk.issue({ blobs: [], peer, release: () => undefined, attach: r.attach });
        return { port: bulk.port, token, key, blobs: 0, bytes: 0 };
      }),

      GetRef: unary(PEER_METHODS.getRef, (req: { name: string }) => {
        try {
          assertRefName(req.name);
        } catch (e) {
          throw status(S.INVALID_ARGUMENT, `vrift: ${(e as Error).message}`);
        }
        // (the latest committed: a ref another process set just now, e.g. `vrift save`, is not in this daemon's read snapshot yet)
        const { meta } = this.opts.store;
        const ref = meta.latest(() => meta.refs.get(req.name));
        if (!ref) throw status(S.NOT_FOUND, `vrift: no ref ${JSON.stringify(req.name)} here`);
        return { tree: Buffer.from(ref.tree, 'hex'), updatedAt: ref.updatedAt, record: ref.record ?? this.signedRef(req.name, ref.tree, ref.times, ref.updatedAt) };
      }),

      ListRefs: unary(PEER_METHODS.listRefs, (req: { prefix: string; limit: number }) => {
        if (Buffer.byteLength(req.prefix) > 512) throw status(S.INVALID_ARGUMENT, 'vrift: a ref prefix is at most 512 bytes');
        const limit = Math.min(req.limit || 100, 1000);
        const { store } = this.opts;
        const refs = store.meta
          .latest(() => store.listRefs()) // (as GetRef: the latest committed)
          .filter((r) => r.name.startsWith(req.prefix))
          .sort((a, b) => b.updatedAt - a.updatedAt)
          .slice(0, limit)
          .map((r) => ({ name: r.name, tree: Buffer.from(r.tree, 'hex'), updatedAt: r.updatedAt, record: r.record ?? this.signedRef(r.name, r.tree, r.times, r.updatedAt) }));
        return { refs };
      }),
    };
  }

  /** A tree's entries if this node holds the tree blob (verified and validated), else undefined. */
  private treeEntries(tree: Digest): TreeEntry[] | undefined {
    const cached = this.trees.get(tree);
    if (cached) {
      this.trees.delete(tree); // most recently used goes last
      this.trees.set(tree, cached);
      return cached;
    }
    const store = this.opts.store;
    if (!store.meta.trees.doesExist(tree) || !store.cas.has(tree)) return undefined;
    let entries: TreeEntry[];
    try {
      entries = decodeTree(store.cas.readVerified(tree));
    } catch (e) {
      this.opts.log(`peer-service: tree ${tree} is unreadable here: ${(e as Error).message}`);
      return undefined;
    }
    this.trees.set(tree, entries);
    if (this.trees.size > 8) this.trees.delete(this.trees.keys().next().value!);
    return entries;
  }
}

function isStatus(e: unknown): e is Status {
  return typeof e === 'object' && e !== null && typeof (e as Status).code === 'number' && typeof (e as Status).details === 'string';
}
