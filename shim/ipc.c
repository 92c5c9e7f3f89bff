/*
 * ipc.c — this process's connection to vriftd's control socket.
 *
 * One connection per process, opened at initialisation (its success is how
 * the shim learns the daemon is running), moved to a high descriptor
 * number with close-on-exec, and identified by its inode so a program
 * that closes or reuses "our" number is noticed. Requests are serialised
 * by a spinlock (re-initialised in a forked child, which also reconnects:
 * parent and child must never share one stream). Every wait is bounded by
 * poll() timeouts ($VRIFT_SHIM_TIMEOUT_MS, default 30 s for a fetch and
 * 5 s otherwise): a stuck daemon costs one timeout, then the shim falls
 * back to the real filesystem, never hangs.
 *
 * The shim asks only for changes (COMMIT, MKDIR, ...) and blob fetches:
 * reads never touch the socket.
 */
#include "shim.h"

#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "vrift_proto.h"

static int sock_fd = -1;
static uint64_t sock_ino;
static int sock_pid;
static _Atomic int lock_word;
static uint32_t next_id = 1;
static long timeout_ms(uint16_t type);
static long now_ms(void);

static void lock(void)
{
    int expect = 0;
    for (unsigned n = 0; !atomic_compare_exchange_weak(&lock_word, &expect, 1); n++) {
        expect = 0;
        if (n > 64)
            VR_SYS0(SYS_sched_yield);
    }
}
static void unlock(void) { atomic_store(&lock_word, 0); }

static int socket_path(struct sockaddr_un *a)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    const char *env = vr_getenv("VRIFT_SOCKET");
    size_t n;
    if (env && *env) {
        n = vr_strlcpy(a->sun_path, env, sizeof a->sun_path);
    } else if (vr_home[0]) {
        n = vr_strlcpy(a->sun_path, vr_home, sizeof a->sun_path);
        n += vr_strlcpy(a->sun_path + n, "/" VRIFT_LAYOUT_RUN_DIR "/" VRIFT_LAYOUT_SOCKET_NAME, sizeof a->sun_path - n);
    } else {
        return -ENOENT;
    }
    return n + 1 < sizeof a->sun_path ? 0 : -ENAMETOOLONG;
}

