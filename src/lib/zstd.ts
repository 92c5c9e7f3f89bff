// zstd compression for packs, through the native addon (libzstd is loaded
// at run time; see native/src/zstd.cc). The work runs on the thread pool,
// so (de)compression overlaps downloading and admitting blobs.
import { Readable, Transform } from 'node:stream';
import type { NativeZstdStream } from './native.js';
import { VriftError } from './errors.js';
import { loadNative } from './native.js';

export function zstdAvailable(): boolean {
  return loadNative().zstdAvailable;
}

function nativeStream(compress: boolean, level: number): NativeZstdStream {
  if (!zstdAvailable()) {
    throw new VriftError('ERR_VRIFT_ZSTD_MISSING', 'this pack is zstd-compressed but libzstd.so.1 cannot be loaded', {
      hint: 'install the libzstd1 package',
    });
  }
  return new (loadNative().ZstdStream)(compress, level);
}

function zstdTransform(compress: boolean, level: number): Transform {
  const z = nativeStream(compress, level);
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      z.transform(chunk, false).then(
        (out) => cb(null, out.length > 0 ? out : undefined),
        (e: Error) => cb(new VriftError('ERR_VRIFT_ZSTD', `${e.message}`, { hint: 'the pack is damaged; push the tree again' })),
      );
    },
    flush(cb) {
      z.transform(Buffer.alloc(0), true).then(
        (out) => cb(null, out.length > 0 ? out : undefined),
        (e: Error) => cb(new VriftError('ERR_VRIFT_ZSTD', `${e.message}`, { hint: 'the pack is damaged or was cut; push the tree again' })),
      );
    },
  });
}

/** `src` piped through `t`, with an error of `src` ending `t` too (plain pipe() would leave it hanging). */
export function through(src: Readable, t: Transform): Readable {
  src.on('error', (e) => t.destroy(e));
  return src.pipe(t);
}

/** A compressing stream (level 3: fast, and about what `tar --zstd` does). */
export function zstdCompress(level = 3): Transform {
  return zstdTransform(true, level);
}

/** `buf` compressed whole, as one zstd frame (small objects: a tree's listing). */
export async function zstdCompressBuffer(buf: Buffer, level = 3): Promise<Buffer> {
  const z = nativeStream(true, level);
  return z.transform(buf, true);
}

/** Decompressed bytes one native step may produce: a few KiB of input can declare gigabytes (a zstd bomb). */
export const INFLATE_STEP = 1 << 20;

/**
 * `src` decompressed, pulled a bounded step at a time: at most
 * INFLATE_STEP bytes are decoded per call, and the next call waits until
 * the reader wants more, so memory stays a few MiB whatever the frames
 * declare. With `limit`, more than that many decompressed bytes is an
 * error (`what` names the source in it): a pack never inflates past the
 * size its manifest gives.
 */
export function zstdInflate(src: Readable, opts: { limit?: number; what?: string } = {}): Readable {
  const z = nativeStream(false, 0);
  const damaged = (e: Error, hint: string) => new VriftError('ERR_VRIFT_ZSTD', e.message, { hint });
  async function* steps(): AsyncGenerator<Buffer> {
    let total = 0;
    const emit = (out: Buffer): Buffer => {
      total += out.length;
      if (opts.limit !== undefined && total > opts.limit) {
        throw new VriftError('ERR_VRIFT_ZSTD_BOMB', `${opts.what ?? 'a zstd stream'} decompresses to more than the ${opts.limit} bytes it declares`, {
          hint: 'the object is damaged or hostile; push the tree again',
        });
      }
      return out;
    };
    try {
      for await (const chunk of src as AsyncIterable<Buffer>) {
        let rest = chunk;
        do {
          const out = await z.transform(rest, false, INFLATE_STEP).catch((e: Error) => Promise.reject(damaged(e, 'the pack is damaged; push the tree again')));
          rest = rest.subarray(z.consumed());
          if (out.length > 0) yield emit(out);
        } while (rest.length > 0 || z.pending());
      }
      const out = await z.transform(Buffer.alloc(0), true, INFLATE_STEP).catch((e: Error) => Promise.reject(damaged(e, 'the pack is damaged or was cut; push the tree again')));
      if (out.length > 0) yield emit(out);
    } finally {
      if (!src.readableEnded) src.destroy(); // the reader stopped early or failed: drop the download
    }
  }
  // One step buffered ahead: the native call for the next overlaps the reader's work on this one.
  return Readable.from(steps(), { objectMode: true, highWaterMark: 1 });
}

export function zstdDecompress(): Transform {
  return zstdTransform(false, 0);
}

/** Input gathered for one call of the compressor: bigger pieces of a long frame go in with the frame left open. */
const FRAMED_PIECE = 1 << 20;

/**
 * A compressing stream that ends a zstd frame at each offset of `ends`
 * (offsets into its input, ascending; the last one is the input's length).
 * Each frame decompresses on its own, so a reader can fetch and decompress
 * any run of frames alone (a ranged read of a pack), while the whole output
 * is still one zstd stream that zstdDecompress reads from start to end.
 * `onFrame` is told each frame's compressed size, in order.
 */
export function zstdFramed(ends: readonly number[], onFrame: (compressedBytes: number) => void, level = 3): Transform {
  const z = nativeStream(true, level);
  let pos = 0; // input offset
  let next = 0; // index into ends
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let frameOut = 0; // compressed bytes of the frame being written
  const mismatch = (what: string) => new VriftError('ERR_VRIFT_ZSTD', `the input of a framed zstd stream ${what} (${pos} bytes, frames planned to ${ends.at(-1) ?? 0})`);
  // One native call per frame where it fits in a piece: the frame's input known whole lets zstd size its tables to it.
  const compress = async (t: Transform, endFrame: boolean): Promise<void> => {
    const input = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    const out = await z.transform(input, endFrame);
    frameOut += out.length;
    if (endFrame) {
      onFrame(frameOut);
      frameOut = 0;
    }
    if (out.length > 0) t.push(out);
  };
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      const work = async (): Promise<void> => {
        let at = 0;
        while (at < chunk.length) {
          if (next >= ends.length) throw mismatch('runs past the last frame');
          const take = Math.min(chunk.length - at, ends[next]! - pos);
          pending.push(chunk.subarray(at, at + take));
          pendingBytes += take;
          at += take;
          pos += take;
          if (pos === ends[next]) {
            next++;
            await compress(this, true);
          } else if (pendingBytes >= FRAMED_PIECE) await compress(this, false);
        }
      };
      work().then(
        () => cb(),
        (e: Error) => cb(e.name === 'VriftError' ? e : new VriftError('ERR_VRIFT_ZSTD', e.message)),
      );
    },
    flush(cb) {
      cb(next === ends.length && pendingBytes === 0 ? null : mismatch('ended before the last frame'));
    },
  });
}
