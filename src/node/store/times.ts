// Modification times of a tree's files. A tree names content only (the same
// files give the same tree id on any machine, whenever they were written),
// so times travel beside it: a small "times blob" listing, in the tree's
// order, the mtime of each file entry in nanoseconds. A ref record names
// both the tree and its times blob (and its signature covers both: see
// src/lib/ref-signature.ts); locally the last ingest of a tree also
// remembers its times (meta state ['times', tree]). Format: docs/tree-format.md.
//
// Times blob: "vrift-times 1\n" <tree id> "\n", then one line per file
// entry of the tree, in tree order: its mtime as decimal nanoseconds since
// the epoch (negative before 1970).
import type { Digest } from '../../lib/digest.js';
import type { Meta } from './meta.js';
import type { Store } from './store.js';
import type { TreeEntry } from './tree.js';

const HEADER = 'vrift-times 1\n';
/** Digits of a time in nanoseconds: 19 reach the year 2262, and a sign. */
const MAX_DIGITS = 20;

/** How a materialized file gets its time. */
export type MtimeMode = 'kept' | 'now' | 'none';
export const MTIME_MODES: readonly MtimeMode[] = ['kept', 'now', 'none'];

/** A file's mtime in nanoseconds, from the walk's rounded milliseconds and its exact nanoseconds part. */
export function mtimeNsOf(mtimeMs: number, mtimeNsec: number): bigint {
  const sec = Math.round((mtimeMs - mtimeNsec / 1e6) / 1000);
  return BigInt(sec) * 1_000_000_000n + BigInt(mtimeNsec);
}

export function encodeTimes(tree: Digest, mtimes: readonly bigint[]): Buffer {
  return Buffer.from(`${HEADER}${tree}\n${mtimes.length > 0 ? `${mtimes.join('\n')}\n` : ''}`, 'latin1');
}

/**
 * Reads a times blob (untrusted: it may come from any tier): it must name
 * `tree` and hold exactly `files` times. Returns them, or why it is refused.
 */
export function decodeTimes(buf: Buffer, tree: Digest, files: number): bigint[] | { problem: string } {
  const head = `${HEADER}${tree}\n`;
  if (buf.length < head.length || buf.toString('latin1', 0, HEADER.length) !== HEADER) return { problem: 'not a times blob (bad header)' };
  if (buf.toString('latin1', HEADER.length, head.length) !== `${tree}\n`) return { problem: `the times of another tree (${buf.toString('latin1', HEADER.length, HEADER.length + 64)})` };
  if (buf.length > head.length + files * (MAX_DIGITS + 1)) return { problem: `longer than ${files} times` };
  const body = buf.toString('latin1', head.length);
  const lines = body.length === 0 ? [] : body.slice(0, -1).split('\n');
  if (body.length > 0 && !body.endsWith('\n')) return { problem: 'truncated (no final newline)' };
  if (lines.length !== files) return { problem: `${lines.length} times for ${files} files` };
  const out = new Array<bigint>(files);
  for (let i = 0; i < files; i++) {
    const s = lines[i]!;
    if (!/^-?(0|[1-9][0-9]{0,18})$/.test(s)) return { problem: `line ${i + 3} is not a time in nanoseconds: ${JSON.stringify(s.slice(0, 30))}` };
    out[i] = BigInt(s);
  }
  return out;
}

/** The times of a tree's file entries (sorted, as stored), in tree order, from a lookup by entry. */
export function timesInTreeOrder(sorted: readonly TreeEntry[], timeOf: (e: TreeEntry) => bigint | undefined): bigint[] | undefined {
  const out: bigint[] = [];
  for (const e of sorted) {
    if (e.kind !== 'file') continue;
    const t = timeOf(e);
    if (t === undefined) return undefined;
    out.push(t);
  }
  return out;
}

// --- the local record ---------------------------------------------------------

/** The times blob the last ingest here recorded for `tree`. */
export function localTimes(meta: Meta, tree: Digest): Digest | undefined {
  return meta.state.get(['times', tree]) as Digest | undefined;
}

export function rememberTimes(meta: Meta, tree: Digest, times: Digest): void {
  if (localTimes(meta, tree) !== times) void meta.state.put(['times', tree], times);
}

// --- applying them --------------------------------------------------------------

/**
 * The times to give files recorded with `mtimes`:
 * - kept: exactly as recorded;
 * - now: in the recorded order, packed into the nanoseconds just before
 *   `nowNs` (equal times stay equal). A build directory restored into a
 *   fresh checkout is then newer than every source the checkout wrote, and
 *   its outputs keep their order among themselves: make finds it up to date.
 * Returns seconds and nanoseconds for fastFs.setMtimes.
 */
export function planMtimes(mtimes: readonly bigint[], mode: Exclude<MtimeMode, 'none'>, nowNs: bigint): { sec: Float64Array; nsec: Float64Array } {
  let target: readonly bigint[] = mtimes;
  if (mode === 'now') {
    const distinct = [...new Set(mtimes)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const rank = new Map(distinct.map((t, i) => [t, BigInt(distinct.length - 1 - i)]));
    target = mtimes.map((t) => nowNs - rank.get(t)!);
  }
  const sec = new Float64Array(target.length);
  const nsec = new Float64Array(target.length);
  target.forEach((t, i) => {
    let s = t / 1_000_000_000n;
    let n = t % 1_000_000_000n;
    if (n < 0n) {
      n += 1_000_000_000n;
      s -= 1n;
    }
    sec[i] = Number(s);
    nsec[i] = Number(n);
  });
  return { sec, nsec };
}

// --- choosing them -------------------------------------------------------------

/** Which times a restore or materialize applies, and why (for its result and notices). */
export interface MtimePlan {
  mode: MtimeMode;
  /** What materialize applies (its `mtimes` option): the recorded times (per file entry, tree order) and how; absent when none are. */
  apply?: { mode: Exclude<MtimeMode, 'none'>; times: bigint[] };
  /** One line for the user when the times are not what they might expect. */
  note?: string;
}

/**
 * Decides how files get their times. `asked` is the --mtimes option.
 * Without it: hard links keep the store's times (a store inode is shared by
 * every path and tree with that content, so it cannot carry one path's
 * time); copies get `copyDefault` (restore: "now" on an exact hit, "kept"
 * on a partial one, whose outputs may predate the checkout's sources).
 * Asking for times with hard links makes copies (materialize.ts).
 */
export function planTimes(
  store: Store,
  tree: Digest,
  recorded: Digest | undefined,
  opts: { asked?: MtimeMode; copy: boolean; copyDefault: Exclude<MtimeMode, 'none'> },
): MtimePlan {
  const mode = opts.asked ?? (opts.copy ? opts.copyDefault : 'none');
  if (mode === 'none') return { mode };
  const times = recorded !== undefined && store.cas.has(recorded) ? recorded : undefined; // gc may have taken it
  if (times === undefined) {
    // Said only when asked for: trees saved before times (or with --no-mtimes) are common and fine.
    return opts.asked ? { mode: 'none', note: `tree ${tree.slice(0, 12)}… was saved without modification times: files get the time of writing` } : { mode: 'none' };
  }
  let decoded: bigint[] | { problem: string };
  try {
    decoded = decodeTimes(store.cas.readVerified(times), tree, store.treeSummary(tree).files);
  } catch (e) {
    decoded = { problem: (e as Error).message };
  }
  if (!Array.isArray(decoded)) return { mode: 'none', note: `the modification times saved with tree ${tree.slice(0, 12)}… are unusable (${decoded.problem}): files get the time of writing` };
  return { mode, apply: { mode, times: decoded } };
}
