/*
 * shim.c — initialisation of libvrift.so (see shim.h for the map).
 *
 * Like libeatmydata: the real functions are resolved once with
 * dlsym(RTLD_NEXT) in a constructor, behind a re-entrancy guard (dlsym may
 * allocate, and an allocator or another preloaded library may call back
 * into an interposed function meanwhile: such calls go straight to libc,
 * or to a raw system call while their pointer is still unresolved).
 *
 * State (vr_on): -1 not initialised, 0 pass-through (no VRIFT_VDIRS, no
 * VDir could be opened, or a mount was retired), 1 active. Once 0 it stays
 * 0 for the life of the process. A daemon that cannot be reached leaves it
 * at 1, detached (request.c): reads go on, changes fail until it is back.
 */
#include "shim.h"

#include <dlfcn.h>
#include <time.h>

#define SHIM_FN(ret, name, params) ret(*real_##name) params SHIM_HIDDEN;
#include "shim_fns.h"
#undef SHIM_FN

_Atomic int vr_on = -1;
VR_TLS int vr_in_init;
char vr_home[PATH_MAX];
char vr_lib_path[PATH_MAX];

static _Atomic int init_state; /* 0 never, 1 running, 2 done */
static _Atomic int fallback_said;
static _Atomic long next_check_ns;
static char run_marker[PATH_MAX]; /* $VRIFT_HOME/run/shim-warned.<run id> */

/* ---- helpers ---------------------------------------------------------- */

/* libc's strlen (an IFUNC the loader resolves before any constructor
 * runs; it never re-enters a wrapper): a byte loop here cost ~50 ns on the
 * path of every open and stat. */
size_t vr_strlen(const char *s) { return strlen(s); }

/* Stops at the first difference: callers compare strings that may be
 * shorter than n (environ entries), so never memcmp (it may read past). */
int vr_memeq(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return 0;
    return 1;
}

size_t vr_strlcpy(char *dst, const char *src, size_t cap)
{
    size_t n = 0;
    if (cap == 0)
        return 0;
    while (n + 1 < cap && src[n]) {
        dst[n] = src[n];
        n++;
    }
    dst[n] = '\0';
    return n;
}

size_t vr_utoa(uint64_t v, char *buf)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
    return n;
}

extern char **environ;

