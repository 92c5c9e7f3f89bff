// The tiers, in the order the chain tries them. A new tier is one new
// file exporting a TierFactory (its config section, and a `create` that
// imports its SDK only on first use) plus one line here.
import { VriftError } from '../lib/errors.js';
import type { Config } from '../node/config/config.js';
import type { Store } from '../node/store/store.js';
import { Chain } from './chain.js';
import { chainSection } from './chain-config.js';
import { GuardedTier } from './guarded.js';
import { LocalTier, localTier } from './local.js';
import { MeteredTier } from './metered.js';
import { Metrics } from '../lib/metrics.js';
import { peerTier } from './peer/peer.js';
import { redisTier } from './redis.js';
import { RefCodec, refsSection } from './ref-trust.js';
import { s3Tier } from './s3/s3.js';
import type { PeerDirectory } from './peer/directory.js';
import type { PeerConnections } from './peer/connections.js';
import type { Tier, TierContext, TierFactory, TierLog } from './tier.js';

export const TIER_FACTORIES: readonly TierFactory<any>[] = [
  localTier,
  peerTier, // peers are asked before Redis
  redisTier,
  s3Tier,
];

export interface OpenChainOptions {
  store: Store;
  config: Config;
  log: TierLog;
  metrics?: Metrics;
  /** Where the peer tier learns of peers (the daemon's mesh); by default, the daemon asked over its socket. */
  peers?: PeerDirectory;
  /** The daemon's connections to its peers; by default, the peer tier makes its own. */
  peerConnections?: PeerConnections;
}

/**
 * Builds the chain from the config: the local tier, then every configured
 * tier the config allows, each counted (metered.ts) and behind its breaker
 * with retries (guarded.ts).
 */
export function openChain(opts: OpenChainOptions): Chain {
  const chainCfg = opts.config.get(chainSection);
  const unknown = (chainCfg.tiers ?? []).filter((n) => !TIER_FACTORIES.some((f) => f.name === n));
  if (unknown.length > 0) {
    throw new VriftError('ERR_VRIFT_CONFIG_INVALID', `invalid configuration: chain.tiers (VRIFT_TIERS): unknown tier ${unknown.map((n) => JSON.stringify(n)).join(', ')} (known: ${TIER_FACTORIES.map((f) => f.name).join(', ')})`, {
      hint: 'list tiers by name, e.g. VRIFT_TIERS=local,s3',
    });
  }
  const refs = new RefCodec(opts.config.get(refsSection), opts.store.layout.root, opts.log);
  const ctx: TierContext = { store: opts.store, metrics: opts.metrics ?? new Metrics(), log: opts.log, peers: opts.peers, peerConnections: opts.peerConnections, refs };
  const tiers: Tier[] = [];
  for (const f of TIER_FACTORIES) {
    if (f === localTier) continue; // always first: it is where verified bytes land
    if (chainCfg.tiers && !chainCfg.tiers.includes(f.name)) continue;
    const tier = f.create(ctx, f.config ? opts.config.get(f.config) : undefined);
    if (tier) tiers.push(tier);
  }
  // Every tier but the last has a next one to hedge to: its reads get the deadline.
  const remotes = tiers.map(
    (tier, i) => new GuardedTier(new MeteredTier(tier, ctx.metrics), { ...chainCfg, hedgeAfterMs: i < tiers.length - 1 ? chainCfg.hedgeAfterMs : 0 }, ctx),
  );
  return new Chain(new LocalTier(opts.store), remotes, chainCfg, ctx);
}
