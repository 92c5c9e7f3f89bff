// A client of the daemon's control socket (used by the CLI).
import { connect, type Socket } from 'node:net';
import { foreignCode } from '../../lib/error-codes.js';
import { errnoOf, VriftError } from '../../lib/errors.js';
import { encodeFrame, F, type FieldList, type Fields, FrameDecoder, Msg } from './protocol.js';

export class ControlClient {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (f: Fields) => void; reject: (e: Error) => void; onEvent?: (f: Fields) => void }>();
  private readonly decoder = new FrameDecoder();

  private constructor(private readonly sock: Socket) {
    sock.on('data', (chunk) => {
      for (const ev of this.decoder.push(chunk)) {
        if ('error' in ev) {
          this.failAll(new VriftError('ERR_VRIFT_PROTO_REPLY', `bad reply from the daemon: ${ev.error.message}`));
          continue;
        }
        const { id, type, fields } = ev.frame;
        const p = this.pending.get(id);
        if (!p) continue;
        if (type === Msg.EVENT) {
          p.onEvent?.(fields);
          continue;
        }
        this.pending.delete(id);
        if (type === Msg.OK) p.resolve(fields);
        else {
          const code = fields.str(F.ERR_CODE) ?? 'ERR_VRIFT_DAEMON';
          const exitCode = fields.u32(F.EXIT) ?? (code.endsWith('NOT_FOUND') ? 1 : 2);
          p.reject(new VriftError(foreignCode(code), fields.str(F.ERR_MSG) ?? 'the daemon refused the request', { hint: fields.str(F.HINT), exitCode }));
        }
      }
    });
    sock.on('error', (e) => this.failAll(new VriftError('ERR_VRIFT_DAEMON_GONE', `lost the connection to the daemon: ${e.message}`)));
    sock.on('close', () => this.failAll(new VriftError('ERR_VRIFT_DAEMON_GONE', 'the daemon closed the connection', { hint: 'check `vrift status`' })));
  }

  /** Connects, or throws ERR_VRIFT_DAEMON_DOWN when no daemon listens. */
  static connect(socketPath: string): Promise<ControlClient> {
    return new Promise((resolve, reject) => {
      const sock = connect(socketPath);
      sock.once('connect', () => resolve(new ControlClient(sock)));
      sock.once('error', (e) => {
        const errno = errnoOf(e);
        if (errno === 'ENOENT' || errno === 'ECONNREFUSED') {
          reject(new VriftError('ERR_VRIFT_DAEMON_DOWN', `no vrift daemon is running (${socketPath})`, { hint: 'start one with `vrift up --detach`', exitCode: 3 }));
        } else if (errno === 'EACCES') {
          reject(new VriftError('ERR_VRIFT_DAEMON_ACCESS', `${socketPath}: permission denied`, { hint: 'the daemon belongs to another user' }));
        } else reject(e);
      });
    });
  }

  /** Sends a request; `onEvent` hears the EVENT frames the daemon sends while it runs (an operation's progress). */
  request(type: number, fields: FieldList = [], onEvent?: (f: Fields) => void): Promise<Fields> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onEvent });
      this.sock.write(encodeFrame(type, id, fields));
    });
  }

  close(): void {
    this.sock.end();
    this.sock.destroy();
  }

  private failAll(e: Error): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }
}
