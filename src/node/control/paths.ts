// Where a daemon's files live inside $VRIFT_HOME/run (shared by the daemon and its clients).
import { join } from 'node:path';
import { LAYOUT } from '../../gen/layout.js';

/** The control socket (its name is shim/vrift_layout.h's: the shim connects to it too). */
export function socketPathOf(runDir: string): string {
  return join(runDir, LAYOUT.home.socket);
}

export function logPathOf(runDir: string): string {
  return join(runDir, 'vriftd.log');
}
