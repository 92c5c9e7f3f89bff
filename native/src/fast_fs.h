// Fast filesystem helpers (batched, multi-threaded mkdir/link/symlink/lstat)
// for materialize. Exposed to JavaScript as `fastFs` on the addon.
#pragma once
#include <napi.h>

namespace vrift {
void InitFastFs(Napi::Env env, Napi::Object exports);
}
