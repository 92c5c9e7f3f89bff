// A tree's distinct file blobs, read straight from its encoding (no
// JavaScript object per entry): exposed as `treeBlobList` on the addon.
#pragma once
#include <napi.h>

namespace vrift {
void InitTreeBlobs(Napi::Env env, Napi::Object exports);
}
