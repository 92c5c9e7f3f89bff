// Large blobs that stream: readers of a blob still arriving wait, in the
// kernel, until the bytes they read are verified (fanotify pre-content
// events). The fanotify group lives in shim/build/vrift-keeper, a process
// of its own that outlives the daemon (shim/keeper.c says why, and its
// line protocol); this is the daemon's side of that socket.
//
// The daemon creates the blob's temp file at its full size, keeps its
// writer fd (opened before the mark, so its writes raise no events), then
// `watch`es it, `progress`es as verified bytes land and `complete`s or
// `fail`s. A daemon that restarts finds what its predecessor left
// unfinished in `orphans()` and `resume`s it (within the keeper's grace).
import { execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join, resolve } from 'node:path';
import { packageRoot } from '../../lib/native.js';
import { VriftError } from '../../lib/errors.js';

export interface HsmStream {
  readonly id: string;
  readonly path: string;
  /** Monotonic: readers of [0, verifiedBytes) proceed. Cheap to call often (coalesce writes to the socket, e.g. at most one line per ~1 ms or per 1 MiB). */
  progress(verifiedBytes: number): void;
  /** Every byte verified: all readers proceed; the mark is removed. Resolves when the keeper acknowledged. */
  complete(): Promise<void>;
  /** Reads of ranges not yet verified get EIO from now on. */
  fail(reason: string): void;
}

export interface OrphanStream {
  id: string;
  path: string;
  size: number;
  verified: number;
}

export interface HsmOpenOptions {
  runDir: string;
  probeDir: string;
  log: (line: string) => void;
  keeperBin?: string;
  /** How long the keeper keeps unfinished streams' readers waiting for a daemon to come back (only when this call starts it). */
  graceMs?: number;
}

/** The keeper's socket in a run dir (its lock, `<socket>.lock`, holds its pid). */
export function keeperSocket(runDir: string): string {
  return join(runDir, 'keeper.sock');
}

/** shim/build/vrift-keeper (built by `npm run build` with the shim). */
export function keeperBinary(): string {
  return join(packageRoot(), 'shim', 'build', 'vrift-keeper');
}

const ID = /^[A-Za-z0-9._-]{1,128}$/;
const COALESCE_MS = 1;
const COALESCE_BYTES = 1 << 20;
const CONNECT_MS = 5_000;
const PROBE_MS = 5_000;

interface Waiter {
  resolve: () => void;
  reject: (e: Error) => void;
}

/** One line-protocol connection to the keeper. */
class KeeperConnection {
  private buf = '';
  private closed = false;
  /** Acks (`ok <id>` / `err <id> …`) awaited, per id, in order. */
  private readonly waiters = new Map<string, Waiter[]>();
  private lineSink: ((line: string) => void) | undefined;

  constructor(
    private readonly sock: Socket,
    private readonly log: (line: string) => void,
  ) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        this.onLine(line);
      }
    });
    sock.on('error', (e) => this.log(`hsm: keeper connection: ${e.message}`));
    sock.on('close', () => {
      this.closed = true;
      const err = new VriftError('ERR_VRIFT_HSM_KEEPER_GONE', 'the connection to vrift-keeper closed', { hint: 'see keeper.log in the run dir' });
      for (const ws of this.waiters.values()) for (const w of ws) w.reject(err);
      this.waiters.clear();
      this.lineSink = undefined;
    });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  send(line: string): void {
    if (!this.closed) this.sock.write(`${line}\n`);
  }

  /** Sends `line` and waits for `ok <id>` (an `err <id> …` rejects). */
  request(line: string, id: string): Promise<void> {
    if (this.closed) return Promise.reject(new VriftError('ERR_VRIFT_HSM_KEEPER_GONE', 'the connection to vrift-keeper is closed'));
    return new Promise<void>((resolve, reject) => {
      const ws = this.waiters.get(id) ?? [];
      ws.push({ resolve, reject });
      this.waiters.set(id, ws);
      this.send(line);
    });
  }

  /** Sends `hello`; resolves with the orphans listed before `end`. */
  hello(): Promise<OrphanStream[]> {
    return new Promise((resolve, reject) => {
      const orphans: OrphanStream[] = [];
      const onClose = () => reject(new VriftError('ERR_VRIFT_HSM_KEEPER_GONE', 'vrift-keeper closed the connection before answering hello'));
      this.sock.once('close', onClose);
      this.lineSink = (line) => {
        if (line === 'end') {
          this.lineSink = undefined;
          this.sock.off('close', onClose);
          resolve(orphans);
          return;
        }
        const m = /^stream (\S+) (\d+) (\d+) (.+)$/.exec(line);
        if (m) orphans.push({ id: m[1]!, size: Number(m[2]), verified: Number(m[3]), path: m[4]! });
        else this.log(`hsm: unexpected line from the keeper: ${line}`);
      };
      this.send('hello');
    });
  }

  private onLine(line: string): void {
    if (this.lineSink) return this.lineSink(line);
    const m = /^(ok|err) (\S+)(?: (\d+) (.*))?$/.exec(line);
    const ws = m ? this.waiters.get(m[2]!) : undefined;
    const w = ws?.shift();
    if (ws && ws.length === 0) this.waiters.delete(m![2]!);
    if (!m || !w) {
      this.log(`hsm: keeper: ${line}`);
      return;
    }
    if (m[1] === 'ok') w.resolve();
    else w.reject(new VriftError('ERR_VRIFT_HSM_KEEPER_REFUSED', `vrift-keeper: ${m[2]}: ${m[4] ?? ''} (errno ${m[3] ?? '?'})`));
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.sock.once('close', () => resolve());
      this.sock.end();
    });
  }
}

