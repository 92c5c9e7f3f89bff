// Damaged copies of an encoding for property tests: up to three edits
// (set, insert or delete one byte), as fast-check generates them.
import fc from 'fast-check';

export type ByteEdit = [at: number, byte: number, how: 'set' | 'insert' | 'delete'];

/** Arbitrary lists of 1-3 edits of `good`, each writing one of `bytes`. */
export function byteEdits(good: Buffer, bytes: readonly number[]): fc.Arbitrary<ByteEdit[]> {
  return fc.array(fc.tuple(fc.nat(good.length - 1), fc.constantFrom(...bytes), fc.constantFrom('set' as const, 'insert' as const, 'delete' as const)), {
    minLength: 1,
    maxLength: 3,
  });
}

/** A copy of `good` with `edits` applied in order. */
export function applyEdits(good: Buffer, edits: readonly ByteEdit[]): Buffer {
  let buf = Buffer.from(good);
  for (const [at, b, how] of edits) {
    const i = Math.min(at, buf.length - 1);
    if (how === 'set') buf[i] = b;
    else if (how === 'insert') buf = Buffer.concat([buf.subarray(0, i), Buffer.from([b]), buf.subarray(i)]);
    else buf = Buffer.concat([buf.subarray(0, i), buf.subarray(i + 1)]);
  }
  return buf;
}
