// The one config: file + environment, defaults, and one message per mistake.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadNodeConfig } from '../../src/node/ops/node-config.js';
import { clusterSection } from '../../src/node/cluster/config.js';
import { chainSection } from '../../src/tiers/chain-config.js';
import { mountSection } from '../../src/node/mount/lazy-config.js';
import { storeSection } from '../../src/node/store/store-config.js';
import { redisTier } from '../../src/tiers/redis.js';
import { s3Tier } from '../../src/tiers/s3/s3.js';
import { tempDir } from '../helpers/tmp.js';

function mistakes(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    const msg = (e as Error).message.replace(/^invalid configuration: (\d+ problems:\n {2})?/, '');
    return msg.split('\n  ');
  }
  throw new Error('expected a configuration error');
}

describe('config', () => {
  it('has working defaults and no remote tier when nothing is set', () => {
    const c = loadNodeConfig({ home: tempDir(), env: {} });
    expect(c.get(chainSection)).toEqual({ retries: 2, breakerFailures: 3, breakerCooldownMs: 30_000, hedgeAfterMs: 500, queueCapacity: 256, uploadConcurrency: 8, writeBack: false });
    expect(c.get(redisTier.config!)).toBeUndefined();
    expect(c.get(s3Tier.config!)).toBeUndefined();
    expect(c.get(mountSection)).toEqual({ lazyIndex: true, prefetch: true, prefetchBytesPerSec: 32 << 20, prefetchConcurrency: 4, bulkAfterPercent: 25, bulkAfterSequential: 128, stream: true, streamMinBytes: 4 << 20, scrubBytesPerSec: 4 << 20 });
    expect(c.get(storeSection)).toEqual({ evictToPercent: 90 }); // no maxSize: no cap
    expect(c.file).toBeUndefined();
  });

  it('reads the store cap as a size', () => {
    expect(loadNodeConfig({ home: tempDir(), env: { VRIFT_MAX_SIZE: '20G' } }).get(storeSection)).toEqual({ maxSize: 20 * 2 ** 30, evictToPercent: 90 });
    expect(mistakes(() => loadNodeConfig({ home: tempDir(), env: { VRIFT_MAX_SIZE: 'big' } }))).toEqual(['VRIFT_MAX_SIZE: not a size (e.g. 20G, or a number of bytes)']);
  });

  it('reads the file and lets the environment override it, converting strings', () => {
    const home = tempDir();
    writeFileSync(join(home, 'config.json'), JSON.stringify({ s3: { bucket: 'from-file', prefix: 'ci', partSize: '16M' }, chain: { retries: 5 } }));
    const c = loadNodeConfig({ home, env: { VRIFT_S3_BUCKET: 'from-env', VRIFT_S3_ENDPOINT: 'http://127.0.0.1:9000', VRIFT_TIER_WRITE_BACK: 'yes', VRIFT_TIERS: 'local, s3' } });
    const s3 = c.get(s3Tier.config!)!;
    expect([s3.bucket, s3.endpoint, s3.prefix, s3.partSize, s3.region]).toEqual(['from-env', 'http://127.0.0.1:9000', 'ci/', 16 << 20, 'us-east-1']);
    expect(c.get(chainSection)).toMatchObject({ retries: 5, writeBack: true, tiers: ['local', 's3'] });
    expect(c.file).toBe(join(home, 'config.json'));
  });

  it('reads the file VRIFT_CONFIG names, and says so when it is missing', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'other.json'), JSON.stringify({ redis: { url: 'rediss://cache:6380', maxBlobBytes: 2048 } }));
    const c = loadNodeConfig({ home: tempDir(), env: { VRIFT_CONFIG: join(dir, 'other.json') } });
    expect(c.get(redisTier.config!)).toMatchObject({ url: 'rediss://cache:6380', maxBlobBytes: 2048, keyPrefix: 'vrift:' });
    expect(() => loadNodeConfig({ home: tempDir(), env: { VRIFT_CONFIG: join(dir, 'nope.json') } })).toThrow(/nope\.json: cannot read the config file \(ENOENT\)$/);
  });

  it('gives one line per mistake, naming the variable or the file and key', () => {
    const home = tempDir();
    writeFileSync(join(home, 'config.json'), JSON.stringify({ s3: { endpoint: 'ftp://x' }, clsuter: {}, redis: 'redis://x' }));
    const file = join(home, 'config.json');
    expect(mistakes(() => loadNodeConfig({ home, env: { VRIFT_TIER_RETRIES: 'many', VRIFT_REDIS_TLS: 'maybe', VRIFT_S3_ACCESS_KEY_ID: 'AK' } })).sort()).toEqual(
      [
        `${file}: unknown section "clsuter" (known: chain, refs, cluster, redis, s3, mount, store, metrics)`,
        'VRIFT_TIER_RETRIES: not a whole number (e.g. 2)',
        `${file}: redis: not an object (e.g. "redis": { … })`,
        's3.bucket (VRIFT_S3_BUCKET or ' + file + '): required (e.g. vrift-cache)',
        `${file}: s3.endpoint: unsupported scheme "ftp:" (use http:// or https://, e.g. http://127.0.0.1:9000)`,
      ].sort(),
    );
  });

  it('checks values that only make sense together, and files that must exist', () => {
    const home = tempDir();
    expect(mistakes(() => loadNodeConfig({ home, env: { VRIFT_S3_BUCKET: 'bkt', VRIFT_S3_ACCESS_KEY_ID: 'AK' } }))).toEqual([
      `s3: set both accessKeyId and secretAccessKey (VRIFT_S3_ACCESS_KEY_ID, VRIFT_S3_SECRET_ACCESS_KEY), or neither to use the AWS default credentials`,
    ]);
    expect(mistakes(() => loadNodeConfig({ home, env: { VRIFT_REDIS_URL: 'redis://h:1', VRIFT_REDIS_CA_FILE: '/nonexistent/ca.pem' } }))).toEqual([
      'VRIFT_REDIS_CA_FILE: /nonexistent/ca.pem: no such readable file',
    ]);
    expect(mistakes(() => loadNodeConfig({ home, env: { VRIFT_S3_BUCKET: '192.168.1.1' } }))[0]).toMatch(/^VRIFT_S3_BUCKET: "192\.168\.1\.1" is not a valid bucket name/);
  });

  it('reads the cluster secret from its file, and refuses a short one or both at once', () => {
    const dir = tempDir();
    const good = join(dir, 'secret');
    writeFileSync(good, 'a-secret-that-is-long-enough\n');
    expect(loadNodeConfig({ home: tempDir(), env: { VRIFT_CLUSTER_SECRET_FILE: good } }).get(clusterSection)).toMatchObject({ secret: 'a-secret-that-is-long-enough', p2pPort: 7401 });
    const short = join(dir, 'short');
    writeFileSync(short, 'tiny\n');
    expect(mistakes(() => loadNodeConfig({ home: tempDir(), env: { VRIFT_CLUSTER_SECRET_FILE: short } }))).toEqual([`VRIFT_CLUSTER_SECRET_FILE: ${short} holds a secret shorter than 16 characters`]);
    expect(mistakes(() => loadNodeConfig({ home: tempDir(), env: { VRIFT_CLUSTER_SECRET_FILE: good, VRIFT_CLUSTER_SECRET: 'another-long-secret-value' } }))).toEqual([
      'VRIFT_CLUSTER_SECRET_FILE: set secret or secretFile, not both',
    ]);
    expect(loadNodeConfig({ home: tempDir(), env: {} }).get(clusterSection).secret).toBeUndefined();
  });
});
