// Plumbing for the commands that reach the cluster tiers (save, restore,
// push, pull): validate the config before anything else, open the store
// and the chain, close both (waiting for queued writes) at the end.
import type { Command } from 'commander';
import { cacheKey, refWithKey, type CacheKey } from './cache-key.js';
import type { Config } from '../node/config/config.js';
import { resolveHome } from '../node/store/home.js';
import { Store } from '../node/store/store.js';
import type { Chain } from '../tiers/chain.js';
import { Metrics } from '../lib/metrics.js';
import { Output } from './output.js';
import type { Opts } from './command.js';

export interface ChainContext {
  store: Store;
  chain: Chain;
  config: Config;
  metrics: Metrics;
  out: Output;
  opts: Opts;
  args: string[];
}

export function withChain(body: (ctx: ChainContext) => Promise<void>) {
  return async (...params: unknown[]): Promise<void> => {
    const cmd = params[params.length - 1] as Command;
    const opts = cmd.optsWithGlobals() as Opts;
    const args = params.slice(0, -2) as string[];
    const out = new Output(opts);
    // Loaded here, not at the top: other commands (ingest, ls …) never pay for the config and the tier modules.
    const [{ loadNodeConfig }, { openChain }] = await Promise.all([import('../node/ops/node-config.js'), import('../tiers/index.js')]);
    const config = loadNodeConfig({ home: resolveHome() }); // validated in full before anything is touched
    const store = Store.open();
    const metrics = new Metrics();
    let chain: Chain | undefined;
    try {
      chain = openChain({ store, config, metrics, log: (level, m) => (level === 'warn' ? out.warn(m) : out.notice(m)) });
      await body({ store, chain, config, metrics, out, opts, args });
    } finally {
      await chain?.close();
      await store.close();
    }
  };
}

/** Adds --key-from to a command that names a ref. */
export function keyOption(cmd: Command): Command {
  return cmd.option('--key-from <files...>', 'append a key derived from these files (and the platform) to the ref: <ref>/<key>');
}

/** The ref a command works on: as given, or with the key from --key-from appended. */
export function keyedRef(ref: string, opts: Opts): { ref: string; key: CacheKey | null } {
  const files = opts.keyFrom as string[] | undefined;
  if (!files) return { ref, key: null };
  const key = cacheKey(files);
  return { ref: refWithKey(ref, key.key), key };
}

/** "1.2 MiB from s3, 300 KiB from redis". */
export function describeSources(from: Record<string, { blobs: number; bytes: number }>, fmt: (n: number) => string): string {
  const parts = Object.entries(from).map(([t, f]) => `${f.blobs} from ${t} (${fmt(f.bytes)})`);
  return parts.length > 0 ? parts.join(', ') : 'nothing fetched';
}
