// BLAKE3 on native threads (blake3_hash.cc): exports.blake3.
#ifndef VRIFT_BLAKE3_HASH_H
#define VRIFT_BLAKE3_HASH_H

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace vrift {

/** BLAKE3-256 of `len` bytes as 64 lowercase hex characters. */
std::string Blake3Hex(const void* data, size_t len);

void InitBlake3(Napi::Env env, Napi::Object exports);

}  // namespace vrift

#endif
