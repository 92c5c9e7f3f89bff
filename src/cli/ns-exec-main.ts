// `vrift _ns-exec <prog> <argv0> [args...]`: what the shim's exec wrappers
// run instead of a program they cannot see into (shim/exec.c): the program
// runs in a private mount namespace with the mounts of $VRIFT_VDIRS made
// real (ns-exec.ts). Started without the shim; the virtual working
// directory comes as VRIFT_CWD. Exits as the program did (a signal is
// raised again); when it cannot run it that way: one line, exit 126.
import { isVriftError } from '../lib/errors.js';
import { nsExec } from './ns-exec.js';

const [prog, ...argv] = process.argv.slice(3);
try {
  if (!prog || argv.length === 0) throw new Error('usage: vrift _ns-exec <prog> <argv0> [args...]');
  const env = process.env;
  const socket = env.VRIFT_SOCKET;
  if (!socket) throw new Error('VRIFT_SOCKET is not set (this is run by the vrift shim)');
  const r = await nsExec({
    socket,
    vdirs: env.VRIFT_VDIRS ? env.VRIFT_VDIRS.split(',') : undefined,
    cwd: env.VRIFT_CWD || process.cwd(),
    env,
    prog,
    argv,
  });
  if (r.signal) {
    process.kill(process.pid, r.signal);
    await new Promise((resolve) => setTimeout(resolve, 1000)); // a signal the process ignores: fall through
    process.exitCode = 128;
  } else process.exitCode = r.code || (r.mergeError ? 1 : 0);
} catch (e) {
  const why = isVriftError(e) ? `${e.message}${e.hint ? ` (${e.hint})` : ''}` : (e as Error).message;
  process.stderr.write(`vrift: ${prog ?? 'the program'} cannot see vrift mounts and could not be run in a private mount namespace: ${why}; materialize the tree instead (\`vrift materialize <tree> <dir>\`) and run it there\n`);
  process.exitCode = 126;
}
