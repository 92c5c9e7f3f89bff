// zstd compression for packs, through the native addon (libzstd is loaded
// at run time; see native/src/zstd.cc). The work runs on the thread pool,
// so (de)compression overlaps downloading and admitting blobs.
import { Transform, type Readable } from 'node:stream';
import { VriftError } from './errors.js';
import { loadNative } from './native.js';

export function zstdAvailable(): boolean {
  return loadNative().zstdAvailable;
}

function zstdTransform(compress: boolean, level: number): Transform {
  if (!zstdAvailable()) {
    throw new VriftError('ERR_VRIFT_ZSTD_MISSING', 'this pack is zstd-compressed but libzstd.so.1 cannot be loaded', {
      hint: 'install the libzstd1 package',
    });
  }
  const z = new (loadNative().ZstdStream)(compress, level);
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

export function zstdDecompress(): Transform {
  return zstdTransform(false, 0);
}
