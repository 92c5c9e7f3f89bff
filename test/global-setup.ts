// Runs once around the whole suite. Tests make many daemons in throwaway
// $VRIFT_HOMEs, and a crashed (kill -9) or abandoned daemon leaves its
// VDir shared-memory objects in /dev/shm. At the end, remove the ones the
// suite created that no live process still maps (a running daemon or a
// shim-loaded program maps every VDir it uses).
import { readdirSync, readFileSync, unlinkSync } from 'node:fs';

const SHM = '/dev/shm';
const isVdir = (name: string) => /^vrift\.\d+\.m-[0-9a-f]+$/.test(name);

function vdirNames(): Set<string> {
  try {
    return new Set(readdirSync(SHM).filter(isVdir));
  } catch {
    return new Set();
  }
}

function mappedNames(): Set<string> {
  const mapped = new Set<string>();
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let maps: string;
    try {
      maps = readFileSync(`/proc/${pid}/maps`, 'utf8');
    } catch {
      continue; // gone, or not ours to read
    }
    for (const m of maps.matchAll(/\/dev\/shm\/(vrift\.\d+\.m-[0-9a-f]+)/g)) mapped.add(m[1]!);
  }
  return mapped;
}

export default function setup(): () => void {
  const before = vdirNames();
  return () => {
    const mapped = mappedNames();
    for (const name of vdirNames()) {
      if (before.has(name) || mapped.has(name)) continue;
      try {
        unlinkSync(`${SHM}/${name}`);
      } catch {
        /* already gone */
      }
    }
  };
}
