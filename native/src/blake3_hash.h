// BLAKE3 on native threads (blake3_hash.cc): exports.blake3.
#ifndef VRIFT_BLAKE3_HASH_H
#define VRIFT_BLAKE3_HASH_H

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace vrift {

/** BLAKE3-256 of `len` bytes as 64 lowercase hex characters. */
std::string Blake3Hex(const void* data, size_t len);

/**
 * Calls fn(ctx, bytes) with `len` bytes of file `fd` from `off`: mapped
 * read-only and faulted in from the page cache at once (no copy), or read
 * into `fallback` (grown as needed) where the range cannot be mapped.
 * Returns 0, an errno, or -1 when the file is shorter than off + len (it
 * shrank; a truncation under the mapping raises SIGBUS, which is caught
 * on this thread and ends fn early). For the native threads that hash
 * files (hashFile here, bao_outboard.cc); fn must not hold resources a
 * jump out of it would leak.
 */
int WithFileBytes(int fd, uint64_t off, size_t len, std::vector<uint8_t>& fallback, void (*fn)(void* ctx, const uint8_t* bytes), void* ctx);

void InitBlake3(Napi::Env env, Napi::Object exports);

}  // namespace vrift

#endif
