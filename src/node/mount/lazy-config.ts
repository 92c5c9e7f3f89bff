// Settings of lazy mounts (docs/lazy.md): background prefetch from a
// tree's trace, and when a mount gives up on file-by-file fetching and
// pulls the rest of its tree in bulk. Section "mount" of the config; every
// key has a default. Read by the daemon only: commands that run in-process
// never prefetch.
import { bool, defaults, int, object, size, type ConfigSection } from '../config/schema.js';

export interface LazyConfig {
  /** A cold mount of a ref whose signed record names a lazy index starts from its names, not the full listing (docs/lazy.md "Partial metadata"). */
  lazyIndex: boolean;
  /** Prefetch a cold mount's blobs in the order of its tree's trace. */
  prefetch: boolean;
  /** Prefetch downloads at most this many bytes per second, on average over blobs (demand fetches are not limited). */
  prefetchBytesPerSec: number;
  /** Prefetch fetches at most this many blobs at once (one while a program waits for a fetch). */
  prefetchConcurrency: number;
  /** Pull the rest of the tree in bulk once this % of its blobs (or bytes) came one by one; 0: never. */
  bulkAfterPercent: number;
  /** … or once programs opened this many missing blobs in a row in tree order; 0: never. */
  bulkAfterSequential: number;
  /** A large file opened before its blob is here is read while it arrives, each range verified (needs root and ext4/xfs/btrfs). */
  stream: boolean;
  /** … from this size on (smaller ones are fetched whole before the open returns). */
  streamMinBytes: number;
  /** The daemon re-hashes stored blobs in the background at most this many bytes per second (docs/security.md); 0: off. */
  scrubBytesPerSec: number;
}

export const mountSection: ConfigSection<LazyConfig> = {
  key: 'mount',
  schema: defaults(
    object(
      {
        lazyIndex: bool().default(true),
        prefetch: bool().default(true),
        prefetchBytesPerSec: size({ example: '32M', min: 1024 }).default(32 << 20),
        prefetchConcurrency: int({ example: '4', min: 1, max: 64 }).default(4),
        bulkAfterPercent: int({ example: '25', min: 0, max: 100 }).default(25),
        bulkAfterSequential: int({ example: '128', min: 0, max: 1_000_000 }).default(128),
        stream: bool().default(true),
        streamMinBytes: size({ example: '4M', min: 1 }).default(4 << 20),
        scrubBytesPerSec: size({ example: '4M', min: 0 }).default(4 << 20),
      },
      { absent: 'defaults' },
    ),
  ),
  env: {
    VRIFT_LAZY_INDEX: 'lazyIndex',
    VRIFT_PREFETCH: 'prefetch',
    VRIFT_PREFETCH_BYTES_PER_SEC: 'prefetchBytesPerSec',
    VRIFT_PREFETCH_CONCURRENCY: 'prefetchConcurrency',
    VRIFT_BULK_AFTER_PERCENT: 'bulkAfterPercent',
    VRIFT_BULK_AFTER_SEQUENTIAL: 'bulkAfterSequential',
    VRIFT_STREAM: 'stream',
    VRIFT_STREAM_MIN_BYTES: 'streamMinBytes',
    VRIFT_SCRUB_BYTES_PER_SEC: 'scrubBytesPerSec',
  },
};
