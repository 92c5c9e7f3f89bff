// vrift verify: re-hash every blob; quarantine and report corrupt ones (exit 1 if any).
import type { Command } from 'commander';
import { verifyStore } from '../../node/store/verify.js';
import { fmtBytes } from '../../lib/units.js';
import { subcommand, withStore } from '../command.js';

export function register(program: Command): void {
  subcommand(program, 'verify', 're-hash every stored blob; corrupt ones are quarantined')
    .action(
      withStore(async ({ store, out }) => {
        const bar = out.progress('verify', { bytes: true });
        const r = await verifyStore(store, (d, t) => bar.update(d, t));
        bar.done();
        out.result({ ok: r.corrupt.length === 0, ...r }, () => [
          ...r.corrupt.map((c) => `corrupt: ${c.digest} (moved to ${store.layout.quarantine})`),
          ...r.missing.map((d) => `missing: ${d} (dropped from the index)`),
          `${r.checked} blobs, ${fmtBytes(r.bytes)} checked: ${r.corrupt.length} corrupt, ${r.missing.length} missing`,
        ]);
        if (r.corrupt.length > 0) process.exitCode = 1;
      }),
    );
}
