// The bulk port's cipher (native/src/gcm.cc): every frame is AES-256-GCM
// exactly as node:crypto computes it, with the nonce counter of
// sealed-socket's wire, on both of its paths (the VAES one of
// gcm_vaes.cc where the CPU has it, and OpenSSL's, forced with
// VRIFT_GCM_OPENSSL=1), so nodes on different CPUs talk to each other.
import { spawnSync } from 'node:child_process';
import { createCipheriv, randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadNative } from '../../src/lib/native.js';

/** Body lengths around every boundary of the VAES path (16-byte blocks, 256-byte steps) and a whole frame. */
const LENGTHS = [0, 1, 15, 16, 17, 31, 255, 256, 257, 511, 512, 4095, 4096 + 100, 65536 + 7, 1 << 20];

function nonce(i: number): Buffer {
  const iv = Buffer.alloc(12);
  iv.writeBigUInt64BE(BigInt(i), 4);
  return iv;
}

/** The frames' expected ciphertext and tag, from node:crypto. */
function reference(key: Buffer, bodies: Buffer[]): { body: Buffer; tag: Buffer }[] {
  return bodies.map((plain, i) => {
    const c = createCipheriv('aes-256-gcm', key, nonce(i));
    const aad = Buffer.alloc(4);
    aad.writeUInt32BE(plain.byteLength);
    c.setAAD(aad);
    const body = Buffer.concat([c.update(plain), c.final()]);
    return { body, tag: c.getAuthTag() };
  });
}

const ADDON = fileURLToPath(new URL('../../native/build/Release/vrift_native.node', import.meta.url));

/**
 * A process that seals frames of every length in LENGTHS, one after the
 * other as sealed-socket does, with the addon and with node:crypto, and
 * prints both digests of every ciphertext and tag.
 */
const SEAL_BOTH = `
const { createCipheriv, createHash, randomBytes } = require('node:crypto');
const { GcmCipher } = require(process.argv[1]);
const key = randomBytes(32); const ours = new GcmCipher(key, true); const opener = new GcmCipher(key, false); const a = createHash('sha256'); const b = createHash('sha256');
JSON.parse(process.argv[2]).forEach((n, i) => {
  const plain = randomBytes(n); const head = Buffer.alloc(4); head.writeUInt32BE(n);
  const iv = Buffer.alloc(12); iv.writeBigUInt64BE(BigInt(i), 4);
  const c = createCipheriv('aes-256-gcm', key, iv); c.setAAD(head); b.update(Buffer.concat([c.update(plain), c.final()])).update(c.getAuthTag());
  const body = Buffer.from(plain); const tag = Buffer.alloc(16); ours.seal(head, body, tag); a.update(body).update(tag);
  // And back, checked then decrypted in two pieces, the second into another buffer.
  if (!opener.check(head, body, tag)) throw new Error('check failed for ' + n + ' bytes');
  const cut = n >> 1; const out = Buffer.alloc(n); opener.plain(body.subarray(0, cut), 0, body.subarray(0, cut)); body.copy(out, 0, 0, cut);
  opener.plain(body.subarray(cut), cut, out.subarray(cut)); if (!out.equals(plain)) throw new Error('plain differs for ' + n + ' bytes');
});
process.stdout.write(JSON.stringify([a.digest('hex'), b.digest('hex')]));`;

