// Sample directory trees for tests, and a way to compare two trees on disk.
import { lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';

/** Writes a small tree with nested dirs, an executable, symlinks, an empty file, odd names and a 3 MiB file. */
export function writeSampleTree(root: string): void {
  mkdirSync(join(root, 'src', 'lib', 'deep', 'er'), { recursive: true });
  mkdirSync(join(root, 'empty-dir'), { recursive: true });
  writeFileSync(join(root, 'README.md'), '# sample\n');
  writeFileSync(join(root, 'src', 'main.c'), 'int main(void) { return 0; }\n');
  writeFileSync(join(root, 'src', 'lib', 'util.js'), 'module.exports = 42;\n');
  writeFileSync(join(root, 'src', 'lib', 'deep', 'er', 'x.txt'), 'deep\n');
  writeFileSync(join(root, 'src', 'dup-a.txt'), 'same content\n');
  writeFileSync(join(root, 'src', 'dup-b.txt'), 'same content\n');
  writeFileSync(join(root, 'empty.txt'), '');
  writeFileSync(join(root, 'name with spaces & ünïcödé.txt'), 'unicode name\n');
  writeFileSync(join(root, 'run.sh'), '#!/bin/sh\necho hi\n');
  chmodSync(join(root, 'run.sh'), 0o755);
  const big = Buffer.alloc(3 << 20);
  for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((i * 2654435761) >>> 0, i);
  writeFileSync(join(root, 'big.bin'), big);
  symlinkSync('src/main.c', join(root, 'link-to-main'));
  symlinkSync('does-not-exist', join(root, 'dangling'));
  symlinkSync('../README.md', join(root, 'src', 'up-link'));
}

/**
 * Two shared libraries in `dir`/lib: liba.so, which needs libhello.so and
 * finds it through its $ORIGIN rpath (as a pip wheel's bundled libraries
 * do); liba's run() prints `greeting` through it. `padBytes`: libhello's
 * size grows by that much (a blob a tier keeps on its own).
 */
export function writeOriginLibs(dir: string, greeting: string, padBytes = 0): void {
  mkdirSync(join(dir, 'lib'), { recursive: true });
  const pad = padBytes > 0 ? `const char pad[${padBytes}] = {1};\n` : '';
  writeFileSync(join(dir, 'hello.c'), `#include <stdio.h>\n${pad}void hello(void) { puts(${JSON.stringify(greeting)}); fflush(stdout); }\n`);
  writeFileSync(join(dir, 'a.c'), 'void hello(void);\nvoid run(void) { hello(); }\n');
  execFileSync('gcc', ['-shared', '-fPIC', '-o', join(dir, 'lib', 'libhello.so'), join(dir, 'hello.c')]);
  execFileSync('gcc', ['-shared', '-fPIC', '-o', join(dir, 'lib', 'liba.so'), join(dir, 'a.c'), `-L${join(dir, 'lib')}`, '-lhello', '-Wl,-rpath,$ORIGIN']);
}

export interface Snapshot {
  [path: string]: string;
}

/** The mode a tree records for a file on disk (only the owner's x bit counts). */
export const treeMode = (m: number): number => (m & 0o100 ? 0o755 : 0o644);

/**
 * Describes a tree on disk: for each path its kind, mode (as `mode` maps
 * it), size and content hash (files) or target (symlinks).
 */
export function snapshotTree(root: string, opts: { mode?: (m: number) => number } = {}): Snapshot {
  const modeOf = opts.mode ?? ((m: number) => m & 0o777);
  const out: Snapshot = {};
  const walk = (dir: string, rel: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const abs = join(dir, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(abs);
      if (st.isDirectory()) {
        out[r] = `dir`;
        walk(abs, r);
      } else if (st.isSymbolicLink()) {
        out[r] = `symlink -> ${readlinkSync(abs)}`;
      } else {
        const h = createHash('sha256').update(readFileSync(abs)).digest('hex');
        out[r] = `file ${modeOf(st.mode).toString(8)} ${st.size} ${h}`;
      }
    }
  };
  walk(root, '');
  return out;
}
