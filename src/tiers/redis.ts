// The Redis tier: small blobs and refs in a shared Redis (ioredis, loaded
// on first use). Blobs above `maxBlobBytes` are not stored here: Redis
// keeps whole values in memory, so big files belong in S3.
//
// Keys: <prefix>blob:<digest> → raw bytes; <prefix>ref:<name> → JSON
// {"tree","updatedAt"}. TLS with rediss:// (or tls: true) and a CA file;
// AUTH with the URL's user:password or the username/password settings.
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import type { Redis as RedisClient, RedisOptions } from 'ioredis';
import type { Digest } from '../lib/digest.js';
import { anyText, bool, file, int, object, size, text, url, type ConfigSection } from '../node/config/schema.js';
import { readStoredRef, storedRef, type RefCodec } from './ref-trust.js';
import { isTierError, refTargetOf, TierError, type BlobBody, type BlobSource, type RefInfo, type RefTarget, type Tier, type TierFactory } from './tier.js';

export interface RedisConfig {
  url: string;
  username?: string;
  password?: string;
  tls?: boolean;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  rejectUnauthorized: boolean;
  maxBlobBytes: number;
  keyPrefix: string;
  ttlSeconds?: number;
  connectTimeoutMs: number;
  commandTimeoutMs: number;
}

const section: ConfigSection<RedisConfig | undefined> = {
  key: 'redis',
  schema: object(
    {
      url: url({ example: 'redis://127.0.0.1:6379', protocols: ['redis:', 'rediss:'] }),
      username: text({ example: 'vrift' }).optional(),
      password: text({ example: 's3cret' }).optional(),
      tls: bool().optional(),
      caFile: file({ example: '/etc/ssl/redis-ca.pem' }).optional(),
      certFile: file({ example: '/etc/ssl/redis-client.pem' }).optional(),
      keyFile: file({ example: '/etc/ssl/redis-client.key' }).optional(),
      rejectUnauthorized: bool().default(true),
      maxBlobBytes: size({ example: '1M', min: 1, max: 512 << 20 }).default(1 << 20),
      keyPrefix: anyText().default('vrift:'),
      ttlSeconds: int({ example: '604800', min: 1, max: 10 * 365 * 86400 }).optional(),
      connectTimeoutMs: int({ example: '3000', min: 1, max: 600_000 }).default(3000),
      commandTimeoutMs: int({ example: '15000', min: 1, max: 600_000 }).default(15_000),
    },
    { absent: 'undefined' },
  ),
  env: {
    VRIFT_REDIS_URL: 'url',
    VRIFT_REDIS_USERNAME: 'username',
    VRIFT_REDIS_PASSWORD: 'password',
    VRIFT_REDIS_TLS: 'tls',
    VRIFT_REDIS_CA_FILE: 'caFile',
    VRIFT_REDIS_CERT_FILE: 'certFile',
    VRIFT_REDIS_KEY_FILE: 'keyFile',
    VRIFT_REDIS_MAX_BLOB: 'maxBlobBytes',
    VRIFT_REDIS_PREFIX: 'keyPrefix',
    VRIFT_REDIS_TTL: 'ttlSeconds',
  },
};

const HAS_BATCH = 1000;
/** How long close() waits for the server to acknowledge QUIT. */
const QUIT_WAIT_MS = 200;

export class RedisTier implements Tier {
  readonly name = 'redis';
  readonly writable = true;
  readonly parallelism = 64;
  readonly maxBlobBytes: number;
  /** host:port, for messages (never the password). */
  readonly where: string;
  private client: RedisClient | undefined;
  private connecting: Promise<RedisClient> | undefined;
  private lastError: Error | undefined;

  /** @param refs signs the refs this tier writes and checks those it reads (without one: unsigned records, as tests build tiers alone). */
  constructor(
    private readonly cfg: RedisConfig,
    private readonly refs?: RefCodec,
  ) {
    this.maxBlobBytes = cfg.maxBlobBytes;
    const u = new URL(cfg.url);
    this.where = `${u.hostname}:${u.port || 6379}`;
  }

  async warm(): Promise<void> {
    await this.conn().catch(() => undefined);
  }

