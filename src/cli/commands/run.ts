// vrift run --mount <dir>=<tree|ref> [--mount …] -- <cmd> [args]
//
// Mounts each tree through the daemon (starting it, detached, when none
// runs — unless --no-start), then runs the command with the LD_PRELOAD
// shim (shim/build/libvrift.so), which serves the mounts to it and to every
// child it starts, and the loader's audit library (LD_AUDIT,
// shim/build/libvrift-audit.so), which serves them to the dynamic loader.
// Exits with the command's status (128 + n for a signal).
//
// Mounts stay after the command ends (like `vrift mount`): that is how a
// build's outputs are kept — `vrift snapshot <dir>` saves them as a tree —
// and a later `vrift run` of the same tree at the same directory reuses
// the mount, outputs included. `vrift unmount <dir>` removes it.
//
// A program the shim cannot see into (static, setuid/setgid, Go) runs in a
// private mount namespace where each mount is a real overlayfs, and what it
// writes is merged back into the mounts when it exits (ns-exec.ts).
//
// Start-up time counts (time to the command's first instruction), so this
// file imports nothing heavy: bin/vrift.js loads it through run-main.ts,
// without the rest of the CLI (nor commander: run-main parses the options).
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { LAYOUT } from '../../gen/layout.js';
import { hasCode, VriftError } from '../../lib/errors.js';
import { ControlClient } from '../../node/control/client.js';
import { socketPathOf } from '../../node/control/paths.js';
import { homeLayout, resolveHome } from '../../node/store/home.js';
import { packageRoot } from '../../lib/native.js';
import { F, Msg } from '../../node/control/protocol.js';
import { unshimmable, which } from '../elf-check.js';

interface MountSpec {
  dir: string;
  tree: string;
}


function parseMounts(specs: string[]): MountSpec[] {
  return specs.map((s) => {
    const eq = s.indexOf('=');
    if (eq <= 0 || eq === s.length - 1) {
      throw new VriftError('ERR_VRIFT_RUN_MOUNT_SPEC', `invalid --mount ${JSON.stringify(s)}`, { hint: 'use --mount <dir>=<tree id or ref>' });
    }
    return { dir: resolve(s.slice(0, eq)), tree: s.slice(eq + 1) };
  });
}

/** The shim library built by scripts/build.mjs. */
export function shimLibrary(): string {
  const lib = join(packageRoot(), 'shim', 'build', 'libvrift.so');
  if (!existsSync(lib)) {
    throw new VriftError('ERR_VRIFT_RUN_NO_SHIM', `the shim library ${lib} is missing`, { hint: 'build it with `npm run build` (needs a C compiler)' });
  }
  return lib;
}

/** The dynamic loader's audit library (LD_AUDIT), built beside the shim: it maps library lookups in a mount to the mount's link farm. */
export function auditLibrary(): string {
  const lib = join(packageRoot(), 'shim', 'build', 'libvrift-audit.so');
  if (!existsSync(lib)) {
    throw new VriftError('ERR_VRIFT_RUN_NO_SHIM', `the loader's audit library ${lib} is missing`, { hint: 'build it with `npm run build` (needs a C compiler)' });
  }
  return lib;
}

/** `lib` first in a ':'-separated list (LD_PRELOAD, LD_AUDIT), unless it is already there. */
function prepend(lib: string, list: string | undefined): string {
  if (!list) return lib;
  return list.split(/[: ]/).includes(lib) ? list : `${lib}:${list}`;
}

/** The daemon's connection; starts a daemon when none runs (and `opts.start`). */
export async function connectOrStart(socket: string, opts: Pick<RunOptions, 'start' | 'json'>): Promise<ControlClient> {
  try {
    return await ControlClient.connect(socket);
  } catch (e) {
    if (!hasCode(e, 'ERR_VRIFT_DAEMON_DOWN') || !opts.start) throw e;
  }
  // loaded only when needed: every module costs start-up time
  const [{ spawnDaemon }, { Output }] = await Promise.all([import('../daemon-client.js'), import('../output.js')]);
  const { pid, logPath } = await spawnDaemon();
  new Output(opts).notice(`started vriftd (pid ${pid}), log: ${logPath}`);
  return ControlClient.connect(socket);
}

