// FETCH (shim/vrift_proto.h): the shim opened a mounted file whose blob
// is not in the local CAS. The daemon's resolver fetches it (local →
// peers → Redis → S3, verified, one fetch per blob on the host) within a
// deadline shorter than the shim's own wait, so the program gets its
// bytes, or EIO with the reason in the daemon's log, never a hang.
import { isDigest } from '../../lib/digest.js';
import { VriftError } from '../../lib/errors.js';
import { F } from '../control/protocol.js';
import { requireStr, type Handler } from '../control/server.js';
import type { Resolver } from '../ops/resolver.js';
import type { Store } from '../store/store.js';
import { FETCH_SECONDS, type Metrics } from '../../lib/metrics.js';
import type { BlobStreams } from './blob-streams.js';
import { statBlob } from '../store/blob-check.js';
import { NO_DIGEST_YET } from '../store/names.js';

/** The shim waits 30 s for a FETCH (shim/ipc.c): answer before that. */
export const FETCH_DEADLINE_MS = 25_000;

/** One labels object per result (histogram label values are these few words only). */
const RESULT_LABELS: Record<string, { result: string }> = Object.fromEntries(
  ['local', 'fetched', 'joined', 'streamed', 'missing', 'late', 'error'].map((r) => [r, { result: r }]),
);

/** What lazy mounts (lazy-mounts.ts) learn from FETCH. */
export interface FetchHooks {
  /** A program waits for blob `digest` (prefetch narrows meanwhile, or catches up); the returned function is called when the wait ends. */
  demandBegins?(digest: string): () => void;
  /** A program in the mount at `mountRoot` opened `digest`; `fetched`: this FETCH brought it (it was neither local nor being fetched). */
  served?(mountRoot: string, digest: string, fetched: boolean): void;
  /** Large blobs a program may read while they arrive (FETCH with STREAM). */
  streams?: BlobStreams;
  /** Where the time a program waited goes (vrift_fetch_duration_seconds{result}). */
  metrics?: Metrics;
  /** The entry `rel` of the mount at `mountRoot` was opened and its blob is good with ctime `ctimeNs`: publish that ctime, so the next open needs no FETCH. */
  renew?(mountRoot: string, rel: string, digest: string, ctimeNs: bigint): void;
  /** The entry `rel` of a partial mount names no digest yet (0…0): learn it (and bring its blob, unless `later`: the open fetches it), publish it, return it. */
  learn?(mountRoot: string, rel: string): Promise<{ digest: string; later: boolean }>;
  /** The size of file `rel` of the mount at `mountRoot` when its tree's listing is not here (a partial mount: its names say it), so a large blob may stream. */
  sizeOf?(mountRoot: string, rel: string): Promise<number | undefined>;
}

/**
 * @param treeOf the tree mounted at a mount root (FETCH names the mount it
 *   comes from): a blob no tier holds alone is read from that tree's archives.
 */
