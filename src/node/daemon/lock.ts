// One daemon per $VRIFT_HOME: a pid file created with O_EXCL. A pid file
// left by a crashed daemon (its process gone, or now some other program)
// is detected and replaced; a live daemon makes a second one refuse.
// Neither the pid file nor its private twin is ever opened through a
// symlink (O_NOFOLLOW), and one owned by another user is refused.
import { closeSync, fstatSync, linkSync, openSync, readFileSync, renameSync, unlinkSync, writeSync, constants as C } from 'node:fs';
import { join } from 'node:path';
import { VriftError, errnoOf, fsError } from '../../lib/errors.js';

export function pidFilePath(runDir: string): string {
  return join(runDir, 'vriftd.pid');
}

/** True when `pid` is a running vrift daemon (not just any process that reused the pid). */
export function isDaemonAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if (errnoOf(e) !== 'EPERM') return false;
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('vrift');
  } catch {
    return false;
  }
}

export function readPid(runDir: string): number | undefined {
  try {
    const fd = openSync(pidFilePath(runDir), C.O_RDONLY | C.O_NOFOLLOW);
    let text: string;
    try {
      const st = fstatSync(fd);
      if (!st.isFile() || st.uid !== process.geteuid!()) return undefined; // not ours: no daemon of ours wrote it
      text = readFileSync(fd, 'utf8');
    } finally {
      closeSync(fd);
    }
    const n = Number(text.trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** Writes this process's pid to `path` (to become `file`); a failure (a full disk …) leaves no file and says so in one line. */
function writePidFile(path: string, file: string): void {
  try {
    // O_EXCL|O_NOFOLLOW: a file (or link) left there is removed, never written through
    try {
      unlinkSync(path);
    } catch (e) {
      if (errnoOf(e) !== 'ENOENT') throw e;
    }
    const fd = openSync(path, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
    try {
      writeSync(fd, `${process.pid}\n`);
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    try {
      unlinkSync(path);
    } catch {
      /* never created */
    }
    throw fsError(e, file, 'writing the daemon pid file');
  }
}

/** Takes the lock for this process, or throws naming the running daemon. */
export function acquireDaemonLock(runDir: string, home: string): () => void {
  const file = pidFilePath(runDir);
  for (let attempt = 0; attempt < 5; attempt++) {
    // Write the pid to a private file, then link(2) it into place: the lock
    // file appears atomically, already holding its pid.
    const mine = `${file}.${process.pid}`;
    writePidFile(mine, file);
    try {
      linkSync(mine, file);
      unlinkSync(mine);
      return () => {
        if (readPid(runDir) === process.pid) {
          try {
            unlinkSync(file);
          } catch {
            /* already gone */
          }
        }
      };
    } catch (e) {
      unlinkSync(mine);
      if (errnoOf(e) !== 'EEXIST') throw fsError(e, file, 'creating the daemon pid file');
    }
    const pid = readPid(runDir);
    if (pid !== undefined && pid !== process.pid && isDaemonAlive(pid)) {
      throw new VriftError('ERR_VRIFT_DAEMON_RUNNING', `a vrift daemon is already running for ${home} (pid ${pid})`, {
        hint: 'use it, or stop it with `vrift down`',
      });
    }
    // Stale: move it aside atomically (only one contender can), then retry the O_EXCL create.
    try {
      renameSync(file, `${file}.stale.${process.pid}`);
      unlinkSync(`${file}.stale.${process.pid}`);
    } catch {
      /* another starter moved it first; loop and look again */
    }
  }
  throw new VriftError('ERR_VRIFT_DAEMON_LOCK', `could not take the daemon lock ${file}`, { hint: 'remove the file if no daemon is running' });
}
