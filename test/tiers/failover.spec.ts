// The chain under failure, with real servers stopped and damaged: every
// blob is verified, a bad or missing tier is skipped, and the command
// still succeeds from the others when it can.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vrift, vriftJson } from '../helpers/cli.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { startS3, tierEnv, type S3Server } from '../helpers/s3-server.js';
import { tempDir } from '../helpers/tmp.js';
import { snapshotTree, treeMode, writeSampleTree } from '../helpers/trees.js';

let redis: RedisServer;
let s3: S3Server;
let env: Record<string, string>;
let src: string;
let saver: string;
let tree: string;
const same = (dir: string) => snapshotTree(dir, { mode: treeMode });

/** Saves the sample tree under `ref` from the saver home (again after a Redis restart emptied it). */
function save(ref: string): void {
  tree = vriftJson(['save', ref, src], { home: saver, env }).tree;
}

beforeAll(async () => {
  [redis, s3] = await Promise.all([startRedis(), startS3(['vrift-failover'])]);
  env = tierEnv({ redis, s3 });
  src = tempDir();
  writeSampleTree(src);
  saver = tempDir();
  save('ci/failover');
});
afterAll(async () => {
  await Promise.all([redis?.stop(), s3?.stop()]);
});

describe('failover', () => {
  it('rejects a blob corrupted inside Redis and serves the right bytes from S3', async () => {
    const entries = vriftJson(['ls', tree], { home: saver }).entries as { path: string; digest?: string }[];
    const victim = entries.find((e) => e.path === 'src/main.c')!.digest!;
    await redis.client().set(`vrift:blob:${victim}`, 'int main(void) { return 1; }\n');
    const home = tempDir();
    const out = join(tempDir(), 'out');
    const r = vrift(['restore', 'ci/failover', out, '--json'], { home, env });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`redis: blob ${victim} failed verification and was rejected`);
    const res = JSON.parse(r.stdout);
    expect(res.metrics['vrift_tier_mismatch_total{tier="redis"}']).toBe(1);
    expect(res.from.s3.blobs).toBeGreaterThanOrEqual(2); // the victim and the 3 MiB file
    expect(readFileSync(join(out, 'src/main.c'), 'utf8')).toBe('int main(void) { return 0; }\n');
    expect(same(out)).toEqual(same(src));
    expect(vriftJson(['verify'], { home }).ok).toBe(true);
  });

  it('restores from S3 while Redis is stopped', async () => {
    await redis.stop();
    try {
      const out = join(tempDir(), 'out');
      const r = vrift(['restore', 'ci/failover', out, '--json'], { home: tempDir(), env });
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/redis: 127\.0\.0\.1:\d+ is unreachable .*ECONNREFUSED/);
      expect(Object.keys(JSON.parse(r.stdout).from)).toEqual(['s3']);
      expect(same(out)).toEqual(same(src));
    } finally {
      await redis.start();
    }
  });

  it('names what is missing when S3 is stopped and Redis cannot serve it all', async () => {
    save('ci/failover'); // Redis came back empty from the last test
    await s3.stop();
    try {
      const home = tempDir();
      const out = join(tempDir(), 'out');
      const r = vrift(['restore', 'ci/failover', out], { home, env });
      expect(r.code).toBe(1);
      const lines = r.stderr.trim().split('\n');
      const last = lines[lines.length - 1]!;
      // Redis holds the ref and every small blob; the 3 MiB file is only in S3.
      expect(last).toMatch(new RegExp(`^vrift: 1 of \\d+ blobs of tree ${tree} are in no reachable tier \\(first: big\\.bin [0-9a-f]{64}\\); s3: .*unreachable`));
      expect(last).toContain('check VRIFT_S3_ENDPOINT');
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
      expect(existsSync(out)).toBe(false);
      expect(vriftJson(['verify'], { home }).ok).toBe(true);
    } finally {
      await s3.start();
    }
  });

  it('restores from the local store with both Redis and S3 stopped', async () => {
    await Promise.all([redis.stop(), s3.stop()]);
    try {
      const out = join(tempDir(), 'out');
      const r = vrift(['restore', 'ci/failover', out], { home: saver, env });
      expect(r.code).toBe(0);
      expect(r.stderr).toBe(''); // everything was local: no tier was asked
      expect(same(out)).toEqual(same(src));
    } finally {
      await Promise.all([redis.start(), s3.start()]);
    }
  });

  it('falls through a Redis with the wrong password, naming the credentials', async () => {
    const locked = await startRedis({ password: 'right-secret' });
    try {
      const url = `redis://:wrong-secret@127.0.0.1:${locked.port}`;
      const out = join(tempDir(), 'out');
      const r = vrift(['restore', 'ci/failover', out], { home: tempDir(), env: { ...env, VRIFT_REDIS_URL: url } });
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/redis: 127\.0\.0\.1:\d+ rejected the credentials .*WRONGPASS.*skipping redis/);
      expect(same(out)).toEqual(same(src));
    } finally {
      await locked.stop();
    }
  });

  it('talks to Redis over TLS with a CA file, and explains a certificate it cannot verify', async () => {
    const dir = tempDir('vrift-tls-');
    const ca = join(dir, 'ca.pem');
    const key = join(dir, 'key.pem');
    const cert = join(dir, 'cert.pem');
    const sh = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
    sh(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', ca, '-days', '2', '-subj', '/CN=vrift test CA']);
    sh(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', 'srv.csr', '-subj', '/CN=127.0.0.1']);
    writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
    sh(['x509', '-req', '-in', 'srv.csr', '-CA', ca, '-CAkey', 'ca.key', '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', 'ext.cnf']);
    const secure = await startRedis({ password: 'tls-secret', tls: { certFile: cert, keyFile: key, caFile: ca } });
    try {
      const tlsEnv = { ...tierEnv({ redis: secure }), VRIFT_REDIS_CA_FILE: ca };
      const s = tempDir();
      writeFileSync(join(s, 'hello.txt'), 'over tls\n');
      expect(vriftJson(['save', 'ci/tls', s], { home: tempDir(), env: tlsEnv }).tiers[0].ok).toBe(true);
      const out = join(tempDir(), 'out');
      const r = vriftJson(['restore', 'ci/tls', out], { home: tempDir(), env: tlsEnv });
      expect([r.refFrom, Object.keys(r.from)]).toEqual(['redis', ['redis']]);
      expect(readFileSync(join(out, 'hello.txt'), 'utf8')).toBe('over tls\n');
      // Without the CA the server's certificate cannot be verified: a clear miss, not a hang.
      const noCa = vrift(['restore', 'ci/tls', join(tempDir(), 'x')], { home: tempDir(), env: tierEnv({ redis: secure }) });
      expect(noCa.code).toBe(2);
      expect(noCa.stderr).toMatch(/redis: TLS with 127\.0\.0\.1:\d+ failed .*certificate/);
    } finally {
      await secure.stop();
    }
  });
});
