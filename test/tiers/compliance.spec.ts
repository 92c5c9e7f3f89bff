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
  neighbors: true,
  connectTimeoutMs: 2000,
  requestTimeoutMs: 10_000,
});

tierSuite('local', async () => {
  const store = Store.open(tempDir('vrift-local-tier-'));
  return {
    tier: new LocalTier(store),
    notApplicable: {
      largeBlob: 'the local store has no per-request size limit: a large blob streams to and from its file like any other',
      bulk: 'the local store is what archives are read into; it serves blobs one by one and has no archive form',
      outage: "the local tier is this host's disk, with no server that could be stopped",
    },
    cleanup: () => store.close(),
  };
});

tierSuite('redis', async () => {
  const tier = new RedisTier(redisConfig());
  return {
    tier,
    breakIt: () => redis.stop(),
    fixIt: () => redis.start(),
    notApplicable: {
      largeBlob: 'Redis keeps no blob above maxBlobBytes (1 MiB here), so it has no large-object path (the size-limit test covers what it does instead)',
      bulk: 'Redis keeps blobs one by one; whole trees come in bulk from peers and S3 only',
    },
    cleanup: () => tier.close(),
  };
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
    notApplicable: {
      largeBlob: "the chain hands a blob to its tiers; their large-object paths are tested in their own suites (S3's multipart above)",
      bulk: 'the chain has no archive form of its own: a pull reads archives from its tiers (peers, S3)',
      outage: 'the chain does not fail when a remote tier is down, it moves on (test/tiers/failover.spec.ts), and its local tier cannot be stopped',
    },
    cleanup: async () => {
      await chain.close();
      await store.close();
    },
  };
});
