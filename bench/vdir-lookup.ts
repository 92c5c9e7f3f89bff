// VDir lookups vs the kernel's stat(), in one run (the baseline is measured
// here, not remembered). Builds a 100 000-entry node_modules-like tree as a
// VDir and as real files in a fresh temp directory, then runs the C program
// shim/build/vdir-bench on both. Prints a table and one JSON line.
//
//   node dist/bench/vdir-lookup.js [--entries N] [--rounds R]
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hashBuffer } from '../src/lib/digest.js';
import { packageRoot } from '../src/lib/native.js';
import { encodeUpserts, S_IFDIR, S_IFLNK, S_IFREG, VDir, type VDirEntryInput } from '../src/node/mount/vdir.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
}
const N = arg('--entries', 100_000);
const ROUNDS = arg('--rounds', 5);
const say = (msg: string) => process.stderr.isTTY && process.stderr.write(`\r\x1b[K${msg}`);

interface Node {
  entry: VDirEntryInput;
  content?: Buffer;
}

/** A deterministic node_modules-like tree of exactly `n` entries (parents first). */
function buildTree(n: number): Node[] {
  const out: Node[] = [];
  const add = (node: Node) => out.length < n && out.push(node);
  const dir = (path: string) => add({ entry: { path, mode: S_IFDIR | 0o755, size: 0, mtimeSec: 1700000000 } });
  const file = (path: string, exec = false) => {
    const content = Buffer.from(`// ${path}\n${'x'.repeat((path.length * 37) % 300)}\n`);
    add({ entry: { path, mode: S_IFREG | (exec ? 0o755 : 0o644), size: content.length, mtimeSec: 1700000000, digest: hashBuffer(content) }, content });
  };
  dir('node_modules');
  dir('node_modules/.bin');
  for (let p = 0; out.length < n; p++) {
    const pkg = `node_modules/${p % 7 === 0 ? `@scope-${p % 50}-` : ''}pkg-${p.toString().padStart(4, '0')}`;
    dir(pkg);
    file(`${pkg}/package.json`);
    file(`${pkg}/index.js`, p % 11 === 0);
    file(`${pkg}/README.md`);
    dir(`${pkg}/lib`);
    for (let k = 0; k < 30; k++) file(`${pkg}/lib/module-${k.toString().padStart(2, '0')}.js`);
    dir(`${pkg}/lib/util`);
    for (let k = 0; k < 20; k++) file(`${pkg}/lib/util/helper-${k}.js`);
    dir(`${pkg}/dist`);
    for (let k = 0; k < 15; k++) file(`${pkg}/dist/bundle-${k}.min.js`);
    add({ entry: { path: `node_modules/.bin/cmd-${p}`, mode: S_IFLNK | 0o777, size: 0, mtimeSec: 1700000000, target: `../${pkg.slice(13)}/index.js` } });
  }
  return out;
}

function materialize(root: string, nodes: Node[]): void {
  for (const { entry: e, content } of nodes) {
    const path = join(root, e.path);
    if ((e.mode & 0o170000) === S_IFDIR) mkdirSync(path);
    else if ((e.mode & 0o170000) === S_IFLNK) symlinkSync(e.target!, path);
    else writeFileSync(path, content!, { mode: e.mode & 0o777 });
  }
}

