// Walking a directory for ingest: every file, dir and symlink below the
// root, with the stat a file had when it was listed. Symlinks are recorded,
// never followed, so a symlink loop inside the tree is just two symlinks.
import { isUtf8 } from 'node:buffer';
import { lstatSync, readdirSync, readlinkSync, statSync, type Dirent, type Stats } from 'node:fs';
import { join } from 'node:path';
import { fsError, VriftError } from '../lib/errors.js';
import type { EntryKind } from './tree.js';

export interface ScanItem {
  /** Path relative to the root, '/'-separated. */
  path: string;
  abs: string;
  kind: EntryKind;
  /** lstat of files (for size, exec bit and the re-ingest cache). */
  stat?: Stats;
  /** Symlink target. */
  target?: string;
}

export interface ScanResult {
  items: ScanItem[];
  files: number;
  bytes: number;
  /** Things that are not files, dirs or symlinks (fifos, sockets, devices), skipped. */
  skipped: { path: string; what: string }[];
}

function specialKind(d: Dirent<Buffer> | Stats): string | undefined {
  if (d.isFIFO()) return 'fifo';
  if (d.isSocket()) return 'socket';
  if (d.isBlockDevice()) return 'block device';
  if (d.isCharacterDevice()) return 'character device';
  return undefined;
}

/** Checks that `root` is a directory we can walk; one-line errors otherwise. */
export function assertWalkableDir(root: string): void {
  let st: Stats;
  try {
    st = statSync(root);
  } catch (e) {
    throw fsError(e, root, 'reading');
  }
  if (!st.isDirectory()) {
    throw new VriftError('ERR_VRIFT_INGEST_NOT_DIR', `${root}: not a directory`, { hint: 'ingest takes a directory' });
  }
}

export function scanDir(root: string): ScanResult {
  assertWalkableDir(root);
  const out: ScanResult = { items: [], files: 0, bytes: 0, skipped: [] };
  const stack: [abs: string, rel: string][] = [[root, '']];
  while (stack.length > 0) {
    const [dirAbs, dirRel] = stack.pop()!;
    let dirents: Dirent<Buffer>[];
    try {
      dirents = readdirSync(dirAbs, { withFileTypes: true, encoding: 'buffer' });
    } catch (e) {
      throw fsError(e, dirAbs, 'listing');
    }
    for (const d of dirents) {
      if (!isUtf8(d.name)) {
        const shown = join(dirAbs, d.name.toString('latin1'));
        throw new VriftError('ERR_VRIFT_INGEST_PATH', `${JSON.stringify(shown)}: file name is not valid UTF-8`, {
          hint: 'rename it; trees store UTF-8 paths so every machine agrees on them',
        });
      }
      const name = d.name.toString('utf8');
      const abs = join(dirAbs, name);
      const rel = dirRel === '' ? name : `${dirRel}/${name}`;
      let kindSource: Dirent<Buffer> | Stats = d;
      let stat: Stats | undefined;
      if (d.isFile() || (!d.isDirectory() && !d.isSymbolicLink() && !specialKind(d))) {
        // Files need their stat anyway; DT_UNKNOWN entries need it to be classified.
        try {
          stat = lstatSync(abs);
        } catch (e) {
          throw fsError(e, abs, 'reading');
        }
        kindSource = stat;
      }
      if (kindSource.isDirectory()) {
        out.items.push({ path: rel, abs, kind: 'dir' });
        stack.push([abs, rel]);
      } else if (kindSource.isSymbolicLink()) {
        let raw: Buffer;
        try {
          raw = readlinkSync(abs, { encoding: 'buffer' });
        } catch (e) {
          throw fsError(e, abs, 'reading the symlink');
        }
        if (!isUtf8(raw)) {
          throw new VriftError('ERR_VRIFT_INGEST_PATH', `${abs}: symlink target is not valid UTF-8`, {
            hint: 'point the symlink at a UTF-8 path',
          });
        }
        out.items.push({ path: rel, abs, kind: 'symlink', target: raw.toString('utf8') });
      } else if (kindSource.isFile()) {
        out.items.push({ path: rel, abs, kind: 'file', stat });
        out.files++;
        out.bytes += stat!.size;
      } else {
        out.skipped.push({ path: rel, what: specialKind(kindSource) ?? 'special file' });
      }
    }
  }
  return out;
}
