// The link farm of materialize (checkTree, linkTree), on native threads;
// exported on the addon's `fastFs` object (link_farm.cc documents them).
#pragma once
#include <napi.h>

namespace vrift {
void InitLinkFarm(Napi::Env env, Napi::Object fastFs);
}
