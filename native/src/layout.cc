// exports.layout: the constants of shim/vrift_layout.h, grouped as
// src/gen/layout.ts has them (home, blob, tree), and
//
// blobPath(casDir, digest, exec) -> string
//   The path BlobPath gives the addon's own file operations (fast_fs.cc,
//   blob_io.cc), so a test can compare it with TypeScript's and C's.
#include "layout.h"

namespace vrift {

std::string BlobPath(std::string_view casDir, std::string_view hex, bool exec) {
  char rel[VRIFT_LAYOUT_BLOB_REL_SIZE];
  size_t n = vrift_layout_blob_rel(hex.data(), exec, rel);
  std::string p;
  p.reserve(casDir.size() + 1 + n);
  p.append(casDir).append("/").append(rel, n);
  return p;
}

std::string ShardPath(std::string_view casDir, std::string_view hex) {
  std::string p;
  p.reserve(casDir.size() + 1 + VRIFT_LAYOUT_SHARD_HEX);
  p.append(casDir).append("/").append(hex.substr(0, VRIFT_LAYOUT_SHARD_HEX));
  return p;
}

namespace {

Napi::Value JsBlobPath(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString())
    throw Napi::TypeError::New(env, "blobPath(casDir, digest, exec): bad arguments");
  std::string casDir = info[0].As<Napi::String>(), hex = info[1].As<Napi::String>();
  if (hex.size() != VRIFT_LAYOUT_DIGEST_HEX) throw Napi::TypeError::New(env, "blobPath: digest must be 64 hex characters");
  return Napi::String::New(env, BlobPath(casDir, hex, info[2].ToBoolean().Value()));
}

std::string Char(char c) { return std::string(1, c); }

}  // namespace

void InitLayout(Napi::Env env, Napi::Object exports) {
  Napi::Object home = Napi::Object::New(env);
  home.Set("cas", VRIFT_LAYOUT_CAS_DIR);
  home.Set("tmp", VRIFT_LAYOUT_TMP_DIR);
  home.Set("upper", VRIFT_LAYOUT_UPPER_DIR);
  home.Set("upperIssued", VRIFT_LAYOUT_UPPER_ISSUED);
  home.Set("upperJournal", VRIFT_LAYOUT_UPPER_JOURNAL);
  home.Set("farm", VRIFT_LAYOUT_FARM_DIR);
  home.Set("quarantine", VRIFT_LAYOUT_QUARANTINE_DIR);
  home.Set("meta", VRIFT_LAYOUT_META_DIR);
  home.Set("run", VRIFT_LAYOUT_RUN_DIR);
  home.Set("socket", VRIFT_LAYOUT_SOCKET_NAME);
  home.Set("shimWarnedPrefix", VRIFT_LAYOUT_SHIM_WARNED_PREFIX);

  Napi::Object blob = Napi::Object::New(env);
  blob.Set("digestHex", VRIFT_LAYOUT_DIGEST_HEX);
  blob.Set("shardHex", VRIFT_LAYOUT_SHARD_HEX);
  blob.Set("execSuffix", VRIFT_LAYOUT_EXEC_SUFFIX);
  blob.Set("mode", VRIFT_LAYOUT_BLOB_MODE);
  blob.Set("execMode", VRIFT_LAYOUT_EXEC_MODE);
  blob.Set("mtimeSec", VRIFT_LAYOUT_BLOB_MTIME_SEC);

  Napi::Object tree = Napi::Object::New(env);
  tree.Set("header", VRIFT_TREE_HEADER);
  tree.Set("namesHeader", VRIFT_NAMES_HEADER);
  tree.Set("kindFile", Char(VRIFT_TREE_KIND_FILE));
  tree.Set("kindDir", Char(VRIFT_TREE_KIND_DIR));
  tree.Set("kindSymlink", Char(VRIFT_TREE_KIND_SYMLINK));
  tree.Set("modeFile", VRIFT_TREE_MODE_FILE);
  tree.Set("modeExec", VRIFT_TREE_MODE_EXEC);
  tree.Set("modeDir", VRIFT_TREE_MODE_DIR);
  tree.Set("modeSymlink", VRIFT_TREE_MODE_SYMLINK);
  tree.Set("noRef", VRIFT_TREE_NO_REF);
  tree.Set("pathMax", VRIFT_TREE_PATH_MAX);
  tree.Set("nameMax", VRIFT_TREE_NAME_MAX);

  Napi::Object layout = Napi::Object::New(env);
  layout.Set("home", home);
  layout.Set("blob", blob);
  layout.Set("tree", tree);
  layout.Set("blobPath", Napi::Function::New(env, JsBlobPath));
  exports.Set("layout", layout);
}

}  // namespace vrift
