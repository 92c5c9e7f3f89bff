// AES-256-GCM frames for the bulk port (src/lib/sealed-socket.ts), in
// place: with VAES and VPCLMULQDQ where the CPU has them (gcm_vaes.h),
// otherwise through the OpenSSL that Node itself carries (its binary
// exports the EVP functions; the headers come with Node's). Exposed to JavaScript
// as `GcmCipher`:
//
//   new GcmCipher(key, encrypt)   key: 32 bytes; one direction of one connection
//   seal(aad, body, tag)          encrypts `body` in place; writes the 16-byte tag
//   open(aad, body, tag) -> bool  decrypts `body` in place; false when the tag
//                                 does not verify (`body` is then garbage)
//   check(aad, body, tag) -> bool authenticates the next frame; with VAES
//                                 (gcm_vaes.cc) `body` stays ciphertext, and
//                                 nothing is decrypted unless the tag verifies
//   plain(src, at, dst)           the plaintext of `src` (bytes of the frame
//                                 check() passed, from `at` into its body)
//                                 into `dst`: a reader decrypts each piece
//                                 where it goes (OpenSSL's path: copies)
//
// Each call uses the next nonce of the cipher's own counter (12 bytes:
// four zero bytes, then the counter as u64 big-endian), so a key never
// sees a nonce twice and frames cannot be reordered, dropped or replayed
// without the next tag failing. Errors: TypeError on bad arguments; Error
// "gcm: …" when OpenSSL fails (never for a bad tag: that is `false`).
#pragma once
#include <napi.h>

namespace vrift {
void InitGcm(Napi::Env env, Napi::Object exports);
}
