// The arguments commands share that name a ref: --key-from (a cache key
// derived from files, appended to the ref), and how fetched blobs are
// described in a command's one-line summary.
import type { Command } from 'commander';
import { cacheKey, refWithKey, type CacheKey } from './cache-key.js';
import type { Opts } from './command.js';

/** Adds --key-from to a command that names a ref. */
export function keyOption(cmd: Command): Command {
  return cmd.option('--key-from <files...>', 'append a key derived from these files (and the platform) to the ref: <ref>/<key>');
}

/** The ref a command works on: as given, or with the key from --key-from appended (computed here: the files are the caller's). */
export function keyedRef(ref: string, opts: Opts): { ref: string; key: CacheKey | null } {
  const files = opts.keyFrom as string[] | undefined;
  if (!files) return { ref, key: null };
  const key = cacheKey(files);
  return { ref: refWithKey(ref, key.key), key };
}

/** "3 from s3 (1.2 MiB), 2 from redis (300 KiB)". */
export function describeSources(from: Record<string, { blobs: number; bytes: number }>, fmt: (n: number) => string): string {
  const parts = Object.entries(from).map(([t, f]) => `${f.blobs} from ${t} (${fmt(f.bytes)})`);
  return parts.length > 0 ? parts.join(', ') : 'nothing fetched';
}
