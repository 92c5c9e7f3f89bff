// Test-only behaviour of a serving node, switched on by environment
// variables read when the daemon starts (never set them in production):
//
//   VRIFT_TEST_PEER_CORRUPT=1         flip the first byte of every blob this node
//                                     serves (archives and GetBlob): a lying peer
//   VRIFT_TEST_PEER_THROTTLE=<bytes>  serve at most this many bytes per second
//                                     per stream: a slow peer, to kill mid-transfer
//
// The tests use them to make a peer lie or be slow on purpose; the
// receiving side is what is under test.

export interface ServeHooks {
  corrupt: boolean;
  throttle: number;
}

export function serveHooks(env: NodeJS.ProcessEnv = process.env): ServeHooks {
  const throttle = Number(env.VRIFT_TEST_PEER_THROTTLE ?? 0);
  return { corrupt: env.VRIFT_TEST_PEER_CORRUPT === '1', throttle: Number.isFinite(throttle) && throttle > 0 ? throttle : 0 };
}

export function hooksActive(h: ServeHooks): boolean {
  return h.corrupt || h.throttle > 0;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Paces a stream of chunks to `bytesPerSec` (re-cut into pieces of at most 64 KiB so the pace is smooth). */
export async function* throttled(chunks: AsyncIterable<Buffer>, bytesPerSec: number): AsyncGenerator<Buffer> {
  const start = Date.now();
  let sent = 0;
  for await (const chunk of chunks) {
    for (let off = 0; off < chunk.byteLength; off += 64 << 10) {
      const piece = chunk.subarray(off, Math.min(chunk.byteLength, off + (64 << 10)));
      sent += piece.byteLength;
      const due = start + (sent / bytesPerSec) * 1000;
      if (due > Date.now()) await sleep(due - Date.now());
      yield piece;
    }
  }
}
