// AES-256-GCM frames for the bulk port (src/lib/sealed-socket.ts), in
// place, through the OpenSSL that Node itself carries (its binary exports
// the EVP functions; the headers come with Node's). Exposed to JavaScript
// as `GcmCipher`:
//
//   new GcmCipher(key, encrypt)   key: 32 bytes; one direction of one connection
//   seal(aad, body, tag)          encrypts `body` in place; writes the 16-byte tag
//   open(aad, body, tag) -> bool  decrypts `body` in place; false when the tag
//                                 does not verify (`body` is then garbage)
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
