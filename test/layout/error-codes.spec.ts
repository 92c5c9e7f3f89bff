// One list of error codes (src/lib/error-codes.ts) and the code agree: every
// ERR_VRIFT_… string in src/ is in the list, every listed code is raised
// somewhere, each site's exit status is one the list gives, and
// docs/errors.md is what scripts/gen-errors-doc.mjs makes of the list.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, MOUNTFS_ERRNOS, type ErrorCode } from '../../src/lib/error-codes.js';
import { ROOT } from '../helpers/cli.js';

const SRC = join(ROOT, 'src');
const LIST = join(SRC, 'lib', 'error-codes.ts');

const files = (d: string): string[] => readdirSync(d).flatMap((n) => (statSync(join(d, n)).isDirectory() ? files(join(d, n)) : [join(d, n)]));
const sources = files(SRC)
  .filter((f) => f.endsWith('.ts') && f !== LIST)
  .map((f) => ({ file: relative(ROOT, f), text: readFileSync(f, 'utf8') }));
const listed = new Set<string>(Object.keys(ERROR_CODES));

/** The text of a call's arguments: from `open` (just after its '(') to the matching ')'. */
function argsOf(text: string, open: number): string {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') {
      if (depth === 0) return text.slice(open, i);
      depth--;
    }
  }
  return text.slice(open);
}

describe('error codes', () => {
  it('lists every ERR_VRIFT_ code src/ names (in strings and in comments)', () => {
    const unknown: string[] = [];
    for (const { file, text } of sources) {
      // A whole code: not a prefix (ERR_VRIFT_PROTO_*, `ERR_VRIFT_MOUNTFS_${errno}`) nor the pattern ERR_VRIFT_<AREA>_<COND>.
      for (const m of text.matchAll(/ERR_VRIFT_[A-Z0-9_]*[A-Z0-9](?![A-Za-z0-9_*<$])/g)) {
        if (!listed.has(m[0])) unknown.push(`${file}: ${m[0]}`);
      }
      // Codes built at run time: only the MOUNTFS family (its errnos are typed as MountErrno).
      for (const m of text.matchAll(/`(ERR_VRIFT_[A-Z0-9_]*)\$\{/g)) {
        if (m[1] !== 'ERR_VRIFT_MOUNTFS_') unknown.push(`${file}: ${m[1]}\${…}`);
      }
    }
    expect(unknown).toEqual([]);
  });

  it('raises every code it lists', () => {
    const all = sources.map((s) => s.text).join('\n');
    const writes = readFileSync(join(SRC, 'node', 'mount', 'writes.ts'), 'utf8');
    const unused = Object.keys(ERROR_CODES).filter((code) => {
      if (new RegExp(`['"\`]${code}['"\`]`).test(all)) return false;
      const errno = code.startsWith('ERR_VRIFT_MOUNTFS_') ? code.slice('ERR_VRIFT_MOUNTFS_'.length) : undefined;
      return !(errno && (MOUNTFS_ERRNOS as readonly string[]).includes(errno) && writes.includes(`'${errno}'`));
    });
    expect(unused).toEqual([]);
  });

  it('gives each code an exit status the list names', () => {
    const wrong: string[] = [];
    for (const { file, text } of sources) {
      for (const m of text.matchAll(/new VriftError\(\s*'(ERR_VRIFT_[A-Z0-9_]+)'/g)) {
        const args = argsOf(text, m.index + 'new VriftError('.length);
        const given = /exitCode:\s*([^,}\s]+)/.exec(args)?.[1];
        if (given !== undefined && !/^\d+$/.test(given)) continue; // computed at run time
        const exit = given === undefined ? 2 : Number(given);
        const allowed = [ERROR_CODES[m[1] as ErrorCode]?.exit ?? []].flat();
        if (!allowed.includes(exit)) wrong.push(`${file}: ${m[1]} exits ${exit}, the list says ${allowed.join(', ')}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('has an up-to-date docs/errors.md (run `node scripts/gen-errors-doc.mjs` after changing the list)', async () => {
    // The script's own renderer over the list as this source has it. (Running the script
    // would rebuild dist/ under the other tests of the suite, which import it: they failed
    // with "does not provide an export named …" while tsc rewrote it.)
    const script = pathToFileURL(join(ROOT, 'scripts', 'gen-errors-doc.mjs')).href;
    const { renderErrorsDoc } = (await import(script)) as { renderErrorsDoc: (codes: typeof ERROR_CODES) => string };
    expect(readFileSync(join(ROOT, 'docs', 'errors.md'), 'utf8')).toBe(renderErrorsDoc(ERROR_CODES));
  });

  it('writes each code as ERR_VRIFT_<AREA>_<COND> with a meaning and a fix', () => {
    for (const [code, { meaning, fix }] of Object.entries(ERROR_CODES)) {
      expect(code).toMatch(/^ERR_VRIFT_[A-Z0-9]+(_[A-Z0-9]+)*$/);
      expect(meaning.length, code).toBeGreaterThan(0);
      expect(fix.length, code).toBeGreaterThan(0);
    }
  });
});
