/*
 * rawsys.h — system calls without libc, for the shim's own work.
 *
 * The shim must never call a libc function it interposes (open, close,
 * fstat, syscall ...): inside libvrift.so those names resolve to the
 * shim's wrappers, and the call would recurse. Every system call the shim
 * makes for itself goes through vr_sys6() below: inline assembly, no errno
 * (results are returned as -errno, like the kernel does), no allocation,
 * safe before the shim is initialised, in a vfork child and in a signal
 * handler.
 */
#ifndef VRIFT_RAWSYS_H
#define VRIFT_RAWSYS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/syscall.h>

static inline long vr_sys6(long n, long a, long b, long c, long d, long e, long f)
{
#if defined(__x86_64__)
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ __volatile__("syscall"
                         : "=a"(ret)
                         : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                         : "rcx", "r11", "memory");
    return ret;
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ __volatile__("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory");
    return x0;
#else
#error "vrift shim: raw system calls are implemented for x86_64 and aarch64"
#endif
}

#define VR_SYS0(n) vr_sys6((n), 0, 0, 0, 0, 0, 0)
#define VR_SYS1(n, a) vr_sys6((n), (long)(a), 0, 0, 0, 0, 0)
#define VR_SYS2(n, a, b) vr_sys6((n), (long)(a), (long)(b), 0, 0, 0, 0)
#define VR_SYS3(n, a, b, c) vr_sys6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define VR_SYS4(n, a, b, c, d) vr_sys6((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define VR_SYS5(n, a, b, c, d, e) vr_sys6((n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)
#define VR_SYS6(n, a, b, c, d, e, f) vr_sys6((n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))

/* The few the shim uses, each returning -errno on failure. */
static inline int vr_openat(int dirfd, const char *path, int flags, unsigned mode)
{
    return (int)VR_SYS4(SYS_openat, dirfd, path, flags, mode);
}
static inline int vr_close(int fd) { return (int)VR_SYS1(SYS_close, fd); }
static inline long vr_read(int fd, void *buf, size_t n) { return VR_SYS3(SYS_read, fd, buf, n); }
static inline long vr_write(int fd, const void *buf, size_t n) { return VR_SYS3(SYS_write, fd, buf, n); }
static inline long vr_pread(int fd, void *buf, size_t n, long off) { return VR_SYS4(SYS_pread64, fd, buf, n, off); }
static inline int vr_fstat(int fd, void *st) { return (int)VR_SYS2(SYS_fstat, fd, st); }
static inline int vr_fstatat(int dirfd, const char *path, void *st, int flags)
{
    return (int)VR_SYS4(SYS_newfstatat, dirfd, path, st, flags);
}
static inline int vr_getpid(void) { return (int)VR_SYS0(SYS_getpid); }
static inline int vr_gettid(void) { return (int)VR_SYS0(SYS_gettid); }
static inline long vr_getcwd(char *buf, size_t n) { return VR_SYS2(SYS_getcwd, buf, n); }
static inline void *vr_mmap(size_t len)
{
    /* PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS */
    long r = vr_sys6(SYS_mmap, 0, (long)len, 0x1 | 0x2, 0x02 | 0x20, -1, 0);
    return (r < 0 && r > -4096) ? NULL : (void *)r;
}
static inline void vr_munmap(void *p, size_t len) { VR_SYS2(SYS_munmap, p, len); }
static inline int vr_fcntl(int fd, int cmd, long arg) { return (int)VR_SYS3(SYS_fcntl, fd, cmd, arg); }
static inline int vr_unlinkat(int dirfd, const char *path, int flags) { return (int)VR_SYS3(SYS_unlinkat, dirfd, path, flags); }
static inline int vr_mkdirat(int dirfd, const char *path, unsigned mode) { return (int)VR_SYS3(SYS_mkdirat, dirfd, path, mode); }
static inline long vr_readlinkat(int dirfd, const char *path, char *buf, size_t n)
{
    return VR_SYS4(SYS_readlinkat, dirfd, path, buf, n);
}

#endif /* VRIFT_RAWSYS_H */
