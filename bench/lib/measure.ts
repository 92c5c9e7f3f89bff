// Small helpers shared by the benchmarks: timing, medians, tables, and
// running baselines (cp, tar …) as real processes in the same run.
import { spawnSync } from 'node:child_process';

export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** Wall time of a synchronous function, in ms. */
export function timeSync(fn: () => void): number {
  const t = nowMs();
  fn();
  return nowMs() - t;
}

export async function timeAsync(fn: () => Promise<unknown>): Promise<number> {
  const t = nowMs();
  await fn();
  return nowMs() - t;
}

/** Runs a command to completion (throws on failure) and returns its wall time in ms. */
export function timeCommand(cmd: string, args: string[], env?: NodeJS.ProcessEnv): number {
  const t = nowMs();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: env ?? process.env, maxBuffer: 64 << 20 });
  const ms = nowMs() - t;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr?.toString()}`);
  return ms;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Flushes dirty pages so one measurement does not pay for the previous one's writeback. */
export function settle(): void {
  spawnSync('sync');
}

export function printTable(title: string, rows: (string | number)[][]): void {
  const cells = rows.map((r) => r.map((c) => (typeof c === 'number' ? fmt(c) : c)));
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  console.log(`\n${title}`);
  for (const [i, r] of cells.entries()) {
    console.log(r.map((c, j) => (j === 0 ? c.padEnd(widths[j]!) : c.padStart(widths[j]!))).join('  '));
    if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
}

function fmt(n: number): string {
  if (Number.isInteger(n)) return String(n);
  return Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 10 ? n.toFixed(1) : n.toFixed(2);
}
