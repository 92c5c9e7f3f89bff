/*
 * shim-probe — checks run under the shim on a mount of the "small" sample
 * tree (test/shim/harness.ts writeSmallSource: data/f<i>.txt holds
 * "file <i>\n" repeated i+1 times).
 *
 *   shim-probe errno  <mnt>                 errno kept on success, set right on failure
 *   shim-probe fstat  <mnt>                 fstat of an opened virtual file = stat of its path
 *   shim-probe stress <mnt> <threads> <ms>  threads + fork + exec hammering the mount
 *   shim-probe read   <mnt>                 every data/f<i>.txt reads right
 *   shim-probe pageend <mnt>                stat() of paths that end right before an unreadable
 *                                           page, and of paths that run from one page into the
 *                                           next, at every offset: the answers of the same paths
 *                                           elsewhere, and no fault (the fast path reads a path
 *                                           with no strlen() first)
 *   shim-probe casfd  <mnt>                 reads keep working after the program closes every
 *                                           descriptor (close loop, close_range; a raw close and
 *                                           another directory dup'ed onto the shim's CAS
 *                                           descriptor behind its back), in a forked child, and
 *                                           across exec
 *
 * Prints "ok" and exits 0, or prints what failed and exits 1.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int failures;
#define CHECK(cond, ...)                         \
    do {                                         \
        if (!(cond)) {                           \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);        \
            fputc('\n', stderr);                 \
            failures++;                          \
        }                                        \
    } while (0)

static const char *mnt;

static void path_of(char *buf, size_t n, const char *rel) { snprintf(buf, n, "%s/%s", mnt, rel); }

static size_t expected_size(int i) { return (size_t)(snprintf(NULL, 0, "file %d\n", i)) * (size_t)(i + 1); }

/* Reads data/f<i>.txt whole and checks every byte. */
static int check_file(int i)
{
    char p[4096], want[64], buf[8192];
    snprintf(p, sizeof p, "%s/data/f%d.txt", mnt, i);
    int wl = snprintf(want, sizeof want, "file %d\n", i);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    if (n != (ssize_t)expected_size(i))
        return 0;
    for (ssize_t k = 0; k < n; k++)
        if (buf[k] != want[k % wl])
            return 0;
    struct stat st;
    return stat(p, &st) == 0 && (size_t)st.st_size == expected_size(i) && S_ISREG(st.st_mode);
}

