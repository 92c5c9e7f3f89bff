// Fast filesystem helpers: walking a tree for ingest (scanTree); the link
// farm of materialize (checkTree, linkTree) is link_farm.cc, exported on
// the same `fastFs` object.
#include "fast_fs.h"

#include "link_farm.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace vrift {
namespace {

// scanTree(root) -> { paths, stats, targets, error? }
//   Walks the tree under `root` without following symlinks (the root
//   itself must be a directory). Every entry below it, depth first, in
//   readdir order:
//     paths:   Buffer of NUL-terminated paths relative to root ('/'-separated)
//     stats:   Float64Array, 8 per entry: [kind, mode, size, mtimeMs, ctimeMs, dev, ino, mtimeNsec]
//              (mtimeNsec: the nanoseconds of the mtime, which mtimeMs rounds: trees keep them exactly)
//              kind: 1 file, 2 dir, 3 symlink, 4 fifo, 5 socket, 6 block dev, 7 char dev
//     targets: Buffer of NUL-terminated symlink targets, one per symlink, in order
//   On the first error: error = { errno, path } (absolute) and the walk stops.
constexpr int kScanFields = 8;

int KindOf(mode_t m) {
  if (S_ISREG(m)) return 1;
  if (S_ISDIR(m)) return 2;
  if (S_ISLNK(m)) return 3;
  if (S_ISFIFO(m)) return 4;
  if (S_ISSOCK(m)) return 5;
  if (S_ISBLK(m)) return 6;
  return 7;
}

double Ms(const struct timespec& t) { return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) / 1e6; }

Napi::Value ScanTree(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string root = info[0].As<Napi::String>();
  std::string paths, targets;
  std::vector<double> stats;
  int err = 0;
  std::string errPath;
  // Stack of (open directory fd, relative path of that directory).
  struct Frame {
    DIR* dir;
    std::string rel;
  };
  std::vector<Frame> stack;
  int rootfd = open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0) {
    err = errno;
    errPath = root;
  } else {
    DIR* d = fdopendir(rootfd);
    if (!d) {
      err = errno;
      errPath = root;
      close(rootfd);
    } else
      stack.push_back({d, ""});
  }
  std::vector<char> link(4097);
  while (!stack.empty() && err == 0) {
    Frame& f = stack.back();
    errno = 0;
    struct dirent* de = readdir(f.dir);
    if (!de) {
      if (errno != 0) {
        err = errno;
        errPath = root + "/" + f.rel;
      }
      closedir(f.dir);
      stack.pop_back();
      continue;
    }
    const char* name = de->d_name;
    if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) continue;
    std::string rel = f.rel.empty() ? std::string(name) : f.rel + "/" + name;
    int dfd = dirfd(f.dir);
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      err = errno;
      errPath = root + "/" + rel;
      break;
    }
    int kind = KindOf(st.st_mode);
    if (kind == 3) {
      ssize_t n = readlinkat(dfd, name, link.data(), link.size() - 1);
      if (n < 0) {
        err = errno;
        errPath = root + "/" + rel;
        break;
      }
      targets.append(link.data(), n);
      targets.push_back('\0');
    }
    paths.append(rel);
    paths.push_back('\0');
    double row[kScanFields] = {static_cast<double>(kind), static_cast<double>(st.st_mode), static_cast<double>(st.st_size),
                               Ms(st.st_mtim), Ms(st.st_ctim), static_cast<double>(st.st_dev), static_cast<double>(st.st_ino),
                               static_cast<double>(st.st_mtim.tv_nsec)};
    stats.insert(stats.end(), row, row + kScanFields);
    if (kind == 2) {
      int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      DIR* sub = fd < 0 ? nullptr : fdopendir(fd);
      if (!sub) {
        err = errno;
        errPath = root + "/" + rel;
        if (fd >= 0) close(fd);
        break;
      }
      stack.push_back({sub, rel});  // invalidates f: not used below
    }
  }
  for (auto& f : stack) closedir(f.dir);
  Napi::Object out = Napi::Object::New(env);
  out.Set("paths", Napi::Buffer<char>::Copy(env, paths.data(), paths.size()));
  out.Set("targets", Napi::Buffer<char>::Copy(env, targets.data(), targets.size()));
  Napi::Float64Array arr = Napi::Float64Array::New(env, stats.size());
  if (!stats.empty()) std::memcpy(arr.Data(), stats.data(), stats.size() * sizeof(double));
  out.Set("stats", arr);
  if (err != 0) {
    Napi::Object e = Napi::Object::New(env);
    e.Set("errno", Napi::Number::New(env, err));
    e.Set("path", Napi::String::New(env, errPath));
    out.Set("error", e);
  }
  return out;
}

// setMtimes(paths: string[], sec: Float64Array, nsec: Float64Array) -> Float64Array
//   Sets each path's modification time to sec[i] s + nsec[i] ns exactly
//   (JavaScript's utimes takes seconds as a double, which cannot carry
//   nanoseconds), without following symlinks, leaving the access time.
//   Returns [index, errno] pairs for the paths that failed.
Napi::Value SetMtimes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array paths = info[0].As<Napi::Array>();
  Napi::Float64Array sec = info[1].As<Napi::Float64Array>();
  Napi::Float64Array nsec = info[2].As<Napi::Float64Array>();
  uint32_t n = paths.Length();
  if (sec.ElementLength() < n || nsec.ElementLength() < n) {
    Napi::TypeError::New(env, "setMtimes: fewer times than paths").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::vector<double> failures;
  for (uint32_t i = 0; i < n; i++) {
    std::string path = paths.Get(i).As<Napi::String>();
    struct timespec ts[2];
    ts[0].tv_sec = 0;
    ts[0].tv_nsec = UTIME_OMIT;
    ts[1].tv_sec = static_cast<time_t>(sec[i]);
    ts[1].tv_nsec = static_cast<long>(nsec[i]);
    if (utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) {
      failures.push_back(i);
      failures.push_back(errno);
    }
  }
  Napi::Float64Array out = Napi::Float64Array::New(env, failures.size());
  if (!failures.empty()) std::memcpy(out.Data(), failures.data(), failures.size() * sizeof(double));
  return out;
}

}  // namespace

void InitFastFs(Napi::Env env, Napi::Object exports) {
  Napi::Object fs = Napi::Object::New(env);
  fs.Set("scanTree", Napi::Function::New(env, ScanTree));
  fs.Set("setMtimes", Napi::Function::New(env, SetMtimes));
  InitLinkFarm(env, fs);  // checkTree, linkTree (link_farm.cc)
  exports.Set("fastFs", fs);
}

}  // namespace vrift
