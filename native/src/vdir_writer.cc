// The VDir writer (see vdir_writer.h; the layout and protocols it follows
// are specified in shim/vrift_vdir.h).
#include "vdir_writer.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <unordered_map>
#include <unordered_set>

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the batch encoding and hash assume little-endian");

namespace vrift {
namespace {

constexpr uint32_t kIfmt = VRIFT_VDIR_S_IFMT;

inline uint32_t TypeOf(uint32_t mode) { return mode & kIfmt; }
inline bool IsDir(uint32_t mode) { return TypeOf(mode) == VRIFT_VDIR_S_IFDIR; }
inline bool IsLnk(uint32_t mode) { return TypeOf(mode) == VRIFT_VDIR_S_IFLNK; }

[[noreturn]] void Fail(int code, const std::string& msg) { throw VdirError(code, msg); }

[[noreturn]] void FailSys(const std::string& what) {
  int e = errno;
  throw VdirError(e, what + ": " + std::strerror(e));
}

std::string Q(std::string_view s) {
  std::string out = "\"";
  out.append(s.substr(0, 200));
  if (s.size() > 200) out += "...";
  return out + "\"";
}

// Why `p` is not a path a VDir stores, or nullptr. The root "" is valid.
const char* PathProblem(std::string_view p) {
  if (p.empty()) return nullptr;
  if (p.size() > VRIFT_VDIR_PATH_MAX) return "longer than 4095 bytes";
  if (p.find('\0') != std::string_view::npos) return "contains a NUL byte";
  if (p.front() == '/') return "absolute (paths are relative to the mount)";
  if (p.back() == '/') return "trailing '/'";
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find('/', start);
    if (end == std::string_view::npos) end = p.size();
    std::string_view c = p.substr(start, end - start);
    if (c.empty()) return "empty path component";
    if (c == "." || c == "..") return "'.' or '..' component";
    if (c.size() > VRIFT_VDIR_NAME_MAX) return "component longer than 255 bytes";
    start = end + 1;
  }
  return nullptr;
}

std::string_view Dirname(std::string_view p) {
  size_t slash = p.rfind('/');
  return slash == std::string_view::npos ? std::string_view() : p.substr(0, slash);
}

bool ValidName(std::string_view n) {
  if (n.empty() || n.size() > VRIFT_VDIR_NAME_MAX || n == "." || n == "..") return false;
  for (char c : n)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
          c == '-'))
      return false;
  return true;
}

uint64_t Random64() {
  uint64_t v = 0;
  if (getrandom(&v, sizeof v, 0) != sizeof v) v = static_cast<uint64_t>(time(nullptr)) * 0x9E3779B97F4A7C15ull ^ getpid();
  return v;
}

uint64_t NowNs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

struct Geometry {
  uint32_t entry_cap, buckets;
  uint64_t entry_off, data_off, bucket_off, pool_off, pool_cap, total;
};

// Nodes, then data records, then buckets (load <= 0.8, always >
// entry_cap), then the pool, which also takes whatever the last page has left.
Geometry Layout(uint32_t entry_cap, uint64_t pool_min) {
  if (entry_cap > VRIFT_VDIR_MAX_ENTRIES)
    Fail(ENOSPC, "a VDir holds at most " + std::to_string(VRIFT_VDIR_MAX_ENTRIES) + " entries");
  Geometry g{};
  g.entry_cap = entry_cap;
  g.buckets = static_cast<uint32_t>(std::max<uint64_t>(entry_cap + 1ull, (entry_cap * 5ull + 3) / 4));
  g.entry_off = VRIFT_VDIR_HEADER_SIZE;
  g.data_off = g.entry_off + uint64_t{entry_cap} * VRIFT_VDIR_ENTRY_SIZE;
  g.bucket_off = g.data_off + uint64_t{entry_cap} * VRIFT_VDIR_DATA_SIZE;
  g.pool_off = g.bucket_off + uint64_t{g.buckets} * VRIFT_VDIR_BUCKET_SIZE;
  g.total = (g.pool_off + pool_min + VRIFT_VDIR_PAGE - 1) / VRIFT_VDIR_PAGE * VRIFT_VDIR_PAGE;
  g.pool_cap = g.total - g.pool_off;
  if (g.pool_cap > UINT32_MAX) Fail(ENOSPC, "a VDir's string pool holds at most 4 GiB");
  return g;
}

}  // namespace

// What a validated batch needs; computed before anything changes.
struct VdirWriter::Plan {
  std::vector<uint32_t> removals;  // entry indices, deepest first
  uint32_t new_slots = 0;
  uint64_t pool_need = 0;   // bytes the upserts may append
  uint64_t pool_freed = 0;  // bytes the removals turn into garbage
};

void VdirWriter::Init(const VdirCreateOptions& opt) {
  if (!ValidName(name_)) Fail(EINVAL, "invalid VDir name " + Q(name_) + ": use 1-255 of [A-Za-z0-9._-]");
  if (cas_root_.empty() || cas_root_[0] != '/' || cas_root_.size() >= VRIFT_VDIR_CAS_ROOT_MAX)
    Fail(EINVAL, "casRoot " + Q(cas_root_) + " must be an absolute path shorter than 256 bytes");
  if (mount_root_.empty() || mount_root_[0] != '/' || mount_root_.size() >= VRIFT_VDIR_MOUNT_ROOT_MAX)
    Fail(EINVAL, "mountRoot " + Q(mount_root_) + " must be an absolute path shorter than 3584 bytes");
  if (opt.capacity >= VRIFT_VDIR_MAX_ENTRIES) Fail(ENOSPC, "capacity past the VDir limit of 16777214 entries");
  shm_path_ = std::string(VRIFT_VDIR_SHM_DIR "/" VRIFT_VDIR_SHM_PREFIX) + std::to_string(getuid()) + "." + name_;
  seed_ = Random64();
  volume_id_ = Random64();
}

