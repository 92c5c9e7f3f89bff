// A real redis-server for tests: a free loopback port, a temp dir, no
// persistence (--save '' --appendonly no), optional password and TLS.
// stop()/start() keep the port, so a client configured once sees the
// server go away and come back (empty: nothing is persisted).
import { spawn, type ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { freePort, waitForPort } from './ports.js';
import { tempDir } from './tmp.js';

export interface RedisTls {
  certFile: string;
  keyFile: string;
  caFile: string;
}

export interface RedisServer {
  port: number;
  /** URL with the password, if any (redis:// or rediss://). */
  url: string;
  password?: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** A real client for tests that poke at the data (corrupt a value, flush …). */
  client(): Redis;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

export async function startRedis(opts: { password?: string; tls?: RedisTls } = {}): Promise<RedisServer> {
  const port = await freePort();
  const dir = tempDir('vrift-redis-');
  let proc: ChildProcess | undefined;
  let output = '';
  const args = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no'];
  if (opts.tls) {
    args.push('--port', '0', '--tls-port', String(port), '--tls-cert-file', opts.tls.certFile, '--tls-key-file', opts.tls.keyFile);
    args.push('--tls-ca-cert-file', opts.tls.caFile, '--tls-auth-clients', 'no');
  } else args.push('--port', String(port));
  if (opts.password) args.push('--requirepass', opts.password);
  const scheme = opts.tls ? 'rediss' : 'redis';
  const url = `${scheme}://${opts.password ? `:${encodeURIComponent(opts.password)}@` : ''}127.0.0.1:${port}`;
  let clientInstance: Redis | undefined;

  const server: RedisServer = {
    port,
    url,
    password: opts.password,
    async start() {
      if (proc) return;
      const p = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
      proc = p;
      running.add(p);
      p.stdout!.on('data', (d) => (output += d));
      p.stderr!.on('data', (d) => (output += d));
      let exited = false;
      p.once('exit', () => {
        exited = true;
        running.delete(p);
      });
      try {
        await waitForPort(port, 10_000, () => !exited);
      } catch (e) {
        throw new Error(`redis-server did not start: ${(e as Error).message}\n${output}`);
      }
    },
    async stop() {
      const p = proc;
      proc = undefined;
      clientInstance?.disconnect();
      clientInstance = undefined;
      if (!p || p.exitCode !== null) return;
      await new Promise<void>((resolve) => {
        p.once('exit', () => resolve());
        p.kill('SIGTERM');
      });
    },
    client() {
      clientInstance ??= new Redis(url, {
        tls: opts.tls ? { rejectUnauthorized: false } : undefined,
        maxRetriesPerRequest: 1,
      });
      clientInstance.on('error', () => undefined);
      return clientInstance;
    },
  };
  await server.start();
  return server;
}
