// How commands talk to the user: human lines on a terminal or in a pipe,
// one JSON document with --json; warnings and notices on stderr.
import { Progress, type ProgressOptions } from './progress.js';

export interface OutputFlags {
  json?: boolean;
}

export class Output {
  private readonly warned = new Set<string>();

  constructor(readonly flags: OutputFlags) {}

  get json(): boolean {
    return Boolean(this.flags.json);
  }

  /** Prints the command's result: `data` as JSON, or `human()` lines. */
  result(data: unknown, human: () => string | string[]): void {
    if (this.json) {
      process.stdout.write(`${JSON.stringify(data)}\n`);
      return;
    }
    const text = human();
    const lines = Array.isArray(text) ? text : [text];
    if (lines.length > 0) process.stdout.write(`${lines.join('\n')}\n`);
  }

  /** Each distinct warning once per command (a failing tier is reported by every call that tried it). */
  warn(message: string): void {
    if (this.warned.has(message)) return;
    this.warned.add(message);
    process.stderr.write(`vrift: warning: ${message}\n`);
  }

  notice(message: string): void {
    process.stderr.write(`vrift: ${message}\n`);
  }

  progress(label: string, opts: ProgressOptions = {}): Progress {
    return new Progress(label, { ...opts, enabled: !this.json && (opts.enabled ?? (Boolean(process.stdout.isTTY) && Boolean(process.stderr.isTTY))) });
  }
}
