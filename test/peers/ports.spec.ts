// Anyone who can reach a peer port, without credentials (issue 13, hole 3):
// thousands of idle TCP connections to the gRPC and bulk ports, and HTTP/2
// streams that each hold most of an 8 MiB message. Before the bounds, idle
// connections were never closed (20 000 used up the daemon's descriptors)
// and 60 partial messages kept +430 MiB. Real daemons; descriptors counted
// in /proc/<pid>/fd, memory from /proc/<pid>/status.
import { execSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clusterKeys } from '../../src/node/cluster/auth.js';
import { PEER_METHODS } from '../../src/node/cluster/wire.js';
import { PeerConnection } from '../../src/tiers/peer/client.js';
import { makeNode, startAll, SECRET, waitFor, type TestNode } from '../helpers/cluster.js';
import { memberH2, rssMiB, sendPartialMessage } from '../helpers/peer-tls.js';
import { tempDir } from '../helpers/tmp.js';
import { writeSampleTree } from '../helpers/trees.js';

const HANDSHAKE_MS = 2000;
const MAX_CONNECTIONS = 64;
const PER_ADDRESS = 16;

let a: TestNode;
let blob: string;

beforeAll(async () => {
  a = await makeNode('a', {
    env: {
      VRIFT_PEER_HANDSHAKE_MS: String(HANDSHAKE_MS),
      VRIFT_PEER_MAX_CONNECTIONS: String(MAX_CONNECTIONS),
      VRIFT_PEER_CONNECTIONS_PER_ADDRESS: String(PER_ADDRESS),
    },
  });
  await startAll([a]);
  const src = tempDir();
  writeSampleTree(src);
  const tree = a.json(['ingest', src]).tree as string;
  blob = (a.json(['ls', tree]).entries as { path: string; digest?: string }[]).find((e) => e.path === 'README.md')!.digest!;
}, 60_000);
afterAll(() => a?.stop());

const fds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;
const portOf = (addr: string) => Number(addr.split(':').pop());
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Idle {
  sockets: Socket[];
  /** Connections the daemon closed (or refused). */
  closed(): number;
}

/** Opens `count` TCP connections to `port` that never send a byte, from 127.0.0.2, .3, … (`perAddress` each). */
async function idleConnections(port: number, count: number, perAddress: number): Promise<Idle> {
  const sockets: Socket[] = [];
  let closed = 0;
  for (let i = 0; i < count; i += 100) {
    await Promise.all(
      Array.from({ length: Math.min(100, count - i) }, (_, j) => {
        const n = i + j;
        return new Promise<void>((resolve) => {
          const s = connect({ host: '127.0.0.1', port, localAddress: `127.0.0.${2 + Math.floor(n / perAddress)}` });
          sockets.push(s);
          s.on('error', () => undefined);
          s.resume(); // reads (and drops) what the server sends, so its close is seen
          s.once('close', () => {
            closed++;
            resolve();
          });
          s.once('connect', () => resolve());
        });
      }),
    );
  }
  return { sockets, closed: () => closed };
}

describe('peer ports before authentication', () => {
  it('thousands of idle connections to the gRPC and bulk ports: refused beyond the caps, closed at the deadline; descriptors stay bounded and members are served', async () => {
    const st = a.status();
    const pid = st.pid as number;
    const before = fds(pid);
    const COUNT = 2000;
    const [grpc, bulk] = await Promise.all([
      idleConnections(portOf(st.addresses.grpc), COUNT, 100),
      idleConnections(portOf(st.addresses.bulk), COUNT, 100),
    ]);
    await sleep(300);
    const during = fds(pid);
    // At most MAX_CONNECTIONS per port, whatever the number of addresses (unbounded: +4000).
    expect(during - before, `descriptors went from ${before} to ${during}`).toBeLessThan(2 * MAX_CONNECTIONS + 40);
    // The control socket answers, and a member gets in (it evicts the oldest connection that never authenticated).
    expect(a.status().pid).toBe(pid);
    const member = new PeerConnection({ id: 'a', grpc: st.addresses.grpc }, { auth: clusterKeys(SECRET).auth, tls: clusterKeys(SECRET).tls, self: 'member', timeoutMs: 5000, maxMessageBytes: 4 << 20 });
    try {
      expect([...(await member.has([blob]))]).toEqual([blob]);
      // Past the deadline every idle connection has been closed by the daemon; the member's has not.
      await waitFor('the daemon to close every idle connection', () => grpc.closed() === COUNT && bulk.closed() === COUNT, HANDSHAKE_MS + 8000).catch((e: Error) => {
        const port = portOf(st.addresses.grpc);
        const states = execSync(`ss -tan '( sport = :${port} or dport = :${port} )' | awk 'NR > 1 {print $1}' | sort | uniq -c`, { encoding: 'utf8' });
        throw new Error(`${e.message}: gRPC ${grpc.closed()}, bulk ${bulk.closed()} of ${COUNT} closed; the daemon has ${fds(pid)} descriptors; gRPC port:\n${states}`);
      });
      expect([...(await member.has([blob]))]).toEqual([blob]);
    } finally {
      member.close();
      for (const s of [...grpc.sockets, ...bulk.sockets]) s.destroy();
    }
    const m = a.status().metrics as Record<string, number>;
    expect(m['vrift_peer_refused_total{reason="grpc-conn-handshake"}']).toBeGreaterThan(0);
    expect(m['vrift_peer_refused_total{reason="grpc-conn-address"}']).toBeGreaterThan(0);
    expect(m['vrift_peer_refused_total{reason="bulk-conn-handshake"}']).toBeGreaterThan(0);
    expect(fds(pid) - before).toBeLessThan(20);
  }, 60_000);

  it('60 HTTP/2 streams each sending most of an 8 MiB message without credentials: refused at their headers; RSS stays bounded', async () => {
    const st = a.status();
    const pid = st.pid as number;
    const before = rssMiB(pid);
    const STREAMS = 60;
    const DECLARED = (8 << 20) - 64; // within the node's 8 MiB message limit
    const SENT = DECLARED - 4096; // never the whole message: grpc-js would hold it until the rest comes
    const chunk = Buffer.alloc(1 << 20, 0x61);
    // From 127.0.0.1: PER_ADDRESS connections at most, so 6 sessions of 10 streams.
    const sessions = Array.from({ length: 6 }, () => memberH2(st.addresses.grpc));
    for (const s of sessions) s.on('error', () => undefined);
    for (let i = 0; i < STREAMS; i++) {
      const req = sessions[i % sessions.length]!.request({ ':method': 'POST', ':path': PEER_METHODS.has, 'content-type': 'application/grpc', te: 'trailers' });
      sendPartialMessage(req, DECLARED, SENT, chunk);
    }
    let peak = before;
    for (let t = 0; t < 20; t++) {
      await sleep(200);
      peak = Math.max(peak, rssMiB(pid));
    }
    for (const s of sessions) s.destroy();
    // Unbounded: 60 x ~8 MiB held (+430 MiB measured). Refused at the headers, nothing of a message is kept.
    expect(peak - before, `RSS went from ${before.toFixed(0)} to ${peak.toFixed(0)} MiB`).toBeLessThan(80);
    expect(a.status().pid).toBe(pid);
    const member = new PeerConnection({ id: 'a', grpc: st.addresses.grpc }, { auth: clusterKeys(SECRET).auth, tls: clusterKeys(SECRET).tls, self: 'member-2', timeoutMs: 5000, maxMessageBytes: 4 << 20 });
    try {
      expect([...(await member.has([blob]))]).toEqual([blob]);
    } finally {
      member.close();
    }
  }, 60_000);
});
