// The entry point of `vrift run` alone (bin/vrift.js picks it): the full
// CLI loads the store and every command, and even commander costs ~20 ms,
// while `vrift run` is timed from its start to its command's first
// instruction. Options are parsed here by hand; `--help` goes to the full CLI.
import { isVriftError, VriftError } from '../lib/errors.js';
import { runCommand, type RunOptions } from './commands/run.js';

function parse(argv: string[]): { command: string[]; opts: RunOptions } | 'help' {
  const opts: RunOptions = { mount: [], start: true };
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      i++;
      break;
    }
    if (a === '--help' || a === '-h') return 'help';
    if (a === '--json') opts.json = true;
    else if (a === '--no-start') opts.start = false;
    else if (a === '--mount') {
      const v = argv[++i];
      if (v === undefined) throw new VriftError('ERR_VRIFT_RUN_ARGS', 'option --mount needs a value', { hint: 'use --mount <dir>=<tree or ref>' });
      opts.mount.push(v);
    } else if (a.startsWith('--mount=')) opts.mount.push(a.slice(8));
    else if (a.startsWith('-')) throw new VriftError('ERR_VRIFT_RUN_ARGS', `unknown option ${a}`, { hint: 'put the command after --' });
    else break;
  }
  const command = argv.slice(i);
  if (command.length === 0) throw new VriftError('ERR_VRIFT_RUN_ARGS', 'no command to run', { hint: 'vrift run --mount <dir>=<tree> -- <command> [args]' });
  return { command, opts };
}

try {
  const parsed = parse(process.argv.slice(3));
  if (parsed === 'help') await import('./main.js');
  else await runCommand(parsed.command, parsed.opts);
} catch (e) {
  if (isVriftError(e)) {
    process.stderr.write(`${e.hint ? `vrift: ${e.message} (${e.hint})` : `vrift: ${e.message}`}\n`);
    if (process.argv.includes('--json')) process.stdout.write(`${JSON.stringify({ error: { code: e.code, message: e.message, hint: e.hint ?? null } })}\n`);
    process.exitCode = e.exitCode;
  } else {
    console.error(e);
    process.exitCode = 70;
  }
}
