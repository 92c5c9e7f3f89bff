// The `cluster` section of the config: what makes a node a member of a
// mesh of peers (the shared secret), where it listens, and how its peer
// tier behaves. Without a secret the node runs alone: no libp2p, no
// gRPC, no bulk port, and the peer tier is not in the chain.
//
// One section serves two readers: the daemon (mesh, peer service, bulk
// server) and the peer tier of any process (src/tiers/peer/peer.ts owns the
// factory that lists this section, so src/node/config/config.ts picks it up).
import { readFileSync } from 'node:fs';
import { bool, defaults, file, int, list, object, size, text, type ConfigSection } from '../config/schema.js';

export interface ClusterConfig {
  /** The shared secret (from `secret` or the file `secretFile` names). Absent: no cluster. */
  secret?: string;
  secretFile?: string;
  /** Address the libp2p, gRPC and bulk listeners bind (default 127.0.0.1: set it to be reachable from other hosts). */
  host: string;
  /** Address peers are told to use for gRPC and bulk (default: `host`, or this host's first external IPv4 when `host` is a wildcard). */
  announceHost?: string;
  p2pPort: number;
  grpcPort: number;
  /** 0: any free port (peers learn it from the gRPC ticket). */
  bulkPort: number;
  /** Multiaddrs dialed at start, besides the ones `vrift node join` remembered. */
  bootstrap: string[];
  /** How often a node announces what it holds; a peer silent for 3 intervals is dropped. */
  announceIntervalMs: number;
  /** A tree's archive is split across at most this many peers. */
  spread: number;
  /** Archive parts smaller than this are not split further. */
  minPartBytes: number;
  /** Concurrent archive streams to one peer (client side), and from one peer (server side). */
  streamsPerPeer: number;
  /** Concurrent archive streams a node serves in total. */
  serveStreams: number;
  /** How long a peer that sent wrong bytes is avoided. */
  penaltyMs: number;
  /** Connecting, a unary call, and the longest silence inside a stream. */
  timeoutMs: number;
  /** Largest gRPC message a node accepts (requests with long digest lists). */
  maxMessageBytes: number;
  /** Move archives over the lean bulk stream (false: gRPC GetArchive only). */
  bulk: boolean;
  /** Fetch trees in a swarm with the other nodes fetching them (src/node/swarm/; needs `bulk`). */
  swarm: boolean;
  /** Trees with less than this many bytes missing are fetched without a swarm. */
  swarmMinBytes: number;
  /** A swarm's peer request no peer answers this soon is also asked of the origin. */
  swarmHedgeMs: number;
  /** Connections each peer port (libp2p, gRPC, bulk) holds at most. */
  maxConnections: number;
  /** Connections to the gRPC or bulk port from one address (an IPv6 /64) at most. */
  connectionsPerAddress: number;
  /** A gRPC or bulk connection must prove membership this soon (an authenticated call, a ticket), or it is closed. */
  handshakeMs: number;
  /** A gRPC connection with no call for this long is closed (GOAWAY); the peer reconnects when it needs to. */
  idleMs: number;
}

const MIN_SECRET = 16;

