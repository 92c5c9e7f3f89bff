// The `vrift` command line. Each command lives in its own file under
// commands/; this file wires them up and turns errors into one line.
import { Command, CommanderError } from 'commander';
import { isVriftError } from '../lib/errors.js';
const program = new Command('vrift')
  .description('distributed content-addressed file cache')
  .version('0.1.0')
  .showHelpAfterError('(run `vrift --help` for usage)')
  .exitOverride();

type Module = { register(program: Command): void };

// Which file registers each command. Only the file of the command being
// run is loaded (start-up is on the path of every CI step); help, errors
// and unknown commands load them all.
const COMMANDS: Record<string, () => Promise<Module>> = {
  ingest: () => import('./commands/ingest.js'),
  materialize: () => import('./commands/materialize.js'),
  ls: () => import('./commands/ls.js'),
  cat: () => import('./commands/cat.js'),
  ref: () => import('./commands/ref.js'),
  verify: () => import('./commands/verify.js'),
  gc: () => import('./commands/gc.js'),
  save: () => import('./commands/save.js'),
  restore: () => import('./commands/restore.js'),
  push: () => import('./commands/push.js'),
  pull: () => import('./commands/pull.js'),
  up: () => import('./commands/daemon.js'),
  down: () => import('./commands/daemon.js'),
  status: () => import('./commands/daemon.js'),
  mount: () => import('./commands/mount.js'),
  unmount: () => import('./commands/mount.js'),
  run: () => import('./commands/run.js'),
  snapshot: () => import('./commands/snapshot.js'),
  node: () => import('./commands/node.js'),
};

// A reader that stops early (`vrift ls … | head`) closes the pipe: stop quietly, as cat does.
// stderr that cannot be written (a daemon's log on a disk that filled up) is not fatal: nothing more can be told.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    if (stream !== process.stderr) throw e;
  });
}

const wanted = process.argv[2];
const loaders =
  wanted === '--version' || wanted === '-V' ? [] : wanted !== undefined && COMMANDS[wanted] ? [COMMANDS[wanted]] : [...new Set(Object.values(COMMANDS))];
const registered = new Set<Module>();
for (const m of await Promise.all(loaders.map((load) => load()))) {
  if (registered.has(m)) continue; // up/down/status share a file
  registered.add(m);
  m.register(program);
}

function wantsJson(): boolean {
  return process.argv.includes('--json');
}

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    // Commander already printed usage errors; --help/--version exit 0.
    process.exitCode = e.exitCode === 0 ? 0 : 2;
  } else if (isVriftError(e)) {
    const line = e.hint ? `vrift: ${e.message} (${e.hint})` : `vrift: ${e.message}`;
    process.stderr.write(`${line}\n`);
    if (wantsJson()) process.stdout.write(`${JSON.stringify({ error: { code: e.code, message: e.message, hint: e.hint ?? null } })}\n`);
    process.exitCode = e.exitCode;
  } else {
    // Not a user error: a bug. Keep the stack so it can be fixed.
    console.error(e);
    process.exitCode = 70;
  }
}
