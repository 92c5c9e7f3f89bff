// Section "store" of the config: how big the daemon lets the local store
// grow (src/node/daemon/evictor.ts). `maxSize` (VRIFT_MAX_SIZE): a size
// such as 20G; absent, the store has no cap and only `vrift gc` shrinks
// it. Once over the cap the daemon evicts least-recently-used unpinned
// blobs down to `evictToPercent` of it, so that it does not evict again at
// the next admission. Read by the daemon only.
import { defaults, int, object, size, type ConfigSection } from '../config/schema.js';

export interface StoreConfig {
  /** The daemon keeps the store at most this big (bytes); undefined: no cap. */
  maxSize: number | undefined;
  /** Once over maxSize, evict down to this % of it. */
  evictToPercent: number;
}

export const storeSection: ConfigSection<StoreConfig> = {
  key: 'store',
  schema: defaults(
    object(
      {
        maxSize: size({ example: '20G', min: 1 << 20 }).optional(),
        evictToPercent: int({ example: '90', min: 10, max: 100 }).default(90),
      },
      { absent: 'defaults' },
    ),
  ),
  env: {
    VRIFT_MAX_SIZE: 'maxSize',
    VRIFT_EVICT_TO_PERCENT: 'evictToPercent',
  },
};
