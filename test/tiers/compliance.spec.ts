// Runs the tier contract (test/compliance/tier-suite.ts) against every
// tier and the chain, each against a real server.
import { afterAll, beforeAll } from 'vitest';
import { Store } from '../../src/node/store/store.js';
import { loadNodeConfig } from '../../src/node/ops/node-config.js';
import { openChain } from '../../src/tiers/index.js';
import { LocalTier } from '../../src/tiers/local.js';
import { RedisTier } from '../../src/tiers/redis.js';
import { S3Tier } from '../../src/tiers/s3/s3.js';
import { tierSuite } from '../compliance/tier-suite.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { startS3, S3_KEY, S3_SECRET, tierEnv, type S3Server } from '../helpers/s3-server.js';
import { tempDir } from '../helpers/tmp.js';

let redis: RedisServer;
let s3: S3Server;

beforeAll(async () => {
  [redis, s3] = await Promise.all([startRedis(), startS3(['vrift-suite'])]);
});
afterAll(async () => {
  await Promise.all([redis?.stop(), s3?.stop()]);
});

const redisConfig = () => ({
  url: redis.url,
  rejectUnauthorized: true,
  maxBlobBytes: 1 << 20,
  keyPrefix: 'suite:',
  connectTimeoutMs: 2000,
  commandTimeoutMs: 5000,
});

const s3Config = () => ({
  bucket: 'vrift-suite',
  endpoint: s3.endpoint,
  region: 'us-east-1',
  prefix: 'suite/',
  accessKeyId: S3_KEY,
  secretAccessKey: S3_SECRET,
  forcePathStyle: true,
  partSize: 5 << 20,
  // Small, so the sample tree's 3 MiB file is stored on its own (and the pack holds the rest).
  looseBlobBytes: 1 << 20,
  compression: 'zstd' as const,
  connectTimeoutMs: 2000,
  requestTimeoutMs: 10_000,
});

tierSuite('local', async () => {
  const store = Store.open(tempDir('vrift-local-tier-'));
  return { tier: new LocalTier(store), cleanup: () => store.close() };
});

tierSuite('redis', async () => {
  const tier = new RedisTier(redisConfig());
  return { tier, breakIt: () => redis.stop(), fixIt: () => redis.start(), cleanup: () => tier.close() };
});

tierSuite('s3', async () => {
  const tier = new S3Tier(s3Config());
  return { tier, largeBlobBytes: (5 << 20) * 2 + 12345, breakIt: () => s3.stop(), fixIt: () => s3.start(), cleanup: () => tier.close() };
});

tierSuite('chain (local → redis → s3)', async () => {
  const home = tempDir('vrift-chain-tier-');
  const store = Store.open(home);
  const config = loadNodeConfig({ home, env: { ...tierEnv({ redis, s3, bucket: 'vrift-suite', prefix: 'chain/' }), VRIFT_REDIS_PREFIX: 'chain:' } });
  const chain = openChain({ store, config, log: () => undefined });
  return {
    tier: chain,
    cleanup: async () => {
      await chain.close();
      await store.close();
    },
  };
});
