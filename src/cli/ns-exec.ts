// Running a program the shim cannot see (static, Go, setuid/setgid) on
// vrift mounts: the daemon builds a hard-link farm of each mount (NSFARM),
// shim/build/vrift-ns runs the program in a private mount namespace where
// each mount root is an overlayfs over its farm, and once it exits the
// daemon merges what it wrote back into the mount (NSMERGE), where every
// other process (and `vrift snapshot`) sees it.
//
// Two ways in: `vrift run` runs such a command through nsExec() itself,
// and the shim's exec wrappers (shim/exec.c) exec `vrift _ns-exec <prog>
// <argv0> [args]` (ns-exec-main.ts) instead of the program, without the
// shim (LD_PRELOAD removed) and with the virtual working directory in
// VRIFT_CWD.
//
// Kept light (no store, no commander): it is on the path of every exec of
// such a program.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../lib/native.js';
import { VriftError } from '../lib/errors.js';
import { ControlClient } from '../node/control/client.js';
import { F, Msg } from '../node/control/protocol.js';

export interface NsExecOptions {
  socket: string;
  /** VDir names of the mounts to make real (all mounts of the daemon when absent). */
  vdirs?: string[];
  /** The working directory the program starts in (may be inside a mount). */
  cwd: string;
  /** The program's environment, as given (LD_PRELOAD, LD_AUDIT and VRIFT_* are removed here). */
  env: NodeJS.ProcessEnv;
  /** The program as execve would take it (a path, or a name to search in PATH) and its argv (argv[0] first). */
  prog: string;
  argv: string[];
}

export interface NsExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Milliseconds the daemon took to build the farms (for figures). */
  farmMs: number;
  /** Why the program's writes could not be merged into a mount (reported on stderr already). */
  mergeError?: string;
}

/** shim/build/vrift-ns (built by `npm run build` with the shim). */
export function nsHelper(): string {
  const p = join(packageRoot(), 'shim', 'build', 'vrift-ns');
  if (!existsSync(p)) throw new VriftError('ERR_VRIFT_RUN_NO_SHIM', `${p} is missing`, { hint: 'build it with `npm run build` (needs a C compiler)', exitCode: 126 });
  return p;
}

/** The environment inside the namespace: the kernel serves every file, so no shim and no vrift variables. */
export function namespaceEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) if (k !== 'LD_PRELOAD' && k !== 'LD_AUDIT' && !k.startsWith('VRIFT_')) out[k] = v;
  return out;
}

async function mountsOf(c: ControlClient, vdirs: string[] | undefined): Promise<string[]> {
  const paths: string[] = [];
  for (const line of (await c.request(Msg.MOUNTS)).strs(F.MOUNT_ENTRY)) {
    const [name, path] = line.split('\t');
    if (name && path && (!vdirs || vdirs.includes(name))) paths.push(path);
  }
  return paths;
}

/** Runs the program in a private mount namespace with every mount real; merges its writes back after. */
export async function nsExec(o: NsExecOptions): Promise<NsExecResult> {
  const helper = nsHelper();
  const started = performance.now();
  const runs: [root: string, dir: string][] = [];
  const c = await ControlClient.connect(o.socket);
  try {
    for (const root of await mountsOf(c, o.vdirs)) {
      const f = await c.request(Msg.NSFARM, [[F.PATH, root]]);
      runs.push([root, f.str(F.PATH)!]);
    }
  } catch (e) {
    // the farms built so far: merging their (empty) upper dirs deletes them
    for (const [root, dir] of runs) await c.request(Msg.NSMERGE, [[F.PATH, root], [F.RUN_DIR, dir]]).catch(() => undefined);
    c.close();
    throw e;
  }
  c.close();
  const farmMs = performance.now() - started;
  const args = ['--cwd', o.cwd];
  for (const [root, dir] of runs) args.push('--mount', root, dir);
  args.push('--', o.prog, ...o.argv);
  const child = spawn(helper, args, { stdio: 'inherit', env: namespaceEnv(o.env), argv0: 'vrift-ns' });
  const forward = (sig: NodeJS.Signals) => () => child.kill(sig);
  const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const).map((s) => [s, forward(s)] as const);
  for (const [s, h] of handlers) process.on(s, h);
  let result: { code: number | null; signal: NodeJS.Signals | null };
  try {
    result = await new Promise((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code, signal) => resolve({ code, signal }));
    });
  } finally {
    for (const [s, h] of handlers) process.off(s, h);
  }
  // Whatever the program wrote goes into the mounts, whatever its status.
  let mergeError: string | undefined;
  let m: ControlClient | undefined;
  for (const [root, dir] of runs) {
    try {
      m ??= await ControlClient.connect(o.socket);
      await m.request(Msg.NSMERGE, [[F.PATH, root], [F.RUN_DIR, dir]]);
    } catch (e) {
      mergeError = `what ${o.prog} wrote in ${root} could not be merged into the mount (kept in ${dir}/upper): ${(e as Error).message}`;
      process.stderr.write(`vrift: ${mergeError}\n`);
    }
  }
  m?.close();
  return { ...result, farmMs, ...(mergeError ? { mergeError } : {}) };
}