const char *vr_getenv(const char *name)
{
    size_t n = vr_strlen(name);
    char **e = environ;
    if (!e)
        return NULL;
    for (; *e; e++)
        if (vr_memeq(*e, name, n) && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}

void vr_say(const char *a, const char *b, const char *c)
{
    char buf[1024];
    size_t n = vr_strlcpy(buf, "vrift: ", sizeof buf);
    if (a)
        n += vr_strlcpy(buf + n, a, sizeof buf - n - 1);
    if (b)
        n += vr_strlcpy(buf + n, b, sizeof buf - n - 1);
    if (c)
        n += vr_strlcpy(buf + n, c, sizeof buf - n - 1);
    buf[n++] = '\n';
    vr_write(2, buf, n);
}

/*
 * The VDir reader calls syscall(2); inside libvrift.so that name is our own
 * wrapper, so the reader is compiled with -Dsyscall=vr_reader_syscall
 * (Makefile) and lands here: a raw system call that sets errno like libc.
 */
SHIM_HIDDEN long vr_reader_syscall(long n, ...)
{
    va_list ap;
    va_start(ap, n);
    long a = va_arg(ap, long), b = va_arg(ap, long), c = va_arg(ap, long);
    long d = va_arg(ap, long), e = va_arg(ap, long), f = va_arg(ap, long);
    va_end(ap);
    long r = vr_sys6(n, a, b, c, d, e, f);
    if (r < 0 && r > -4096) {
        errno = (int)-r;
        return -1;
    }
    return r;
}

/* ---- fallback ---------------------------------------------------------- */

void vr_fallback(const char *why)
{
    int was = atomic_exchange(&vr_on, 0);
    if (was != 1 && was != -1)
        return;
    if (atomic_exchange(&fallback_said, 1))
        return;
    if (vr_first_in_run())
        vr_say(why, "; using the real filesystem from now on (mounts look empty)", NULL);
}

/* One warning per `vrift run`: the first process to notice creates the
 * marker; every other process of the run finds it and stays quiet. */
int vr_first_in_run(void)
{
    if (!run_marker[0])
        return 1;
    int fd = vr_openat(AT_FDCWD, run_marker, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return 0;
    vr_close(fd);
    return 1;
}

static long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

void vr_check_daemon(void)
{
    long now = now_ns();
    long next = atomic_load_explicit(&next_check_ns, memory_order_relaxed);
    if (VR_LIKELY(now < next))
        return;
    if (!atomic_compare_exchange_strong(&next_check_ns, &next, now + 100000000L))
        return; /* another thread checks */
    /* (vr_ipc_alive reconnects a lost connection: that is the re-attach) */
    if (vr_ipc_alive())
        vr_reattached();
    else
        vr_detach(vr_ipc_ever_connected() ? "the vrift daemon is gone" : "the vrift daemon is not running");
}

/* ---- initialisation ------------------------------------------------------ */

static void resolve_reals(void)
{
#define SHIM_FN(ret, name, params) real_##name = (ret(*) params)dlsym(RTLD_NEXT, #name);
#include "shim_fns.h"
#undef SHIM_FN
}

/* Where libvrift.so itself is, so children get the same absolute path. */
static void find_self(void)
{
    Dl_info info;
    if (dladdr((void *)&find_self, &info) && info.dli_fname && info.dli_fname[0] == '/')
        vr_strlcpy(vr_lib_path, info.dli_fname, sizeof vr_lib_path);
}

static void setup_marker(void)
{
    const char *run = vr_getenv("VRIFT_RUN_ID");
    if (!run || !*run || !vr_home[0])
        return;
    size_t n = vr_strlcpy(run_marker, vr_home, sizeof run_marker);
    n += vr_strlcpy(run_marker + n, "/" VRIFT_LAYOUT_RUN_DIR "/" VRIFT_LAYOUT_SHIM_WARNED_PREFIX, sizeof run_marker - n);
    if (n + vr_strlen(run) + 1 > sizeof run_marker) {
        run_marker[0] = '\0';
        return;
    }
    vr_strlcpy(run_marker + n, run, sizeof run_marker - n);
    for (char *p = run_marker + n; *p; p++)
        if (*p == '/')
            *p = '_';
}

void vr_init(void)
{
    int expect = 0;
    if (!atomic_compare_exchange_strong(&init_state, &expect, 1)) {
        /* Another thread is initialising: wait for it (bounded; it makes no
         * blocking calls). Our own thread never gets here (vr_in_init). */
        for (int i = 0; i < 1000000 && atomic_load(&init_state) != 2; i++)
            VR_SYS0(SYS_sched_yield);
        return;
    }
    int saved = errno;
    vr_in_init = 1;
    resolve_reals();
    find_self();
    int on = 0;
    int nm = vr_mounts_init();
    if (!vr_home[0]) {
        const char *h = vr_getenv("VRIFT_HOME");
        if (h && *h)
            vr_strlcpy(vr_home, h, sizeof vr_home);
    }
    if (nm < 0) {
        setup_marker();
        vr_fallback("the vrift mounts are not available (is the vrift daemon running?)");
    } else if (nm > 0) {
        setup_marker();
        vr_cwd_init();
        vr_exec_init();
        vr_reserve_high_fds();
        /* No daemon, but its VDirs are there (it died, or is restarting):
         * serve the last published view, refuse changes, re-attach later. */
        on = 1;
        /* The daemon is not asked here: the first path resolved in a mount
         * checks it (vr_check_daemon), a request connects. A process that
         * never touches a mount (most of a build's or a shell script's
         * helpers) costs it no connection. */
    }
    if (atomic_load(&vr_on) != 0)
        atomic_store_explicit(&vr_on, on, memory_order_release);
    vr_in_init = 0;
    atomic_store(&init_state, 2);
    errno = saved;
}

__attribute__((constructor)) static void vr_ctor(void)
{
    if (atomic_load(&init_state) == 0)
        vr_init();
}

