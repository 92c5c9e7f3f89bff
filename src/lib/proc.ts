// Facts about this process that /proc tells.
import { readlinkSync } from 'node:fs';

/** This process's mount namespace ("mnt:[4026531840]"), or undefined where /proc cannot tell. */
export function mountNamespace(): string | undefined {
  try {
    return readlinkSync('/proc/self/ns/mnt');
  } catch {
    return undefined;
  }
}
