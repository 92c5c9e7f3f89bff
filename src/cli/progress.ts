// A progress bar for long work, drawn on stderr only when stdout is a
// terminal (and --json is off): piped output stays quiet and parseable.
import { fmtBytes } from '../lib/units.js';

export interface ProgressOptions {
  /** Print sizes as bytes (MB) instead of counts. */
  bytes?: boolean;
  enabled?: boolean;
}

export class Progress {
  private readonly enabled: boolean;
  private readonly started = Date.now();
  private last = 0;
  private drawn = false;

  constructor(
    private readonly label: string,
    private readonly opts: ProgressOptions = {},
  ) {
    this.enabled = opts.enabled ?? (Boolean(process.stdout.isTTY) && Boolean(process.stderr.isTTY));
  }

  update(done: number, total: number): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (now - this.last < 80 && done < total) return;
    this.last = now;
    const width = 30;
    const frac = total > 0 ? Math.min(1, done / total) : 1;
    const filled = Math.round(frac * width);
    const bar = '█'.repeat(filled) + '░'.repeat(width - filled);
    const secs = (now - this.started) / 1000;
    const amount = this.opts.bytes ? `${fmtBytes(done)}/${fmtBytes(total)}` : `${done}/${total}`;
    const rate = secs > 0.2 ? (this.opts.bytes ? ` ${fmtBytes(done / secs)}/s` : ` ${Math.round(done / secs)}/s`) : '';
    process.stderr.write(`\r${this.label} ${bar} ${(frac * 100).toFixed(0).padStart(3)}% ${amount}${rate}\x1b[K`);
    this.drawn = true;
  }

  done(): void {
    if (this.drawn) process.stderr.write('\r\x1b[K');
    this.drawn = false;
  }
}