class Stream implements HsmStream {
  private sent: number;
  private want: number;
  private sentAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private ended = false;

  constructor(
    private readonly conn: KeeperConnection,
    private readonly log: (line: string) => void,
    readonly id: string,
    readonly path: string,
    private readonly size: number,
    verified: number,
    private readonly forget: (s: Stream) => void,
  ) {
    this.sent = verified;
    this.want = verified;
  }

  progress(verifiedBytes: number): void {
    const n = Math.min(Math.floor(verifiedBytes), this.size);
    if (this.ended || !(n > this.want)) return;
    this.want = n;
    const since = performance.now() - this.sentAt;
    if (n - this.sent >= COALESCE_BYTES || n === this.size || since >= COALESCE_MS) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), COALESCE_MS - since);
  }

  /** Sends the latest progress, if any is unsent. */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.ended || this.want <= this.sent) return;
    this.conn.send(`progress ${this.id} ${this.want}`);
    this.sent = this.want;
    this.sentAt = performance.now();
  }

  async complete(): Promise<void> {
    if (this.ended) throw new VriftError('ERR_VRIFT_HSM_STREAM_ENDED', `stream ${this.id} already ended`);
    this.flush();
    this.ended = true;
    this.forget(this);
    await this.conn.request(`done ${this.id}`, this.id);
  }

  fail(reason: string): void {
    if (this.ended) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.ended = true;
    this.forget(this);
    this.log(`hsm: ${this.id}: failed: ${reason}; reads past ${this.sent} of ${this.size} bytes get EIO`);
    this.conn.send(`fail ${this.id}`);
  }
}

function runProbe(bin: string, dir: string): Promise<string> {
  return new Promise((resolve) => {
    execFile(bin, ['--probe', dir], { timeout: PROBE_MS, encoding: 'utf8' }, (err, stdout) => {
      const line = stdout.trim().split('\n')[0] ?? '';
      if (line) resolve(line);
      else resolve(`vrift-keeper --probe failed: ${err?.message ?? 'no answer'}`);
    });
  });
}

