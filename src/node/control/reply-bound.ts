// The bound on a control client's unread replies. A client that sends
// requests and never reads the answers would otherwise make the daemon
// keep every reply in memory (590 000 STATUS requests: 61 MB -> 2.6 GB).
//
// Past REPLY_HIGH_WATER the daemon stops reading that client: its further
// requests wait in the kernel's socket buffer (bounded by the kernel), and
// the client blocks in write(). Requests already decoded from the last chunk
// (at most one 64 KiB read) are still answered, so the queue can pass the
// mark; past REPLY_MAX_QUEUED the client is disconnected. A client that stays
// over the mark without reading for REPLY_STALL_MS is disconnected too: a
// descriptor held by a reader that never reads is not free either.

import type { Socket } from 'node:net';

/** Unread reply bytes at which the daemon stops reading the client's requests. */
export const REPLY_HIGH_WATER = 1 << 20;

/** Unread reply bytes past which the client is disconnected at once. */
export const REPLY_MAX_QUEUED = 8 << 20;

/** How long a client may leave REPLY_HIGH_WATER bytes unread before it is disconnected. */
export const REPLY_STALL_MS = 10_000;

/** Watches one connection's write queue (`check` after every write and read). */
export class ReplyBound {
  private stall: NodeJS.Timeout | undefined;

  /** `name` identifies the connection in the log (Node has no SO_PEERCRED: the peer's pid is unknown). */
  constructor(
    private readonly sock: Socket,
    private readonly name: string,
    private readonly log: (line: string) => void,
  ) {
    sock.on('drain', () => {
      this.clearStall();
      sock.resume();
    });
  }

  check(): void {
    const queued = this.sock.writableLength;
    if (queued > REPLY_MAX_QUEUED) return this.drop(`${queued} bytes of replies unread (limit ${REPLY_MAX_QUEUED})`);
    if (queued < REPLY_HIGH_WATER) return;
    this.sock.pause();
    this.stall ??= setTimeout(() => this.drop(`${this.sock.writableLength} bytes of replies unread for ${REPLY_STALL_MS / 1000} s`), REPLY_STALL_MS).unref();
  }

  close(): void {
    this.clearStall();
  }

  private drop(why: string): void {
    this.clearStall();
    if (this.sock.destroyed) return;
    this.log(`control: disconnected ${this.name}: ${why}; a client must read its replies`);
    this.sock.destroy();
  }

  private clearStall(): void {
    if (this.stall) clearTimeout(this.stall);
    this.stall = undefined;
  }
}
