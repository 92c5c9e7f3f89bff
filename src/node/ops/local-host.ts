// Running an operation in the CLI's own process, when no daemon runs for
// the home (a CI job without one still works): the same operation code
// the daemon runs, with a store and (on first use) a resolver of its own,
// closed when the operation ends.
import { Metrics } from '../../lib/metrics.js';
import { Store } from '../store/store.js';
import { OPERATIONS, type OperationName } from './index.js';
import type { OpContext, ProgressSink } from './operation.js';
import type { Resolver } from './resolver.js';

/** How an operation's reports reach the user (the CLI's Output). */
export interface OpUi {
  progress(label: string, opts?: { bytes?: boolean }): ProgressSink;
  warn(message: string): void;
  notice(message: string): void;
}

export async function runLocally(name: OperationName, args: unknown, ui: OpUi): Promise<unknown> {
  const metrics = new Metrics();
  const store = Store.open(undefined, { metrics });
  let resolver: Promise<Resolver> | undefined;
  const ctx: OpContext = {
    store,
    resolver: () => (resolver ??= openLocalResolver(store, metrics, ui)),
    progress: (label, opts) => ui.progress(label, opts),
    warn: (m) => ui.warn(m),
    notice: (m) => ui.notice(m),
    metrics: () => metrics.snapshot(),
    signal: new AbortController().signal,
  };
  try {
    return await (OPERATIONS[name] as (c: OpContext, a: unknown) => Promise<unknown>)(ctx, args);
  } finally {
    try {
      await (await resolver?.catch(() => undefined))?.close();
    } finally {
      await store.close();
    }
  }
}

/** The config (validated in full) and the tier modules are loaded only here: commands that need no tier never pay for them. */
async function openLocalResolver(store: Store, metrics: Metrics, ui: OpUi): Promise<Resolver> {
  const [{ loadNodeConfig }, { openResolver }] = await Promise.all([import('./node-config.js'), import('./open-resolver.js')]);
  const config = loadNodeConfig({ home: store.layout.root });
  return openResolver({ store, config, metrics, log: (level, m) => (level === 'warn' ? ui.warn(m) : ui.notice(m)) });
}