describe('GcmCipher', () => {
  const { GcmCipher } = loadNative();

  it('seals every frame as node:crypto does, and opens what node:crypto sealed', () => {
    for (let round = 0; round < 3; round++) {
      const key = randomBytes(32);
      const plain = LENGTHS.map((n) => randomBytes(n));
      const want = reference(key, plain);
      const sealer = new GcmCipher(key, true);
      const opener = new GcmCipher(key, false);
      plain.forEach((p, i) => {
        const body = Buffer.from(p);
        const head = Buffer.alloc(4);
        head.writeUInt32BE(body.byteLength);
        const tag = Buffer.alloc(16);
        sealer.seal(head, body, tag);
        expect(body.equals(want[i]!.body), `ciphertext of ${p.byteLength} bytes`).toBe(true);
        expect(tag.equals(want[i]!.tag), `tag of ${p.byteLength} bytes`).toBe(true);
        const back = Buffer.from(want[i]!.body);
        expect(opener.open(head, back, want[i]!.tag)).toBe(true);
        expect(back.equals(p)).toBe(true);
      });
    }
  });

  it('checks a frame without decrypting it, then decrypts any piece of it anywhere (check, plain)', () => {
    const key = randomBytes(32);
    const plain = LENGTHS.map((n) => randomBytes(n));
    const want = reference(key, plain);
    const c = new GcmCipher(key, false);
    plain.forEach((p, i) => {
      const n = p.byteLength;
      const head = Buffer.alloc(4);
      head.writeUInt32BE(n);
      const body = Buffer.from(want[i]!.body);
      expect(c.check(head, body, want[i]!.tag), `frame of ${n} bytes`).toBe(true);
      // Pieces of every alignment: some decrypted in place, some into another buffer.
      const out = Buffer.alloc(n);
      for (let at = 0, k = 0; at < n; k++) {
        const len = Math.min(n - at, [1, 7, 16, 33, 255, 4096, 300_000][k % 7]!);
        if (k % 2) c.plain(body.subarray(at, at + len), at, out.subarray(at, at + len));
        else {
          c.plain(body.subarray(at, at + len), at, body.subarray(at, at + len));
          body.copy(out, at, at, at + len);
        }
        at += len;
      }
      expect(out.equals(p), `plaintext of ${n} bytes`).toBe(true);
    });
    // A tag that fails: false, and nothing may be decrypted after it.
    const head = Buffer.alloc(4);
    head.writeUInt32BE(10);
    expect(c.check(head, Buffer.alloc(10), Buffer.alloc(16))).toBe(false);
    expect(() => c.plain(Buffer.alloc(10), 0, Buffer.alloc(10))).toThrow(/no frame passed/);
  });

  it('refuses a frame whose tag, body, length or place in the stream is wrong', () => {
    const key = randomBytes(32);
    const plain = LENGTHS.map((n) => randomBytes(n));
    const want = reference(key, plain);
    const head = (n: number) => {
      const h = Buffer.alloc(4);
      h.writeUInt32BE(n);
      return h;
    };
    for (const [i, p] of plain.entries()) {
      const n = p.byteLength;
      const tag = Buffer.from(want[i]!.tag);
      tag[i % 16]! ^= 1;
      expect(new GcmCipher(key, false).open(head(n), Buffer.from(want[i]!.body), tag), `bad tag, ${n} bytes`).toBe(false);
      if (n > 0) {
        const body = Buffer.from(want[i]!.body);
        body[n - 1]! ^= 0x80;
        expect(new GcmCipher(key, false).open(head(n), body, want[i]!.tag), `bad body, ${n} bytes`).toBe(false);
      }
      expect(new GcmCipher(key, false).open(head(n + 1), Buffer.from(want[i]!.body), want[i]!.tag), `bad length, ${n} bytes`).toBe(false);
    }
    // Frame 1 opened as frame 0 (the nonce is the frame's place): refused.
    expect(new GcmCipher(key, false).open(head(plain[1]!.byteLength), Buffer.from(want[1]!.body), want[1]!.tag)).toBe(false);
  });

  it('seals as node:crypto does on both paths: VAES (where the CPU has it) and OpenSSL (VRIFT_GCM_OPENSSL=1)', () => {
    for (const force of ['0', '1']) {
      const child = spawnSync(process.execPath, ['-e', SEAL_BOTH, ADDON, JSON.stringify(LENGTHS)], { env: { ...process.env, VRIFT_GCM_OPENSSL: force }, encoding: 'utf8' });
      expect(child.stderr).toBe('');
      const [ours, theirs] = JSON.parse(child.stdout) as [string, string];
      expect(ours, `VRIFT_GCM_OPENSSL=${force}`).toBe(theirs);
    }
  });
});
