/*
 * publish-race: what a process just made must be found at once, however the
 * daemon's publishing of the mount's changes interleaves with the lookup.
 * `publish-race DIR PROCS N`: PROCS processes each make N directories under
 * DIR, a file in each, then chmod the directory and stat the file at once
 * (the shim answers from the VDir, or from the upper layer while changes
 * wait to be published: a lookup racing the publication must not say
 * ENOENT). Prints "<wrong> wrong of <total>"; exit 1 if any was wrong.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int one_process(const char *dir, int proc, int n)
{
    char p[2048], f[4096];
    int bad = 0;
    for (int i = 0; i < n; i++) {
        snprintf(p, sizeof p, "%s/p%d-d%d", dir, proc, i);
        if (mkdir(p, 0755) != 0) {
            fprintf(stderr, "mkdir %s: %s\n", p, strerror(errno));
            return n;
        }
        snprintf(f, sizeof f, "%s/f", p);
        int fd = open(f, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0) {
            fprintf(stderr, "create %s: %s\n", f, strerror(errno));
            bad++;
            continue;
        }
        close(fd);
        struct stat st;
        if (chmod(p, 0755) != 0) {
            fprintf(stderr, "chmod %s: %s\n", p, strerror(errno));
            bad++;
        }
        if (stat(f, &st) != 0) {
            fprintf(stderr, "stat %s: %s\n", f, strerror(errno));
            bad++;
        }
    }
    return bad;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: publish-race DIR PROCS N\n");
        return 2;
    }
    int procs = atoi(argv[2]), n = atoi(argv[3]), bad = 0;
    for (int k = 0; k < procs; k++) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(one_process(argv[1], k, n) > 0 ? 1 : 0);
    }
    for (int k = 0; k < procs; k++) {
        int status = 0;
        wait(&status);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            bad++;
    }
    printf("%d of %d processes saw something wrong\n", bad, procs);
    return bad ? 1 : 0;
}