export const clusterSection: ConfigSection<ClusterConfig> = {
  key: 'cluster',
  schema: defaults(
    object(
      {
        secret: text({
          example: 'a long random string shared by every node (openssl rand -hex 32)',
          check: (s) => (s.length < MIN_SECRET ? `too short: at least ${MIN_SECRET} characters (e.g. openssl rand -hex 32)` : undefined),
        }).optional(),
        secretFile: file({ example: '/etc/vrift/cluster-secret' }).optional(),
        // Loopback unless set: a node is reachable from other hosts only when asked to be (the Helm chart sets the node's IP).
        host: text({ example: '10.0.0.12' }).default('127.0.0.1'),
        announceHost: text({ example: '10.0.0.12' }).optional(),
        p2pPort: int({ example: '7401', min: 0, max: 65535 }).default(7401),
        grpcPort: int({ example: '7402', min: 0, max: 65535 }).default(7402),
        bulkPort: int({ example: '0', min: 0, max: 65535 }).default(0),
        bootstrap: list({ example: '/ip4/10.0.0.5/tcp/7401/p2p/12D3KooW…' }).default([]),
        announceIntervalMs: int({ example: '5000', min: 100, max: 3_600_000 }).default(5000),
        spread: int({ example: '4', min: 1, max: 64 }).default(4),
        minPartBytes: size({ example: '16M', min: 1 }).default(16 << 20),
        streamsPerPeer: int({ example: '4', min: 1, max: 256 }).default(4),
        serveStreams: int({ example: '32', min: 1, max: 4096 }).default(32),
        penaltyMs: int({ example: '600000', min: 0, max: 7 * 86_400_000 }).default(600_000),
        timeoutMs: int({ example: '10000', min: 100, max: 600_000 }).default(10_000),
        maxMessageBytes: size({ example: '8M', min: 64 << 10, max: 256 << 20 }).default(8 << 20),
        bulk: bool().default(true),
        swarm: bool().default(true),
        swarmMinBytes: size({ example: '32M', min: 0 }).default(32 << 20),
        swarmHedgeMs: int({ example: '150', min: 1, max: 60_000 }).default(150),
        maxConnections: int({ example: '1024', min: 16, max: 65536 }).default(1024),
        connectionsPerAddress: int({ example: '32', min: 2, max: 65536 }).default(32),
        handshakeMs: int({ example: '10000', min: 100, max: 600_000 }).default(10_000),
        idleMs: int({ example: '300000', min: 1000, max: 86_400_000 }).default(300_000),
      },
      {
          absent: 'defaults',
          rules: (c) => (c.secret !== undefined && c.secretFile !== undefined ? [{ path: ['secretFile'], message: 'set secret or secretFile, not both' }] : []),
          finish: (c) => {
            if (c.secretFile === undefined) return c;
            const secret = readFileSync(c.secretFile, 'utf8').trim();
            if (secret.length < MIN_SECRET) return [{ path: ['secretFile'], message: `${c.secretFile} holds a secret shorter than ${MIN_SECRET} characters` }];
            return { ...c, secret };
          },
      },
    ),
  ),
  env: {
    VRIFT_CLUSTER_SECRET: 'secret',
    VRIFT_CLUSTER_SECRET_FILE: 'secretFile',
    VRIFT_CLUSTER_HOST: 'host',
    VRIFT_CLUSTER_ANNOUNCE_HOST: 'announceHost',
    VRIFT_P2P_PORT: 'p2pPort',
    VRIFT_GRPC_PORT: 'grpcPort',
    VRIFT_BULK_PORT: 'bulkPort',
    VRIFT_CLUSTER_BOOTSTRAP: 'bootstrap',
    VRIFT_CLUSTER_ANNOUNCE_MS: 'announceIntervalMs',
    VRIFT_PEER_SPREAD: 'spread',
    VRIFT_PEER_MIN_PART: 'minPartBytes',
    VRIFT_PEER_STREAMS: 'streamsPerPeer',
    VRIFT_PEER_SERVE_STREAMS: 'serveStreams',
    VRIFT_PEER_PENALTY_MS: 'penaltyMs',
    VRIFT_PEER_TIMEOUT_MS: 'timeoutMs',
    VRIFT_GRPC_MAX_MESSAGE: 'maxMessageBytes',
    VRIFT_PEER_BULK: 'bulk',
    VRIFT_SWARM: 'swarm',
    VRIFT_SWARM_MIN_BYTES: 'swarmMinBytes',
    VRIFT_SWARM_HEDGE_MS: 'swarmHedgeMs',
    VRIFT_PEER_MAX_CONNECTIONS: 'maxConnections',
    VRIFT_PEER_CONNECTIONS_PER_ADDRESS: 'connectionsPerAddress',
    VRIFT_PEER_HANDSHAKE_MS: 'handshakeMs',
    VRIFT_PEER_IDLE_MS: 'idleMs',
  },
};