const tmp = mkdtempSync(join(tmpdir(), 'vrift-bench-vdir-'));
const vdirs: VDir[] = [];
try {
  say('building tree…');
  const nodes = buildTree(N);
  const entries = nodes.map((x) => x.entry);
  const pathBytes = entries.reduce((s, e) => s + Buffer.byteLength(e.path), 0);
  say('materializing real files…');
  const real = join(tmp, 'tree');
  mkdirSync(real);
  materialize(real, nodes);
  const pathsFile = join(tmp, 'paths.txt');
  writeFileSync(pathsFile, entries.map((e) => e.path).join('\n') + '\n');

  say('mounting…');
  const name = `bench-${process.pid}`;
  // The mount is timed cold (as a daemon mounts), the encoding alone after it.
  let t = performance.now();
  const vdir = VDir.create(name, { casRoot: join(tmp, 'cas'), mountRoot: real, ...VDir.sizeFor(entries) });
  vdirs.push(vdir);
  vdir.apply(entries);
  const mountMs = performance.now() - t;
  t = performance.now();
  encodeUpserts(entries);
  const encodeMs = performance.now() - t;
  const st = vdir.stats();
  // The same tree into a VDir left at its default size: it grows by itself.
  t = performance.now();
  const grown = VDir.create(`${name}-grown`, { casRoot: join(tmp, 'cas'), mountRoot: real });
  vdirs.push(grown);
  grown.apply(entries);
  const grownMs = performance.now() - t;
  const gst = grown.stats();
  grown.close();

  say('measuring…');
  const bin = join(packageRoot(), 'shim', 'build', 'vdir-bench');
  const r = spawnSync(bin, [st.shmPath, real, pathsFile, '--rounds', String(ROUNDS)], { encoding: 'utf8' });
  say('');
  if (r.status !== 0) throw new Error(`vdir-bench failed (exit ${r.status}): ${r.stderr.trim()}`);
  type Pattern = { queries: number; vdir_hit_ns: number; vdir_miss_ns: number; stat_ns: number; lstat_ns: number; stat_miss_ns: number };
  const c = JSON.parse(r.stdout) as { dirs: number; vdir_list_ns: number; readdir_ns: number; random: Pattern; tree: Pattern; hot: Pattern };
  const perEntry = (st.mappedBytes - pathBytes) / st.entries;
  const grownPerEntry = (gst.mappedBytes - pathBytes) / gst.entries;
  const speedup = (p: Pattern) => +(p.stat_ns / p.vdir_hit_ns).toFixed(1);
  const result = {
    bench: 'vdir-lookup',
    entries: st.entries,
    dirs: c.dirs,
    rounds: ROUNDS,
    mount_ms: +mountMs.toFixed(1),
    encode_ms: +encodeMs.toFixed(1),
    grown_mount_ms: +grownMs.toFixed(1),
    random: { ...c.random, speedup_vs_stat: speedup(c.random) },
    tree: { ...c.tree, speedup_vs_stat: speedup(c.tree) },
    hot: { ...c.hot, speedup_vs_stat: speedup(c.hot) },
    vdir_list_ns: c.vdir_list_ns,
    readdir_ns: c.readdir_ns,
    mapped_bytes: st.mappedBytes,
    path_bytes: pathBytes,
    bytes_per_entry: +perEntry.toFixed(2),
    grown_bytes_per_entry: +grownPerEntry.toFixed(2),
  };
  const w = 30;
  const row = (k: string, v: string) => console.log(`  ${k.padEnd(w)}  ${v}`);
  console.log(`VDir lookup benchmark: ${st.entries} entries (root included, ${c.dirs} dirs); median of ${ROUNDS} rounds`);
  row('mount: create + apply (sized)', `${result.mount_ms} ms (the TS batch encoding alone, warm: ${result.encode_ms} ms)`);
  row('mount: default size, grows', `${result.grown_mount_ms} ms`);
  console.log(`  ${'ns per call'.padEnd(w)}  ${['VDir hit', 'stat()', 'lstat()', 'speedup', 'VDir miss', 'stat() miss'].map((h) => h.padStart(12)).join('')}`);
  const names: [keyof typeof c & ('random' | 'tree' | 'hot'), string][] = [
    ['hot', 'hot set (1000 paths, repeated)'],
    ['tree', 'all paths, tree order'],
    ['random', 'all paths, shuffled'],
  ];
  for (const [key, label] of names) {
    const p = c[key];
    const cells = [p.vdir_hit_ns, p.stat_ns, p.lstat_ns, `${speedup(p)}x`, p.vdir_miss_ns, p.stat_miss_ns];
    console.log(`  ${label.padEnd(w)}  ${cells.map((x) => String(x).padStart(12)).join('')}`);
  }
  row('list a directory', `VDir ${c.vdir_list_ns} ns vs opendir+readdir+closedir ${c.readdir_ns} ns`);
  row('VDir bytes/entry, excl. paths', `${result.bytes_per_entry} (goal < 64; ${(st.mappedBytes / 2 ** 20).toFixed(1)} MiB mapped, ${(pathBytes / 2 ** 20).toFixed(1)} MiB of paths)`);
  row('  same, default size grown', `${result.grown_bytes_per_entry}`);
  console.log(JSON.stringify(result));
} finally {
  for (const v of vdirs) v.close();
  rmSync(tmp, { recursive: true, force: true });
}
