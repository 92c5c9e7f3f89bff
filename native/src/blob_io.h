// Batched blob I/O (reading many files, writing many blobs into the CAS)
// on native threads. Exposed to JavaScript as `blobIo` on the addon.
#pragma once
#include <napi.h>

namespace vrift {
void InitBlobIo(Napi::Env env, Napi::Object exports);
}
