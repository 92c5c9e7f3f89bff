// A tree's trace in the remote tiers, so other nodes benefit from this
// one's runs: a content-addressed trace blob (store/trace.ts) named by the
// ref `vrift-trace/<tree>`, both set through the chain's hint methods (no
// tier API of its own). What comes back is untrusted: bounded in size,
// verified against its digest, then parsed so only blobs of the tree are
// kept.
import { hashBuffer, type Digest } from '../../lib/digest.js';
import type { Chain } from '../../tiers/chain.js';
import type { HintFetch } from '../../tiers/hints.js';
import { decodeTraceBlob, encodeTraceBlob, MAX_TRACE_BLOB_BYTES, traceRefName } from '../store/trace.js';

export type RemoteTrace = { from: string; blobs: Digest[]; ignored: number } | { from: string; problem: string };

/** The trace of `tree` the remote tiers hold, or undefined when none does; `early`: its hint, already being read (a cold mount starts it with the listing). */
export async function fetchRemoteTrace(chain: Chain, tree: Digest, isBlobOfTree: (d: Digest) => boolean, early?: Promise<HintFetch | undefined>): Promise<RemoteTrace | undefined> {
  const hint = await (early ?? chain.fetchHint(traceRefName(tree), MAX_TRACE_BLOB_BYTES));
  if (!hint) return undefined;
  if ('problem' in hint) return { from: hint.tier, problem: hint.problem };
  const decoded = decodeTraceBlob(hint.bytes, tree, isBlobOfTree);
  return 'problem' in decoded ? { from: hint.tier, problem: decoded.problem } : { from: hint.tier, ...decoded };
}

/** Stores the trace of `tree` in every writable remote tier; one result per tier. */
export function pushRemoteTrace(chain: Chain, tree: Digest, blobs: readonly Digest[]): Promise<{ tier: string; error?: string }[]> {
  const bytes = encodeTraceBlob(tree, blobs);
  return chain.publishHint(traceRefName(tree), hashBuffer(bytes), bytes);
}