/* Descriptor numbers far from where programs allocate theirs. */
int vr_high_fd_floor(void)
{
    struct rlimit rl;
    int floor = 1000;
    if (VR_SYS4(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        long cur = (long)rl.rlim_cur;
        if (cur - 64 < floor)
            floor = cur > 128 ? (int)(cur - 64) : 64;
    }
    return floor;
}

/*
 * Grows this process's descriptor table over the shim's numbers (the floor
 * and the 4 * VR_MAX_MOUNTS above it) at start, while the process has one
 * thread. Growing it later, once threads share it, waits for an RCU grace
 * period in the kernel (expand_fdtable: 8-20 ms here each time): node has
 * threads before its first require, and its first file in a mount paid that
 * twice, for the daemon's socket (table 1024) and the CAS directory (2048).
 * A table never shrinks, so one dup and close are enough; a child starts
 * small again (fork copies only up to its highest open descriptor).
 */
void vr_reserve_high_fds(void)
{
    int fd = vr_openat(AT_FDCWD, "/", O_PATH | O_CLOEXEC, 0);
    if (fd < 0)
        return;
    int top = vr_fcntl(fd, F_DUPFD_CLOEXEC, vr_high_fd_floor() + 4 * VR_MAX_MOUNTS);
    if (top >= 0)
        vr_close(top);
    vr_close(fd);
}

/* This process (or the one it was forked from) reached the daemon once: a failure now means it went away. */
static int ever_connected;

static int connect_now(void)
{
    struct sockaddr_un a;
    int rc = socket_path(&a);
    if (rc)
        return rc;
    int fd = (int)VR_SYS3(SYS_socket, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return fd;
    rc = (int)VR_SYS3(SYS_connect, fd, &a, sizeof a);
    if (rc < 0) {
        vr_close(fd);
        return rc;
    }
    int hi = vr_fcntl(fd, F_DUPFD_CLOEXEC, vr_high_fd_floor());
    if (hi >= 0) {
        vr_close(fd);
        fd = hi;
    }
    struct stat st;
    if (vr_fstat(fd, &st) != 0) {
        vr_close(fd);
        return -EIO;
    }
    sock_fd = fd;
    sock_ino = (uint64_t)st.st_ino;
    sock_pid = vr_getpid();
    ever_connected = 1;
    return 0;
}

/* Our socket is still at sock_fd (nobody closed or replaced it). */
static int still_ours(void)
{
    struct stat st;
    return sock_fd >= 0 && vr_fstat(sock_fd, &st) == 0 && S_ISSOCK(st.st_mode) && (uint64_t)st.st_ino == sock_ino;
}

/* In a forked child: drop the inherited copy (the parent keeps its own). */
static void after_fork_check(void)
{
    int pid = vr_getpid();
    if (sock_pid != pid) {
        atomic_store(&lock_word, 0); /* a lock held by another thread of the parent */
        if (sock_fd >= 0 && still_ours())
            vr_close(sock_fd);
        sock_fd = -1;
        sock_pid = pid;
    }
}

int vr_ipc_ever_connected(void) { return ever_connected; }

int vr_ipc_owns_fd(int fd) { return fd >= 0 && fd == sock_fd && sock_pid == vr_getpid(); }

void vr_ipc_evict(int fd)
{
    if (fd != sock_fd)
        return;
    int hi = vr_fcntl(fd, F_DUPFD_CLOEXEC, fd + 1);
    if (hi >= 0) {
        sock_fd = hi;
        vr_close(fd);
    } else {
        sock_fd = -1;
    }
}

int vr_ipc_alive(void)
{
    int expect = 0;
    if (!atomic_compare_exchange_strong(&lock_word, &expect, 1)) {
        if (sock_pid == vr_getpid())
            return 1; /* a request is in flight: it will find out */
        atomic_store(&lock_word, 1);
    }
    after_fork_check();
    int alive;
    if (sock_fd < 0 || !still_ours()) {
        sock_fd = -1;
        alive = connect_now() == 0;
    } else {
        struct pollfd p = {.fd = sock_fd, .events = POLLIN | POLLRDHUP};
        long n = VR_SYS3(SYS_poll, &p, 1, 0);
        /* the daemon never speaks first: readable means EOF */
        alive = !(n > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR | POLLRDHUP | POLLNVAL)));
        if (!alive) {
            vr_close(sock_fd);
            sock_fd = -1;
        }
    }
    unlock();
    return alive;
}

static long timeout_ms(uint16_t type)
{
    const char *t = vr_getenv("VRIFT_SHIM_TIMEOUT_MS");
    if (t && *t) {
        long v = 0;
        for (; *t >= '0' && *t <= '9'; t++)
            v = v * 10 + (*t - '0');
        if (v > 0)
            return v;
    }
    return type == VRIFT_MSG_FETCH ? 30000 : 5000;
}

