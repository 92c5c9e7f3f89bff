/*
 * shim_fns.h — the libc functions libvrift.so interposes, as data.
 *
 * One line per function: SHIM_FN(return type, name, (parameters)).
 * shim.c expands the list into one `real_<name>` pointer per function and
 * resolves them all once with dlsym(RTLD_NEXT); each wrapper lives in the
 * file of its family (stat.c, dir.c, open.c, write.c, exec.c) and is the
 * only exported symbol of that name (everything else is hidden).
 * `nm -D --defined-only build/libvrift.so` must list exactly these names
 * (test/shim/safety.spec.ts checks it).
 */

/* stat family (stat.c). glibc 2.36 exports stat/lstat/fstat/fstatat as real
 * symbols; binaries built against older glibc (Node 20) import __xstat64 &c. */
SHIM_FN(int, stat, (const char *, struct stat *))
SHIM_FN(int, stat64, (const char *, struct stat64 *))
SHIM_FN(int, lstat, (const char *, struct stat *))
SHIM_FN(int, lstat64, (const char *, struct stat64 *))
SHIM_FN(int, fstat, (int, struct stat *))
SHIM_FN(int, fstat64, (int, struct stat64 *))
SHIM_FN(int, fstatat, (int, const char *, struct stat *, int))
SHIM_FN(int, fstatat64, (int, const char *, struct stat64 *, int))
SHIM_FN(int, __xstat, (int, const char *, struct stat *))
SHIM_FN(int, __xstat64, (int, const char *, struct stat64 *))
SHIM_FN(int, __lxstat, (int, const char *, struct stat *))
SHIM_FN(int, __lxstat64, (int, const char *, struct stat64 *))
SHIM_FN(int, __fxstat, (int, int, struct stat *))
SHIM_FN(int, __fxstat64, (int, int, struct stat64 *))
SHIM_FN(int, __fxstatat, (int, int, const char *, struct stat *, int))
SHIM_FN(int, __fxstatat64, (int, int, const char *, struct stat64 *, int))
SHIM_FN(int, statx, (int, const char *, int, unsigned int, struct statx *))
SHIM_FN(long, syscall, (long, ...))
SHIM_FN(int, access, (const char *, int))
SHIM_FN(int, faccessat, (int, const char *, int, int))
SHIM_FN(int, eaccess, (const char *, int))
SHIM_FN(int, euidaccess, (const char *, int))
SHIM_FN(ssize_t, readlink, (const char *, char *, size_t))
SHIM_FN(ssize_t, readlinkat, (int, const char *, char *, size_t))
SHIM_FN(ssize_t, getxattr, (const char *, const char *, void *, size_t))
SHIM_FN(ssize_t, lgetxattr, (const char *, const char *, void *, size_t))
SHIM_FN(ssize_t, listxattr, (const char *, char *, size_t))
SHIM_FN(ssize_t, llistxattr, (const char *, char *, size_t))
SHIM_FN(int, statfs, (const char *, struct statfs *))
SHIM_FN(int, statfs64, (const char *, struct statfs64 *))
SHIM_FN(int, statvfs, (const char *, struct statvfs *))
SHIM_FN(int, statvfs64, (const char *, struct statvfs64 *))
SHIM_FN(char *, realpath, (const char *, char *))
SHIM_FN(char *, canonicalize_file_name, (const char *))

/* directories and the working directory (dir.c) */
SHIM_FN(DIR *, opendir, (const char *))
SHIM_FN(DIR *, fdopendir, (int))
SHIM_FN(struct dirent *, readdir, (DIR *))
SHIM_FN(struct dirent64 *, readdir64, (DIR *))
SHIM_FN(int, readdir_r, (DIR *, struct dirent *, struct dirent **))
SHIM_FN(int, readdir64_r, (DIR *, struct dirent64 *, struct dirent64 **))
SHIM_FN(int, closedir, (DIR *))
SHIM_FN(int, dirfd, (DIR *))
SHIM_FN(void, rewinddir, (DIR *))
SHIM_FN(long, telldir, (DIR *))
SHIM_FN(void, seekdir, (DIR *, long))
SHIM_FN(int, scandir, (const char *, struct dirent ***, int (*)(const struct dirent *),
                       int (*)(const struct dirent **, const struct dirent **)))
SHIM_FN(int, scandir64, (const char *, struct dirent64 ***, int (*)(const struct dirent64 *),
                         int (*)(const struct dirent64 **, const struct dirent64 **)))