VdirWriter::VdirWriter(const VdirCreateOptions& opt) : name_(opt.name), cas_root_(opt.cas_root), mount_root_(opt.mount_root) {
  Init(opt);
  uint64_t pool = (opt.pool_bytes != 0 ? opt.pool_bytes : uint64_t{opt.capacity} * 64) + 1;
  std::string tmp;
  map_ = Build(opt.capacity + 1, pool, &tmp);
  hash_.assign(map_.hdr->entry_cap, 0);
  prev_.assign(map_.hdr->entry_cap, 0);

  // The root directory, slot 0, path "".
  vrift_vdir_node& root = map_.node[0];
  root.mode = VRIFT_VDIR_S_IFDIR | 0755;
  root.mtime_sec = static_cast<uint32_t>(time(nullptr));
  root.path_off = AppendString(std::string_view("", 1));
  hash_[0] = vrift_vdir_path_hash("", 0, seed_);
  map_.hdr->entry_count = 1;
  map_.hdr->entry_hwm = 1;
  InsertBucket(0);
  Recheck(0);
  Publish(tmp);
}

VdirWriter::VdirWriter(const VdirCreateOptions& opt, const uint8_t* image, size_t len, int64_t mtime_sec)
    : name_(opt.name), cas_root_(opt.cas_root), mount_root_(opt.mount_root) {
  Init(opt);
  // The image is a copy of an object this daemon built; still, check what
  // the copy relies on rather than publish something readers would refuse.
  if (image == nullptr || len < VRIFT_VDIR_HEADER_SIZE || reinterpret_cast<uintptr_t>(image) % 8 != 0)
    Fail(EINVAL, "VDir image: too short or misaligned");
  const auto* ih = reinterpret_cast<const vrift_vdir_header*>(image);
  if (ih->magic != VRIFT_VDIR_MAGIC || ih->version != VRIFT_VDIR_VERSION || ih->header_size != VRIFT_VDIR_HEADER_SIZE ||
      ih->entry_size != VRIFT_VDIR_ENTRY_SIZE || ih->total_size != len || (ih->gen.load(std::memory_order_relaxed) & 1u) != 0 ||
      ih->entry_hwm > ih->entry_cap || ih->entry_count > ih->entry_hwm || ih->pool_used > ih->pool_cap)
    Fail(EINVAL, "VDir image: not a complete object of this layout");
  if (std::strncmp(ih->cas_root, cas_root_.c_str(), VRIFT_VDIR_CAS_ROOT_MAX) != 0)
    Fail(EINVAL, "VDir image: built for another CAS (" + Q(std::string(ih->cas_root, strnlen(ih->cas_root, VRIFT_VDIR_CAS_ROOT_MAX))) + ")");
  seed_ = ih->hash_seed;  // the buckets were placed with it
  std::string tmp;
  map_ = Build(ih->entry_cap, ih->pool_cap, &tmp);
  const vrift_vdir_header* h = map_.hdr;
  if (h->total_size != len || h->entry_off != ih->entry_off || h->data_off != ih->data_off || h->bucket_off != ih->bucket_off ||
      h->bucket_count != ih->bucket_count || h->pool_off != ih->pool_off || h->pool_cap != ih->pool_cap) {
    unlink(tmp.c_str());
    Unmap(&map_);
    Fail(EINVAL, "VDir image: its geometry is not this writer's");
  }
  // Nodes, data records, buckets and pool in one copy; then the header's mutable counts.
  std::memcpy(map_.base + h->entry_off, image + h->entry_off, len - h->entry_off);
  map_.hdr->entry_count = ih->entry_count;
  map_.hdr->entry_hwm = ih->entry_hwm;
  map_.hdr->pool_used = ih->pool_used;
  map_.hdr->pool_garbage = ih->pool_garbage;
  // The writer-private state: path hashes, previous siblings, free slots.
  const uint32_t cap = h->entry_cap, hwm = h->entry_hwm;
  hash_.assign(cap, 0);
  prev_.assign(cap, 0);
  for (uint32_t i = 0; i < hwm; i++) {
    vrift_vdir_node& e = map_.node[i];
    if (e.mode == 0) {
      free_.push_back(i);
      continue;
    }
    const size_t room = e.path_off < h->pool_cap ? h->pool_cap - e.path_off : 0;
    const size_t pl = strnlen(map_.pool + e.path_off, room);
    if (pl == room) {
      unlink(tmp.c_str());
      Unmap(&map_);
      Fail(EINVAL, "VDir image: an entry's path runs off the pool");
    }
    hash_[i] = vrift_vdir_path_hash(map_.pool + e.path_off, pl, seed_);
    if (mtime_sec >= 0) {
      e.mtime_sec = static_cast<uint32_t>(mtime_sec);
      Recheck(i);
    }
  }
  for (uint32_t i = 0; i < hwm; i++) {
    if (!IsDir(map_.node[i].mode)) continue;
    uint32_t prev = 0, n = 0;
    for (uint32_t c = map_.data[i].dir.first_child; c != 0 && c <= hwm && n <= hwm; c = NextOf(c - 1), n++) {
      prev_[c - 1] = prev;
      prev = c;
    }
  }
  Publish(tmp);
}

