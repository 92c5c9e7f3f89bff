// docs/configuration.md documents every config section with a table
// `| key | env | default | meaning |` under `## \`<section>\``. This test
// holds it to the schema (NODE_SECTIONS): every key has a row naming its
// environment variable, no row names a key or variable the schema lacks,
// and a default shown as a plain value (number, size, boolean, word) is the
// schema's (SectionSchema.defaults). A row may cover several keys
// (`host`, `announceHost`): its env and default cells then list one per key.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseSize } from '../../src/lib/units.js';
import { NODE_SECTIONS } from '../../src/node/ops/node-config.js';
import { ROOT } from '../helpers/cli.js';

interface Row {
  keys: string[];
  envs: string[];
  defaults: string[];
  line: string;
}

const DOC = readFileSync(join(ROOT, 'docs', 'configuration.md'), 'utf8');

/** Section key → the rows of its table. */
function tables(doc: string): Map<string, Row[]> {
  const out = new Map<string, Row[]>();
  let rows: Row[] | undefined;
  for (const line of doc.split('\n')) {
    const h = /^## `([^`]+)`\s*$/.exec(line);
    if (h) out.set(h[1]!, (rows = []));
    else if (line.startsWith('## ')) rows = undefined;
    else if (rows && line.startsWith('| `')) {
      const cells = line.split(/(?<!\\)\|/).slice(1, -1).map((c) => c.trim());
      const names = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
      rows.push({ keys: names(cells[0]!), envs: names(cells[1]!), defaults: cells[2]!.split(/\s*,\s*/), line });
    }
  }
  return out;
}

/** The value a default cell shows, if it is plain: its first word, without backticks. */
function shown(cell: string): string {
  return cell.split(/\s+/)[0]!.replace(/`/g, '');
}

function agrees(want: unknown, cell: string): boolean {
  const s = shown(cell);
  if (typeof want === 'boolean') return s === String(want);
  if (typeof want === 'number') {
    try {
      return parseSize(s) === want;
    } catch {
      return false;
    }
  }
  if (want === '') return s === 'none' || s === '—';
  return s === want;
}

const docTables = tables(DOC);

describe('docs/configuration.md', () => {
  it('has a section for each config section, and none for another', () => {
    expect([...docTables.keys()].sort()).toEqual(NODE_SECTIONS.map((s) => s.key).sort());
  });

  for (const section of NODE_SECTIONS) {
    describe(`## \`${section.key}\``, () => {
      const rows = docTables.get(section.key) ?? [];
      const envOf = (key: string) => Object.entries(section.env ?? {}).filter(([, k]) => k === key).map(([v]) => v);

      it('has a row for every key of the schema, and for no other key', () => {
        const documented = rows.flatMap((r) => r.keys);
        expect([...documented].sort()).toEqual([...section.schema.keys].sort());
      });

      it("names each key's environment variables, and no others", () => {
        const wrong = rows.flatMap((r) => {
          const want = r.keys.flatMap(envOf).sort();
          return JSON.stringify([...r.envs].sort()) === JSON.stringify(want) ? [] : [`${r.line}\n  env should be: ${want.join(', ') || '—'}`];
        });
        expect(wrong).toEqual([]);
      });

      it('shows the schema defaults', () => {
        const defaults = section.schema.defaults ?? {};
        const wrong = rows.flatMap((r) =>
          r.keys.flatMap((key, i) => {
            const want = defaults[key];
            if (!['number', 'boolean', 'string'].includes(typeof want)) return []; // none, a list, or computed
            const cell = r.keys.length === 1 ? r.defaults.join(', ') : r.defaults.length === r.keys.length ? r.defaults[i]! : undefined;
            return cell !== undefined && agrees(want, cell) ? [] : [`${key}: the schema's default is ${JSON.stringify(want)}, the doc shows ${JSON.stringify(cell ?? r.defaults.join(', '))}`];
          }),
        );
        expect(wrong).toEqual([]);
      });
    });
  }
});
