// The control protocol: the C header (the spec) and its TypeScript mirror
// encode the same bytes and agree on every constant.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeFrame, F, Fields, FrameDecoder, HEADER_SIZE, MAGIC, MAX_PAYLOAD, Msg, VERSION } from '../../src/node/control/protocol.js';
import { ROOT } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

function cEncoder(): string[] {
  const bin = join(tempDir(), 'proto-encode');
  execFileSync('gcc', ['-std=c11', '-Wall', '-Werror', '-I', join(ROOT, 'shim'), '-o', bin, join(ROOT, 'test', 'c', 'proto-encode.c')]);
  return execFileSync(bin, { encoding: 'utf8' }).trim().split('\n');
}

describe('control protocol', () => {
  const lines = cEncoder();

  it('TypeScript encodes the same bytes as the C header', () => {
    const ts = [
      encodeFrame(Msg.HELLO, 1),
      encodeFrame(Msg.MOUNT, 7, [
        [F.TREE, 'ci/node_modules/abc'],
        [F.PATH, '/work/app/node_modules'],
        [F.PROJECT, 'app'],
      ]),
      encodeFrame(Msg.UPPER, 0xdeadbeef, [
        [F.PATH, '/m'],
        [F.REL, 'out/main.o'],
        [F.DIGEST, '0a1b'],
        [F.BASE, 'ffee'],
        [F.MODE, { u32: 0o100755 }],
      ]),
      encodeFrame(Msg.ERROR, 2, [
        [F.ERR_CODE, ''],
        [F.ERR_MSG, 'café ✓'],
      ]),
      encodeFrame(Msg.NODE_PEERS, 9, [
        [F.TREE, 'aa'],
        [F.DIGEST, 'bb'],
        [F.DIGEST, 'cc'],
      ]),
    ].map((b) => b.toString('hex'));
    expect(ts).toEqual(lines.slice(0, 5));
  });

  it('agrees on every constant', () => {
    const c = JSON.parse(lines[5]!);
    expect(c).toEqual({ MAGIC, VERSION, HEADER_SIZE, MAX_PAYLOAD, Msg, F });
  });

  it('decodes what it encodes, across arbitrary chunking', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 1, max: 20 }), fc.string({ maxLength: 50 })), { maxLength: 6 }),
        fc.integer({ min: 1, max: 17 }),
        (fields, step) => {
          const frame = encodeFrame(Msg.MOUNT, 99, fields.map(([t, v]) => [t, v]));
          const d = new FrameDecoder();
          const events = [];
          for (let i = 0; i < frame.length; i += step) events.push(...d.push(frame.subarray(i, i + step)));
          expect(events).toHaveLength(1);
          const ev = events[0]!;
          expect('frame' in ev).toBe(true);
          if ('frame' in ev) {
            expect(ev.frame.id).toBe(99);
            for (const [t, v] of fields) expect(ev.frame.fields.strs(t)).toContain(v);
          }
        },
      ),
    );
  });

  it('reports malformed payloads without losing the stream, and bad headers as fatal', () => {
    const d = new FrameDecoder();
    const bad = Buffer.alloc(HEADER_SIZE + 3);
    bad.writeUInt32LE(MAGIC, 0);
    bad.writeUInt16LE(VERSION, 4);
    bad.writeUInt16LE(Msg.MOUNT, 6);
    bad.writeUInt32LE(5, 8);
    bad.writeUInt32LE(3, 12); // a 3-byte payload cannot hold a 6-byte field header
    const evs = d.push(Buffer.concat([bad, encodeFrame(Msg.HELLO, 6)]));
    expect(evs).toHaveLength(2);
    expect('error' in evs[0]! && !evs[0].error.fatal && evs[0].error.code).toBe('ERR_VRIFT_PROTO_PAYLOAD');
    expect('frame' in evs[1]! && evs[1].frame.id).toBe(6);

    const big = encodeFrame(Msg.HELLO, 1);
    big.writeUInt32LE(MAX_PAYLOAD + 1, 12);
    const e2 = new FrameDecoder().push(big);
    expect('error' in e2[0]! && e2[0].error.fatal && e2[0].error.code).toBe('ERR_VRIFT_PROTO_TOO_LARGE');
    expect(Fields.parse(Buffer.from([1, 0, 255, 255, 255, 255]))).toMatch(/runs past the end/);
  });
});
