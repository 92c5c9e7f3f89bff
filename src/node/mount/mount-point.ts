// Where a mount may go. The daemon checks this itself (a client of the
// control socket need not be the CLI), at MOUNT and again when it replays
// recorded mounts after a restart: a record written before this check, or
// planted in LMDB, must not bring a mount at / or /proc back.
import { realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { VriftError } from '../../lib/errors.js';

/** Kernel and system state: no mount at or under these. */
const SYSTEM_TREES = ['/proc', '/sys', '/dev', '/run', '/boot', '/etc'];

/** Directories whose whole content a mount would hide: no mount exactly at these (below them is fine, e.g. /tmp/x). */
const SYSTEM_DIRS = ['/', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/usr', '/var', '/home', '/root', '/tmp', '/opt', '/srv', '/mnt', '/media', '/snap', '/nix'];

function within(path: string, dir: string): boolean {
  return path === dir || path.startsWith(`${dir}/`);
}

/** `path` with its symlinks resolved as far as it exists (a mount point may not exist yet). */
function realpathOfExisting(path: string): string {
  const rest: string[] = [];
  for (let p = path; ; p = dirname(p)) {
    try {
      return join(realpathSync(p), ...rest.reverse());
    } catch {
      if (dirname(p) === p) return path;
      rest.push(p.slice(dirname(p).length).replace(/^\//, ''));
    }
  }
}

/** Why `abs` (absolute, normalized) cannot be a mount point of the store at `home`, or undefined when it can. */
export function mountPointRefusal(abs: string, home: string): VriftError | undefined {
  const fix = 'mount at an empty or new directory of your own, e.g. under your project or /tmp';
  if (!abs.startsWith('/') || abs.split('/').includes('..')) {
    return new VriftError('ERR_VRIFT_MOUNT_PATH', `${abs}: a mount point must be an absolute, normalized path`, { hint: fix });
  }
  const real = realpathOfExisting(abs);
  for (const p of new Set([abs, real])) {
    const shown = p === abs ? abs : `${abs} (${p})`;
    const tree = SYSTEM_TREES.find((d) => within(p, d));
    if (tree) return new VriftError('ERR_VRIFT_MOUNT_PATH', `${shown} is under ${tree}, which belongs to the system`, { hint: fix });
    if (SYSTEM_DIRS.includes(p)) return new VriftError('ERR_VRIFT_MOUNT_PATH', `${shown} is a system directory: a mount there would hide it`, { hint: fix });
    for (const h of new Set([home, realpathOfExisting(home)])) {
      if (within(p, h) || h.startsWith(`${p}/`)) return new VriftError('ERR_VRIFT_MOUNT_PATH', `${shown} overlaps the vrift store (${h})`, { hint: 'mount somewhere else' });
    }
  }
  return undefined;
}
