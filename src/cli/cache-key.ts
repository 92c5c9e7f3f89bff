// Cache keys for CI: `--key-from package-lock.json` turns the files a
// directory is built from into the last component of its ref, so a
// changed lockfile (or another OS or CPU) is a different cache entry.
//
// The key is the BLAKE3-256 digest (64 hex) of exactly these bytes:
//
//   "vrift-cache-key 1\n"
//   "platform <process.platform>\n"          e.g. linux, darwin, win32
//   "arch <process.arch>\n"                  e.g. x64, arm64
//   then for each file, in byte order of its path:
//   "file <path> <size>\n" <the file's bytes> "\n"
//
// <path> is the file's path relative to the working directory with "/"
// separators, as the user named it (so swapping two files' contents, or
// moving one, changes the key). Documented in docs/ci.md.
import { readFileSync, statSync } from 'node:fs';
import { relative, resolve, sep } from 'node:path';
import { StreamHasher, type Digest } from '../lib/digest.js';
import { errnoOf, VriftError } from '../lib/errors.js';

export interface CacheKey {
  key: Digest;
  platform: string;
  arch: string;
  files: { path: string; size: number }[];
}

export interface CacheKeyOptions {
  cwd?: string;
  platform?: string;
  arch?: string;
}

export function cacheKey(paths: string[], opts: CacheKeyOptions = {}): CacheKey {
  const cwd = opts.cwd ?? process.cwd();
  const platform = opts.platform ?? process.platform;
  const arch = opts.arch ?? process.arch;
  if (paths.length === 0) {
    throw new VriftError('ERR_VRIFT_KEY_FILE', '--key-from needs at least one file', { hint: 'e.g. --key-from package-lock.json' });
  }
  const files = [...new Set(paths.map((p) => relative(cwd, resolve(cwd, p)).split(sep).join('/')))].sort((a, b) =>
    Buffer.compare(Buffer.from(a), Buffer.from(b)),
  );
  const h = new StreamHasher();
  h.update(Buffer.from(`vrift-cache-key 1\nplatform ${platform}\narch ${arch}\n`));
  const listed: CacheKey['files'] = [];
  for (const path of files) {
    const abs = resolve(cwd, path);
    let bytes: Buffer;
    try {
      if (statSync(abs).isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
      bytes = readFileSync(abs);
    } catch (e) {
      const why = errnoOf(e) === 'ENOENT' ? 'no such file' : errnoOf(e) === 'EISDIR' ? 'is a directory, not a file' : `cannot be read (${errnoOf(e) ?? (e as Error).message})`;
      throw new VriftError('ERR_VRIFT_KEY_FILE', `--key-from ${path}: ${why}`, {
        hint: 'name the files the directory is built from, e.g. --key-from package-lock.json',
      });
    }
    h.update(Buffer.from(`file ${path} ${bytes.byteLength}\n`));
    h.update(bytes);
    h.update(Buffer.from('\n'));
    listed.push({ path, size: bytes.byteLength });
  }
  return { key: h.digest(), platform, arch, files: listed };
}

/** The ref a keyed save or restore uses: `<ref>/<key>`. */
export function refWithKey(ref: string, key: Digest): string {
  return ref.endsWith('/') ? `${ref}${key}` : `${ref}/${key}`;
}
