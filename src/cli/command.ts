// Shared plumbing for CLI commands: every command gets --json, an Output,
// and (when it asks) the local Store, closed when the command ends.
import type { Command } from 'commander';
import type { Store } from '../node/store/store.js';
import { Output } from './output.js';

export type Opts = Record<string, unknown> & { json?: boolean };

/** Adds a subcommand that takes --json (every command does). */
export function subcommand(parent: Command, spec: string, description: string): Command {
  return parent.command(spec).description(description).option('--json', 'machine-readable output');
}

/**
 * Wraps a command body that needs the store. Commander passes the
 * positional arguments, then the options object, then the command.
 */
export function withStore(body: (ctx: { store: Store; out: Output; opts: Opts; args: string[] }) => Promise<void> | void) {
  return async (...params: unknown[]): Promise<void> => {
    const cmd = params[params.length - 1] as Command;
    const opts = cmd.optsWithGlobals() as Opts;
    const args = params.slice(0, -2) as string[];
    const out = new Output(opts);
    // Loaded here: commands the daemon runs (`plain`) never load the store and LMDB.
    const { Store } = await import('../node/store/store.js');
    const store = Store.open();
    try {
      await body({ store, out, opts, args });
    } finally {
      await store.close();
    }
  };
}

/** Wraps a command body that does not touch the store. */
export function plain(body: (ctx: { out: Output; opts: Opts; args: string[] }) => Promise<void> | void) {
  return async (...params: unknown[]): Promise<void> => {
    const cmd = params[params.length - 1] as Command;
    const opts = cmd.optsWithGlobals() as Opts;
    const args = params.slice(0, -2) as string[];
    await body({ out: new Output(opts), opts, args });
  };
}
