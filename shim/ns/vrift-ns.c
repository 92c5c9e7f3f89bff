/*
 * vrift-ns — runs a program the shim cannot see (static, Go, setuid) with
 * every vrift mount made real for it: a private mount namespace in which
 * each mount root is an overlayfs whose lower layer is the daemon's link
 * farm of the mount (lower/), and whose upper layer (upper/, work/) takes
 * the program's writes. `vrift _ns-exec` (src/cli/ns-exec.ts) asks the
 * daemon for the farms, starts this, and after the program exits asks the
 * daemon to merge upper/ back into the mount.
 *
 *   vrift-ns --cwd DIR [--mount ROOT RUNDIR]... -- PROG ARGV0 [ARGS...]
 *
 * RUNDIR holds lower/, upper/ and work/ (same filesystem). The program is
 * exec'd in place (same pid: signals and exit status are its own), with
 * the environment it is given (the caller has removed LD_PRELOAD and the
 * VRIFT_* variables: inside, the kernel serves every file).
 *
 * As root: unshare(CLONE_NEWNS). Otherwise (or when that is refused) a user
 * namespace too, the caller's uid/gid mapped to themselves, and overlayfs
 * with `userxattr`. When neither works: one line naming the program and
 * the workaround, exit 126. Not part of libvrift.so (see the Makefile).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

static const char *prog_name = "the program";

static void fail(const char *step, int err)
{
    fprintf(stderr,
            "vrift: %s cannot see vrift mounts and could not be given a private mount namespace (%s: %s); "
            "materialize the tree instead (`vrift materialize <tree> <dir>`) and run it there\n",
            prog_name, step, strerror(err));
    exit(126);
}

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    int e = errno;
    close(fd);
    errno = e;
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

static int enter_userns(void)
{
    uid_t uid = geteuid();
    gid_t gid = getegid();
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
        return -1;
    char map[64];
    if (write_file("/proc/self/setgroups", "deny") != 0 && errno != ENOENT)
        return -1;
    snprintf(map, sizeof map, "%u %u 1\n", (unsigned)uid, (unsigned)uid);
    if (write_file("/proc/self/uid_map", map) != 0)
        return -1;
    snprintf(map, sizeof map, "%u %u 1\n", (unsigned)gid, (unsigned)gid);
    if (write_file("/proc/self/gid_map", map) != 0)
        return -1;
    return 0;
}

/* Overlay option values cannot hold these unescaped: refuse rather than guess. */
static int plain_path(const char *p)
{
    return strpbrk(p, ",:\\") == NULL;
}

int main(int argc, char **argv)
{
    const char *cwd = NULL;
    const char *roots[64], *runs[64];
    int nmounts = 0, i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if (strcmp(argv[i], "--cwd") == 0 && i + 1 < argc)
            cwd = argv[++i];
        else if (strcmp(argv[i], "--mount") == 0 && i + 2 < argc && nmounts < 64) {
            roots[nmounts] = argv[++i];
            runs[nmounts++] = argv[++i];
        } else {
            fprintf(stderr, "vrift-ns: usage: vrift-ns --cwd DIR [--mount ROOT RUNDIR]... -- PROG ARGV0 [ARGS...]\n");
            return 125;
        }
    }
    if (argc - i < 2) {
        fprintf(stderr, "vrift-ns: no program to run\n");
        return 125;
    }
    const char *prog = argv[i];
    char **pargv = argv + i + 1;
    prog_name = prog;

    int userns = 0;
    if (geteuid() != 0 || unshare(CLONE_NEWNS) != 0) {
        int e = errno;
        if (enter_userns() != 0)
            fail("unshare", geteuid() == 0 ? e : errno);
        userns = 1;
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        fail("making / private", errno);
    for (int m = 0; m < nmounts; m++) {
        if (!plain_path(runs[m]))
            fail(runs[m], EINVAL);
        char opts[3 * 4096 + 256];
        int n = snprintf(opts, sizeof opts, "lowerdir=%s/lower,upperdir=%s/upper,workdir=%s/work", runs[m], runs[m], runs[m]);
        if (n <= 0 || (size_t)n >= sizeof opts - 64)
            fail(runs[m], ENAMETOOLONG);
        /* Upper files must be whole files the daemon can read back: no
         * metacopy (data left below), no redirects (renamed lower dirs), no
         * index. In a user namespace those are off anyway, and the overlay
         * xattrs are user.overlay.* */
        char *tail = opts + n;
        strcpy(tail, userns ? ",userxattr" : ",redirect_dir=off,metacopy=off,index=off");
        if (mount("overlay", roots[m], "overlay", 0, opts) != 0) {
            int e = errno;
            *tail = '\0'; /* an older kernel may not know an option: without them */
            if (!userns && e == EINVAL && mount("overlay", roots[m], "overlay", 0, opts) == 0)
                continue;
            char step[4200];
            snprintf(step, sizeof step, "mounting overlayfs at %s", roots[m]);
            fail(step, e);
        }
    }
    if (cwd && chdir(cwd) != 0) {
        char step[4200];
        snprintf(step, sizeof step, "chdir %s", cwd);
        fail(step, errno);
    }
    if (strchr(prog, '/'))
        execv(prog, pargv);
    else
        execvp(prog, pargv);
    int e = errno;
    fprintf(stderr, "vrift: %s: %s\n", prog, strerror(e));
    return e == ENOENT ? 127 : 126;
}
