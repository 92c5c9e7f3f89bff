// A node's configuration: every section of the components an operation or
// the daemon may build (the chain, each tier, the cluster, lazy mounts),
// validated in full before anything is touched. src/node/config/ knows no
// component; this is where they are listed.
import type { ConfigSection } from '../config/schema.js';
import { Config, loadConfig } from '../config/config.js';
import { metricsSection } from '../metrics/config.js';
import { mountSection } from '../mount/lazy-config.js';
import { storeSection } from '../store/store-config.js';
import { chainSection } from '../../tiers/chain-config.js';
import { refsSection } from '../../tiers/ref-trust.js';
import { TIER_FACTORIES } from '../../tiers/index.js';

/** Sections that change what an operation does (the daemon runs a client's operation only if they agree). */
const OPERATION_SECTIONS: readonly ConfigSection<unknown>[] = [
  chainSection as ConfigSection<unknown>,
  refsSection as ConfigSection<unknown>,
  ...TIER_FACTORIES.flatMap((f) => (f.config ? [f.config as ConfigSection<unknown>] : [])),
];

/** Every section, in the order messages list them. */
export const NODE_SECTIONS: readonly ConfigSection<unknown>[] = [...OPERATION_SECTIONS, mountSection as ConfigSection<unknown>, storeSection as ConfigSection<unknown>, metricsSection as ConfigSection<unknown>];

/** Reads and validates the configuration of the node at `home`; throws ERR_VRIFT_CONFIG_INVALID listing every mistake. */
export function loadNodeConfig(opts: { home: string; env?: NodeJS.ProcessEnv }): Config {
  return loadConfig({ ...opts, sections: NODE_SECTIONS });
}

/**
 * The environment variables a node's configuration reads that an operation
 * depends on (a daemon serves a CLI only if they agree; the daemon's own
 * settings, such as prefetch, may differ).
 */
export const NODE_CONFIG_ENV: readonly string[] = ['VRIFT_CONFIG', ...new Set(OPERATION_SECTIONS.flatMap((s) => Object.keys(s.env ?? {})))];
