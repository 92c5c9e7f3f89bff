// Real cluster nodes for tests: each a `vrift up --detach` daemon with its
// own $VRIFT_HOME and free loopback ports, a shared secret, and a short
// announce interval so the mesh settles in a second.
import { join } from 'node:path';
import { ROOT, vrift, vriftAsync, vriftJson } from './cli.js';
import { crashDaemon, startDaemon, stopDaemon } from './daemon.js';
import { freePort } from './ports.js';
import { tempDir } from './tmp.js';

export const SECRET = 'vrift-test-cluster-secret-0123456789';

export interface TestNode {
  name: string;
  home: string;
  /** The environment of every command run for this node (its daemon and its CLI). */
  env: Record<string, string>;
  start(extra?: Record<string, string>): void;
  /** Starts the daemon without blocking (to start several at once). */
  startAsync(extra?: Record<string, string>): Promise<void>;
  stop(): void;
  crash(): void;
  status(): any;
  /** Its first libp2p multiaddr (with /p2p/<id>). */
  addr(): string;
  peerId(): string;
  run(args: string[], extra?: Record<string, string>): ReturnType<typeof vrift>;
  json<T = any>(args: string[], extra?: Record<string, string>): T;
}

export async function makeNode(name: string, opts: { secret?: string; env?: Record<string, string> } = {}): Promise<TestNode> {
  const home = tempDir(`vrift-node-${name}-`);
  const [p2p, grpc] = [await freePort(), await freePort()];
  const env: Record<string, string> = {
    VRIFT_CLUSTER_SECRET: opts.secret ?? SECRET,
    VRIFT_CLUSTER_HOST: '127.0.0.1',
    VRIFT_P2P_PORT: String(p2p),
    VRIFT_GRPC_PORT: String(grpc),
    VRIFT_CLUSTER_ANNOUNCE_MS: '400',
    VRIFT_PEER_TIMEOUT_MS: '5000',
    ...opts.env,
  };
  const node: TestNode = {
    name,
    home,
    env,
    start: (extra) => void startDaemon(home, { ...env, ...extra }),
    startAsync: async (extra) => {
      for (let attempt = 0; ; attempt++) {
        const r = await vriftAsync(['up', '--detach'], { home, env: { ...env, ...extra } });
        if (r.code === 0) return;
        // A port freePort gave can be taken by another test's server before the daemon binds it:
        // fresh ports (the ones this helper chose) and once more.
        const portTaken = /is already in use/.test(r.stderr) && !opts.env?.VRIFT_P2P_PORT && !opts.env?.VRIFT_GRPC_PORT;
        if (!portTaken || attempt >= 2) throw new Error(`vrift up (${name}) exited ${r.code}: ${r.stderr}`);
        env.VRIFT_P2P_PORT = String(await freePort());
        env.VRIFT_GRPC_PORT = String(await freePort());
      }
    },
    stop: () => stopDaemon(home),
    crash: () => crashDaemon(home),
    status: () => vriftJson(['status'], { home, env }),
    addr: () => node.status().addresses.p2p[0],
    peerId: () => node.status().cluster.peerId,
    run: (args, extra) => vrift(args, { home, env: { ...env, ...extra } }),
    json: (args, extra) => vriftJson(args, { home, env: { ...env, ...extra } }),
  };
  return node;
}

/** Extra environment for `start` that makes a node a slow peer: it serves archives at `bytesPerSec` (test/helpers/slow-peer.mjs). */
export function slowPeerEnv(bytesPerSec: number): Record<string, string> {
  const preload = `--import=${join(ROOT, 'test', 'helpers', 'slow-peer.mjs')}`;
  return { NODE_OPTIONS: [process.env.NODE_OPTIONS, preload].filter(Boolean).join(' '), VRIFT_TEST_SLOW_PEER_BPS: String(bytesPerSec) };
}

/** Extra environment for `start` that makes a node's bulk frames arrive altered (test/helpers/tamper-peer.mjs). */
export function tamperPeerEnv(): Record<string, string> {
  const preload = `--import=${join(ROOT, 'test', 'helpers', 'tamper-peer.mjs')}`;
  return { NODE_OPTIONS: [process.env.NODE_OPTIONS, preload].filter(Boolean).join(' ') };
}

/** Starts these nodes' daemons at once. */
export async function startAll(nodes: TestNode[]): Promise<void> {
  await Promise.all(nodes.map((n) => n.startAsync()));
}

/** Polls until `check` returns a truthy value; fails naming `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Waits until `node` lists every one of `ids` as a peer (and, with `tree`, each announcing it in full). */
export function waitForPeers(node: TestNode, ids: string[], tree?: string): Promise<unknown> {
  return waitFor(`${node.name} to see ${ids.length} peers${tree ? ` holding ${tree.slice(0, 8)}` : ''}`, () => {
    const peers = node.json(['node', 'peers', ...(tree ? ['--tree', tree] : [])]).peers as { id: string; hasTree?: boolean }[];
    return ids.every((id) => peers.some((p) => p.id === id && (!tree || p.hasTree)));
  });
}
