// A daemon on a full disk: it refuses to start with one line saying so
// (rather than failing at whichever write comes first: the metadata, the
// pid file, the socket, the log), and once running it outlives its log's
// disk filling up.
import { fstatSync, statfsSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { errnoOf, VriftError } from '../../lib/errors.js';
import { fmtBytes } from '../../lib/units.js';

/** Below this much free space under $VRIFT_HOME the daemon does not start: not even its log and metadata would fit. */
export const MIN_FREE_TO_START = 1 << 20;

/** Throws ERR_VRIFT_FS_FULL when the filesystem of `home` (or of its nearest existing parent) has too little room. */
export function assertRoomToStart(home: string): void {
  let free: number | undefined;
  for (let dir = home; free === undefined; dir = dirname(dir)) {
    try {
      const fs = statfsSync(dir);
      free = fs.bavail * fs.bsize;
    } catch (e) {
      if (errnoOf(e) !== 'ENOENT' || dirname(dir) === dir) return; // cannot tell: the writes themselves will say
    }
  }
  if (free < MIN_FREE_TO_START) {
    throw new VriftError('ERR_VRIFT_FS_FULL', `${home}: disk full (${fmtBytes(free)} free): the daemon cannot start there`, {
      hint: `free at least ${fmtBytes(MIN_FREE_TO_START)} on that filesystem, e.g. with \`vrift gc --max-size SIZE\`, or point VRIFT_HOME at another one`,
    });
  }
}

/**
 * The daemon's log on stderr. When stderr is a file (`vrift up --detach`
 * points it at run/vriftd.log), each line is one write(2), and a line that
 * cannot be written (the disk filled up) is lost, not fatal; the next one
 * is tried again.
 */
export function stderrLog(): (line: string) => void {
  let toFile = false;
  try {
    toFile = fstatSync(2).isFile();
  } catch {
    /* no stderr at all */
  }
  return (line) => {
    const text = `${new Date().toISOString()} vriftd: ${line}\n`;
    if (!toFile) {
      process.stderr.write(text);
      return;
    }
    try {
      writeSync(2, text);
    } catch {
      /* the log's disk is full: this line is lost, the daemon goes on */
    }
  };
}
