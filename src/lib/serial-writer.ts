// Writes to a socket one at a time: what waits stays in this queue, where
// a frame written later can still be joined to it. Buffers smaller than
// `joinBelow` that wait together are joined into one write (a cheap
// copy, one sealed frame). The swarm's channels write through one of
// these, so a have or a request waits behind one piece at most.

/** Where the writes go: a socket, or a sealed connection (src/lib/sealed-socket.ts). */
export interface SerialSink {
  write(buf: Buffer, done: (err?: Error | null) => void): unknown;
}

export class SerialWriter {
  private readonly queue: { buf: Buffer; done?: (err?: Error | null) => void }[] = [];
  private writing = false;

  constructor(
    private readonly socket: SerialSink,
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
