// `npm run bench`: every benchmark, one after another, each in its own
// process (so one's page cache and heap do not flatter the next), then a
// summary of the ratios each printed on its JSON line.
// Run one with `npm run bench -- store` (names: the files in bench/, and
// restore-project: bench/restore.ts on its 100 000-file / 1 GB dataset).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
/** Each benchmark: its file in bench/ (default: its name) and the environment it runs with. */
const VARIANTS: Record<string, { file?: string; env?: Record<string, string> }> = {
  'restore-project': { file: 'restore', env: { VRIFT_BENCH_DATASET: 'project' } },
};
const ALL = ['store', 'vdir-lookup', 'shim', 'write', 'restore', 'restore-project', 'pack-range', 'stream', 'crowd', 'peers', 'p2p-sim', 'swarm-crowd', 'bao'];
const chosen = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ALL;

const summary: Record<string, unknown> = {};
let failed = 0;
for (const name of chosen) {
  if (!ALL.includes(name)) {
    console.error(`bench: unknown benchmark ${JSON.stringify(name)} (one of: ${ALL.join(', ')})`);
    process.exit(2);
  }
  console.log(`\n=== bench/${name} ===`);
  const v = VARIANTS[name] ?? {};
  const r = spawnSync(process.execPath, [join(HERE, `${v.file ?? name}.js`)], { env: { ...process.env, ...v.env }, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', maxBuffer: 256 << 20 });
  process.stdout.write(r.stdout ?? '');
  if (r.status !== 0) {
    failed++;
    summary[name] = { failed: r.status ?? r.signal };
    continue;
  }
  // Each benchmark ends with one JSON line (possibly prefixed "JSON ").
  const last = (r.stdout ?? '').trim().split('\n').reverse().find((l) => /^(JSON )?\{/.test(l));
  summary[name] = last ? JSON.parse(last.replace(/^JSON /, '')) : { note: 'no JSON line' };
}
console.log(`\nJSON ${JSON.stringify({ bench: 'all', results: summary })}`);
process.exitCode = failed > 0 ? 1 : 0;