SHIM_FN(ssize_t, getdents64, (int, void *, size_t))
SHIM_FN(int, chdir, (const char *))
SHIM_FN(int, fchdir, (int))
SHIM_FN(char *, getcwd, (char *, size_t))

/* opening, descriptors, stdio (open.c) */
SHIM_FN(int, open, (const char *, int, ...))
SHIM_FN(int, open64, (const char *, int, ...))
SHIM_FN(int, openat, (int, const char *, int, ...))
SHIM_FN(int, openat64, (int, const char *, int, ...))
SHIM_FN(int, __open_2, (const char *, int))
SHIM_FN(int, __open64_2, (const char *, int))
SHIM_FN(int, __openat_2, (int, const char *, int))
SHIM_FN(int, __openat64_2, (int, const char *, int))
SHIM_FN(int, creat, (const char *, mode_t))
SHIM_FN(int, creat64, (const char *, mode_t))
SHIM_FN(FILE *, fopen, (const char *, const char *))
SHIM_FN(FILE *, fopen64, (const char *, const char *))
SHIM_FN(FILE *, freopen, (const char *, const char *, FILE *))
SHIM_FN(FILE *, freopen64, (const char *, const char *, FILE *))
SHIM_FN(int, fclose, (FILE *))
SHIM_FN(int, close, (int))
SHIM_FN(int, close_range, (unsigned int, unsigned int, int))
SHIM_FN(int, dup, (int))
SHIM_FN(int, dup2, (int, int))
SHIM_FN(int, dup3, (int, int, int))
SHIM_FN(int, fcntl, (int, int, ...))
SHIM_FN(int, fcntl64, (int, int, ...))

/* changes inside a mount (write.c) */
SHIM_FN(int, mkdir, (const char *, mode_t))
SHIM_FN(int, mkdirat, (int, const char *, mode_t))
SHIM_FN(int, unlink, (const char *))
SHIM_FN(int, unlinkat, (int, const char *, int))
SHIM_FN(int, rmdir, (const char *))
SHIM_FN(int, rename, (const char *, const char *))
SHIM_FN(int, renameat, (int, const char *, int, const char *))
SHIM_FN(int, renameat2, (int, const char *, int, const char *, unsigned int))
SHIM_FN(int, symlink, (const char *, const char *))
SHIM_FN(int, symlinkat, (const char *, int, const char *))
SHIM_FN(int, link, (const char *, const char *))
SHIM_FN(int, linkat, (int, const char *, int, const char *, int))
SHIM_FN(int, truncate, (const char *, off_t))
SHIM_FN(int, truncate64, (const char *, off64_t))
SHIM_FN(int, chmod, (const char *, mode_t))
SHIM_FN(int, fchmod, (int, mode_t))
SHIM_FN(int, fchmodat, (int, const char *, mode_t, int))
SHIM_FN(int, chown, (const char *, uid_t, gid_t))
SHIM_FN(int, lchown, (const char *, uid_t, gid_t))
SHIM_FN(int, fchownat, (int, const char *, uid_t, gid_t, int))
SHIM_FN(int, utimensat, (int, const char *, const struct timespec[2], int))
SHIM_FN(int, utimes, (const char *, const struct timeval[2]))
SHIM_FN(int, lutimes, (const char *, const struct timeval[2]))
SHIM_FN(int, utime, (const char *, const struct utimbuf *))
SHIM_FN(int, mkstemp, (char *))
SHIM_FN(int, mkstemp64, (char *))
SHIM_FN(int, mkostemp, (char *, int))
SHIM_FN(int, mkstemps, (char *, int))

/* running programs (exec.c) */
SHIM_FN(int, execve, (const char *, char *const[], char *const[]))
SHIM_FN(int, execv, (const char *, char *const[]))
SHIM_FN(int, execvp, (const char *, char *const[]))
SHIM_FN(int, execvpe, (const char *, char *const[], char *const[]))
SHIM_FN(int, execl, (const char *, const char *, ...))
SHIM_FN(int, execlp, (const char *, const char *, ...))
SHIM_FN(int, execle, (const char *, const char *, ...))
SHIM_FN(int, posix_spawn, (pid_t *, const char *, const posix_spawn_file_actions_t *, const posix_spawnattr_t *,
                           char *const[], char *const[]))
SHIM_FN(int, posix_spawnp, (pid_t *, const char *, const posix_spawn_file_actions_t *, const posix_spawnattr_t *,
                            char *const[], char *const[]))
SHIM_FN(void *, dlopen, (const char *, int))

/* process exit without atexit handlers (shim.c): staged files are still committed */
SHIM_FN(void, _exit, (int))
SHIM_FN(void, _Exit, (int))
