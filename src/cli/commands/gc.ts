// vrift gc [--max-size SIZE]: evict unpinned blobs, least recently used first
// (never what a running operation relies on: see src/node/store/leases.ts).
import type { Command } from 'commander';
import { parseSize } from '../../lib/units.js';
import { overlayDigests } from '../../node/mount/overlay.js';
import { gc } from '../../node/store/gc.js';
import { fmtBytes } from '../../lib/units.js';
import { subcommand, withStore } from '../command.js';

export function register(program: Command): void {
  subcommand(program, 'gc', 'evict blobs no ref or mount needs, least recently used first')
    .option('--max-size <size>', 'stop once the store is at most this big (e.g. 10G); default: evict every unpinned blob')
    .action(
      withStore(async ({ store, out, opts }) => {
        const maxSize = opts.maxSize === undefined ? undefined : parseSize(String(opts.maxSize));
        const r = await gc(store, { maxSize, keep: overlayDigests(store) });
        out.result(r, () => {
          const inUse = r.leasedBytes > 0 ? `, ${fmtBytes(r.leasedBytes)} in use by ${r.leases} running operation${r.leases === 1 ? '' : 's'}` : '';
          const lines = [`evicted ${r.evicted} blobs (${fmtBytes(r.freedBytes)}); kept ${r.kept} (${fmtBytes(r.keptBytes)}, ${fmtBytes(r.pinnedBytes)} pinned${inUse})`];
          if (maxSize !== undefined && r.keptBytes > maxSize) lines.push(`note: pinned content alone exceeds --max-size ${fmtBytes(maxSize)}`);
          return lines;
        });
        for (const t of r.unreadablePins) out.warn(`pinned tree ${t} could not be read; its blobs were kept`);
      }),
    );
}