  async has(digests: readonly Digest[]): Promise<Set<Digest>> {
    const c = await this.conn();
    const out = new Set<Digest>();
    for (let i = 0; i < digests.length; i += HAS_BATCH) {
      const batch = digests.slice(i, i + HAS_BATCH);
      const p = c.pipeline();
      for (const d of batch) p.exists(this.blobKey(d));
      const replies = await this.run('checking blobs', () => p.exec());
      replies?.forEach(([err, n], j) => {
        if (err) throw this.fail(err, 'checking blobs');
        if (n === 1) out.add(batch[j]!);
      });
    }
    return out;
  }

  async get(digest: Digest): Promise<BlobBody | undefined> {
    const c = await this.conn();
    const buf = await this.run('reading a blob', () => c.getBuffer(this.blobKey(digest)));
    if (buf === null) return undefined;
    return { stream: Readable.from([buf]), size: buf.byteLength };
  }

  async put(digest: Digest, source: BlobSource): Promise<void> {
    if (source.size > this.maxBlobBytes) return; // not kept here by design
    const buf = await source.readAll();
    const c = await this.conn();
    const key = this.blobKey(digest);
    await this.run('storing a blob', () => (this.cfg.ttlSeconds ? c.set(key, buf, 'EX', this.cfg.ttlSeconds) : c.set(key, buf)));
  }

  async getRef(name: string): Promise<RefTarget | undefined> {
    const c = await this.conn();
    const v = await this.run('reading a ref', () => c.get(this.refKey(name)));
    return v === null ? undefined : refTargetOf(this.parseRef(name, v));
  }

  async setRef(name: string, target: RefTarget): Promise<void> {
    const c = await this.conn();
    await this.run('writing a ref', () => c.set(this.refKey(name), storedRef(this.refs, name, target)));
  }

