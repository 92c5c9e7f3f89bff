// The daemon's control socket: a Unix socket, owner-only, speaking the
// framed protocol of shim/vrift_proto.h. Requests on one connection are
// handled in order; a malformed frame gets an error reply and a log line,
// never a crash. A client's unread replies are bounded (reply-bound.ts).
import { chmodSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { errnoOf, fsError, isVriftError, VriftError } from '../../lib/errors.js';
import { ReplyBound } from './reply-bound.js';
import { encodeFrame, F, type FieldList, type Fields, FrameDecoder, Msg } from './protocol.js';

/** One request being handled: a long one (an operation) reports as it goes, and stops if its client leaves. */
export interface Call {
  /** Sends an EVENT frame for this request (progress, a warning): not its reply. */
  emit(fields: FieldList): void;
  /** Aborted when the client disconnects. */
  signal: AbortSignal;
}

export type Handler = (fields: Fields, call: Call) => Promise<FieldList> | FieldList;

export interface ControlServerOptions {
  socketPath: string;
  handlers: Map<number, Handler>;
  log: (line: string) => void;
}

export class ControlServer {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly bounds = new WeakMap<Socket, ReplyBound>();
  private connections = 0;

  constructor(private readonly opts: ControlServerOptions) {}

  async start(): Promise<void> {
    const { socketPath } = this.opts;
    try {
      unlinkSync(socketPath); // a stale socket of a crashed daemon (the pid lock says none is alive)
    } catch (e) {
      if (errnoOf(e) !== 'ENOENT') throw e;
    }
    const server = createServer((s) => this.serve(s));
    // umask 0177 while binding: the socket is born 0600, with no window
    // in which another user could connect.
    const old = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', (e) => reject(fsError(e, socketPath, 'creating the control socket')));
        server.listen(socketPath, () => resolve());
      });
    } finally {
      process.umask(old);
    }
    chmodSync(socketPath, 0o600);
    this.server = server;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server = undefined;
  }

  private serve(sock: Socket): void {
    this.sockets.add(sock);
    const bound = new ReplyBound(sock, `client #${++this.connections}`, this.opts.log);
    this.bounds.set(sock, bound);
    const decoder = new FrameDecoder();
    let chain = Promise.resolve();
    const gone = new AbortController();
    sock.on('close', () => {
      this.sockets.delete(sock);
      bound.close();
      gone.abort();
    });
    sock.on('error', () => sock.destroy());
    sock.on('data', (chunk) => {
      bound.check(); // replies unread: read no more requests until they drain
      for (const ev of decoder.push(chunk)) {
        if ('error' in ev) {
          const { code, message, id, fatal } = ev.error;
          this.opts.log(`control: refused a frame: ${message}`);
          chain = chain.then(() => this.reply(sock, Msg.ERROR, id, [[F.ERR_CODE, code], [F.ERR_MSG, message]]));
          if (fatal) chain = chain.then(() => void sock.end());
          continue;
        }
        const { type, id, fields } = ev.frame;
        chain = chain.then(() => this.dispatch(sock, type, id, fields, gone.signal));
      }
    });
  }

  private async dispatch(sock: Socket, type: number, id: number, fields: Fields, signal: AbortSignal): Promise<void> {
    const handler = this.opts.handlers.get(type);
    if (!handler) {
      this.opts.log(`control: unknown request type ${type}`);
      return this.reply(sock, Msg.ERROR, id, [
        [F.ERR_CODE, 'ERR_VRIFT_PROTO_TYPE'],
        [F.ERR_MSG, `unknown request type ${type}`],
      ]);
    }
    const call: Call = { emit: (f) => this.reply(sock, Msg.EVENT, id, f), signal };
    // A JOURNAL message (news the client did not wait for) gets no reply: a
    // client that exits with unread replies would reset the connection, and
    // what it sent after them would be lost.
    const noReply = type === Msg.JOURNAL;
    try {
      const out = await handler(fields, call);
      if (!noReply) this.reply(sock, Msg.OK, id, out);
    } catch (e) {
      if (noReply) {
        if (!isVriftError(e)) this.opts.log(`control: announcement ${type} failed: ${(e as Error)?.stack ?? String(e)}`);
        return;
      }
      if (!isVriftError(e)) this.opts.log(`control: request ${type} failed: ${(e as Error)?.stack ?? String(e)}`);
      const err = isVriftError(e) ? e : new VriftError('ERR_VRIFT_INTERNAL', `internal error: ${(e as Error)?.message ?? String(e)}`);
      this.reply(sock, Msg.ERROR, id, errorFields(err));
    }
  }

  private reply(sock: Socket, type: number, id: number, fields: FieldList): void {
    if (sock.destroyed || !sock.writable) return;
    let frame: Buffer;
    try {
      frame = encodeFrame(type, id, fields);
    } catch (e) {
      frame = encodeFrame(Msg.ERROR, id, [
        [F.ERR_CODE, 'ERR_VRIFT_PROTO_TOO_LARGE'],
        [F.ERR_MSG, (e as Error).message],
      ]);
    }
    sock.write(frame);
    this.bounds.get(sock)?.check();
  }
}

/** An error as an ERROR reply carries it: code, message, hint, and the exit status a CLI should end with. */
export function errorFields(err: VriftError): FieldList {
  const out: FieldList = [
    [F.ERR_CODE, err.code],
    [F.ERR_MSG, err.message],
    [F.EXIT, { u32: err.exitCode }],
  ];
  if (err.hint) out.push([F.HINT, err.hint]);
  return out;
}

/** Reads a required string field, or fails with a clear protocol error. */
export function requireStr(fields: Fields, tag: number, name: string): string {
  const v = fields.str(tag);
  if (v === undefined || v.length === 0) {
    throw new VriftError('ERR_VRIFT_PROTO_FIELD', `request is missing its ${name} field`, { hint: 'client and daemon versions may differ' });
  }
  return v;
}
