// Bytes of members' requests in flight on the gRPC port (docs/security.md,
// "After authentication"). grpc-js buffers an authenticated call's request
// until the message is whole (up to `maxMessageBytes`), and a member may open
// 100 streams per connection on many connections and never finish them.
// Every request of the peer service is one message the client sends at once
// with its end of stream, so each authenticated stream's incoming bytes are
// counted until that end: past the budget of its address, or of the node,
// or past the deadline, the stream is reset (RST_STREAM), which frees what
// grpc-js held for it. A refused call's unread bytes stay within HTTP/2's
// 64 KiB stream window (grpc-js reads a request only once the handler asks).
import { constants as h2, type ServerHttp2Stream } from 'node:http2';
import { addressKey } from './conn-gate.js';

export interface IntakeLimits {
  /** Bytes of unfinished requests one address (IPv4, IPv6 /64) may have in flight. */
  perAddress: number;
  /** Bytes of unfinished requests in flight in all. */
  total: number;
  /** A request not whole by then is reset. */
  deadlineMs: number;
}

export type IntakeRefusal = 'request-address' | 'request-total' | 'request-deadline';

/** Limits from the largest request a node accepts: room for two per address, four in all. */
export function intakeLimits(maxMessageBytes: number, deadlineMs: number): IntakeLimits {
  return { perAddress: 2 * maxMessageBytes, total: 4 * maxMessageBytes, deadlineMs };
}

export class RequestIntake {
  private inFlight = 0;
  private readonly byAddress = new Map<string, number>();

  constructor(
    private readonly limits: IntakeLimits,
    private readonly refused: (reason: IntakeRefusal) => void,
  ) {}

  /** Bytes of unfinished requests held now (for tests and status). */
  get bytes(): number {
    return this.inFlight;
  }

  /** Counts what `stream` receives until its request side ends or it closes; resets it when over a bound. */
  track(stream: ServerHttp2Stream): void {
    const address = addressKey(stream.session?.socket?.remoteAddress ?? 'unknown');
    let held = 0;
    let done = false;
    const release = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      stream.off('data', onData);
      this.inFlight -= held;
      const left = (this.byAddress.get(address) ?? 0) - held;
      if (left > 0) this.byAddress.set(address, left);
      else this.byAddress.delete(address);
    };
    const reset = (why: IntakeRefusal): void => {
      release();
      this.refused(why);
      if (!stream.destroyed) stream.close(h2.NGHTTP2_ENHANCE_YOUR_CALM);
    };
    // A listener added to the stream grpc-js paused does not start it: bytes arrive here only as grpc-js reads them.
    const onData = (chunk: Buffer): void => {
      held += chunk.byteLength;
      this.inFlight += chunk.byteLength;
      const mine = (this.byAddress.get(address) ?? 0) + chunk.byteLength;
      this.byAddress.set(address, mine);
      if (mine > this.limits.perAddress) reset('request-address');
      else if (this.inFlight > this.limits.total) reset('request-total');
    };
    const timer = setTimeout(() => reset('request-deadline'), this.limits.deadlineMs);
    timer.unref();
    stream.on('data', onData);
    stream.once('end', release);
    stream.once('close', release);
  }
}
