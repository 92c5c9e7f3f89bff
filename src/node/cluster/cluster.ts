// A daemon's membership of the cluster: the bulk server, the gRPC peer
// service and the mesh, built from the `cluster` config section and
// started in that order (the mesh announces the service's address), and
// the control-socket requests behind `vrift node …` and the peer tier.
// Without a cluster secret there is no Cluster: the node runs alone.
import { isDigest } from '../../lib/digest.js';
import { VriftError } from '../../lib/errors.js';
import type { Metrics } from '../../lib/metrics.js';
import { BulkServer } from './bulk-server.js';
import { clusterKeys, type ClusterKeys } from './auth.js';
import { clusterSection, type ClusterConfig } from './config.js';
import type { Config } from '../config/config.js';
import { requireStr, type Handler } from '../control/server.js';
import { externalIPv4, Mesh } from './mesh.js';
import { PeerService } from './peer-service.js';
import { F, MAX_PEERS_DIGESTS, Msg, type FieldList } from '../control/protocol.js';
import type { Store } from '../store/store.js';

export interface ClusterOptions {
  store: Store;
  config: Config;
  metrics: Metrics;
  log: (line: string) => void;
  /** The key file refs are signed with (refs.signingKey); default: the node's own. */
  signingKey?: string;
}

export class Cluster {
  readonly cfg: ClusterConfig;
  readonly bulk: BulkServer | undefined;
  readonly service: PeerService;
  readonly mesh: Mesh;
  /** The cluster's keys (the daemon's swarms dial peers with them). */
  readonly keys: ClusterKeys;

  private constructor(opts: ClusterOptions, cfg: ClusterConfig & { secret: string }) {
    this.cfg = cfg;
    const keys = clusterKeys(cfg.secret);
    this.keys = keys;
    const common = { store: opts.store, metrics: opts.metrics, log: opts.log };
    const limits = { total: cfg.maxConnections, perAddress: cfg.connectionsPerAddress, handshakeMs: cfg.handshakeMs };
    this.bulk = cfg.bulk ? new BulkServer({ ...common, host: cfg.host, port: cfg.bulkPort, timeoutMs: cfg.timeoutMs, limits }) : undefined;
    this.service = new PeerService({ ...common, cfg, keys, bulk: this.bulk, signingKey: opts.signingKey });
    this.mesh = new Mesh({ ...common, cfg, keys, grpcAddress: () => this.grpcAddress() });
  }

  /** The cluster of this config, or undefined when no secret is set (the node runs alone). */
  static create(opts: ClusterOptions): Cluster | undefined {
    const cfg = opts.config.get(clusterSection);
    if (!cfg?.secret) return undefined;
    return new Cluster(opts, cfg as ClusterConfig & { secret: string });
  }

  /** In start order. */
  components(): { name: string; start(): Promise<void>; stop(): Promise<void> }[] {
    return [...(this.bulk ? [this.bulk] : []), this.service, this.mesh];
  }

  /** The host peers dial: the configured one, or this host's address when listening on a wildcard. */
  private announceHost(): string {
    const h = this.cfg.announceHost ?? (this.cfg.host === '0.0.0.0' || this.cfg.host === '::' ? (externalIPv4() ?? '127.0.0.1') : this.cfg.host);
    return h.includes(':') ? `[${h}]` : h;
  }

  grpcAddress(): string {
    return `${this.announceHost()}:${this.service.port}`;
  }

  addresses(): Record<string, unknown> {
    return { p2p: this.mesh.multiaddrs(), grpc: this.grpcAddress(), bulk: this.bulk ? `${this.announceHost()}:${this.bulk.port}` : null };
  }

  status(): Record<string, unknown> {
    return { enabled: true, peerId: this.mesh.peerId, peers: this.mesh.peers().length, left: this.mesh.hasLeft, remembered: this.mesh.remembered() };
  }

  /** NODE_JOIN, NODE_LEAVE, NODE_PEERS, NODE_PENALIZE (shim/vrift_proto.h); they fail clearly on a node without a cluster. */
  static registerHandlers(h: Map<number, Handler>, cluster: Cluster | undefined): void {
    const need = (): Cluster => {
      if (cluster) return cluster;
      throw new VriftError('ERR_VRIFT_CLUSTER_OFF', 'this node is not part of a cluster (no cluster secret is set)', {
        hint: 'set VRIFT_CLUSTER_SECRET (or cluster.secret in config.json) for the daemon and restart it: `vrift down && vrift up --detach`',
      });
    };
    const json = (v: unknown): FieldList => [[F.JSON, JSON.stringify(v)]];
    h.set(Msg.NODE_JOIN, async (f) => json(await need().mesh.join(requireStr(f, F.ADDR, 'address'))));
    h.set(Msg.NODE_LEAVE, async (f) => json(await need().mesh.leave(f.str(F.ADDR) || undefined)));
    h.set(Msg.NODE_PEERS, (f) => {
      const c = need();
      const tree = f.str(F.TREE);
      const digests = f.strs(F.DIGEST);
      if ((tree !== undefined && !isDigest(tree)) || digests.length > MAX_PEERS_DIGESTS || !digests.every(isDigest)) {
        throw new VriftError('ERR_VRIFT_PROTO_FIELD', `NODE_PEERS takes a tree digest and at most ${MAX_PEERS_DIGESTS} blob digests`);
      }
      const peers = c.mesh.peers({ tree, digests: digests.length > 0 ? digests : undefined });
      return json({ self: c.mesh.peerId, left: c.mesh.hasLeft, peers });
    });
    h.set(Msg.NODE_PENALIZE, (f) => {
      need().mesh.penalize(requireStr(f, F.PEER, 'peer'), f.str(F.ERR_MSG) ?? 'sent wrong bytes');
      return [];
    });
  }
}
