// Where a daemon's files live inside $VRIFT_HOME/run (shared by the daemon and its clients).
import { join } from 'node:path';

export function socketPathOf(runDir: string): string {
  return join(runDir, 'vriftd.sock');
}

export function logPathOf(runDir: string): string {
  return join(runDir, 'vriftd.log');
}
