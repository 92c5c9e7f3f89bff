// Sizes as people write them (500M, 10G, 1.5GiB) and as vrift prints them.
import { VriftError } from './errors.js';

const UNITS: Record<string, number> = { '': 1, B: 1, K: 1024, KB: 1024, KIB: 1024, M: 1024 ** 2, MB: 1024 ** 2, MIB: 1024 ** 2, G: 1024 ** 3, GB: 1024 ** 3, GIB: 1024 ** 3, T: 1024 ** 4, TB: 1024 ** 4, TIB: 1024 ** 4 };

/** Parses sizes like 500M, 10G, 1.5GiB, 123456. */
export function parseSize(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(s);
  const mult = m ? UNITS[m[2]!.toUpperCase()] : undefined;
  if (!m || mult === undefined) {
    throw new VriftError('ERR_VRIFT_ARG_SIZE', `invalid size ${JSON.stringify(s)}`, { hint: 'use a number with an optional unit: 500M, 10G, 1T' });
  }
  return Math.floor(Number(m[1]) * mult);
}

/** 1.5 MiB, 300 KiB, 12 B. */
export function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}
