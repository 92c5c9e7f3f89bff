// --key-from: the documented composition, order independence, platform.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hashBuffer } from '../../src/lib/digest.js';
import { cacheKey, refWithKey } from '../../src/cli/cache-key.js';
import { tempDir } from '../helpers/tmp.js';

describe('cache keys', () => {
  it('is the digest of exactly the documented bytes', () => {
    const cwd = tempDir();
    writeFileSync(join(cwd, 'package-lock.json'), 'LOCK');
    mkdirSync(join(cwd, 'sub'));
    writeFileSync(join(cwd, 'sub', 'Cargo.lock'), 'CARGO');
    const k = cacheKey(['sub/Cargo.lock', './package-lock.json'], { cwd, platform: 'linux', arch: 'x64' });
    const expected = hashBuffer(
      Buffer.from('vrift-cache-key 1\nplatform linux\narch x64\nfile package-lock.json 4\nLOCK\nfile sub/Cargo.lock 5\nCARGO\n'),
    );
    expect(k.key).toBe(expected);
    expect(k.files).toEqual([
      { path: 'package-lock.json', size: 4 },
      { path: 'sub/Cargo.lock', size: 5 },
    ]);
  });

  it('changes with content, platform and architecture, not with argument order', () => {
    const cwd = tempDir();
    writeFileSync(join(cwd, 'a.lock'), 'A');
    writeFileSync(join(cwd, 'b.lock'), 'B');
    const base = cacheKey(['a.lock', 'b.lock'], { cwd, platform: 'linux', arch: 'x64' }).key;
    expect(cacheKey(['b.lock', 'a.lock', 'a.lock'], { cwd, platform: 'linux', arch: 'x64' }).key).toBe(base);
    expect(cacheKey(['a.lock', 'b.lock'], { cwd, platform: 'darwin', arch: 'x64' }).key).not.toBe(base);
    expect(cacheKey(['a.lock', 'b.lock'], { cwd, platform: 'linux', arch: 'arm64' }).key).not.toBe(base);
    writeFileSync(join(cwd, 'b.lock'), 'B2');
    expect(cacheKey(['a.lock', 'b.lock'], { cwd, platform: 'linux', arch: 'x64' }).key).not.toBe(base);
  });

  it('names a missing file or a directory in one line', () => {
    const cwd = tempDir();
    mkdirSync(join(cwd, 'dir'));
    expect(() => cacheKey(['nope.lock'], { cwd })).toThrow('--key-from nope.lock: no such file');
    expect(() => cacheKey(['dir'], { cwd })).toThrow('--key-from dir: is a directory, not a file');
  });

  it('appends the key as the last ref component', () => {
    expect(refWithKey('ci/nm', 'k')).toBe('ci/nm/k');
    expect(refWithKey('ci/nm/', 'k')).toBe('ci/nm/k');
  });
});
