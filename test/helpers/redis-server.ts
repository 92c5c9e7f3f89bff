// A real redis-server for tests: a free loopback port, a temp dir, no
// persistence (--save '' --appendonly no), optional password and TLS.
// stop()/start() keep the port, so a client configured once sees the
// server go away and come back (empty: nothing is persisted).
import { Redis } from 'ioredis';
import { freePort } from './ports.js';
import { serverProcess } from './server-process.js';
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
  /** SIGSTOP: the server keeps its port and connections but never answers (a frozen host). */
  freeze(): void;
  /** SIGCONT after freeze(). */
  thaw(): void;
  /** A real client for tests that poke at the data (corrupt a value, flush …). */
  client(): Redis;
}

export async function startRedis(opts: { password?: string; tls?: RedisTls } = {}): Promise<RedisServer> {
  const port = await freePort();
  const dir = tempDir('vrift-redis-');
  const args = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no'];
  if (opts.tls) {
    args.push('--port', '0', '--tls-port', String(port), '--tls-cert-file', opts.tls.certFile, '--tls-key-file', opts.tls.keyFile);
    args.push('--tls-ca-cert-file', opts.tls.caFile, '--tls-auth-clients', 'no');
  } else args.push('--port', String(port));
  if (opts.password) args.push('--requirepass', opts.password);
  const scheme = opts.tls ? 'rediss' : 'redis';
  const url = `${scheme}://${opts.password ? `:${encodeURIComponent(opts.password)}@` : ''}127.0.0.1:${port}`;
  let clientInstance: Redis | undefined;
  const proc = serverProcess('redis-server', 'redis-server', args, port, 10_000);

  const server: RedisServer = {
    port,
    url,
    password: opts.password,
    start: () => proc.start(),
    freeze: () => proc.signal('SIGSTOP'),
    thaw: () => proc.signal('SIGCONT'),
    async stop() {
      clientInstance?.disconnect();
      clientInstance = undefined;
      await proc.stop();
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
