// The CI recipes in docs/ci.md (issue 15), run as they are written: the
// GitHub Actions steps (their `if:` and `run:`, with $GITHUB_OUTPUT) and the
// GitLab CI script lines (one shell, `set -e`), on cold runners (a new
// workspace and VRIFT_HOME each time) against a real s3rver. `vrift` and
// `npm` are put on PATH: vrift is this checkout's CLI, npm a fake whose
// `ci` builds node_modules from the lockfile and logs that it ran.
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBounded } from '../helpers/bounded.js';
import { ROOT, VRIFT_BIN } from '../helpers/cli.js';
import { startS3, tierEnv, type S3Server } from '../helpers/s3-server.js';
import { tempDir } from '../helpers/tmp.js';

let s3: S3Server;
let bin: string;

/** The fenced block after `<!-- recipe: name -->` in docs/ci.md. */
function recipe(name: string): string {
  const doc = readFileSync(join(ROOT, 'docs', 'ci.md'), 'utf8');
  const at = doc.indexOf(`<!-- recipe: ${name} -->`);
  expect(at, `docs/ci.md has a recipe "${name}"`).toBeGreaterThan(0);
  const block = /```yaml\n([\s\S]*?)```/.exec(doc.slice(at))!;
  return block[1]!;
}

interface Step {
  name: string;
  id?: string;
  if?: string;
  run: string;
}

/** The steps of a GitHub Actions recipe (name, id, if, run: a line or a `|` block). */
function githubSteps(yaml: string): Step[] {
  const steps: Step[] = [];
  const lines = yaml.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = /^(\s*)- name: (.*)$/.exec(lines[i]!);
    if (!start) continue;
    const step: Partial<Step> = { name: start[2]! };
    const indent = start[1]!.length + 2;
    for (i++; i < lines.length && (lines[i]!.length === 0 || lines[i]!.search(/\S/) >= indent); i++) {
      const m = /^\s*(id|if|run): ?(.*)$/.exec(lines[i]!);
      if (!m) continue;
      if (m[1] === 'run' && m[2] === '|') {
        const body: string[] = [];
        for (i++; i < lines.length && (lines[i]!.length === 0 || lines[i]!.search(/\S/) > indent); i++) body.push(lines[i]!.slice(indent + 2));
        i--;
        step.run = body.join('\n');
      } else (step as Record<string, string>)[m[1]!] = m[2]!;
    }
    i--;
    steps.push(step as Step);
  }
  return steps;
}

beforeAll(async () => {
  s3 = await startS3(['vrift-ci-recipes']);
  bin = tempDir();
  writeFileSync(join(bin, 'vrift'), `#!/bin/sh\nexec "${process.execPath}" "${VRIFT_BIN}" "$@"\n`);
  writeFileSync(
    join(bin, 'npm'),
    '#!/bin/sh\n[ "$1" = ci ] || { echo "fake npm: only ci" >&2; exit 2; }\necho ci >> "$NPM_LOG"\nrm -rf node_modules # as npm ci does\nmkdir -p node_modules/dep\ncp package-lock.json node_modules/dep/built-from.json\necho "module.exports = 1;" > node_modules/dep/index.js\n',
  );
  chmodSync(join(bin, 'vrift'), 0o755);
  chmodSync(join(bin, 'npm'), 0o755);
});
afterAll(async () => {
  await s3?.stop();
});

/** A cold runner: a new checkout with this lockfile, a new VRIFT_HOME. */
function runner(lock: string) {
  const ws = tempDir();
  writeFileSync(join(ws, 'package-lock.json'), lock);
  const env: NodeJS.ProcessEnv = { ...process.env, ...tierEnv({ s3 }), PATH: `${bin}:${process.env.PATH}`, VRIFT_HOME: join(tempDir(), 'home'), NPM_LOG: join(ws, '.npm-log') };
  delete env.LD_PRELOAD;
  const npmRan = () => existsSync(join(ws, '.npm-log'));
  const installed = () => readFileSync(join(ws, 'node_modules', 'dep', 'built-from.json'), 'utf8');
  return { ws, env, npmRan, installed };
}

/** Runs the GitHub recipe's steps as Actions would (bash -e, $GITHUB_OUTPUT, `if:` on step outputs); returns the outputs. */
function runGithub(lock: string) {
  const r = runner(lock);
  const outputs: Record<string, Record<string, string>> = {};
  for (const step of githubSteps(recipe('github'))) {
    if (step.if !== undefined) {
      const m = /^steps\.(\w+)\.outputs\.(\w+) != '(\w+)'$/.exec(step.if);
      expect(m, `a condition this test knows: ${step.if}`).not.toBeNull();
      if (outputs[m![1]!]?.[m![2]!] === m![3]) continue;
    }
    const out = join(tempDir(), 'github-output');
    writeFileSync(out, '');
    const script = step.run.replaceAll('${{ github.repository }}', 'acme/app');
    const res = runBounded('bash', ['-e', '-c', script], { cwd: r.ws, env: { ...r.env, GITHUB_OUTPUT: out }, timeoutMs: 120_000 });
    expect(res.code, `step "${step.name}": ${res.stderr}`).toBe(0);
    if (step.id) outputs[step.id] = Object.fromEntries(readFileSync(out, 'utf8').trim().split('\n').filter(Boolean).map((l) => l.split('=') as [string, string]));
  }
  return { ...r, hit: outputs.vrift?.hit };
}

/** Runs the GitLab recipe's script lines in one shell (set -e), as a GitLab runner does. */
function runGitlab(lock: string) {
  const r = runner(lock);
  const lines = recipe('gitlab')
    .split('\n')
    .filter((l) => /^\s+- /.test(l))
    .map((l) => l.replace(/^\s+- /, ''));
  expect(lines.length).toBeGreaterThan(2);
  const res = runBounded('bash', ['-e', '-c', `${lines.join('\n')}\necho "HIT=$HIT"`], { cwd: r.ws, env: { ...r.env, CI_PROJECT_PATH: 'acme/gitlab-app' }, timeoutMs: 120_000 });
  expect(res.code, res.stderr).toBe(0);
  return { ...r, hit: /HIT=(\w+)/.exec(res.stdout)?.[1] };
}

describe('the CI recipes in docs/ci.md, run as written', () => {
  for (const [name, run] of [
    ['GitHub Actions', runGithub],
    ['GitLab CI', runGitlab],
  ] as const) {
    it(`${name}: a cold cache builds and saves; the next runner restores it exactly; a new lockfile starts from the last cache`, () => {
      const first = run('{"lockfileVersion": 3, "v": 1}\n');
      expect(first.hit).toBe('miss');
      expect(first.npmRan()).toBe(true);

      const second = run('{"lockfileVersion": 3, "v": 1}\n');
      expect(second.hit).toBe('exact');
      expect(second.npmRan()).toBe(false);
      expect(second.installed()).toBe('{"lockfileVersion": 3, "v": 1}\n');

      const bumped = run('{"lockfileVersion": 3, "v": 2}\n');
      expect(bumped.hit).toBe('partial');
      expect(bumped.npmRan()).toBe(true);
      expect(bumped.installed()).toBe('{"lockfileVersion": 3, "v": 2}\n');

      const again = run('{"lockfileVersion": 3, "v": 2}\n');
      expect(again.hit).toBe('exact');
      expect(again.npmRan()).toBe(false);
    });
  }
});
