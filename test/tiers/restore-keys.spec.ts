// restore-keys (issue 15): when the exact key misses, the newest ref under
// the first prefix that has one is restored (a partial hit beats a cold
// build), as actions/cache does; a script branches on exact / partial /
// miss. Real s3rver, real CLI runs, in-process and through a daemon.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vrift, vriftJson } from '../helpers/cli.js';
import { startDaemon, stopDaemon } from '../helpers/daemon.js';
import { startS3, tierEnv, type S3Server } from '../helpers/s3-server.js';
import { tempDir } from '../helpers/tmp.js';

let s3: S3Server;
let env: Record<string, string>;
let older: string;
let newer: string;

function build(body: string): string {
  const dir = tempDir();
  writeFileSync(join(dir, 'out.txt'), body);
  return dir;
}

beforeAll(async () => {
  s3 = await startS3(['vrift-keys']);
  env = tierEnv({ s3 });
  const ci = tempDir();
  older = vriftJson(['save', 'ci/build/linux/aaa', build('build of aaa\n')], { home: ci, env }).tree;
  await new Promise((r) => setTimeout(r, 20));
  newer = vriftJson(['save', 'ci/build/linux/bbb', build('build of bbb\n')], { home: ci, env }).tree;
  vriftJson(['save', 'ci/build/mac/zzz', build('a mac build\n')], { home: ci, env });
});
afterAll(async () => {
  await s3?.stop();
});

const restore = (ref: string, keys: string[], home = tempDir()) => {
  const dir = join(tempDir(), 'out');
  return { dir, ...vrift(['restore', ref, dir, '--restore-keys', ...keys, '--json'], { home, env }) };
};

describe('restore --restore-keys', () => {
  for (const via of ['in the CLI', 'through a daemon'] as const) {
    it(`an exact miss restores the newest ref under the first prefix that has one (${via})`, () => {
      const home = tempDir();
      if (via === 'through a daemon') startDaemon(home, env);
      try {
        const r = restore('ci/build/linux/ccc', ['ci/build/windows/', 'ci/build/linux/', 'ci/build/'], home);
        expect(r.code, r.stderr).toBe(0);
        expect(JSON.parse(r.stdout)).toMatchObject({ hit: 'partial', ref: 'ci/build/linux/ccc', restored: 'ci/build/linux/bbb', tree: newer });
        expect(readFileSync(join(r.dir, 'out.txt'), 'utf8')).toBe('build of bbb\n');
      } finally {
        if (via === 'through a daemon') stopDaemon(home);
      }
    });
  }

  it('an exact hit is said as one', () => {
    const r = restore('ci/build/linux/aaa', ['ci/build/']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ hit: 'exact', restored: 'ci/build/linux/aaa', tree: older });
  });

  it('a miss under every prefix: exit 1, one line, and {"hit":"miss"} for the script', () => {
    const r = restore('ci/build/linux/ccc', ['ci/build/windows/', 'nothing/']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/no ref "ci\/build\/linux\/ccc" in .*, and no ref under "ci\/build\/windows\/", "nothing\/"/);
    expect(JSON.parse(r.stdout)).toMatchObject({ hit: 'miss', ref: 'ci/build/linux/ccc', restoreKeys: ['ci/build/windows/', 'nothing/'], error: { code: 'ERR_VRIFT_RESTORE_MISS' } });
  });

  it('the human line says which ref a partial hit restored', () => {
    const dir = join(tempDir(), 'out');
    const r = vrift(['restore', 'ci/build/mac/new', dir, '--restore-keys', 'ci/build/mac/'], { home: tempDir(), env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^partial hit: ci\/build\/mac\/zzz \(newest under the restore keys\) for ci\/build\/mac\/new -> \w{64} -> /);
  });
});
