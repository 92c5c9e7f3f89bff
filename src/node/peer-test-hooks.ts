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

/** Flips the first content byte of every blob frame of an archive stream (framing stays intact). */
export async function* corruptArchive(chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  // Tracks frames: 16-byte header, then per blob 'B' + 32 + 8 bytes and its content, then 'E' + 16.
  let skip = 16; // bytes left in the current header/frame/body before the next tag
  let frame: number[] | undefined; // the 40 bytes after a 'B', being collected
  let flipNext = false;
  for await (const input of chunks) {
    const chunk = Buffer.from(input); // our own copy: the source may reuse its buffers
    let off = 0;
    while (off < chunk.byteLength) {
      if (frame) {
        frame.push(chunk[off++]!);
        if (frame.length === 40) {
          const size = Number(Buffer.from(frame.slice(32)).readBigUInt64BE(0));
          frame = undefined;
          skip = size;
          flipNext = size > 0;
        }
        continue;
      }
      if (skip > 0) {
        if (flipNext) {
          chunk[off] = chunk[off]! ^ 0xff;
          flipNext = false;
        }
        const n = Math.min(skip, chunk.byteLength - off);
        skip -= n;
        off += n;
        continue;
      }
      const tag = chunk[off++];
      if (tag === 0x42) frame = [];
      else skip = Infinity; // 'E': the rest is the end frame
    }
    yield chunk;
  }
}

/** Applies the hooks to an archive stream. */
export function hookArchive(chunks: AsyncIterable<Buffer>, h: ServeHooks): AsyncIterable<Buffer> {
  let out = chunks;
  if (h.corrupt) out = corruptArchive(out);
  if (h.throttle > 0) out = throttled(out, h.throttle);
  return out;
}