static int count_dir(const char *rel)
{
    char p[4096];
    path_of(p, sizeof p, rel);
    DIR *d = opendir(p);
    if (!d)
        return -1;
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static int probe_errno(void)
{
    char p[4096];
    struct stat st;
    errno = 4242;
    path_of(p, sizeof p, "data/f1.txt");
    CHECK(stat(p, &st) == 0 && errno == 4242, "stat kept errno (%d)", errno);
    int fd = open(p, O_RDONLY);
    char b[16];
    CHECK(fd >= 0 && errno == 4242, "open kept errno");
    CHECK(read(fd, b, sizeof b) > 0 && close(fd) == 0 && errno == 4242, "read/close kept errno");
    CHECK(count_dir("data") == 52 && errno == 4242, "readdir kept errno (%d)", errno);
    char cwd[4096];
    path_of(p, sizeof p, "data");
    CHECK(chdir(p) == 0 && getcwd(cwd, sizeof cwd) && strcmp(cwd, p) == 0 && errno == 4242, "chdir/getcwd (%s)", cwd);
    CHECK(stat("f2.txt", &st) == 0 && (size_t)st.st_size == expected_size(2), "relative stat in a virtual cwd");
    CHECK(chdir("..") == 0 && getcwd(cwd, sizeof cwd) && strcmp(cwd, mnt) == 0, "chdir .. (%s)", cwd);
    CHECK(chdir("/") == 0, "chdir /");

    path_of(p, sizeof p, "nope");
    CHECK(stat(p, &st) == -1 && errno == ENOENT, "ENOENT (%d)", errno);
    path_of(p, sizeof p, "data/f1.txt/x");
    CHECK(stat(p, &st) == -1 && errno == ENOTDIR, "ENOTDIR (%d)", errno);
    path_of(p, sizeof p, "data");
    CHECK(open(p, O_WRONLY) == -1 && errno == EISDIR, "EISDIR (%d)", errno);
    CHECK(mkdir(p, 0755) == -1 && errno == EEXIST, "EEXIST (%d)", errno);
    CHECK(rmdir(p) == -1 && errno == ENOTEMPTY, "ENOTEMPTY (%d)", errno);
    CHECK(readlink(p, b, sizeof b) == -1 && errno == EINVAL, "readlink EINVAL (%d)", errno);
    CHECK(unlink(p) == -1 && errno == EISDIR, "unlink dir EISDIR (%d)", errno);
    path_of(p, sizeof p, "data/f1.txt");
    CHECK(access(p, X_OK) == -1 && errno == EACCES, "access X_OK EACCES (%d)", errno);
    CHECK(opendir(p) == NULL && errno == ENOTDIR, "opendir file ENOTDIR (%d)", errno);
    CHECK(open(p, O_RDONLY | O_DIRECTORY) == -1 && errno == ENOTDIR, "O_DIRECTORY ENOTDIR (%d)", errno);
    CHECK(open(p, O_RDONLY | O_CREAT | O_EXCL, 0644) == -1 && errno == EEXIST, "O_EXCL EEXIST (%d)", errno);
    path_of(p, sizeof p, "run.sh");
    CHECK(access(p, X_OK) == 0, "access X_OK on a script");
    return failures == 0;
}

/* stat() of `path` copied so that its NUL is the last byte before a
 * PROT_NONE page, against stat() of the same bytes in ordinary memory. */
static void stat_at_page_end(char *page_end, const char *path)
{
    size_t n = strlen(path) + 1;
    char *p = page_end - n;
    memcpy(p, path, n);
    struct stat a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    errno = 0;
    int ra = stat(path, &a), ea = errno;
    errno = 0;
    int rb = stat(p, &b), eb = errno;
    CHECK(ra == rb && (ra == 0 || ea == eb) && a.st_ino == b.st_ino && a.st_size == b.st_size && a.st_mode == b.st_mode,
          "stat(\"%s\") at a page end: %d/%d errno %d/%d", path, rb, ra, eb, ea);
}

/* stat() of `path` copied so that it starts `back` bytes before `page`
 * (it runs on into that page), against the same bytes elsewhere. */
static void stat_across_page(char *page, size_t back, const char *path)
{
    size_t n = strlen(path) + 1;
    char *p = page - back;
    memcpy(p, path, n);
    struct stat a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    errno = 0;
    int ra = stat(path, &a), ea = errno;
    errno = 0;
    int rb = stat(p, &b), eb = errno;
    CHECK(ra == rb && (ra == 0 || ea == eb) && a.st_ino == b.st_ino && a.st_size == b.st_size,
          "stat(\"%s\") across a page: %d/%d errno %d/%d", path, rb, ra, eb, ea);
}

static int probe_pageend(void)
{
    const long pg = sysconf(_SC_PAGESIZE);
    /* two readable pages, then an unreadable one */
    char *three = mmap(NULL, (size_t)pg * 3, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(three != MAP_FAILED && mprotect(three + 2 * pg, (size_t)pg, PROT_NONE) == 0, "a page before an unreadable one");
    if (three == MAP_FAILED)
        return 0;
    char *two = three + pg;
    static const char *rels[] = {"data/f1.txt", "data/f10.txt", "data", "", "nope", "data/nope", "data/f1.txt/x",
                                 "run.sh", "data/f49.txt", "data//f1.txt", "data/./f2.txt", "data/../run.sh"};
    char p[8192];
    const size_t ml = strlen(mnt);
    for (size_t k = 0; k < sizeof rels / sizeof rels[0]; k++) {
        /* the path, and every prefix of it and of the mount root (shorter
         * than the root, the root itself, the root and a slash ...) */
        snprintf(p, sizeof p, "%s%s%s", mnt, rels[k][0] ? "/" : "", rels[k]);
        for (size_t cut = strlen(p); cut > 0; cut--) {
            char q[8192];
            memcpy(q, p, cut);
            q[cut] = '\0';
            if (cut >= ml || k == 0) /* prefixes of the root once */
                stat_at_page_end(two + pg, q);
        }
    }
    /* long names: paths of 16-byte blocks and every tail length */
    for (int extra = 0; extra < 48; extra++) {
        int n = snprintf(p, sizeof p, "%s/data/", mnt);
        for (int i = 0; i < extra; i++)
            p[n++] = (char)('a' + i % 26);
        p[n] = '\0';
        stat_at_page_end(two + pg, p);
    }
    /* paths that start in one page and end in the next, at every offset */
    for (size_t k = 0; k < sizeof rels / sizeof rels[0]; k++) {
        snprintf(p, sizeof p, "%s%s%s", mnt, rels[k][0] ? "/" : "", rels[k]);
        for (size_t back = 1; back <= strlen(p); back++)
            stat_across_page(two, back, p);
    }
    munmap(three, (size_t)pg * 3);
    return failures == 0;
}

static int probe_fstat(void)
{
    char p[4096];
    struct stat a, b;
    path_of(p, sizeof p, "data/f3.txt");
    int fd = open(p, O_RDONLY);
    CHECK(fd >= 0 && stat(p, &a) == 0 && fstat(fd, &b) == 0, "open/stat/fstat");
    CHECK(a.st_ino == b.st_ino && a.st_dev == b.st_dev && a.st_size == b.st_size && a.st_mode == b.st_mode &&
              a.st_mtime == b.st_mtime,
          "fstat = stat (ino %lu/%lu dev %lu/%lu mode %o/%o)", (unsigned long)a.st_ino, (unsigned long)b.st_ino,
          (unsigned long)a.st_dev, (unsigned long)b.st_dev, a.st_mode, b.st_mode);
    CHECK((a.st_mode & 0777) == 0644, "tree mode 0644, not the blob's 0444 (%o)", a.st_mode & 0777);
    int d = dup(fd);
    CHECK(d >= 0 && fstat(d, &b) == 0 && b.st_ino == a.st_ino, "dup keeps the virtual file");
    close(fd);
    CHECK(fstat(d, &b) == 0 && b.st_ino == a.st_ino, "still virtual after closing the original");
    close(d);
    struct stat root;
    CHECK(stat(mnt, &root) == 0 && root.st_dev == a.st_dev && root.st_ino == 2, "root inode 2 on the mount's device");
    FILE *f = fopen(p, "r");
    char line[64];
    CHECK(f && fgets(line, sizeof line, f) && strcmp(line, "file 3\n") == 0, "fopen reads the tree");
    CHECK(f && fstat(fileno(f), &b) == 0 && b.st_ino == a.st_ino, "fstat(fileno(fopen()))");
    if (f)
        fclose(f);
    return failures == 0;
}

static atomic_int stop, errors;
static atomic_long ops;

static void *worker(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    while (!atomic_load(&stop)) {
        int i = (int)(rand_r(&seed) % 50);
        if (!check_file(i))
            atomic_fetch_add(&errors, 1);
        if ((rand_r(&seed) & 7) == 0 && count_dir("data") != 52)
            atomic_fetch_add(&errors, 1);
        atomic_fetch_add(&ops, 1);
    }
    return NULL;
}

static int probe_stress(int nthreads, int ms)
{
    pthread_t t[64];
    if (nthreads > 64)
        nthreads = 64;
    for (int i = 0; i < nthreads; i++)
        pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i * 7919 + 1));
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int children = 0, child_fail = 0;
    do {
        /* fork while the threads run: the child must work (no inherited lock) */
        pid_t pid = fork();
        if (pid == 0) {
            int ok = 1;
            for (int i = 0; i < 50; i++)
                ok &= check_file(i);
            ok &= count_dir("data") == 52;
            if (children % 2 == 0) {
                char p[4096];
                snprintf(p, sizeof p, "%s/data/f7.txt", mnt);
                int dn = open("/dev/null", O_WRONLY);
                dup2(dn, 1);
                if (ok)
                    execl("/bin/cat", "cat", p, (char *)NULL);
                _exit(3);
            }
            _exit(ok ? 0 : 1);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            child_fail++;
        children++;
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000 < ms);
    atomic_store(&stop, 1);
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);
    CHECK(atomic_load(&errors) == 0, "%d thread errors", atomic_load(&errors));
    CHECK(child_fail == 0, "%d of %d children failed", child_fail, children);
    CHECK(atomic_load(&ops) > 100 && children > 5, "too little work done (%ld ops, %d children)", atomic_load(&ops), children);
    return failures == 0;
}

