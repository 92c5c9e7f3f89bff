// Writes to a TLS socket one at a time. Buffers queued behind a busy
// socket would go out as one writev, which node:tls first copies into a
// fresh buffer (an allocation and a copy of every byte, for megabyte
// archive buffers and swarm pieces). Buffers smaller than `joinBelow`
// that wait together are joined into one write instead (a cheap copy, one
// TLS record). The bulk server's archives and the swarm's channels write
// through one of these.
import type { Writable } from 'node:stream';

export class SerialWriter {
  private readonly queue: { buf: Buffer; done?: (err?: Error | null) => void }[] = [];
  private writing = false;

  constructor(
    private readonly socket: Writable,
    private readonly joinBelow = 0,
  ) {}

  /** Queues `buf`; `done` is called once the socket took it (with an error if it died first). */
  write(buf: Buffer, done?: (err?: Error | null) => void): void {
    this.queue.push({ buf, done });
    if (!this.writing) this.next();
  }

  private next(): void {
    const first = this.queue.shift();
    if (!first) {
      this.writing = false;
      return;
    }
    this.writing = true;
    const sent = [first];
    let bytes = first.buf.byteLength;
    for (let head = this.queue[0]; head && bytes + head.buf.byteLength <= this.joinBelow; head = this.queue[0]) {
      sent.push(this.queue.shift()!);
      bytes += head.buf.byteLength;
    }
    const buf = sent.length === 1 ? first.buf : Buffer.concat(sent.map((x) => x.buf), bytes);
    this.socket.write(buf, (e) => {
      for (const x of sent) x.done?.(e);
      this.next();
    });
  }
}
