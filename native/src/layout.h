// The home, blob and tree constants of shim/vrift_layout.h (the one place
// they are spelled), for the addon's C++ and, as `exports.layout`, for
// TypeScript (scripts/gen-layout.mjs copies them into src/gen/layout.ts).
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "vrift_layout.h"

namespace vrift {

/** A lowercase hex digit's value, 0xff for any other byte (a table: this runs per digest of a tree). */
struct HexDigits {
  uint8_t v[256];
  constexpr HexDigits() : v() {
    for (int c = 0; c < 256; c++) v[c] = 0xff;
    for (int c = '0'; c <= '9'; c++) v[c] = static_cast<uint8_t>(c - '0');
    for (int c = 'a'; c <= 'f'; c++) v[c] = static_cast<uint8_t>(c - 'a' + 10);
  }
};
inline constexpr HexDigits kHexDigits{};

/** 64 lowercase hex digits at `hex` into 32 bytes; false (out undefined) if they are not that. */
inline bool DecodeDigestHex(const char* hex, uint8_t out[32]) {
  const auto* h = reinterpret_cast<const uint8_t*>(hex);
  uint8_t bad = 0;
  for (size_t i = 0; i < 32; i++) {
    const uint8_t hi = kHexDigits.v[h[2 * i]], lo = kHexDigits.v[h[2 * i + 1]];
    bad |= hi | lo;
    out[i] = static_cast<uint8_t>(hi << 4 | (lo & 0x0f));
  }
  return (bad & 0xf0) == 0;
}

/** <casDir>/<shard>/<64 hex>[.x]: the path of a blob (or of its executable twin). */
std::string BlobPath(std::string_view casDir, std::string_view hex, bool exec);

/** <casDir>/<shard>: the directory a blob lives in. */
std::string ShardPath(std::string_view casDir, std::string_view hex);

void InitLayout(Napi::Env env, Napi::Object exports);

}  // namespace vrift
