// An AsyncWorker that answers with a promise and keeps a Buffer's bytes
// alive while a worker thread reads them: checkTree's and linkTree's tree
// (link_farm.cc), a lazy mount's names (addon.cc: checkNamesAsync,
// applyNamesAsync).
#pragma once
#include <napi.h>

#include <cstddef>

namespace vrift {

class BufferWorker : public Napi::AsyncWorker {
 public:
  BufferWorker(Napi::Env env, Napi::Buffer<char> bytes)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), data_(bytes.Data()), len_(bytes.Length()), bytes_(Napi::Persistent(bytes)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  /** Rejects with the error, carrying `code` when Fail set one (as ThrowCode's throws do). */
  void OnError(const Napi::Error& e) override {
    if (code_ != 0) e.Value().Set("code", Napi::Number::New(Env(), code_));
    deferred_.Reject(e.Value());
  }

 protected:
  /** SetError, for a rejection whose `code` is `code` (an errno). */
  void Fail(int code, const char* what) {
    code_ = code;
    SetError(what);
  }

  Napi::Promise::Deferred deferred_;
  const char* data_;  // the bytes, for the worker thread
  size_t len_;

 private:
  Napi::Reference<Napi::Buffer<char>> bytes_;
  int code_ = 0;
};

}  // namespace vrift
