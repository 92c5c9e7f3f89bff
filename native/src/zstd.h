// zstd compression streams (libzstd loaded at run time). Exposed to
// JavaScript as `zstdAvailable` and `ZstdStream` on the addon.
#pragma once
#include <napi.h>

namespace vrift {
void InitZstd(Napi::Env env, Napi::Object exports);
}
