// The `vrift` command line. Each command lives in its own file under
// commands/; this file wires them up and turns errors into one line.
import { Command, CommanderError } from 'commander';
import { isVriftError } from '../lib/errors.js';
import { register as cat } from './commands/cat.js';
import { register as daemon } from './commands/daemon.js';
import { register as gc } from './commands/gc.js';
import { register as ingest } from './commands/ingest.js';
import { register as ls } from './commands/ls.js';
import { register as materialize } from './commands/materialize.js';
import { register as mount } from './commands/mount.js';
import { register as node } from './commands/node.js';
import { register as pull } from './commands/pull.js';
import { register as push } from './commands/push.js';
import { register as ref } from './commands/ref.js';
import { register as restore } from './commands/restore.js';
import { register as save } from './commands/save.js';
import { register as run } from './commands/run.js';
import { register as snapshot } from './commands/snapshot.js';
import { register as verify } from './commands/verify.js';

const program = new Command('vrift')
  .description('distributed content-addressed file cache')
  .version('0.1.0')
  .showHelpAfterError('(run `vrift --help` for usage)')
  .exitOverride();

for (const register of [ingest, materialize, ls, cat, ref, verify, gc, save, restore, push, pull, daemon, node, mount, run, snapshot]) register(program);

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
