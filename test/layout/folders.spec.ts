// The layout is the architecture (docs/architecture.md): src/ is made of
// folders, one per concept, and imports only go down. This test reads every
// import under src/ and fails on a folder that imports a folder above it
// (an import circle between folders), naming the files that do.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/cli.js';

const SRC = join(ROOT, 'src');

/** The concept a file belongs to: src/node/<x>/… → node/<x>; src/tiers/**​ → tiers; src/<x>/… → <x>. */
export function folderOf(file: string): string {
  const parts = relative(SRC, file).split('/');
  if (parts[0] === 'node') return `node/${parts[1]}`;
  return parts[0]!;
}

function sources(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) sources(p, out);
    else if (name.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** folder → folder → the first file pair that makes the edge. */
function folderGraph(): Map<string, Map<string, string>> {
  const graph = new Map<string, Map<string, string>>();
  for (const file of sources(SRC)) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
      const target = resolve(dirname(file), m[1]!).replace(/\.js$/, '.ts');
      const a = folderOf(file);
      const b = folderOf(target);
      if (a === b) continue;
      if (!graph.has(a)) graph.set(a, new Map());
      const edges = graph.get(a)!;
      if (!edges.has(b)) edges.set(b, `${relative(ROOT, file)} → ${relative(ROOT, target)}`);
    }
  }
  return graph;
}

/** Every cycle as a list of "file → file" steps (each cycle once). */
function cycles(graph: Map<string, Map<string, string>>): string[][] {
  const found: string[][] = [];
  const seen = new Set<string>();
  const walk = (start: string, at: string, path: string[], steps: string[]): void => {
    for (const [next, why] of graph.get(at) ?? []) {
      if (next === start) {
        const key = [...path].sort().join(',');
        if (!seen.has(key)) {
          seen.add(key);
          found.push([...steps, why]);
        }
      } else if (!path.includes(next) && next > start) walk(start, next, [...path, next], [...steps, why]);
    }
  };
  for (const f of graph.keys()) walk(f, f, [f], []);
  return found;
}

/**
 * The layers, bottom first: a folder may import only folders before it.
 * (The daemon sits above the tiers; the CLI above everything it asks.)
 */
const LAYERS = [
  'gen',
  'lib',
  'node/config',
  'node/metrics',
  'node/store',
  'node/archive',
  'node/control',
  'node/stream',
  'node/mount',
  'node/swarm',
  'node/cluster',
  'tiers',
  'node/ops',
  'node/daemon',
  'cli',
];

describe('source layout', () => {
  it('imports only go down the layers', () => {
    const upward: string[] = [];
    for (const [from, edges] of folderGraph()) {
      for (const [to, why] of edges) {
        if (!LAYERS.includes(from) || !LAYERS.includes(to)) upward.push(`${why}: a folder the layers do not list`);
        else if (LAYERS.indexOf(to) > LAYERS.indexOf(from)) upward.push(`${why}: ${from} is below ${to}`);
      }
    }
    expect(upward).toEqual([]);
  });

  it('has no import circle between folders', () => {
    expect(cycles(folderGraph())).toEqual([]);
  });

  it('has one door for bytes becoming blobs: only store/admission.ts calls the CAS writers', () => {
    // The writers themselves (cas.ts, blob-writer.ts, blob-batch.ts, the addon's declaration) and the door may use them; nothing else.
    const allowed = new Set([...['admission.ts', 'cas.ts', 'blob-writer.ts', 'blob-batch.ts'].map((f) => join(SRC, 'node', 'store', f)), join(SRC, 'lib', 'native.ts')]);
    const writers = /\bcas\.writer\(|\.putBuffer\(|\bwriteBlobs\(|\bwriteVerifiedBlobs\(|\.putFile\(/;
    const offenders = sources(SRC)
      .filter((f) => !allowed.has(f))
      .flatMap((f) =>
        readFileSync(f, 'utf8')
          .split('\n')
          .map((line, i) => ({ line, where: `${relative(ROOT, f)}:${i + 1}` }))
          .filter(({ line }) => writers.test(line) && !line.trim().startsWith('//') && !/objects\.putBuffer/.test(line))
          .map(({ where, line }) => `${where}: ${line.trim()}`),
      );
    expect(offenders).toEqual([]);
  });

  it('keeps the node flat of files: everything is in a concept folder', () => {
    const loose = readdirSync(join(SRC, 'node')).filter((n) => n.endsWith('.ts'));
    expect(loose).toEqual([]);
  });
});
