// Programs the shim cannot see (static binaries, Go programs) on mounts:
// they run in a private mount namespace where each mount is an overlayfs
// over a link farm of it, and what they write is merged back into the
// mount when they exit (docs/shim.md, "Programs the shim cannot see").
// Real programs: TypeScript 7's tsgo (a static Go binary) and a static C
// file tool (test/c/static-fs.c).
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/node/control/client.js';
import { F, Msg } from '../../src/node/control/protocol.js';
import { runBounded } from '../helpers/bounded.js';
import { ROOT, vrift, vriftJson } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { removeVDirObject, type Result } from './harness.js';

const base = tempDir('vrift-static-');
const home = join(base, 'home');
const proj = join(base, 'proj'); // a TS project whose node_modules and out/ are mounts
const copy = join(base, 'copy'); // the same project on plain disk
const data = join(base, 'data'); // a mount for the C tool
const dataCopy = join(base, 'data-copy');
const SFS = join(base, 'static-fs');
const TSGO_PKGS = ['native-preview', 'native-preview-linux-x64'];
const trees: Record<'nm' | 'empty' | 'data', string> = { nm: '', empty: '', data: '' };

const env = (): NodeJS.ProcessEnv => {
  const e: NodeJS.ProcessEnv = { ...process.env, VRIFT_HOME: home, LC_ALL: 'C', TZ: 'UTC' };
  delete e.LD_PRELOAD;
  return e;
};
const cli = (args: string[]): Result => vrift(args, { home, timeoutMs: 120_000 });