/** A mount point must not hide real files: absent, empty, or already a mount. */
export function checkMountPoint(dir: string): void {
  let names: string[];
  try {
    if (!statSync(dir).isDirectory()) {
      throw new VriftError('ERR_VRIFT_RUN_MOUNT_POINT', `${dir} exists and is not a directory`, { hint: 'mount at an empty or new directory' });
    }
    names = readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (names.length > 0) {
    throw new VriftError('ERR_VRIFT_RUN_MOUNT_POINT', `${dir} is not empty: its files would be hidden by the mount`, {
      hint: 'mount at an empty or new directory',
    });
  }
}

/** Mounts every spec (reusing a mount of the same tree); returns the VDir names. */
async function mountAll(c: ControlClient, specs: MountSpec[]): Promise<string[]> {
  const existing = new Map<string, { name: string; tree: string }>();
  for (const line of (await c.request(Msg.MOUNTS)).strs(F.MOUNT_ENTRY)) {
    const [name, path, tree] = line.split('\t');
    if (name && path && tree) existing.set(path, { name, tree });
  }
  const names: string[] = [];
  for (const s of specs) {
    const cur = existing.get(s.dir);
    if (cur) {
      const wanted = /^[0-9a-f]{64}$/.test(s.tree) ? s.tree : await resolveRef(s.tree);
      if (wanted !== cur.tree) {
        throw new VriftError('ERR_VRIFT_MOUNT_EXISTS', `${s.dir} is already mounted with tree ${cur.tree}`, {
          hint: `snapshot or unmount it first: \`vrift unmount ${s.dir}\``,
        });
      }
      names.push(cur.name);
      continue;
    }
    checkMountPoint(s.dir);
    const f = await c.request(Msg.MOUNT, [
      [F.TREE, s.tree],
      [F.PATH, s.dir],
    ]);
    names.push(f.str(F.SHM_NAME)!);
  }
  return names;
}

async function resolveRef(ref: string): Promise<string> {
  const { Store } = await import('../../node/store/store.js');
  const store = Store.open();
  try {
    return store.resolve(ref);
  } finally {
    await store.close();
  }
}

export interface RunOptions {
  mount: string[];
  start: boolean;
  json?: boolean;
}

/** `vrift run`: mount, then run `command` under the shim; sets process.exitCode to its status. */
export async function runCommand(command: string[], opts: RunOptions): Promise<void> {
  const specs = parseMounts(opts.mount);
  if (specs.length === 0) throw new VriftError('ERR_VRIFT_RUN_ARGS', 'nothing to mount', { hint: 'add --mount <dir>=<tree or ref>' });
  const lib = shimLibrary();
  const audit = auditLibrary();
  const [cmd, ...args] = command;
  const inMount = specs.some((s) => cmd!.startsWith(`${s.dir}/`) || resolve(cmd!).startsWith(`${s.dir}/`));
  // A program the shim cannot see into runs in a private mount namespace
  // where the mounts are real overlayfs mounts (ns-exec.ts); one inside a
  // mount is found by the shim's exec wrapper (below), which does the same.
  let blind: string | undefined;
  if (!inMount) {
    const exe = which(cmd!);
    if (!exe) throw new VriftError('ERR_VRIFT_RUN_NOT_FOUND', `${cmd}: command not found`, { hint: 'check the name and PATH', exitCode: 127 });
    if (unshimmable(exe)) blind = exe;
  }
  const home = resolveHome();
  const socket = socketPathOf(homeLayout(home).run);
  const c = await connectOrStart(socket, opts);
  let names: string[];
  try {
    names = await mountAll(c, specs);
  } finally {
    c.close();
  }
  if (blind) {
    const { nsExec } = await import('../ns-exec.js');
    const r = await nsExec({ socket, vdirs: names, cwd: process.cwd(), env: process.env, prog: blind, argv: [cmd!, ...args] }).catch((e: unknown) => {
      throw new VriftError('ERR_VRIFT_RUN_UNSHIMMABLE', `${blind} ${unshimmable(blind!)} and could not be run in a private mount namespace: ${(e as Error).message}`, {
        hint: 'materialize the tree instead (`vrift materialize <tree> <dir>`) and run it there',
        exitCode: 126,
      });
    });
    process.exitCode = r.signal ? 128 + (osSignals[r.signal] ?? 1) : r.code || (r.mergeError ? 1 : 0);
    return;
  }
  // unique among live runs (pids are) and over time; not node:crypto (~3 ms to load)
  const runId = `${process.pid}-${Date.now().toString(36)}`;
  const preload = process.env.LD_PRELOAD ? `${lib}:${process.env.LD_PRELOAD}` : lib;
  // VRIFT_NS_EXEC: the node that runs `vrift _ns-exec` for the shim (shim/exec.c, ns-exec.ts)
  // LD_AUDIT: ld.so's own library searches ($ORIGIN, RPATH/RUNPATH, LD_LIBRARY_PATH) cannot see the shim
  const env = { ...process.env, LD_PRELOAD: preload, LD_AUDIT: prepend(audit, process.env.LD_AUDIT), VRIFT_VDIRS: names.join(','), VRIFT_SOCKET: socket, VRIFT_HOME: home, VRIFT_RUN_ID: runId, VRIFT_NS_EXEC: process.execPath };
  // A command that lives inside a mount is not on disk for the kernel:
  // let a shimmed shell exec it.
  const [file, argv] = inMount ? ['/bin/sh', ['-c', 'exec "$0" "$@"', cmd!, ...args]] : [cmd!, args];
  const child = spawn(file, argv, { stdio: 'inherit', env });
  const forward = (sig: NodeJS.Signals) => () => child.kill(sig);
  const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((s) => [s, forward(s)] as const);
  for (const [s, h] of handlers) process.on(s, h);
  const status = await new Promise<number>((resolveStatus, reject) => {
    child.once('error', (e) =>
      reject(new VriftError('ERR_VRIFT_RUN_SPAWN', `${cmd}: ${(e as Error).message}`, { hint: 'check the command', exitCode: 127 })),
    );
    child.once('exit', (code, signal) => resolveStatus(code ?? 128 + (signal ? (osSignals[signal] ?? 1) : 1)));
  }).finally(() => {
    for (const [s, h] of handlers) process.off(s, h);
    rmSync(join(home, LAYOUT.home.run, LAYOUT.home.shimWarnedPrefix + runId), { force: true });
  });
  process.exitCode = status;
}

export function register(program: Command): void {
  program
    .command('run')
    .description('run a command with trees mounted (served by the LD_PRELOAD shim)')
    .option('--json', 'machine-readable output (errors)')
    .argument('<command...>', 'the command and its arguments (after --)')
    .option('--mount <dir=tree>', 'mount a tree (id or ref) at a directory; repeatable', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--no-start', 'fail when the daemon is not running instead of starting it')
    .allowUnknownOption()
    .action((command: string[], opts: RunOptions) => runCommand(command, opts));
}

const osSignals: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGTERM: 15, SIGABRT: 6 };
