#!/usr/bin/env node
// Builds everything a fresh clone needs: the native addon (node-gyp) and
// src/gen/layout.ts from it, TypeScript, and the LD_PRELOAD shim (make).
// Runs from `npm install` (the `prepare` script) and before `npm test`;
// each step is incremental, so a second run costs about a second.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const only = process.argv[2]; // optional: native | ts | shim, or typecheck-tests (not part of a build)

function run(cmd, args, cwd = root) {
  const r = spawnSync(cmd, args, { cwd, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`vrift build: \`${cmd} ${args.join(' ')}\` failed (exit ${r.status ?? r.signal})`);
    process.exit(1);
  }
}

function bin(name) {
  return join(root, 'node_modules', '.bin', name);
}

// node-gyp downloads Node's headers unless told where they are; this machine
// (and CI) has no internet, so point it at the headers installed with Node.
function nodedirArgs() {
  if (process.env.npm_config_nodedir) return [`--nodedir=${process.env.npm_config_nodedir}`];
  const prefix = join(dirname(process.execPath), '..');
  return existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? [`--nodedir=${prefix}`] : [];
}

/** Removes compiled files whose source is gone (a moved or deleted module must not linger in dist/). */
function dropStale(dir, srcDir) {
  if (!existsSync(dir)) return;
  for (const name of readdirSync(dir)) {
    const out = join(dir, name);
    if (statSync(out).isDirectory()) {
      dropStale(out, join(srcDir, name));
      if (readdirSync(out).length === 0) rmSync(out, { recursive: true });
    } else {
      const base = name.replace(/\.(js|js\.map|d\.ts)$/, '');
      if (!existsSync(join(srcDir, `${base}.ts`))) rmSync(out);
    }
  }
}

// The addon first: TypeScript's layout constants are generated from it.
if ((!only || only === 'native') && existsSync(join(root, 'native', 'binding.gyp'))) {
  const dir = join(root, 'native');
  if (!existsSync(join(dir, 'build', 'Makefile'))) run(bin('node-gyp'), ['configure', ...nodedirArgs()], dir);
  run(bin('node-gyp'), ['build', '-j', '2', ...nodedirArgs()], dir);
  run(process.execPath, [join(root, 'scripts', 'gen-layout.mjs')]);
}
if (!only || only === 'ts') {
  run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json']);
  for (const d of ['src', 'bench']) dropStale(join(root, 'dist', d), join(root, d));
}
if (only === 'typecheck-tests') {
  // The tests run from source (vitest); this checks their types against the code they test.
  run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.test.json']);
}
if ((!only || only === 'shim') && existsSync(join(root, 'shim', 'Makefile'))) {
  run('make', ['-s', '-C', 'shim']);
}