function spawnRes(file: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Result {
  return runBounded(file, args, { env: opts.env ?? env(), cwd: opts.cwd, timeoutMs: 120_000 });
}

/** `vrift run` with the given mounts, of a command (argv). */
function run(mounts: [string, string][], argv: string[], cwd?: string): Result {
  const m = mounts.flatMap(([dir, tree]) => ['--mount', `${dir}=${tree}`]);
  return spawnRes(process.execPath, [join(ROOT, 'bin', 'vrift.js'), 'run', ...m, '--', ...argv], { cwd });
}
const projMounts = (): [string, string][] => [
  [join(proj, 'node_modules'), trees.nm],
  [join(proj, 'out'), trees.empty],
];

/** node_modules of a project using TypeScript 7: the launcher package, its platform package, .bin/tsgo. */
function writeNodeModules(dir: string): void {
  mkdirSync(join(dir, '@typescript'), { recursive: true });
  for (const p of TSGO_PKGS) cpSync(join(ROOT, 'node_modules', '@typescript', p), join(dir, '@typescript', p), { recursive: true, verbatimSymlinks: true });
  mkdirSync(join(dir, '.bin'));
  symlinkSync('../@typescript/native-preview/bin/tsgo', join(dir, '.bin', 'tsgo'));
}

function writeProject(dir: string): void {
  mkdirSync(join(dir, 'src'), { recursive: true });
  writeFileSync(join(dir, 'package.json'), '{ "name": "p", "type": "module" }\n');
  writeFileSync(
    join(dir, 'tsconfig.json'),
    '{ "compilerOptions": { "target": "es2022", "module": "nodenext", "rootDir": "src", "outDir": "out", "strict": true, "declaration": true }, "include": ["src"] }\n',
  );
  writeFileSync(join(dir, 'src', 'a.ts'), "import { twice, Box } from './b.js';\nexport const answer: number = twice(21);\nconsole.log(`answer ${answer} ${new Box('x').get()}`);\n");
  writeFileSync(join(dir, 'src', 'b.ts'), 'export function twice(x: number): number { return 2 * x; }\nexport class Box<T> { constructor(readonly v: T) {} get(): T { return this.v; } }\n');
}

function writeData(dir: string): void {
  mkdirSync(join(dir, 'in', 'deep'), { recursive: true });
  mkdirSync(join(dir, 'old', 'sub'), { recursive: true });
  writeFileSync(join(dir, 'in', 'a.txt'), 'alpha\n');
  writeFileSync(join(dir, 'in', 'deep', 'b.txt'), 'beta\n');
  writeFileSync(join(dir, 'old', 'x'), 'x\n');
  writeFileSync(join(dir, 'old', 'sub', 'y'), 'y\n');
  writeFileSync(join(dir, 'gone.txt'), 'gone\n');
  symlinkSync('in/a.txt', join(dir, 'link'));
}

/** Every file under dir: "path\tcontent" or "path -> target" or "path/" (sorted). */
function listing(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(dir, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(`${p}/`, ...listing(dir, p));
    else if (e.isSymbolicLink()) out.push(`${p} -> ${readlinkSync(join(dir, p))}`);
    else out.push(`${p}\t${(statSync(join(dir, p)).mode & 0o100) !== 0 ? 'x ' : ''}${readFileSync(join(dir, p), 'utf8')}`);
  }
  return out;
}

beforeAll(() => {
  execFileSync('gcc', ['-static', '-O2', '-Wall', '-o', SFS, join(ROOT, 'test', 'c', 'static-fs.c')]);
  const nm = join(base, 'src-nm');
  writeNodeModules(nm);
  mkdirSync(join(base, 'src-empty'));
  writeData(join(base, 'src-data'));
  trees.nm = vriftJson<{ tree: string }>(['ingest', nm], { home }).tree;
  trees.empty = vriftJson<{ tree: string }>(['ingest', join(base, 'src-empty')], { home }).tree;
  trees.data = vriftJson<{ tree: string }>(['ingest', join(base, 'src-data')], { home }).tree;
  const up = cli(['up', '--detach']);
  if (up.code !== 0) throw new Error(`vrift up: ${up.stderr}`);
  writeProject(proj);
  writeProject(copy);
  writeNodeModules(join(copy, 'node_modules'));
  writeData(dataCopy);
  mkdirSync(data); // an empty mount point: the tests start programs in it
}, 180_000);

afterAll(() => {
  for (const m of [join(proj, 'node_modules'), join(proj, 'out'), data]) {
    cli(['unmount', m]);
    removeVDirObject(home, m);
  }
  cli(['down']);
});

describe('tsgo (TypeScript 7, a static Go binary) on a mounted node_modules', () => {
  it('compiles to the same output as on a plain copy; the output is in the mount for shimmed programs and in vrift snapshot', () => {
    const plain = spawnRes(join(copy, 'node_modules', '.bin', 'tsgo'), ['-p', '.'], { cwd: copy });
    expect(plain.stderr).toBe('');
    expect(plain.code).toBe(0);
    const want = listing(join(copy, 'out'));
    expect(want).toContain('a.js\timport { twice, Box } from \'./b.js\';\nexport const answer = twice(21);\nconsole.log(`answer ${answer} ${new Box(\'x\').get()}`);\n');

    const t0 = performance.now();
    const r = run(projMounts(), ['npx', '--no-install', 'tsgo', '-p', '.'], proj);
    const mountMs = performance.now() - t0;
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    // nothing on the real disk under the mount points
    expect(readdirSync(join(proj, 'out'))).toEqual([]);
    expect(readdirSync(join(proj, 'node_modules'))).toEqual([]);

    // shimmed programs see the outputs in the mount
    const seen = run(projMounts(), ['sh', '-c', 'for f in out/*; do printf "%s\\t" "${f#out/}"; cat "$f"; done; node out/a.js'], proj);
    expect(seen.stderr).toBe('');
    expect(seen.stdout).toBe(want.join('') + 'answer 42 x\n');

    // vrift snapshot saves them
    const snap = vriftJson<{ tree: string }>(['snapshot', join(proj, 'out'), '--json'], { home });
    const back = join(tempDir(), 'out');
    expect(cli(['materialize', snap.tree, back]).code).toBe(0);
    expect(listing(back)).toEqual(want);

    const t1 = performance.now();
    expect(spawnRes(join(copy, 'node_modules', '.bin', 'tsgo'), ['-p', '.'], { cwd: copy }).code).toBe(0);
    console.log(`tsgo -p . : mount (vrift run + npx) ${mountMs.toFixed(0)} ms, plain copy ${(performance.now() - t1).toFixed(0)} ms`);
  });

  it('run directly by vrift run (the platform binary from the real disk, node_modules mounted) and by a shimmed shell; exit status passes through', () => {
    // a type error: exit 2 and the diagnostic, on the mount as on the copy
    writeFileSync(join(proj, 'src', 'bad.ts'), 'export const n: number = "not a number";\n');
    writeFileSync(join(copy, 'src', 'bad.ts'), 'export const n: number = "not a number";\n');
    try {
      const exe = join(copy, 'node_modules', '@typescript', 'native-preview-linux-x64', 'lib', 'tsgo');
      const plain = spawnRes(exe, ['-p', '.', '--noEmit'], { cwd: copy });
      expect(plain.code).not.toBe(0);
      expect(plain.stdout).toContain('TS2322');
      const direct = run(projMounts(), [exe, '-p', '.', '--noEmit'], proj);
      expect(direct).toEqual(plain);
      const viaShell = run(projMounts(), ['sh', '-c', 'node_modules/@typescript/native-preview-linux-x64/lib/tsgo -p . --noEmit; echo "status $?"'], proj);
      expect(viaShell.stdout).toBe(`${plain.stdout}status ${plain.code}\n`);
    } finally {
      execFileSync('rm', ['-f', join(proj, 'src', 'bad.ts'), join(copy, 'src', 'bad.ts')]);
    }
  });
});

describe('a static C program on a mount', () => {
  const ops = [
    'cat:in/a.txt',
    'cat:link',
    'write:in/new.txt=made by a static program',
    'append:in/deep/b.txt=more',
    'rm:gone.txt',
    'rm:old/sub/y',
    'rmdir:old/sub',
    'rm:old/x',
    'rmdir:old',
    'mkdir:old', // opaque: the old children must not come back
    'write:old/fresh=fresh',
    'mkdir:out',
    'ln:../in/new.txt=out/ln',
    'mv:in/deep/b.txt=moved.txt', // (a directory of the mount cannot be renamed in there: EXDEV, as across filesystems)
    'chmodx:in/new.txt',
    'ls:.',
    'ls:old',
  ];

  it('reads and writes the mount like a copy (files, appends, deletes, opaque dirs, symlinks, renames); the result is the mount for shimmed programs', () => {
    const plain = spawnRes(SFS, ops, { cwd: dataCopy });
    expect(plain.stderr).toBe('');
    expect(plain.code).toBe(0);
    const r = run([[data, trees.data]], [SFS, ...ops], data);
    expect(r).toEqual(plain);
    expect(readdirSync(data)).toEqual([]);
    // what shimmed programs see now: the same tree as the copy
    const seen = run([[data, trees.data]], ['sh', '-c', `find . -mindepth 1 | sort | while read -r p; do p=\${p#./}; if [ -L "$p" ]; then echo "$p -> $(readlink "$p")"; elif [ -d "$p" ]; then echo "$p/"; else printf '%s\\t' "$p"; [ -x "$p" ] && printf 'x '; cat "$p"; fi; done`], data);
    expect(seen.stderr).toBe('');
    expect(seen.stdout).toBe(listing(dataCopy).map((l) => (l.endsWith('\n') ? l : `${l}\n`)).join(''));
  });

  it('a shimmed shell that execs it (the exec wrapper path, working directory inside the mount); status and signals pass through', () => {
    const r = run([[data, trees.data]], ['sh', '-c', `cd in && '${SFS}' cat:a.txt write:from-sh.txt=via-sh exit:7; echo "status $?"; cat from-sh.txt; '${SFS}' kill:15; echo "status $?"`], data);
    expect(r.stderr).toBe('Terminated\n'); // sh says so of a child killed by SIGTERM
    expect(r.stdout).toBe('alpha\nstatus 7\nvia-sh\nstatus 143\n');
    const direct = run([[data, trees.data]], [SFS, 'cat:in/from-sh.txt', 'exit:5'], data);
    expect(direct).toEqual({ code: 5, stdout: 'via-sh\n', stderr: '' });
    const killed = run([[data, trees.data]], [SFS, 'kill:9'], data);
    expect(killed.code).toBe(137);
  });

  it('when the namespace cannot be made: one line naming the program and the workaround, exit 126', () => {
    const helper = join(ROOT, 'shim', 'build', 'vrift-ns');
    const r = spawnRes(helper, ['--cwd', '/', '--mount', join(base, 'no-such-dir'), join(base, 'no-such-run'), '--', SFS, 'static-fs', 'exit:0']);
    expect(r.code).toBe(126);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(SFS);
    expect(r.stderr).toContain('vrift materialize');
    // the daemon gone: the shim's way in says the same
    const e = { ...env(), VRIFT_SOCKET: join(base, 'no-daemon.sock'), VRIFT_VDIRS: 'x' };
    const viaCli = spawnRes(process.execPath, [join(ROOT, 'bin', 'vrift.js'), '_ns-exec', SFS, 'static-fs', 'exit:0'], { env: e });
    expect(viaCli.code).toBe(126);
    expect(viaCli.stderr.trim().split('\n')).toHaveLength(1);
    expect(viaCli.stderr).toContain(SFS);
    expect(viaCli.stderr).toContain('vrift materialize');
  });
});

describe('the farm', () => {
  it('is an exact link farm of the live mount, for a whole node_modules too, and removed by the merge', async () => {
    // this project's own node_modules (~18 000 entries)
    const big = join(base, 'big');
    const tree = vriftJson<{ tree: string }>(['ingest', join(ROOT, 'node_modules')], { home, timeoutMs: 300_000 }).tree;
    expect(run([[big, tree]], ['true']).code).toBe(0);
    const c = await ControlClient.connect(join(home, 'run', 'vriftd.sock'));
    try {
      const farm = async (root: string): Promise<{ dir: string; entries: number; ms: number }> => {
        const t0 = performance.now();
        const f = await c.request(Msg.NSFARM, [[F.PATH, root]]);
        return { dir: f.str(F.PATH)!, entries: f.u64(F.SIZE)!, ms: performance.now() - t0 };
      };
      const merge = (root: string, dir: string) => c.request(Msg.NSMERGE, [[F.PATH, root], [F.RUN_DIR, dir]]);
      const small = await farm(join(proj, 'node_modules'));
      const tsgo = join(small.dir, 'lower', '@typescript', 'native-preview-linux-x64', 'lib', 'tsgo');
      expect(statSync(tsgo).nlink).toBeGreaterThan(1); // a hard link of its blob (the executable twin)
      expect(statSync(tsgo).mode & 0o111).toBe(0o111);
      expect(listing(join(small.dir, 'lower'), '.bin')).toEqual(listing(join(copy, 'node_modules'), '.bin'));
      await merge(join(proj, 'node_modules'), small.dir);
      const times: number[] = [];
      for (let i = 0; i < 3; i++) {
        const b = await farm(big);
        times.push(b.ms);
        if (i === 0) {
          expect(b.entries).toBeGreaterThan(10_000);
          expect(listing(join(b.dir, 'lower'), 'zod').length).toBe(listing(join(ROOT, 'node_modules'), 'zod').length);
        }
        await merge(big, b.dir);
      }
      // (how long it takes is for bench/, not a test: printed for whoever reads the log)
      console.log(`farm: ${small.entries} entries ${small.ms.toFixed(1)} ms; this project's node_modules: ${times.map((t) => t.toFixed(0)).join(' / ')} ms`);
      for (let i = 0; i < 100 && readdirSync(join(home, 'tmp')).length > 0; i++) await new Promise((r) => setTimeout(r, 50));
      expect(readdirSync(join(home, 'tmp'))).toEqual([]);
    } finally {
      c.close();
      cli(['unmount', big]);
      removeVDirObject(home, big);
    }
  }, 300_000);
});
