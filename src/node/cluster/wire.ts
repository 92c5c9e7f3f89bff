// The wire of the peer protocol, shared by its client (src/tiers/peer/)
// and its servers (peer-service.ts, bulk-server.ts): the gRPC service
// definition, loaded from proto/peer.proto at run time (@grpc/proto-loader)
// with the options the generated types in src/gen/ were made with
// (scripts/gen-proto.mjs: 64-bit integers as numbers, defaults filled in,
// bytes as Buffers), its method paths, its limits, and the bulk stream's
// greeting.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as Grpc from '@grpc/grpc-js';
import type * as ProtoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType } from '../../gen/peer.js';
import type { PeerClient, PeerDefinition } from '../../gen/vrift/peer/v1/Peer.js';

export type { PeerClient };

const require = createRequire(import.meta.url);

/** proto/peer.proto, found from src/node/ (tests) or dist/src/node/ (the CLI). */
function protoPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const p = join(dir, 'proto', 'peer.proto');
    if (existsSync(p)) return p;
    dir = dirname(dir);
  }
  throw new Error('proto/peer.proto not found next to the vrift sources');
}

export interface PeerProto {
  grpc: typeof Grpc;
  service: PeerDefinition;
  Client: new (address: string, credentials: Grpc.ChannelCredentials, options?: Grpc.ClientOptions) => PeerClient;
}

let loaded: PeerProto | undefined;

/** Loads grpc-js and the service on first use (commands that never reach a peer never pay for them). */
export function peerProto(): PeerProto {
  if (loaded) return loaded;
  // CommonJS packages, loaded with require: faster than their ESM wrappers.
  const grpc = require('@grpc/grpc-js') as typeof Grpc;
  const loader = require('@grpc/proto-loader') as typeof ProtoLoader;
  const def = loader.loadSync(protoPath(), { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as ProtoGrpcType;
  const Peer = pkg.vrift.peer.v1.Peer;
  loaded = { grpc, service: Peer.service, Client: Peer as unknown as PeerProto['Client'] };
  return loaded;
}

/** Packs digests (64 hex each) into n × 32 bytes. */
export function packDigests(digests: Iterable<string>): Buffer {
  const list = [...digests];
  const out = Buffer.allocUnsafe(list.length * 32);
  list.forEach((d, i) => out.write(d, i * 32, 32, 'hex'));
  return out;
}

/** Unpacks n × 32 bytes into digests; undefined when the length is not a multiple of 32. */
export function unpackDigests(buf: Uint8Array): string[] | undefined {
  if (buf.byteLength % 32 !== 0) return undefined;
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: string[] = [];
  for (let off = 0; off < b.byteLength; off += 32) out.push(b.toString('hex', off, off + 32));
  return out;
}

export const PEER_METHODS = {
  has: '/vrift.peer.v1.Peer/Has',
  getBlob: '/vrift.peer.v1.Peer/GetBlob',
  getArchive: '/vrift.peer.v1.Peer/GetArchive',
  openBulk: '/vrift.peer.v1.Peer/OpenBulk',
  openSwarm: '/vrift.peer.v1.Peer/OpenSwarm',
  getRef: '/vrift.peer.v1.Peer/GetRef',
  listRefs: '/vrift.peer.v1.Peer/ListRefs',
} as const;

/** Digests one Has call may ask about. */
export const MAX_HAS = 65_536;

/** The bulk stream (bulk-server.ts): a client opens it with these 8 bytes and its 32-byte ticket id, then sealed frames (src/lib/sealed-socket.ts). */
export const BULK_MAGIC = Buffer.from('VRIFTBK2', 'latin1');
export const BULK_HELLO_LEN = BULK_MAGIC.length + 32;