export function fetchHandler(
  store: Store,
  resolver: () => Resolver,
  treeOf: (mountRoot: string) => string | undefined,
  log: (line: string) => void,
  deadlineMs = FETCH_DEADLINE_MS,
  hooks: FetchHooks = {},
): Handler {
  return async (f) => {
    let digest = requireStr(f, F.DIGEST, 'digest');
    const path = f.str(F.PATH);
    // A file of a partial mount opened before its digest was known (docs/lazy.md "Partial metadata").
    if (digest === NO_DIGEST_YET && hooks.learn && path !== undefined && f.str(F.REL) !== undefined) {
      let later: boolean;
      try {
        ({ digest, later } = await hooks.learn(path, f.str(F.REL)!));
      } catch (e) {
        log(`fetch: ${f.str(F.REL)} of ${path}: ${(e as Error).message}`);
        throw e;
      }
      if (later) return []; // (the entry names its digest now, marked remote: the shim's open asks for the blob, and may stream it)
    }
    if (!isDigest(digest)) throw new VriftError('ERR_VRIFT_MOUNTFS_EINVAL', `${JSON.stringify(digest)} is not a digest`, { exitCode: 1 });
    const started = Date.now();
    const took = (result: string) => hooks.metrics?.observe(FETCH_SECONDS, RESULT_LABELS[result] ?? { result }, (Date.now() - started) / 1000);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), deadlineMs)));
    let from: string | undefined | 'late';
    let joined = false;
    let checkedNs: bigint | undefined;
    const waited = hooks.demandBegins?.(digest);
    // An executable is opened through its exec twin, made from the whole blob: it never streams.
    const exec = ((f.u32(F.MODE) ?? 0) & 0o111) !== 0;
    const streams = f.u32(F.STREAM) === 1 && !exec && hooks.streams?.enabled ? hooks.streams : undefined;
    const partial = streams?.whenPartial(digest);
    let partialPath: string | undefined;
    try {
      const rel = f.str(F.REL);
      const size = streams && path !== undefined && rel !== undefined ? await hooks.sizeOf?.(path, rel) : undefined;
      const fetching = resolver().fetchBlob(digest, {
        size,
        tree: path ? treeOf(path) : undefined,
        exec,
        joined: (j) => (joined = j),
        watch: streams?.watchFor(digest),
        damaged: () => log(`fetch: blob ${digest} changed on disk and no longer matches its name: quarantined, fetching it again`),
        checked: (ns) => (checkedNs = ns),
      });
      const streaming = partial?.partial.then((p) => ({ partial: p }));
      const first = await Promise.race(streaming ? [fetching, late, streaming] : [fetching, late]);
      if (typeof first === 'object') {
        // The blob streams in: the program reads it as it arrives; the fetch goes on (its end is logged).
        partialPath = first.partial;
        fetching.then(
          (got) => got === undefined && log(`fetch: blob ${digest} is in no reachable tier`),
          (e) => log(`fetch: blob ${digest} failed while it streamed: ${(e as Error).message}`),
        );
      } else {
        from = first;
      }
    } catch (e) {
      took('error');
      log(`fetch: blob ${digest} failed: ${(e as Error).message}`);
      throw e;
    } finally {
      clearTimeout(timer);
      partial?.cancel();
      waited?.();
    }
    if (partialPath !== undefined) {
      took('streamed');
      if (path) hooks.served?.(path, digest, !joined);
      return [[F.PATH, partialPath]];
    }
    if (from === 'late') {
      took('late');
      log(`fetch: blob ${digest} did not arrive within ${deadlineMs / 1000}s (the fetch goes on; a later open may find it)`);
      throw new VriftError('ERR_VRIFT_FETCH_TIMEOUT', `blob ${digest} did not arrive within ${deadlineMs / 1000}s`, { exitCode: 1 });
    }
    if (from === undefined) {
      took('missing');
      log(`fetch: blob ${digest} is in no reachable tier (tried ${resolver().tierNames().join(', ')})`);
      throw new VriftError('ERR_VRIFT_CAS_MISSING', `blob ${digest} is in no reachable tier`, { hint: 'push the tree from a node that has it', exitCode: 1 });
    }
    // An executable is opened through its exec twin (the shim's exec path).
    if (exec) store.ensureExecTwin(digest);
    // The ctime the opener compares with its fstat (shim/open.c): as the local check found it, or (a blob
    // fetched now, a twin made now) checked here: re-hashed if the index's differs, quarantined if bad.
    let ctimeNs = checkedNs;
    try {
      ctimeNs ??= store.checkBlob(digest, store.meta.getBlob(digest)?.size ?? statBlob(store.cas, digest, exec)?.size ?? 0, exec);
    } catch (e) {
      took('error');
      log(`fetch: blob ${digest} changed on disk again while it was opened: ${(e as Error).message}`);
      throw e;
    }
    const rel = f.str(F.REL);
    if (path && rel !== undefined && ctimeNs !== undefined) hooks.renew?.(path, rel, digest, ctimeNs);
    const fetched = from !== 'local' && !joined;
    took(from === 'local' ? 'local' : joined ? 'joined' : 'fetched');
    if (fetched) log(`fetch: blob ${digest} from ${from} in ${Date.now() - started} ms`);
    if (path) hooks.served?.(path, digest, fetched);
    return ctimeNs === undefined ? [] : [[F.CTIME, { u64: ctimeNs }]];
  };
}