static int read_all(void)
{
    int bad = 0;
    for (int i = 0; i < 50; i++)
        bad += !check_file(i);
    return bad;
}

/* Descriptors >= 3 open on a directory named .../cas (the shim's CAS descriptor). */
static int cas_fds(int *out, int cap)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        int fd = atoi(e->d_name);
        char link[64], target[4096];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t l = readlink(link, target, sizeof target - 1);
        if (fd < 3 || l < 4)
            continue;
        target[l] = '\0';
        if (strcmp(target + l - 4, "/cas") == 0)
            out[n++] = fd;
    }
    closedir(d);
    return n;
}

static int probe_casfd(const char *self)
{
    int fds[8];
    CHECK(read_all() == 0, "first reads");
    CHECK(cas_fds(fds, 8) == 1 && fds[0] >= 64, "one high CAS descriptor after reading (%d)", cas_fds(fds, 8));
    /* a "close every descriptor" loop: the shim keeps its own, quietly */
    for (int fd = 3; fd < 4096; fd++)
        close(fd);
    CHECK(read_all() == 0, "reads after a close loop");
    /* close_range through libc: the shim lets it go and opens another */
    close_range(3, ~0u, 0);
    CHECK(read_all() == 0, "reads after close_range");
    /* behind the shim's back: a raw close, then another directory on the
     * old number (raw dup3): reads must still get the right bytes */
    int n = cas_fds(fds, 8);
    CHECK(n == 1, "one CAS descriptor after close_range (%d)", n);
    if (n == 1) {
        syscall(SYS_close, fds[0]);
        int other = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        CHECK(other >= 0 && syscall(SYS_dup3, other, fds[0], O_CLOEXEC) == fds[0], "dup3 onto %d", fds[0]);
        CHECK(read_all() == 0, "reads with another directory on the CAS descriptor's number");
        CHECK(read_all() == 0, "reads again (a new CAS descriptor)");
        char link[64], target[4096];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fds[0]);
        ssize_t l = readlink(link, target, sizeof target - 1);
        CHECK(l == 1 && target[0] == '/', "the program's descriptor %d was left alone", fds[0]);
    }
    /* fork: the child reads with the inherited descriptor; exec: a new one */
    pid_t pid = fork();
    if (pid == 0)
        _exit(read_all() == 0 ? 0 : 1);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "forked child reads");
    pid = fork();
    if (pid == 0) {
        int dn = open("/dev/null", O_WRONLY);
        dup2(dn, 1);
        execl(self, self, "fresh", mnt, (char *)NULL);
        _exit(3);
    }
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exec'd child reads (status %d)", status);
    return failures == 0;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    mnt = argv[2];
    int ok;
    if (strcmp(argv[1], "errno") == 0)
        ok = probe_errno();
    else if (strcmp(argv[1], "fstat") == 0)
        ok = probe_fstat();
    else if (strcmp(argv[1], "read") == 0)
        ok = read_all() == 0;
    else if (strcmp(argv[1], "pageend") == 0)
        ok = probe_pageend();
    else if (strcmp(argv[1], "fresh") == 0) { /* exec'd by casfd: the descriptor was close-on-exec */
        int fds[8];
        CHECK(cas_fds(fds, 8) == 0, "a CAS descriptor survived exec");
        ok = read_all() == 0 && failures == 0;
    } else if (strcmp(argv[1], "casfd") == 0)
        ok = probe_casfd(argv[0]);
    else if (strcmp(argv[1], "stress") == 0 && argc >= 5)
        ok = probe_stress(atoi(argv[3]), atoi(argv[4]));
    else
        return 2;
    if (ok)
        puts("ok");
    return ok ? 0 : 1;
}
