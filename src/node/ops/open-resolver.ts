// Building a resolver from the config: the chain of tiers it allows, each
// metered and guarded (src/tiers/index.ts), over the local store.
import type { Metrics } from '../../lib/metrics.js';
import { openChain } from '../../tiers/index.js';
import type { PeerDirectory } from '../../tiers/peer/directory.js';
import type { PeerConnections } from '../../tiers/peer/connections.js';
import type { TierLog } from '../../tiers/tier.js';
import type { Config } from '../config/config.js';
import type { Store } from '../store/store.js';
import { Resolver } from './resolver.js';

export interface OpenResolverOptions {
  store: Store;
  config: Config;
  metrics: Metrics;
  log: TierLog;
  /** Where the peer tier learns of peers: the daemon's mesh (in the daemon), else the daemon asked over its socket. */
  peers?: PeerDirectory;
  /** The daemon's connections to its peers (the peer tier makes its own otherwise). */
  peerConnections?: PeerConnections;
}

export function openResolver(opts: OpenResolverOptions): Resolver {
  return new Resolver(opts.store, openChain(opts), opts.metrics, (line) => opts.log('warn', line));
}
