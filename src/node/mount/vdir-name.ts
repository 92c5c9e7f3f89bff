// The name of a mount's VDir object, /dev/shm/vrift.<uid>.<name>.
// /dev/shm is writable by every user, so a name another user can compute
// is a name they can create first: the daemon's rename() over it then fails
// (the sticky bit) and the mount is blocked. So a name is 96 random bits,
// drawn again if anything already has it; the daemon hands it to the shim
// (MOUNT's reply, VRIFT_VDIRS), which never derives one. A name someone else
// holds is never opened.
import { randomBytes } from 'node:crypto';
import { lstatSync } from 'node:fs';
import { VriftError } from '../../lib/errors.js';

/** Where the VDir `name` of this user lives (shim/vrift_vdir.h section 1). */
export function vdirShmPath(name: string): string {
  return `/dev/shm/vrift.${process.getuid!()}.${name}`;
}

/** True when /dev/shm holds something under `name` that is not ours to replace (another user's, or not a plain file). */
export function vdirNameTaken(name: string): boolean {
  try {
    const st = lstatSync(vdirShmPath(name));
    return !st.isFile() || st.uid !== process.geteuid!();
  } catch {
    return false;
  }
}

/** A fresh VDir name nothing in /dev/shm has. */
export function newVDirName(): string {
  for (let i = 0; i < 8; i++) {
    const name = `m-${randomBytes(12).toString('hex')}`;
    try {
      lstatSync(vdirShmPath(name));
    } catch {
      return name;
    }
  }
  throw new VriftError('ERR_VRIFT_VDIR_EXISTS', 'could not find a free VDir name in /dev/shm after 8 random draws', { hint: 'check /dev/shm for objects planted there' });
}
