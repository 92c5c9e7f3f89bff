// What an operation (save, restore, pull, push, materialize) needs from
// whoever runs it. The same code runs in two hosts: inside the daemon,
// which owns the store and the one resolver of the host and streams the
// operation's progress to the CLI over the control socket
// (src/node/daemon/operations.ts); or in the CLI's own process when no
// daemon runs (local-host.ts). Operations never print: they report
// through the context, and return a result the CLI renders.
import type { Store } from '../store/store.js';
import type { Resolver } from './resolver.js';

/** A progress bar as an operation sees it (drawn by the CLI, on a terminal only). */
export interface ProgressSink {
  update(done: number, total: number): void;
  done(): void;
}

export interface OpContext {
  store: Store;
  /** The host's resolver (built on first use in a CLI process: commands that need no tier never load one). */
  resolver(): Promise<Resolver>;
  progress(label: string, opts?: { bytes?: boolean }): ProgressSink;
  warn(message: string): void;
  notice(message: string): void;
  /** The counters this operation moved (the daemon's: since the operation started). */
  metrics(): Record<string, number>;
  /** Aborted when the client that asked went away: operations stop between steps. */
  signal: AbortSignal;
}

export type Operation<A, R> = (ctx: OpContext, args: A) => Promise<R>;
