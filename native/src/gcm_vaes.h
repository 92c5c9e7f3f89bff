// AES-256-GCM with VAES and VPCLMULQDQ on 512-bit vectors (x86-64 with
// AVX-512), for the bulk port's frames (gcm.cc). Node 20's OpenSSL 3.0
// has no such path: its best is the AVX stitched one (_aesni_ctr32_ghash_6x).
// gcm.cc uses this when the CPU has it (GcmVaesAvailable), OpenSSL otherwise.
#pragma once
#include <cstddef>
#include <cstdint>

namespace vrift {

/** The expanded key: AES-256 round keys and H^1 … H^16 (64-byte aligned). */
struct alignas(64) GcmVaesKey {
  uint8_t rk[15][16];
  uint8_t h[16][16];  // h[i] = H^(i+1), bytes reversed (GHASH's domain here)
};

/** Whether this CPU (and its OS) has AVX-512 F/BW/VL, VAES and VPCLMULQDQ. */
bool GcmVaesAvailable();

/** Expands a 32-byte key. Only when GcmVaesAvailable(). */
void GcmVaesInit(GcmVaesKey* k, const uint8_t key[32]);

/**
 * Encrypts (or decrypts) `len` bytes of `data` in place under the 12-byte
 * `iv`, authenticating `aad` too; writes the 16-byte tag (`encrypt`) or the
 * tag it computed (to compare with the frame's). GCM exactly (NIST SP 800-38D).
 */
void GcmVaesCrypt(const GcmVaesKey* k, const uint8_t iv[12], const uint8_t* aad, size_t aad_len, uint8_t* data, size_t len, bool encrypt,
                  uint8_t tag[16]);

/** The tag of a frame whose body `data` is still ciphertext (decrypting nothing): GHASH alone. */
void GcmVaesTag(const GcmVaesKey* k, const uint8_t iv[12], const uint8_t* aad, size_t aad_len, const uint8_t* data, size_t len, uint8_t tag[16]);

/**
 * Decrypts (or encrypts: CTR is its own inverse) `len` bytes of a body
 * under `iv`, starting `pos` bytes into it, from `src` into `dst` (the same
 * memory, or apart; no tag).
 */
void GcmVaesCtr(const GcmVaesKey* k, const uint8_t iv[12], size_t pos, const uint8_t* src, uint8_t* dst, size_t len);

}  // namespace vrift
