// Refs carry their writer's identity (issue 13, hole 5): a ref in Redis or
// S3 is a record signed with its writer's Ed25519 key, and a reader takes
// it only from a key allowed for its namespace (refs.trust). A poisoned
// ref is refused with one line saying why, and the next tier's validly
// signed one is used. Real redis-server and s3rver, real CLI runs.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRefRecord, RefSigner, verifyRefRecord } from '../../src/lib/ref-signature.js';
import { vrift, vriftJson } from '../helpers/cli.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { startS3, tierEnv, type S3Server } from '../helpers/s3-server.js';
import { tempDir } from '../helpers/tmp.js';

const BUCKET = 'vrift-refs';
let redis: RedisServer;
let s3: S3Server;
let env: Record<string, string>;
/** The trusted writer (a main-branch CI job) and what it saved. */
let writer: string;
let writerKey: string;
let good: string;
/** A member with a key of its own, and a tree of its choosing, already in the tiers. */
let attacker: string;
let attackerKey: string;
let evil: string;

function tree(files: Record<string, string>): string {
  const dir = tempDir();
  for (const [name, body] of Object.entries(files)) writeFileSync(join(dir, name), body);
  return dir;
}
const keyOf = (home: string) => vriftJson<{ key: string }>(['ref', 'key'], { home }).key;
const s3Text = async (key: string) => (await (await s3.client().send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body!.transformToString());

beforeAll(async () => {
  [redis, s3] = await Promise.all([startRedis(), startS3([BUCKET])]);
  env = tierEnv({ redis, s3 });
  writer = tempDir();
  writerKey = keyOf(writer);
  good = vriftJson(['save', 'main/app', tree({ 'build.txt': 'the real build\n' })], { home: writer, env }).tree;
  attacker = tempDir();
  attackerKey = keyOf(attacker);
  evil = vriftJson(['save', 'pr/7/app', tree({ 'build.txt': 'a poisoned build\n' })], { home: attacker, env }).tree;
});
afterAll(async () => {
  await Promise.all([redis?.stop(), s3?.stop()]);
});

/** A cold node restoring `ref` with `trust` rules; returns what it restored and what it said. */
function restore(ref: string, extra: Record<string, string> = {}) {
  const home = tempDir();
  const out = join(tempDir(), 'out');
  const r = vrift(['restore', ref, out, '--json'], { home, env: { ...env, VRIFT_REF_TRUST: `main/=${writerKey},pr/=*`, ...extra } });
  return { ...r, tree: r.code === 0 ? (JSON.parse(r.stdout) as { tree: string }).tree : undefined };
}

describe('signed refs', () => {
  it('a saved ref is a record signed by its writer, in Redis and in S3', async () => {
    for (const value of [await redis.client().get('vrift:ref:main/app'), await s3Text('refs/main/app')]) {
      const rec = parseRefRecord(value!);
      expect(typeof rec).toBe('object');
      if (typeof rec === 'string') return;
      expect(rec).toMatchObject({ tree: good, key: writerKey });
      expect(verifyRefRecord('main/app', rec)).toBe(true);
      // The signature binds the name: the same record under another ref does not verify.
      expect(verifyRefRecord('main/other', rec)).toBe(false);
    }
    expect(writerKey).toMatch(/^ed25519:[A-Za-z0-9_-]{43}$/);
    expect(attackerKey).not.toBe(writerKey);
  });

  it("a member's own signed record in Redis, for a namespace it may not write: refused, and S3's is used", async () => {
    // What a member with write access to Redis does: point main/app at its tree, signed with its key.
    await redis.client().set('vrift:ref:main/app', JSON.stringify(RefSigner.fromPem(RefSigner.generatePem()).record('main/app', evil)));
    try {
      const r = restore('main/app');
      expect(r.code, r.stderr).toBe(0);
      expect(r.tree).toBe(good);
      expect(r.stderr).toMatch(/refs: redis's ref "main\/app" \(tree \w+…\) was refused: it is signed by ed25519:\S+, which may not write refs under "main\/" \(add "main\/=ed25519:\S+" to refs\.trust/);
    } finally {
      await redis.client().set('vrift:ref:main/app', (await s3Text('refs/main/app')) ?? '');
    }
  });

  it('an unsigned record, or one changed after it was signed: refused, the next tier is used', async () => {
    const real = JSON.parse((await redis.client().get('vrift:ref:main/app'))!) as Record<string, unknown>;
    for (const [value, why] of [
      [JSON.stringify({ tree: evil, updatedAt: Date.now() }), /it is not signed/],
      [JSON.stringify({ ...real, tree: evil }), /its signature does not verify/],
    ] as const) {
      await redis.client().set('vrift:ref:main/app', value);
      const r = restore('main/app');
      expect([r.code, r.tree], r.stderr).toEqual([0, good]);
      expect(r.stderr).toMatch(why);
    }
    await redis.client().set('vrift:ref:main/app', JSON.stringify(real));
  });

  it('poisoned in every tier: no ref, and the command says why each was refused', async () => {
    const forged = JSON.stringify(RefSigner.fromPem(RefSigner.generatePem()).record('main/app', evil));
    const realS3 = await s3Text('refs/main/app');
    const realRedis = (await redis.client().get('vrift:ref:main/app'))!;
    await redis.client().set('vrift:ref:main/app', forged);
    await s3.client().send(new PutObjectCommand({ Bucket: BUCKET, Key: 'refs/main/app', Body: forged }));
    try {
      const r = restore('main/app');
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/redis's ref "main\/app" .* was refused/);
      expect(r.stderr).toMatch(/s3's ref "main\/app" .* was refused/);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    } finally {
      await redis.client().set('vrift:ref:main/app', realRedis);
      await s3.client().send(new PutObjectCommand({ Bucket: BUCKET, Key: 'refs/main/app', Body: realS3 }));
    }
  });

  it("a pull-request job's key (VRIFT_SIGNING_KEY) writes pr/… refs that readers take; the same key on main/… is refused", () => {
    const keyFile = join(tempDir(), 'pr-job.pem');
    writeFileSync(keyFile, RefSigner.generatePem(), { mode: 0o600 });
    const job = tempDir();
    const prEnv = { ...env, VRIFT_SIGNING_KEY: keyFile };
    const prTree = vriftJson(['save', 'pr/8/app', tree({ 'build.txt': 'pr 8\n' })], { home: job, env: prEnv }).tree;
    expect(restore('pr/8/app').tree).toBe(prTree);
    vriftJson(['save', 'main/pr-wrote-this', tree({ 'build.txt': 'pr 8 on main\n' })], { home: job, env: prEnv });
    const r = restore('main/pr-wrote-this');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/which may not write refs under "main\/"/);
  });

  it('unsigned records are taken only when refs.unsigned says so', async () => {
    await redis.client().set('vrift:ref:legacy/app', JSON.stringify({ tree: good, updatedAt: Date.now() }));
    expect(restore('legacy/app').code).toBe(1);
    expect(restore('legacy/app', { VRIFT_REF_UNSIGNED: 'accept' }).tree).toBe(good);
  });

  it('a trust rule that names no key is one line naming the setting', () => {
    const r = vrift(['restore', 'main/app', join(tempDir(), 'out')], { home: tempDir(), env: { ...env, VRIFT_REF_TRUST: 'main/=not-a-key' } });
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/refs\.trust \(VRIFT_REF_TRUST\): "not-a-key" is not a key/);
  });
});
