// The entry point of `vrift run` alone (bin/vrift.js picks it): the full
// CLI loads the store and every command (~100 ms of start-up), and `vrift
// run` is timed from its start to its command's first instruction.
import { Command, CommanderError } from 'commander';
import { isVriftError } from '../lib/errors.js';
import { register } from './commands/run.js';

const program = new Command('vrift').exitOverride();
register(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    process.exitCode = e.exitCode === 0 ? 0 : 2;
  } else if (isVriftError(e)) {
    process.stderr.write(`${e.hint ? `vrift: ${e.message} (${e.hint})` : `vrift: ${e.message}`}\n`);
    if (process.argv.includes('--json')) process.stdout.write(`${JSON.stringify({ error: { code: e.code, message: e.message, hint: e.hint ?? null } })}\n`);
    process.exitCode = e.exitCode;
  } else {
    console.error(e);
    process.exitCode = 70;
  }
}
