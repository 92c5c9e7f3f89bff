// vrift cat <blob|tree:path>: the bytes of a blob, verified before they are written out.
import type { Command } from 'commander';
import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { isDigest } from '../../lib/digest.js';
import { VriftError } from '../../lib/errors.js';
import { hashFile, missingBlob } from '../../node/store/cas.js';
import { findEntry } from '../../node/store/tree.js';
import type { Store } from '../../node/store/store.js';
import { subcommand, withStore } from '../command.js';

const WHOLE_LIMIT = 8 << 20;

/** Resolves `blob` or `tree:path` to a blob digest (or a symlink target). */
function target(store: Store, spec: string): { digest: string; size: number } | { link: string } {
  if (isDigest(spec)) return { digest: spec, size: store.cas.statOf(spec)?.size ?? -1 };
  const colon = spec.indexOf(':');
  if (colon < 0) {
    throw new VriftError('ERR_VRIFT_ARG_BLOB', `${JSON.stringify(spec)} is neither a blob digest nor tree:path`, {
      hint: 'use a 64-hex digest, or <tree|ref>:<path>',
    });
  }
  const id = store.resolve(spec.slice(0, colon));
  const path = spec.slice(colon + 1).replace(/^\/+|\/+$/g, '');
  const e = findEntry(store.getTree(id).entries, path);
  if (!e) throw new VriftError('ERR_VRIFT_TREE_NO_PATH', `${path}: not in tree ${id}`, { hint: 'list it with `vrift ls`', exitCode: 1 });
  if (e.kind === 'dir') throw new VriftError('ERR_VRIFT_TREE_IS_DIR', `${path} is a directory`, { hint: 'list it with `vrift ls <tree> <path>`' });
  if (e.kind === 'symlink') return { link: e.target! };
  return { digest: e.digest!, size: e.size };
}

async function writeOut(buf: Uint8Array): Promise<void> {
  if (!process.stdout.write(buf)) await new Promise((r) => process.stdout.once('drain', r));
}

export function register(program: Command): void {
  subcommand(program, 'cat <spec>', 'print a blob (digest, or <tree|ref>:<path>); corrupt blobs are never printed')
    .action(
      withStore(async ({ store, args }) => {
        const t = target(store, args[0]!);
        if ('link' in t) {
          await writeOut(Buffer.from(`${t.link}\n`));
          return;
        }
        const st = store.cas.statOf(t.digest);
        if (!st) throw missingBlob(t.digest);
        if (st.size <= WHOLE_LIMIT) {
          await writeOut(store.cas.readVerified(t.digest));
        } else {
          // Too big to hold: verify first, then stream (the second read comes from the page cache).
          if ((await hashFile(store.cas.pathOf(t.digest))) !== t.digest) {
            store.quarantineBlob(t.digest);
            throw new VriftError('ERR_VRIFT_CAS_CORRUPT', `blob ${t.digest} is corrupt on disk and was quarantined`, {
              hint: 'run `vrift verify`, then ingest or pull the content again',
            });
          }
          await pipeline(createReadStream(store.cas.pathOf(t.digest)), process.stdout, { end: false });
        }
      }),
    );
}