// Renames the complete object at `tmp` over the stable name, superseding a
// stale object of the same name (a daemon that died) so its readers follow.
void VdirWriter::Publish(const std::string& tmp) {
  // A stale object under our name (a daemon that died): remember its header
  // so its readers can be pointed at us once we own the name.
  vrift_vdir_header* stale = nullptr;
  int sfd = open(shm_path_.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC);
  if (sfd >= 0) {
    struct stat st{};
    if (fstat(sfd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() && st.st_size >= VRIFT_VDIR_HEADER_SIZE) {
      void* p = mmap(nullptr, VRIFT_VDIR_HEADER_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
      if (p != MAP_FAILED) {
        stale = static_cast<vrift_vdir_header*>(p);
        if (stale->magic != VRIFT_VDIR_MAGIC || stale->version != VRIFT_VDIR_VERSION) {
          munmap(p, VRIFT_VDIR_HEADER_SIZE);
          stale = nullptr;
        }
      }
    }
    close(sfd);
  }
  // Publish: the stable name only ever names a complete object.
  if (rename(tmp.c_str(), shm_path_.c_str()) != 0) {
    int e = errno;
    unlink(tmp.c_str());
    Unmap(&map_);
    if (stale) munmap(stale, VRIFT_VDIR_HEADER_SIZE);
    errno = e;
    FailSys("cannot publish VDir " + shm_path_);
  }
  if (stale) {
    // Make gen even (it may have died mid-write) and say where to go.
    uint64_t g = stale->gen.load(std::memory_order_relaxed) | 1u;
    stale->gen.store(g, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    stale->flags.fetch_or(VRIFT_VDIR_HF_SUPERSEDED, std::memory_order_relaxed);
    stale->gen.store(g + 1, std::memory_order_release);
    munmap(stale, VRIFT_VDIR_HEADER_SIZE);
  }
}

VdirWriter::~VdirWriter() { Unmap(&map_); }

// Creates, sizes and maps a new object under a temporary name; fills every
// geometry field. The caller fills entries and renames it into place.
VdirWriter::Map VdirWriter::Build(uint32_t entry_cap, uint64_t pool_min, std::string* tmp_path) {
  Geometry g = Layout(entry_cap, pool_min);
  // O_EXCL: never adopt a file someone else put there; 0600: owner only.
  // The stable name is visible in /dev/shm, so the temporary one carries 64
  // random bits: another user cannot create it first and block a rebuild
  // (if one did exist, EEXIST: draw again).
  int fd = -1;
  for (int attempt = 0; fd < 0 && attempt < 8; attempt++) {
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, 0) != sizeof r) r = static_cast<uint64_t>(NowNs()) ^ (static_cast<uint64_t>(getpid()) << 32);
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(r));
    *tmp_path = shm_path_ + ".tmp." + std::to_string(getpid()) + "." + std::to_string(tmp_counter_++) + "." + hex;
    fd = open(tmp_path->c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) FailSys("cannot create " + *tmp_path);
  Map m;
  m.fd = fd;
  // The size is final: the object is never truncated while mapped.
  if (fchmod(fd, 0600) != 0 || ftruncate(fd, static_cast<off_t>(g.total)) != 0) {
    int e = errno;
    close(fd);
    unlink(tmp_path->c_str());
    errno = e;
    FailSys("cannot size " + *tmp_path);
  }
  void* p = mmap(nullptr, g.total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    close(fd);
    unlink(tmp_path->c_str());
    errno = e;
    FailSys("cannot map " + *tmp_path);
  }
  m.base = static_cast<uint8_t*>(p);
  m.size = g.total;
  m.hdr = reinterpret_cast<vrift_vdir_header*>(m.base);
  m.node = reinterpret_cast<vrift_vdir_node*>(m.base + g.entry_off);
  m.data = reinterpret_cast<vrift_vdir_data*>(m.base + g.data_off);
  m.buckets = reinterpret_cast<vrift_vdir_bucket*>(m.base + g.bucket_off);
  m.pool = reinterpret_cast<char*>(m.base + g.pool_off);
  vrift_vdir_header* h = m.hdr;  // fresh tmpfs pages are zero
  h->magic = VRIFT_VDIR_MAGIC;
  h->version = VRIFT_VDIR_VERSION;
  h->header_size = VRIFT_VDIR_HEADER_SIZE;
  h->entry_size = VRIFT_VDIR_ENTRY_SIZE;
  h->total_size = g.total;
  h->hash_seed = seed_;
  h->entry_off = g.entry_off;
  h->data_off = g.data_off;
  h->entry_cap = g.entry_cap;
  h->bucket_off = g.bucket_off;
  h->bucket_count = g.buckets;
  h->pool_off = g.pool_off;
  h->pool_cap = static_cast<uint32_t>(g.pool_cap);
  h->writer_pid = static_cast<uint32_t>(getpid());
  h->created_ns = NowNs();
  h->volume_id = volume_id_;
  h->owner_uid = static_cast<uint32_t>(getuid());
  h->upper_published.store(upper_published_, std::memory_order_relaxed);
  std::memcpy(h->cas_root, cas_root_.data(), cas_root_.size());
  std::memcpy(h->mount_root, mount_root_.data(), mount_root_.size());
  return m;
}

void VdirWriter::SetUpperPublished(uint64_t n, bool awake) {
  upper_published_ = n | (awake ? VRIFT_VDIR_UPPER_AWAKE : 0);
  // seq_cst: a full barrier before the caller reads .issued (shim/journal.c says why)
  if (map_.hdr) map_.hdr->upper_published.store(upper_published_, std::memory_order_seq_cst);
}

void VdirWriter::Unmap(Map* m) {
  if (m->base) munmap(m->base, m->size);
  if (m->fd >= 0) close(m->fd);
  *m = Map();
}

void VdirWriter::BeginWrite() {
  uint64_t g = map_.hdr->gen.load(std::memory_order_relaxed);
  map_.hdr->gen.store(g + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
}

void VdirWriter::EndWrite() {
  uint64_t g = map_.hdr->gen.load(std::memory_order_relaxed);
  map_.hdr->gen.store(g + 1, std::memory_order_release);
}

std::string_view VdirWriter::PathOf(uint32_t i) const { return std::string_view(map_.pool + map_.node[i].path_off); }

uint32_t VdirWriter::NextOf(uint32_t i) const { return VRIFT_VDIR_NEXT(map_.node[i].next_sibling); }

// (the data check in the high byte is redone by Recheck(i), which follows every change)
void VdirWriter::SetNext(uint32_t i, uint32_t link) {
  map_.node[i].next_sibling = VRIFT_VDIR_NEXT_WITH(link, VRIFT_VDIR_DATA_CHECK(map_.node[i].next_sibling));
}

int64_t VdirWriter::Find(std::string_view path, uint64_t h) const {
  const uint32_t nb = map_.hdr->bucket_count, tag = vrift_vdir_tag_of(h);
  for (uint32_t b = vrift_vdir_bucket_of(h, nb);; b = b + 1 == nb ? 0 : b + 1) {
    uint32_t v = map_.buckets[b].slot;
    if (v == 0) return -1;
    if (VRIFT_VDIR_BUCKET_TAG(v) == tag) {
      uint32_t i = VRIFT_VDIR_BUCKET_INDEX(v);
      if (hash_[i] == h && PathOf(i) == path) return i;
    }
  }
}

int64_t VdirWriter::Find(std::string_view path) const {
  return Find(path, vrift_vdir_path_hash(path.data(), path.size(), seed_));
}

// The data record's check first (it is part of the node), then the node's.
void VdirWriter::Recheck(uint32_t i) {
  vrift_vdir_node& e = map_.node[i];
  const vrift_vdir_data& d = map_.data[i];
  const char* t = nullptr;
  size_t tl = 0;
  if (IsLnk(e.mode)) {
    t = map_.pool + d.lnk.target_off;
    tl = d.lnk.target_len;
  }
  e.next_sibling = VRIFT_VDIR_NEXT_WITH(VRIFT_VDIR_NEXT(e.next_sibling), vrift_vdir_data_check(&d, hash_[i]));
  e.check = vrift_vdir_node_check(e.size_flags, e.path_off, e.next_sibling, e.mtime_sec, e.mode, hash_[i], t, tl);
}

uint32_t VdirWriter::AppendString(std::string_view s) {
  uint32_t off = map_.hdr->pool_used;
  std::memcpy(map_.pool + off, s.data(), s.size());
  map_.hdr->pool_used = off + static_cast<uint32_t>(s.size());
  return off;
}

void VdirWriter::InsertBucket(uint32_t i) {
  const uint32_t nb = map_.hdr->bucket_count;
  uint32_t b = vrift_vdir_bucket_of(hash_[i], nb);
  while (map_.buckets[b].slot != 0) b = b + 1 == nb ? 0 : b + 1;
  map_.buckets[b] = vrift_vdir_bucket{VRIFT_VDIR_BUCKET(vrift_vdir_tag_of(hash_[i]), i), map_.node[i].path_off};
}

// Backward-shift deletion: pull later members of the probe run into the
// hole when their home allows it, so no tombstones are ever needed.
void VdirWriter::EraseBucket(uint32_t i) {
  const uint32_t nb = map_.hdr->bucket_count;
  vrift_vdir_bucket* bk = map_.buckets;
  uint32_t hole = vrift_vdir_bucket_of(hash_[i], nb);
  while (bk[hole].slot == 0 || VRIFT_VDIR_BUCKET_INDEX(bk[hole].slot) != i) hole = hole + 1 == nb ? 0 : hole + 1;
  for (uint32_t j = hole;;) {
    j = j + 1 == nb ? 0 : j + 1;
    const vrift_vdir_bucket v = bk[j];
    if (v.slot == 0) break;
    uint32_t home = vrift_vdir_bucket_of(hash_[VRIFT_VDIR_BUCKET_INDEX(v.slot)], nb);
    bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
    if (!stays) {
      bk[hole] = v;
      hole = j;
    }
  }
  bk[hole] = vrift_vdir_bucket{0, 0};
}

void VdirWriter::Remove(uint32_t i) {
  vrift_vdir_node& e = map_.node[i];
  std::string_view path = PathOf(i);
  uint32_t parent = static_cast<uint32_t>(Find(Dirname(path)));
  vrift_vdir_data& pd = map_.data[parent];
  uint32_t prev = prev_[i], next = NextOf(i);
  if (prev == 0) {
    pd.dir.first_child = next;
  } else {
    SetNext(prev - 1, next);
    Recheck(prev - 1);
  }
  if (next != 0) prev_[next - 1] = prev;
  if (pd.dir.last_child == i + 1) pd.dir.last_child = prev;
  pd.dir.nchildren--;
  Recheck(parent);
  EraseBucket(i);
  map_.hdr->pool_garbage += static_cast<uint32_t>(path.size() + 1 + (IsLnk(e.mode) ? map_.data[i].lnk.target_len : 0));
  std::memset(&e, 0, sizeof e);
  std::memset(&map_.data[i], 0, sizeof map_.data[i]);
  prev_[i] = 0;
  hash_[i] = 0;
  free_.push_back(i);
  map_.hdr->entry_count--;
}

void VdirWriter::Upsert(const VdirUpsert& u) {
  const uint64_t h = vrift_vdir_path_hash(u.path.data(), u.path.size(), seed_);
  const int64_t found = Find(u.path, h);
  const uint32_t i = found >= 0 ? static_cast<uint32_t>(found) : Insert(u.path, h, static_cast<uint32_t>(Find(Dirname(u.path))), true);
  SetFields(i, u);
  Recheck(i);
}

// A new slot for `path` (hash `h`), last among its parent's children. With
// `recheck`, the parent's and the previous sibling's checks follow the change
// (a fresh tree's batch leaves every check to its end: InsertFresh).
uint32_t VdirWriter::Insert(std::string_view path, uint64_t h, uint32_t parent, bool recheck) {
  uint32_t i;
  if (!free_.empty()) {
    i = free_.back();
    free_.pop_back();
  } else {
    i = map_.hdr->entry_hwm++;
  }
  vrift_vdir_node& e = map_.node[i];
  std::memset(&e, 0, sizeof e);
  std::memset(&map_.data[i], 0, sizeof map_.data[i]);
  e.path_off = AppendString(path);
  AppendString(std::string_view("", 1));
  hash_[i] = h;
  // Append to the parent's list (insertion order).
  vrift_vdir_data& pd = map_.data[parent];
  uint32_t last = pd.dir.last_child;
  prev_[i] = last;
  if (last == 0) {
    pd.dir.first_child = i + 1;
  } else {
    SetNext(last - 1, i + 1);
    if (recheck) Recheck(last - 1);
  }
  pd.dir.last_child = i + 1;
  pd.dir.nchildren++;
  if (recheck) Recheck(parent);
  InsertBucket(i);
  map_.hdr->entry_count++;
  return i;
}

// Entry i takes u's mode, size, flags, mtime and its kind's data (the caller rechecks it).
void VdirWriter::SetFields(uint32_t i, const VdirUpsert& u) {
  vrift_vdir_node& e = map_.node[i];
  vrift_vdir_data& d = map_.data[i];
  const uint32_t type = TypeOf(u.mode);
  const bool was_dir = IsDir(e.mode), was_lnk = IsLnk(e.mode);
  const bool keep_target =
      was_lnk && type == VRIFT_VDIR_S_IFLNK && std::string_view(map_.pool + d.lnk.target_off, d.lnk.target_len) == u.target;
  if (was_lnk && !keep_target) map_.hdr->pool_garbage += d.lnk.target_len;
  uint64_t size = u.size;
  if (type == VRIFT_VDIR_S_IFREG) {
    std::memcpy(d.blob.digest, u.digest, 32);
    d.blob.ctime_ns = u.ctime_ns;
  } else if (type == VRIFT_VDIR_S_IFDIR) {
    if (!was_dir) std::memset(&d, 0, sizeof d);  // validated: an existing dir keeps its children
    uint64_t claim = 0;  // VRIFT_VDIR_F_CLAIM: the claim directory's inode, in the digest bytes
    if ((u.flags & VRIFT_VDIR_F_CLAIM) && u.digest) std::memcpy(&claim, u.digest, sizeof claim);
    d.dir.claim_ino_lo = static_cast<uint32_t>(claim);
    d.dir.claim_ino_hi = static_cast<uint32_t>(claim >> 32);
  } else {
    if (!keep_target) {
      std::memset(&d, 0, sizeof d);
      d.lnk.target_off = AppendString(u.target);
      d.lnk.target_len = static_cast<uint32_t>(u.target.size());
    }
    size = u.target.size();
  }
  e.size_flags = vrift_vdir_size_flags(size, u.flags);
  e.mtime_sec = u.mtime_sec;
  e.mode = static_cast<uint16_t>(u.mode);
}

// A fresh VDir's whole tree (ApplyFreshTree's promise: every path new, each
// parent the root or an entry before it): no lookup of the path itself, the
// parent looked up once per run of siblings, and every check computed once at
// the end instead of after each change to a parent or sibling (a 100 000-entry
// mount's build took twice as long).
void VdirWriter::InsertFresh(const std::vector<VdirUpsert>& upserts) {
  std::string_view last_dir;
  int64_t last_parent = -1;
  for (const VdirUpsert& u : upserts) {
    const std::string_view dir = Dirname(u.path);
    if (last_parent < 0 || dir != last_dir) {
      last_parent = Find(dir);
      last_dir = dir;
      if (last_parent < 0 || !IsDir(map_.node[last_parent].mode)) Fail(EINVAL, Q(u.path) + ": its parent is not a directory before it");
    }
    const uint32_t i = Insert(u.path, vrift_vdir_path_hash(u.path.data(), u.path.size(), seed_), static_cast<uint32_t>(last_parent), false);
    SetFields(i, u);
  }
  const uint32_t hwm = map_.hdr->entry_hwm;
  for (uint32_t i = 0; i < hwm; i++)
    if (map_.node[i].mode != 0) Recheck(i);
}

// One upsert's own fields (not its place in the tree); its type.
uint32_t VdirWriter::CheckFields(const VdirUpsert& u) {
  if (const char* why = PathProblem(u.path)) Fail(EINVAL, "invalid path " + Q(u.path) + ": " + why);
  const uint32_t type = TypeOf(u.mode);
  if (u.mode > 0xFFFF || (type != VRIFT_VDIR_S_IFREG && type != VRIFT_VDIR_S_IFDIR && type != VRIFT_VDIR_S_IFLNK))
    Fail(EINVAL, Q(u.path) + ": mode " + std::to_string(u.mode) + " is not a regular file, directory or symlink");
  if (u.path.empty() && type != VRIFT_VDIR_S_IFDIR) Fail(EINVAL, "the root must be a directory");
  if (type == VRIFT_VDIR_S_IFREG && u.digest == nullptr) Fail(EINVAL, Q(u.path) + ": a file needs a digest");
  if (type == VRIFT_VDIR_S_IFLNK &&
      (u.target.empty() || u.target.size() > VRIFT_VDIR_TARGET_MAX || u.target.find('\0') != std::string_view::npos))
    Fail(EINVAL, Q(u.path) + ": a symlink needs a target of 1-4095 bytes without NUL");
  if (u.size > VRIFT_VDIR_MAX_SIZE) Fail(EINVAL, Q(u.path) + ": size " + std::to_string(u.size) + " is past 2^48");
  if (u.flags > 0xFFFF) Fail(EINVAL, Q(u.path) + ": flags must fit in 16 bits");
  return type;
}

VdirWriter::Plan VdirWriter::Validate(const std::vector<VdirUpsert>& upserts,
                                      const std::vector<std::string_view>& removals) const {
  Plan plan;
  const vrift_vdir_node* ent = map_.node;
  const vrift_vdir_data* data = map_.data;
  std::unordered_set<uint32_t> removed(removals.size() * 2 + 1);
  std::unordered_map<uint32_t, uint32_t> removed_children;  // dir index -> children this batch removes
  for (std::string_view p : removals) {
    if (const char* why = PathProblem(p)) Fail(EINVAL, "cannot remove " + Q(p) + ": " + why);
    if (p.empty()) Fail(EINVAL, "cannot remove the root directory");
    int64_t i = Find(p);
    if (i < 0) Fail(ENOENT, "cannot remove " + Q(p) + ": not in the VDir");
    if (!removed.insert(static_cast<uint32_t>(i)).second) continue;
    plan.removals.push_back(static_cast<uint32_t>(i));
    plan.pool_freed += p.size() + 1 + (IsLnk(ent[i].mode) ? data[i].lnk.target_len : 0);
    removed_children[static_cast<uint32_t>(Find(Dirname(p)))]++;
  }
  for (uint32_t i : plan.removals) {
    if (!IsDir(ent[i].mode)) continue;
    for (uint32_t c = data[i].dir.first_child; c != 0; c = NextOf(c - 1))
      if (!removed.count(c - 1))
        Fail(ENOTEMPTY, "cannot remove directory " + Q(PathOf(i)) + ": " + Q(PathOf(c - 1)) +
                            " is still in it (remove its children first or in the same batch)");
  }
  // Children before parents: a longer path is never an ancestor.
  std::sort(plan.removals.begin(), plan.removals.end(),
            [this](uint32_t a, uint32_t b) { return PathOf(a).size() > PathOf(b).size(); });

  // Upserts see the state after the removals and after earlier upserts.
  std::unordered_map<std::string_view, uint32_t> batch_type(upserts.size() * 2 + 1);  // path -> type
  std::unordered_map<std::string_view, uint32_t> batch_children;                       // dir -> children added
  auto state = [&](std::string_view p, int64_t* idx) -> uint32_t {
    int64_t i = Find(p);
    if (i >= 0 && removed.count(static_cast<uint32_t>(i))) i = -1;
    *idx = i;
    auto it = batch_type.find(p);
    if (it != batch_type.end()) return it->second;
    return i >= 0 ? TypeOf(ent[i].mode) : 0;
  };
  for (const VdirUpsert& u : upserts) {
    const uint32_t type = CheckFields(u);
    if (!u.path.empty()) {
      std::string_view parent = Dirname(u.path);
      int64_t pi;
      uint32_t pt = state(parent, &pi);
      if (pt == 0)
        Fail(ENOENT, "parent " + Q(parent) + " of " + Q(u.path) + " is missing (add it first, or earlier in the same batch)");
      if (pt != VRIFT_VDIR_S_IFDIR) Fail(ENOTDIR, "parent " + Q(parent) + " of " + Q(u.path) + " is not a directory");
    }
    int64_t ci;
    const uint32_t ct = state(u.path, &ci);
    if (ct == VRIFT_VDIR_S_IFDIR && type != VRIFT_VDIR_S_IFDIR) {
      uint64_t kids = 0;
      auto bc = batch_children.find(u.path);
      if (bc != batch_children.end()) kids += bc->second;
      if (ci >= 0 && IsDir(ent[ci].mode)) {
        auto rc = removed_children.find(static_cast<uint32_t>(ci));
        kids += data[ci].dir.nchildren - (rc == removed_children.end() ? 0 : rc->second);
      }
      if (kids != 0) Fail(ENOTEMPTY, "cannot turn directory " + Q(u.path) + " into a file or symlink: it has children");
    }
    if (ct == 0) {
      plan.new_slots++;
      plan.pool_need += u.path.size() + 1;
      batch_children[Dirname(u.path)]++;
    }
    if (type == VRIFT_VDIR_S_IFLNK) plan.pool_need += u.target.size();
    batch_type[u.path] = type;
  }
  return plan;
}

void VdirWriter::Apply(const std::vector<VdirUpsert>& upserts, const std::vector<std::string_view>& removals) {
  if (closed()) Fail(EBADF, "VDir " + Q(name_) + " is closed");
  Commit(Validate(upserts, removals), upserts);
}

std::vector<uint32_t> VdirWriter::ApplyNew(const std::vector<VdirUpsert>& upserts) {
  if (closed()) Fail(EBADF, "VDir " + Q(name_) + " is closed");
  std::vector<VdirUpsert> fresh;
  fresh.reserve(upserts.size());
  std::vector<uint32_t> left;
  std::unordered_map<std::string_view, uint32_t> batch_type(upserts.size() * 2 + 1);  // path -> type
  auto type_at = [&](std::string_view p) -> uint32_t {
    auto it = batch_type.find(p);
    if (it != batch_type.end()) return it->second;
    int64_t i = Find(p);
    return i < 0 ? 0 : TypeOf(map_.node[i].mode);
  };
  for (uint32_t k = 0; k < upserts.size(); k++) {
    const VdirUpsert& u = upserts[k];
    if (u.path.empty() || type_at(u.path) != 0 || type_at(Dirname(u.path)) != VRIFT_VDIR_S_IFDIR) {
      left.push_back(k);
      continue;
    }
    batch_type[u.path] = TypeOf(u.mode);
    fresh.push_back(u);
  }
  if (!fresh.empty()) Apply(fresh, {});  // (validated whole, as every batch)
  return left;
}

void VdirWriter::ApplyFreshTree(const std::vector<VdirUpsert>& upserts) {
  if (closed()) Fail(EBADF, "VDir " + Q(name_) + " is closed");
  if (map_.hdr->entry_count != 1) return Apply(upserts, {});  // not fresh: the full check
  // Each path is new and its parent is the root or a directory before it (the caller's promise):
  // only the fields are checked, and the batch needs a slot and its strings for each.
  Plan plan;
  for (const VdirUpsert& u : upserts) {
    const uint32_t type = CheckFields(u);
    if (u.path.empty()) Fail(EINVAL, "the root is the VDir's own");
    plan.new_slots++;
    plan.pool_need += u.path.size() + 1 + (type == VRIFT_VDIR_S_IFLNK ? u.target.size() : 0);
  }
  Commit(plan, upserts, true);
}

void VdirWriter::Commit(const Plan& plan, const std::vector<VdirUpsert>& upserts, bool fresh) {
  const vrift_vdir_header* h = map_.hdr;
  const uint64_t live_after = uint64_t{h->entry_count} - plan.removals.size() + plan.new_slots;
  const uint64_t live_pool = uint64_t{h->pool_used} - h->pool_garbage;  // what a compaction keeps
  const bool entries_fit = live_after <= h->entry_cap;
  const bool pool_fits = uint64_t{h->pool_used} + plan.pool_need <= h->pool_cap;
  // Compact in place only when it leaves real room, so a nearly full pool
  // grows (once) instead of being compacted on every batch.
  const bool compact_fits = live_pool - plan.pool_freed + plan.pool_need <= uint64_t{h->pool_cap} * 3 / 4;
  bool compact = false;
  // Growth: each full area at least doubles (so resizes, and the mappings
  // readers leak following them, stay few); a bulk batch bigger than that
  // gets exactly what it needs (a mount sized by VDir.sizeFor stays tight).
  if (!entries_fit || (!pool_fits && !compact_fits)) {
    uint64_t ecap = h->entry_cap, pcap = h->pool_cap;
    if (!entries_fit) ecap = std::min<uint64_t>(std::max<uint64_t>(ecap * 2, live_after), VRIFT_VDIR_MAX_ENTRIES);
    if (live_after > ecap) Fail(ENOSPC, "a VDir holds at most " + std::to_string(VRIFT_VDIR_MAX_ENTRIES) + " entries");
    if (!pool_fits && !compact_fits) pcap = std::max<uint64_t>(pcap * 2, live_pool + plan.pool_need);
    Grow(static_cast<uint32_t>(ecap), std::max<uint64_t>(pcap, live_pool + plan.pool_need));
  } else if (!pool_fits) {
    compact = true;
  }
  free_.reserve(free_.size() + plan.removals.size());  // no allocation inside the window
  BeginWrite();
  try {
    for (uint32_t i : plan.removals) Remove(i);
    if (compact) Compact();
    if (fresh)
      InsertFresh(upserts);
    else
      for (const VdirUpsert& u : upserts) Upsert(u);
  } catch (...) {
    EndWrite();  // never leave gen odd
    throw;
  }
  EndWrite();
}

// Slides live strings down over garbage (inside the caller's window).
void VdirWriter::Compact() {
  struct Str {
    uint32_t off, len, idx;
    bool target;
  };
  std::vector<Str> strs;
  const uint32_t hwm = map_.hdr->entry_hwm;
  for (uint32_t i = 0; i < hwm; i++) {
    const vrift_vdir_node& e = map_.node[i];
    if (e.mode == 0) continue;
    strs.push_back({e.path_off, static_cast<uint32_t>(PathOf(i).size() + 1), i, false});
    if (IsLnk(e.mode)) strs.push_back({map_.data[i].lnk.target_off, map_.data[i].lnk.target_len, i, true});
  }
  std::sort(strs.begin(), strs.end(), [](const Str& a, const Str& b) { return a.off < b.off; });
  uint32_t w = 0;
  for (const Str& s : strs) {
    std::memmove(map_.pool + w, map_.pool + s.off, s.len);
    (s.target ? map_.data[s.idx].lnk.target_off : map_.node[s.idx].path_off) = w;
    w += s.len;
  }
  std::memset(map_.pool + w, 0, map_.hdr->pool_used - w);
  map_.hdr->pool_used = w;
  map_.hdr->pool_garbage = 0;
  for (uint32_t i = 0; i < hwm; i++)
    if (map_.node[i].mode != 0) Recheck(i);
  // every bucket's copy of its node's path offset (section 3)
  for (uint32_t b = 0, nb = map_.hdr->bucket_count; b < nb; b++)
    if (map_.buckets[b].slot != 0) map_.buckets[b].path_off = map_.node[VRIFT_VDIR_BUCKET_INDEX(map_.buckets[b].slot)].path_off;
  compactions_++;
}

// Resize (section 5 of vrift_vdir.h): a new, bigger object with every entry
// in the same slot, renamed over the stable name; then the old one is
// marked SUPERSEDED so its readers follow.
void VdirWriter::Grow(uint32_t entry_cap, uint64_t pool_cap) {
  std::string tmp;
  Map nm = Build(entry_cap, pool_cap, &tmp);
  const uint32_t hwm = map_.hdr->entry_hwm;
  std::memcpy(nm.node, map_.node, size_t{hwm} * VRIFT_VDIR_ENTRY_SIZE);
  std::memcpy(nm.data, map_.data, size_t{hwm} * VRIFT_VDIR_DATA_SIZE);
  uint32_t w = 0;
  for (uint32_t i = 0; i < hwm; i++) {
    vrift_vdir_node& e = nm.node[i];
    if (e.mode == 0) continue;
    std::string_view p = PathOf(i);
    std::memcpy(nm.pool + w, p.data(), p.size() + 1);
    e.path_off = w;
    w += static_cast<uint32_t>(p.size() + 1);
    if (IsLnk(e.mode)) {
      vrift_vdir_data& d = nm.data[i];
      std::memcpy(nm.pool + w, map_.pool + d.lnk.target_off, d.lnk.target_len);
      d.lnk.target_off = w;
      w += d.lnk.target_len;
    }
  }
  nm.hdr->pool_used = w;
  nm.hdr->entry_count = map_.hdr->entry_count;
  nm.hdr->entry_hwm = hwm;
  nm.hdr->gen.store(map_.hdr->gen.load(std::memory_order_relaxed), std::memory_order_relaxed);
  Map old = map_;
  map_ = nm;
  hash_.resize(entry_cap, 0);
  prev_.resize(entry_cap, 0);
  for (uint32_t i = 0; i < hwm; i++) {
    if (map_.node[i].mode == 0) continue;
    InsertBucket(i);
    Recheck(i);
  }
  if (rename(tmp.c_str(), shm_path_.c_str()) != 0) {
    int e = errno;
    unlink(tmp.c_str());
    Unmap(&map_);
    map_ = old;
    errno = e;
    FailSys("cannot publish resized VDir " + shm_path_);
  }
  uint64_t g = old.hdr->gen.load(std::memory_order_relaxed);
  old.hdr->gen.store(g + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  old.hdr->flags.fetch_or(VRIFT_VDIR_HF_SUPERSEDED, std::memory_order_relaxed);
  old.hdr->gen.store(g + 2, std::memory_order_release);
  Unmap(&old);
  resizes_++;
}

bool VdirWriter::Lookup(std::string_view path, VdirFound* out) const {
  if (closed()) Fail(EBADF, "VDir " + Q(name_) + " is closed");
  int64_t i = Find(path);
  if (i < 0) return false;
  out->index = static_cast<uint32_t>(i);
  const vrift_vdir_node& n = map_.node[i];
  vrift_vdir_entry& e = out->entry;
  e.u = map_.data[i];
  e.size_flags = n.size_flags;
  e.path_off = n.path_off;
  e.next_sibling = n.next_sibling;
  e.mtime_sec = n.mtime_sec;
  e.mode = n.mode;
  e.check = n.check;
  out->target.clear();
  if (IsLnk(e.mode)) out->target.assign(map_.pool + e.u.lnk.target_off, e.u.lnk.target_len);
  return true;
}

std::vector<std::string> VdirWriter::List(std::string_view dir) const {
  if (closed()) Fail(EBADF, "VDir " + Q(name_) + " is closed");
  int64_t i = Find(dir);
  if (i < 0) Fail(ENOENT, "no such directory " + Q(dir) + " in the VDir");
  if (!IsDir(map_.node[i].mode)) Fail(ENOTDIR, Q(dir) + " is not a directory");
  const vrift_vdir_data& d = map_.data[i];
  std::vector<std::string> names;
  names.reserve(d.dir.nchildren);
  const size_t skip = dir.empty() ? 0 : dir.size() + 1;
  for (uint32_t c = d.dir.first_child; c != 0; c = NextOf(c - 1))
    names.emplace_back(PathOf(c - 1).substr(skip));
  return names;
}

VdirStats VdirWriter::Stats() const {
  if (closed()) Fail(EBADF, "VDir " + Q(name_) + " is closed");
  const vrift_vdir_header* h = map_.hdr;
  return VdirStats{h->entry_count, h->entry_cap, h->bucket_count, h->entry_hwm,
                   map_.size, h->pool_used, h->pool_cap, h->pool_garbage,
                   h->gen.load(std::memory_order_relaxed), resizes_, compactions_, shm_path_};
}

VdirProbeStats VdirWriter::ProbeStats() const {
  if (closed()) Fail(EBADF, "VDir " + Q(name_) + " is closed");
  VdirProbeStats s{0, 0, 0};
  const uint32_t nb = map_.hdr->bucket_count;
  for (uint32_t b = 0; b < nb; b++) {
    uint32_t v = map_.buckets[b].slot;
    if (v == 0) continue;
    uint32_t home = vrift_vdir_bucket_of(hash_[VRIFT_VDIR_BUCKET_INDEX(v)], nb);
    uint32_t dist = b >= home ? b - home : b + nb - home;
    s.max_probe = std::max(s.max_probe, dist);
    if (dist != 0) s.displaced++;
    for (uint32_t k = home; k != b; k = k + 1 == nb ? 0 : k + 1) {
      if (VRIFT_VDIR_BUCKET_TAG(map_.buckets[k].slot) == VRIFT_VDIR_BUCKET_TAG(v)) {
        s.tag_collisions++;
        break;
      }
    }
  }
  return s;
}

void VdirWriter::Close(bool unlink_it) {
  if (closed()) return;
  BeginWrite();
  map_.hdr->flags.fetch_or(VRIFT_VDIR_HF_RETIRED, std::memory_order_relaxed);
  EndWrite();
  if (unlink_it) {
    // Only our own object: a newer daemon may own the name by now.
    struct stat mine{}, named{};
    if (fstat(map_.fd, &mine) == 0 && stat(shm_path_.c_str(), &named) == 0 && mine.st_dev == named.st_dev &&
        mine.st_ino == named.st_ino)
      unlink(shm_path_.c_str());
  }
  Unmap(&map_);
}

}  // namespace vrift