function tryConnect(path: string): Promise<Socket | undefined> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', () => resolve(undefined));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Hsm {
  private readonly streams = new Set<Stream>();

  private constructor(
    private readonly conn: KeeperConnection,
    private readonly orphanList: OrphanStream[],
    private readonly log: (line: string) => void,
  ) {}

  /** Starts (or reconnects to) the keeper of `runDir`; `{ reason }` (one line, naming what is missing: root/CAP_SYS_ADMIN, kernel ≥ 6.14, a filesystem with pre-content support — probe by marking a scratch file in `probeDir`) when streaming cannot work here. */
  static async open(opts: HsmOpenOptions): Promise<{ hsm?: Hsm; reason?: string }> {
    const bin = opts.keeperBin ?? keeperBinary();
    if (!existsSync(bin)) return { reason: `${bin} is missing (build it with \`npm run build\`)` };
    const probed = await runProbe(bin, opts.probeDir);
    if (probed !== 'ok') return { reason: probed };
    const runDir = resolve(opts.runDir);
    mkdirSync(runDir, { recursive: true });
    const path = keeperSocket(runDir);
    // A keeper that is exiting (idle) may take the connection and close it:
    // start another one and try again.
    for (let attempt = 0; attempt < 3; attempt++) {
      const sock = (await tryConnect(path)) ?? (await Hsm.start(bin, path, runDir, opts.graceMs));
      if (typeof sock === 'string') return { reason: sock };
      const conn = new KeeperConnection(sock, opts.log);
      try {
        const orphans = await conn.hello();
        if (orphans.length) opts.log(`hsm: ${orphans.length} unfinished stream(s) left by the previous daemon: ${orphans.map((o) => o.id).join(' ')}`);
        return { hsm: new Hsm(conn, orphans, opts.log) };
      } catch {
        await conn.close();
      }
    }
    return { reason: `vrift-keeper at ${path} keeps closing the connection (see keeper.log there)` };
  }

  /** Starts a keeper (its own session: it outlives this process) and connects; a string says why not. */
  private static async start(bin: string, path: string, runDir: string, graceMs: number | undefined): Promise<Socket | string> {
    const logFd = openSync(join(runDir, 'keeper.log'), 'a');
    let exited: string | undefined;
    try {
      const args = graceMs === undefined ? [path] : ['--grace-ms', String(Math.max(0, Math.round(graceMs))), path];
      const child = spawn(bin, args, { detached: true, stdio: ['ignore', 'ignore', logFd] });
      child.on('error', (e) => (exited = `cannot start ${bin}: ${e.message}`));
      // Exit 0: another keeper won the race for this socket; connect to it.
      child.on('exit', (code, signal) => (exited = code === 0 ? undefined : `vrift-keeper exited (${code ?? signal}) at start: see ${join(runDir, 'keeper.log')}`));
      child.unref();
    } finally {
      closeSync(logFd);
    }
    const deadline = performance.now() + CONNECT_MS;
    while (performance.now() < deadline) {
      const sock = await tryConnect(path);
      if (sock) return sock;
      if (exited) return exited;
      await sleep(20);
    }
    return `vrift-keeper did not listen on ${path} within ${CONNECT_MS} ms`;
  }

  /** Streams a previous daemon left unfinished (from the keeper's answer to hello): still marked, readers waiting. */
  orphans(): OrphanStream[] {
    return this.orphanList.map((o) => ({ ...o }));
  }

  /** Resumes an orphan (this daemon will progress/complete/fail it). */
  resume(o: OrphanStream): HsmStream {
    const i = this.orphanList.findIndex((x) => x.id === o.id);
    if (i >= 0) this.orphanList.splice(i, 1);
    return this.track(new Stream(this.conn, this.log, o.id, o.path, o.size, o.verified, (s) => this.streams.delete(s)));
  }

  /** Marks `path` (already at its full `size`; the writer's fd opened before this call). */
  async watch(file: string, info: { id: string; size: number }): Promise<HsmStream> {
    const path = resolve(file); // the keeper runs in /
    if (!ID.test(info.id)) throw new VriftError('ERR_VRIFT_HSM_BAD_ID', `bad stream id ${JSON.stringify(info.id)}`, { hint: 'use [A-Za-z0-9._-], at most 128 characters (a digest in hex)' });
    if (/[\n\0]/.test(path)) throw new VriftError('ERR_VRIFT_HSM_BAD_PATH', `a path with a newline or NUL cannot be watched: ${JSON.stringify(path)}`);
    if (!Number.isSafeInteger(info.size) || info.size < 0) throw new VriftError('ERR_VRIFT_HSM_BAD_SIZE', `bad size ${info.size} for ${info.id}`);
    await this.conn.request(`watch ${info.id} ${info.size} ${path}`, info.id);
    return this.track(new Stream(this.conn, this.log, info.id, path, info.size, 0, (s) => this.streams.delete(s)));
  }

  private track(s: Stream): Stream {
    this.streams.add(s);
    return s;
  }

  /** The daemon stops: the connection closes; the keeper goes on for streams still open, and exits when none remain. */
  async close(): Promise<void> {
    for (const s of this.streams) s.flush();
    this.streams.clear();
    await this.conn.close();
  }
}