static long now_ms(void)
{
    struct timespec ts;
    VR_SYS2(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int wait_fd(short ev, long deadline)
{
    for (;;) {
        long left = deadline - now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = sock_fd, .events = ev};
        long n = VR_SYS3(SYS_poll, &p, 1, left);
        if (n == -EINTR)
            continue;
        if (n < 0)
            return (int)n;
        if (n == 0)
            return -ETIMEDOUT;
        if (p.revents & (ev | POLLHUP | POLLERR))
            return 0;
    }
}

static int send_all(const uint8_t *b, size_t n, long deadline)
{
    while (n > 0) {
        long w = VR_SYS4(SYS_sendto, sock_fd, b, n, MSG_NOSIGNAL);
        if (w == -EAGAIN || w == -EINTR) {
            int rc = wait_fd(POLLOUT, deadline);
            if (rc)
                return rc;
            continue;
        }
        if (w <= 0)
            return w == 0 ? -EPIPE : (int)w;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

#define VR_REPLY_SPINS 200
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}
static int recv_all(uint8_t *b, size_t n, long deadline)
{
    int spins = 0;
    while (n > 0) {
        long r = vr_read(sock_fd, b, n);
        if (r == -EAGAIN && spins < VR_REPLY_SPINS) {
            /* The daemon answers most requests within tens of microseconds:
             * asking again briefly costs less than sleeping in poll() and
             * being woken (a context switch each way on a busy host). */
            spins++;
            for (int i = 0; i < 64; i++)
                cpu_relax();
            continue;
        }
        if (r == -EAGAIN || r == -EINTR) {
            int rc = wait_fd(POLLIN, deadline);
            if (rc)
                return rc;
            continue;
        }
        if (r <= 0)
            return r == 0 ? -ECONNRESET : (int)r;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static int errno_of_code(const char *code)
{
    static const struct {
        const char *name;
        int err;
    } map[] = {
        {"EEXIST", EEXIST}, {"ENOENT", ENOENT}, {"ENOTDIR", ENOTDIR}, {"EISDIR", EISDIR},
        {"ENOTEMPTY", ENOTEMPTY}, {"EINVAL", EINVAL}, {"EXDEV", EXDEV}, {"EPERM", EPERM},
        {"EACCES", EACCES}, {"EBUSY", EBUSY}, {"ENAMETOOLONG", ENAMETOOLONG}, {"ENOSPC", ENOSPC},
        {"NOT_FOUND", ENOENT}, {"MISSING", EIO},
    };
    size_t n = vr_strlen(code);
    size_t s = n;
    while (s > 0 && code[s - 1] != '_')
        s--;
    const char *tail = code + s;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        size_t l = vr_strlen(map[i].name);
        if (l <= n && vr_memeq(code + n - l, map[i].name, l) && (l == n - s || code[n - l - 1] == '_'))
            return map[i].err;
    }
    (void)tail;
    return EIO;
}

static void copy_field(const uint8_t *pl, size_t len, uint16_t tag, char *dst, size_t cap)
{
    const uint8_t *v;
    uint32_t l;
    if (vrift_proto_find(pl, len, tag, &v, &l) == 1) {
        size_t n = l < cap - 1 ? l : cap - 1;
        memcpy(dst, v, n);
        dst[n] = '\0';
    } else {
        dst[0] = '\0';
    }
}

/* With the lock held: this process's connection, made (again) if needed. 0 or -errno. */
static int connection(void)
{
    after_fork_check();
    if (sock_fd >= 0 && still_ours())
        return 0;
    sock_fd = -1;
    return connect_now();
}

/* Sends one frame in one send where it fits (the daemon wakes once per frame). */
static int send_frame(uint16_t type, uint32_t id, const uint8_t *payload, size_t len, long deadline)
{
    uint8_t frame[VRIFT_PROTO_HEADER_SIZE + 8192];
    size_t n = vrift_proto_header(frame, sizeof frame, type, id, (uint32_t)len);
    if (len <= sizeof frame - n) {
        memcpy(frame + n, payload, len);
        return send_all(frame, n + len, deadline);
    }
    int rc = send_all(frame, n, deadline);
    return rc ? rc : send_all(payload, len, deadline);
}

int vr_ipc_send(uint16_t type, const uint8_t *payload, size_t len)
{
    long deadline = now_ms() + timeout_ms(type);
    lock();
    int rc = connection();
    if (rc == 0)
        rc = send_frame(type, next_id++, payload, len, deadline);
    if (rc != 0 && sock_fd >= 0) {
        vr_close(sock_fd);
        sock_fd = -1;
    }
    unlock();
    return rc;
}

int vr_ipc_call(uint16_t type, const uint8_t *payload, size_t len, struct vr_reply *rep)
{
    uint8_t hdr[VRIFT_PROTO_HEADER_SIZE];
    uint8_t reply[8192];
    long deadline = now_ms() + timeout_ms(type);
    memset(rep, 0, sizeof *rep);
    lock();
    int rc = connection();
    uint32_t id = next_id++;
    if (rc == 0)
        rc = send_frame(type, id, payload, len, deadline);
    uint32_t plen = 0;
    uint16_t rtype = 0;
    if (rc == 0)
        rc = recv_all(hdr, sizeof hdr, deadline);
    if (rc == 0) {
        rtype = vrift_proto_get_u16(hdr + 6);
        plen = vrift_proto_get_u32(hdr + 12);
        if (vrift_proto_get_u32(hdr) != VRIFT_PROTO_MAGIC || vrift_proto_get_u32(hdr + 8) != id)
            rc = -EPROTO;
    }
    if (rc == 0) {
        /* keep what fits; drain the rest */
        size_t keep = plen < sizeof reply ? plen : sizeof reply;
        rc = recv_all(reply, keep, deadline);
        uint8_t sink[512];
        for (size_t left = plen - keep; rc == 0 && left > 0;) {
            size_t k = left < sizeof sink ? left : sizeof sink;
            rc = recv_all(sink, k, deadline);
            left -= k;
        }
        if (rc == 0) {
            rep->ok = rtype == VRIFT_MSG_OK;
            if (!rep->ok) {
                copy_field(reply, keep, VRIFT_F_ERR_CODE, rep->code, sizeof rep->code);
                rep->err = errno_of_code(rep->code);
            } else {
                copy_field(reply, keep, VRIFT_F_DIGEST, rep->digest, sizeof rep->digest);
                copy_field(reply, keep, VRIFT_F_PATH, rep->path, sizeof rep->path);
                const uint8_t *v;
                uint32_t l;
                if (vrift_proto_find(reply, keep, VRIFT_F_SIZE, &v, &l) == 1 && l == 8)
                    rep->size = vrift_proto_get_u64(v);
                rep->ctime_ns = vrift_proto_find(reply, keep, VRIFT_F_CTIME, &v, &l) == 1 && l == 8 ? vrift_proto_get_u64(v) : 0;
            }
        }
    }
    if (rc != 0 && sock_fd >= 0) {
        vr_close(sock_fd);
        sock_fd = -1;
    }
    unlock();
    return rc;
}

int vr_owns_fd(int fd)
{
    if (vr_ipc_owns_fd(fd))
        return 1;
    if (fd < 0)
        return 0;
    for (int i = 0; i < vr_nmounts; i++)
        if (atomic_load_explicit(&vr_mounts[i].ph_fd, memory_order_relaxed) == fd ||
            atomic_load_explicit(&vr_mounts[i].cas_fd, memory_order_relaxed) == fd ||
            atomic_load_explicit(&vr_mounts[i].upper_fd, memory_order_relaxed) == fd ||
            atomic_load_explicit(&vr_mounts[i].journal_fd, memory_order_relaxed) == fd)
            return 1;
    return 0;
}

void vr_disown_fd(int fd)
{
    if (vr_ipc_owns_fd(fd))
        vr_ipc_evict(fd);
    for (int i = 0; i < vr_nmounts; i++) {
        int e = fd;
        atomic_compare_exchange_strong(&vr_mounts[i].ph_fd, &e, -1);
        e = fd;
        atomic_compare_exchange_strong(&vr_mounts[i].cas_fd, &e, -1);
        e = fd;
        atomic_compare_exchange_strong(&vr_mounts[i].upper_fd, &e, -1);
        e = fd;
        atomic_compare_exchange_strong(&vr_mounts[i].journal_fd, &e, -1);
    }
}
