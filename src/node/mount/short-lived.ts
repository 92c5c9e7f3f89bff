// Files made and unlinked again within one batch of a mount's journal.
//
// sqlite (rollback journal mode, its default) creates `<db>-journal` at the
// start of every write transaction and unlinks it at the end: two journal
// records per transaction. Published one by one, each pair costs the daemon
// a VDir insert, a lookup, an lstat of the upper file, a VDir removal and
// two overlay records (LMDB writes), all to end where it began. When both
// records of such a pair are in one batch and the path had no entry before
// the batch, applying neither gives the same VDir and overlay: the file is
// gone already (the kernel unlinked it before the GONE record was written).
import { Change, type Announcement } from './journal.js';

/**
 * `list` (records in their turn, in order) less each FILE whose GONE
 * follows in `list` with no other record of that path in between, when
 * the path had no entry before the list (`absent`, asked before any of the
 * list is applied). A path with another record kept before the FILE is
 * left as it is (its state before the FILE is then not the list's start).
 */
export function withoutShortLived(list: readonly Announcement[], absent: (rel: string) => boolean): readonly Announcement[] {
  let drop: Set<number> | undefined;
  const open = new Map<string, number>(); // path → index of a FILE that may be paired
  const kept = new Set<string>(); // paths with a record that stays
  for (let k = 0; k < list.length; k++) {
    const a = list[k]!;
    const i = open.get(a.rel);
    if (i === undefined) {
      if (a.change === Change.FILE && !kept.has(a.rel)) open.set(a.rel, k);
      else kept.add(a.rel);
      continue;
    }
    open.delete(a.rel);
    if (a.change === Change.GONE && absent(a.rel)) {
      (drop ??= new Set()).add(i).add(k);
      continue;
    }
    kept.add(a.rel);
  }
  return drop ? list.filter((_, k) => !drop.has(k)) : list;
}
