// The home, blob and tree constants of shim/vrift_layout.h (the one place
// they are spelled), for the addon's C++ and, as `exports.layout`, for
// TypeScript (scripts/gen-layout.mjs copies them into src/gen/layout.ts).
#pragma once
#include <napi.h>

#include <string>
#include <string_view>

#include "vrift_layout.h"

namespace vrift {

/** <casDir>/<shard>/<64 hex>[.x]: the path of a blob (or of its executable twin). */
std::string BlobPath(std::string_view casDir, std::string_view hex, bool exec);

/** <casDir>/<shard>: the directory a blob lives in. */
std::string ShardPath(std::string_view casDir, std::string_view hex);

void InitLayout(Napi::Env env, Napi::Object exports);

}  // namespace vrift