  async listRefs(prefix: string, limit = 100): Promise<RefInfo[]> {
    const c = await this.conn();
    const match = `${this.refKey(prefix).replace(/[*?[\]\\]/g, '\\$&')}*`;
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await this.run('listing refs', () => c.scan(cursor, 'MATCH', match, 'COUNT', 1000));
      keys.push(...batch);
      cursor = next;
    } while (cursor !== '0' && keys.length < 10_000);
    if (keys.length === 0) return [];
    const values = await this.run('reading refs', () => c.mget(...keys));
    const base = this.refKey('').length;
    const refs: RefInfo[] = [];
    keys.forEach((k, i) => {
      const v = values[i];
      try {
        const ref = typeof v === 'string' ? this.parseRef(k.slice(base), v) : undefined;
        if (ref) refs.push(ref);
      } catch {
        /* a damaged ref is not listed (reading it by name reports it) */
      }
    });
    return refs.sort((a, b) => b.updatedAt - a.updatedAt).slice(0, limit);
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    this.connecting = undefined;
    if (!c) return;
    try {
      // A server that stopped answering never acknowledges QUIT: wait briefly, then drop the connection.
      if (c.status === 'ready') await Promise.race([c.quit(), new Promise((r) => setTimeout(r, QUIT_WAIT_MS).unref())]);
    } catch {
      /* dropped below */
    }
    c.disconnect();
  }

  private blobKey(d: Digest): string {
    return `${this.cfg.keyPrefix}blob:${d}`;
  }

  private refKey(name: string): string {
    return `${this.cfg.keyPrefix}ref:${name}`;
  }

  /** The ref a stored record names; undefined when it is not to be trusted (refs: the log says why). */
  private parseRef(name: string, v: string): RefInfo | undefined {
    return readStoredRef(this.refs, this.name, name, v, 'save the ref again, or delete the key from Redis');
  }

  /**
   * The client, ready. Anything else (connecting, reconnecting, given up)
   * waits for one shared fresh connection, so a recovered server is used
   * again and no command ever waits in a queue of a dead connection.
   */
  private async conn(): Promise<RedisClient> {
    if (this.client?.status === 'ready') return this.client;
    this.connecting ??= this.open().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async open(): Promise<RedisClient> {
    this.client?.disconnect();
    const { Redis } = await import('ioredis');
    const u = new URL(this.cfg.url);
    const useTls = this.cfg.tls ?? (u.protocol === 'rediss:' || this.cfg.caFile !== undefined);
    const opts: RedisOptions = {
      lazyConnect: true,
      connectTimeout: this.cfg.connectTimeoutMs,
      commandTimeout: this.cfg.commandTimeoutMs,
      // Fail fast: the chain retries and falls through to other tiers.
      maxRetriesPerRequest: 1,
      enableOfflineQueue: false,
      // ioredis keeps a timer this long after disconnecting a socket that already closed; it would hold the process open.
      disconnectTimeout: 100,
      retryStrategy: (times: number) => (times > 2 ? null : times * 100),
      ...(this.cfg.username !== undefined ? { username: this.cfg.username } : {}),
      ...(this.cfg.password !== undefined ? { password: this.cfg.password } : {}),
    };
    if (useTls) {
      opts.tls = {
        rejectUnauthorized: this.cfg.rejectUnauthorized,
        servername: u.hostname,
        ...(this.cfg.caFile ? { ca: readFileSync(this.cfg.caFile) } : {}),
        ...(this.cfg.certFile ? { cert: readFileSync(this.cfg.certFile) } : {}),
        ...(this.cfg.keyFile ? { key: readFileSync(this.cfg.keyFile) } : {}),
      };
    }
    const client = new Redis(this.cfg.url, opts);
    // Without a listener ioredis prints every connection error; we keep the last to explain failures.
    client.on('error', (e: Error) => {
      this.lastError = e;
    });
    this.client = client;
    this.lastError = undefined;
    try {
      await client.connect();
    } catch (e) {
      // Forget this client: after a failed connect ioredis may sit in "reconnecting" forever.
      client.disconnect();
      if (this.client === client) this.client = undefined;
      throw this.fail(e, 'connecting');
    }
    return client;
  }

  private async run<T>(doing: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw this.fail(e, doing);
    }
  }

  /** Turns an ioredis error into a TierError that names the server and the fix. */
  private fail(e: unknown, doing: string): TierError {
    if (isTierError(e)) return e;
    const own = e as Error;
    // "Connection is closed." hides the cause; the last 'error' event has it.
    const cause = /Connection is closed|max retries|writeable/i.test(own.message ?? '') && this.lastError ? this.lastError : own;
    const msg = `${cause.message ?? cause}`.split('\n')[0]!;
    const code = (cause as { code?: string }).code ?? '';
    if (/WRONGPASS|NOAUTH|NOPERM|invalid password|AUTH failed/i.test(msg)) {
      return new TierError(this.name, 'auth', `${this.where} rejected the credentials while ${doing} (${msg.slice(0, 100)})`, {
        hint: 'check the password in VRIFT_REDIS_URL or VRIFT_REDIS_PASSWORD (and VRIFT_REDIS_USERNAME for ACL users)',
        cause,
      });
    }
    if (/certificate|SSL|TLS|CERT_|EPROTO/i.test(msg + code)) {
      return new TierError(this.name, 'config', `TLS with ${this.where} failed while ${doing} (${msg.slice(0, 120)})`, {
        hint: 'check rediss:// vs redis:// and VRIFT_REDIS_CA_FILE',
        cause,
      });
    }
    if (/ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EHOSTUNREACH|EPIPE|Connection is closed|max retries|timed? ?out|LOADING|writeable/i.test(msg + code)) {
      return new TierError(this.name, 'unavailable', `${this.where} is unreachable while ${doing} (${msg.slice(0, 100)})`, {
        hint: 'start Redis, or check VRIFT_REDIS_URL',
        cause,
      });
    }
    return new TierError(this.name, 'io', `${this.where} failed while ${doing}: ${msg.slice(0, 160)}`, {
      hint: /OOM/.test(msg) ? 'Redis is out of memory: raise maxmemory or set an eviction policy' : undefined,
      cause,
    });
  }
}

export const redisTier: TierFactory<RedisConfig | undefined> = {
  name: 'redis',
  config: section,
  create: (ctx, cfg) => (cfg ? new RedisTier(cfg, ctx.refs) : undefined),
};
