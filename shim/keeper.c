/*
 * vrift-keeper: holds the fanotify pre-content group that makes readers of a
 * large blob wait until the daemon has verified the bytes they read.
 *
 * Why a process of its own: when a fanotify group's last fd closes, the
 * kernel ALLOWS every pending event and raises no new ones, so readers of a
 * half-written blob would read the zeros of the sparse file. The daemon can
 * crash or restart; the keeper outlives it and, if no daemon comes back in
 * time, turns every read of an unverified range into EIO.
 *
 *   vrift-keeper [--grace-ms N] <socket>   serve (started detached by the daemon)
 *   vrift-keeper --probe <dir>             print `ok` or why streaming cannot work
 *
 * One keeper per socket: `<socket>.lock` is flock()ed for the keeper's life
 * (and holds its pid); a second start finds it locked and exits 0. A stale
 * socket file is replaced. Logs one line per notable thing on stderr.
 *
 * Protocol: lines of text on the unix socket (mode 0600). <id> is
 * [A-Za-z0-9._-]{1,128} (the daemon uses the blob digest); numbers are
 * decimal bytes; <path> is the rest of the line.
 *
 *   hello                       -> `stream <id> <size> <verified> <path>` per
 *                                  orphan (an unfinished stream whose daemon
 *                                  went away; this connection adopts it),
 *                                  then `end`. Events from this peer's pid
 *                                  (SO_PEERCRED) are allowed from now on.
 *   watch <id> <size> <path>    -> `ok <id>` | `err <id> <errno> <text>`
 *                                  The keeper opens the path O_RDONLY (before
 *                                  the mark: its fd raises no events), keeps
 *                                  that fd and marks the inode FAN_PRE_ACCESS.
 *   progress <id> <verified>    -> nothing (or `err …`); monotonic.
 *   done <id>                   -> `ok <id>`: allow all, remove the mark, forget.
 *   fail <id>                   -> nothing (or `err …`): reads of ranges not
 *                                  yet verified get EIO from now on.
 *   anything else               -> `err - <errno> <text>`
 *
 * Events: the read's range [offset, offset+count) (the RANGE info record; the
 * whole file without one) clamped to the size is ALLOWED when inside the
 * verified prefix or the stream is done, DENIED with EIO when the stream
 * failed, else kept pending until progress covers it. Events of a client's
 * pid or the keeper's own, and of inodes not watched, are allowed at once.
 *
 * A stream whose connection closes is an orphan: it (and its readers) waits
 * up to the grace period for a daemon to say hello, then fails. A failed
 * stream keeps denying until its file is unlinked (the daemon removes a failed
 * temp file) and no process has the inode open or mapped
 * (/proc/<pid>/{fd,map_files}, scanned every few seconds), then its mark goes.
 * The keeper exits when no client is connected and no stream remains, after
 * being idle for the grace period.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

/* Debian 12's headers predate pre-content events (Linux 6.14). */
#ifndef FAN_CLASS_PRE_CONTENT
#define FAN_CLASS_PRE_CONTENT 0x08
#endif
#ifndef FAN_PRE_ACCESS
#define FAN_PRE_ACCESS 0x00100000
#endif
#ifndef FAN_EVENT_INFO_TYPE_RANGE
#define FAN_EVENT_INFO_TYPE_RANGE 6
#endif
#define KP_DENY_EIO (FAN_DENY | ((uint32_t)EIO << 24))

struct kp_range_info {
    struct fanotify_event_info_header hdr;
    uint32_t pad;
    uint64_t offset;
    uint64_t count;
};

#define KP_MAX_CLIENTS 16
#define KP_MAX_STREAMS 1024
#define KP_MAX_PENDING 4096
#define KP_MAX_ID 128
#define KP_LINE_MAX 4352 /* a command plus PATH_MAX */
#define KP_OUT_MAX 65536
#define KP_SCAN_MS 3000
/* Events are read KP_EVBUF bytes at a time: at most KP_EVMAX per read. */
#define KP_EVBUF 4096
#define KP_EVMAX (KP_EVBUF / (int)sizeof(struct fanotify_event_metadata) + 1)

enum kp_state { KP_FREE = 0, KP_RUNNING, KP_FAILED };

struct kp_stream {
    enum kp_state state;
    char id[KP_MAX_ID + 1];
    char *path;
    uint64_t size, verified;
    int fd; /* O_RDONLY, opened before the mark; the mark is removed through it */
    dev_t dev;
    ino_t ino;
    int owner;         /* client slot, or -1: an orphan (or failed) */
    int64_t orphan_at; /* ms; when it lost its client */
};

struct kp_pending {
    int fd; /* the event's fd, -1 when free */
    int stream;
    uint64_t end; /* the read needs [0, end) verified */
};

struct kp_client {
    int fd; /* -1 when free */
    pid_t pid;
    int hello;
    char in[KP_LINE_MAX];
    size_t in_len;
    int discarding; /* an over-long line: drop bytes up to its newline */
    char out[KP_OUT_MAX];
    size_t out_len;
};

static int g_group = -1, g_listen = -1;
static int64_t g_grace_ms = 20000;
static struct kp_stream g_streams[KP_MAX_STREAMS];
static struct kp_pending g_pending[KP_MAX_PENDING];
static int g_npending;
static struct kp_client g_clients[KP_MAX_CLIENTS];
static volatile sig_atomic_t g_stop;
static const char *g_sock_path;

static int64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void logf_(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "vrift-keeper[%d]: %s\n", (int)getpid(), buf);
}

static void respond(int event_fd, uint32_t response) {
    struct fanotify_response r = { .fd = event_fd, .response = response };
    if (write(g_group, &r, sizeof r) != (ssize_t)sizeof r) logf_("answering event fd %d: %s", event_fd, strerror(errno));
    close(event_fd);
}

/* ---- clients ---- */

static void client_close(int c);

static void sendf(int c, const char *fmt, ...) {
    struct kp_client *cl = &g_clients[c];
    if (cl->fd < 0) return;
    char line[KP_LINE_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n > sizeof line - 2) n = (int)sizeof line - 2;
    line[n++] = '\n';
    if (cl->out_len + (size_t)n > sizeof cl->out) {
        /* A client that does not read its answers: bounded memory, so drop it. */
        logf_("client pid %d does not read its answers: closing it", (int)cl->pid);
        client_close(c);
        return;
    }
    memcpy(cl->out + cl->out_len, line, (size_t)n);
    cl->out_len += (size_t)n;
}

static void client_flush(int c) {
    struct kp_client *cl = &g_clients[c];
    while (cl->fd >= 0 && cl->out_len > 0) {
        ssize_t w = send(cl->fd, cl->out, cl->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) client_close(c);
            return;
        }
        memmove(cl->out, cl->out + w, cl->out_len - (size_t)w);
        cl->out_len -= (size_t)w;
    }
}

static int nclients(void) {
    int n = 0;
    for (int c = 0; c < KP_MAX_CLIENTS; c++) n += g_clients[c].fd >= 0;
    return n;
}

/* ---- streams ---- */

static int nstreams(void) {
    int n = 0;
    for (int s = 0; s < KP_MAX_STREAMS; s++) n += g_streams[s].state != KP_FREE;
    return n;
}

static int find_running(const char *id) {
    for (int s = 0; s < KP_MAX_STREAMS; s++)
        if (g_streams[s].state == KP_RUNNING && strcmp(g_streams[s].id, id) == 0) return s;
    return -1;
}

static int find_inode(dev_t dev, ino_t ino) {
    for (int s = 0; s < KP_MAX_STREAMS; s++)
        if (g_streams[s].state != KP_FREE && g_streams[s].dev == dev && g_streams[s].ino == ino) return s;
    return -1;
}

/* Answers the pending events of `s` that `all` or the verified prefix covers. */
static void release(int s, int all, uint32_t response) {
    for (int i = 0; i < KP_MAX_PENDING && g_npending > 0; i++) {
        struct kp_pending *p = &g_pending[i];
        if (p->fd < 0 || p->stream != s) continue;
        if (all || p->end <= g_streams[s].verified) {
            respond(p->fd, all ? response : FAN_ALLOW);
            p->fd = -1;
            g_npending--;
        }
    }
}

/* Allows what is pending, removes the mark, forgets the stream. */
static void stream_forget(int s, const char *why) {
    struct kp_stream *st = &g_streams[s];
    release(s, 1, FAN_ALLOW);
    if (fanotify_mark(g_group, FAN_MARK_REMOVE, FAN_PRE_ACCESS, st->fd, NULL) < 0 && errno != ENOENT)
        logf_("%s: removing the mark: %s", st->id, strerror(errno));
    close(st->fd);
    logf_("%s: %s", st->id, why);
    free(st->path);
    memset(st, 0, sizeof *st);
    st->fd = -1;
    st->owner = -1;
}

static void stream_fail(int s, const char *why) {
    struct kp_stream *st = &g_streams[s];
    st->state = KP_FAILED;
    st->owner = -1;
    /* Pending reads are all past the verified prefix (else they were answered). */
    release(s, 1, KP_DENY_EIO);
    logf_("%s: failed (%s): reads past %llu of %llu bytes get EIO", st->id, why, (unsigned long long)st->verified,
          (unsigned long long)st->size);
}

/* ---- commands ---- */

static int valid_id(const char *id) {
    size_t n = strlen(id);
    if (n == 0 || n > KP_MAX_ID) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = id[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

static int parse_u64(const char *s, uint64_t *out) {
    if (!s || !*s || *s < '0' || *s > '9') return 0;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return 0;
    *out = v;
    return 1;
}

/* Splits off the next space-separated word of *rest (NULL when none). */
static char *word(char **rest) {
    char *s = *rest;
    if (!s || !*s) return NULL;
    char *sp = strchr(s, ' ');
    if (sp) {
        *sp = 0;
        *rest = sp + 1;
    } else {
        *rest = NULL;
    }
    return s;
}

static void cmd_watch(int c, const char *id, char *rest) {
    char *size_s = word(&rest);
    const char *path = rest;
    uint64_t size;
    if (!size_s || !parse_u64(size_s, &size) || !path || !*path) {
        sendf(c, "err %s %d usage: watch <id> <size> <path>", id, EINVAL);
        return;
    }
    if (find_running(id) >= 0) {
        sendf(c, "err %s %d already watched", id, EEXIST);
        return;
    }
    int slot = -1;
    for (int s = 0; s < KP_MAX_STREAMS && slot < 0; s++)
        if (g_streams[s].state == KP_FREE) slot = s;
    if (slot < 0) {
        sendf(c, "err %s %d too many streams (%d)", id, ENOSPC, KP_MAX_STREAMS);
        return;
    }
    /* Opened before the mark: this fd's reads raise no events, and the mark
       is removed through it even if the path is renamed meanwhile. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_LARGEFILE);
    if (fd < 0) {
        int e = errno;
        sendf(c, "err %s %d open: %s", id, e, strerror(e));
        return;
    }
    struct stat sb;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != size) {
        sendf(c, "err %s %d not a regular file of %llu bytes", id, EINVAL, (unsigned long long)size);
        close(fd);
        return;
    }
    if (find_inode(sb.st_dev, sb.st_ino) >= 0) {
        sendf(c, "err %s %d this file is already watched", id, EBUSY);
        close(fd);
        return;
    }
    if (fanotify_mark(g_group, FAN_MARK_ADD, FAN_PRE_ACCESS, fd, NULL) < 0) {
        int e = errno;
        sendf(c, "err %s %d fanotify_mark: %s", id, e, strerror(e));
        close(fd);
        return;
    }
    char *copy = strdup(path);
    if (!copy) {
        fanotify_mark(g_group, FAN_MARK_REMOVE, FAN_PRE_ACCESS, fd, NULL);
        close(fd);
        sendf(c, "err %s %d out of memory", id, ENOMEM);
        return;
    }
    struct kp_stream *st = &g_streams[slot];
    st->state = KP_RUNNING;
    snprintf(st->id, sizeof st->id, "%s", id);
    st->path = copy;
    st->size = size;
    st->verified = 0;
    st->fd = fd;
    st->dev = sb.st_dev;
    st->ino = sb.st_ino;
    st->owner = c;
    st->orphan_at = 0;
    logf_("%s: watching %s (%llu bytes) for pid %d", id, path, (unsigned long long)size, (int)g_clients[c].pid);
    sendf(c, "ok %s", id);
}

/* A running stream this client may drive (an orphan is adopted). */
static int driven(int c, const char *id) {
    int s = find_running(id);
    if (s < 0) {
        sendf(c, "err %s %d no such running stream", id, ENOENT);
        return -1;
    }
    if (g_streams[s].owner != c) {
        if (g_streams[s].owner >= 0) {
            sendf(c, "err %s %d another client drives this stream", id, EBUSY);
            return -1;
        }
        g_streams[s].owner = c;
        logf_("%s: resumed by pid %d", id, (int)g_clients[c].pid);
    }
    return s;
}

static void handle_line(int c, char *line) {
    char *rest = line;
    char *cmd = word(&rest);
    if (!cmd) return; /* an empty line */
    if (strcmp(cmd, "hello") == 0 && !rest) {
        struct kp_client *cl = &g_clients[c];
        cl->hello = 1;
        logf_("hello from pid %d", (int)cl->pid);
        for (int s = 0; s < KP_MAX_STREAMS; s++) {
            struct kp_stream *st = &g_streams[s];
            if (st->state != KP_RUNNING || st->owner >= 0) continue;
            st->owner = c;
            sendf(c, "stream %s %llu %llu %s", st->id, (unsigned long long)st->size, (unsigned long long)st->verified, st->path);
        }
        sendf(c, "end");
        return;
    }
    char *id = word(&rest);
    if (!id || !valid_id(id)) {
        sendf(c, "err - %d bad line", EINVAL);
        return;
    }
    if (strcmp(cmd, "watch") == 0) {
        cmd_watch(c, id, rest);
    } else if (strcmp(cmd, "progress") == 0) {
        char *n_s = word(&rest);
        uint64_t n;
        if (!n_s || rest || !parse_u64(n_s, &n)) {
            sendf(c, "err %s %d usage: progress <id> <bytes>", id, EINVAL);
            return;
        }
        int s = driven(c, id);
        if (s < 0) return;
        struct kp_stream *st = &g_streams[s];
        if (n > st->size) n = st->size;
        if (n > st->verified) {
            st->verified = n;
            release(s, 0, FAN_ALLOW);
        }
    } else if (strcmp(cmd, "done") == 0 && !rest) {
        int s = driven(c, id);
        if (s < 0) return;
        g_streams[s].verified = g_streams[s].size;
        stream_forget(s, "done: mark removed");
        sendf(c, "ok %s", id);
    } else if (strcmp(cmd, "fail") == 0 && !rest) {
        int s = driven(c, id);
        if (s < 0) return;
        stream_fail(s, "the daemon said so");
    } else {
        sendf(c, "err %s %d bad line", id, EINVAL);
    }
}

static void client_close(int c) {
    struct kp_client *cl = &g_clients[c];
    if (cl->fd < 0) return;
    close(cl->fd);
    cl->fd = -1;
    int64_t t = now_ms();
    int orphans = 0;
    for (int s = 0; s < KP_MAX_STREAMS; s++) {
        struct kp_stream *st = &g_streams[s];
        if (st->state == KP_RUNNING && st->owner == c) {
            st->owner = -1;
            st->orphan_at = t;
            orphans++;
        }
    }
    logf_("client pid %d gone; %d unfinished stream(s) wait %lld ms for a daemon", (int)cl->pid, orphans, (long long)g_grace_ms);
}

static void client_read(int c) {
    struct kp_client *cl = &g_clients[c];
    char buf[8192];
    ssize_t n = recv(cl->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (n <= 0) {
        client_close(c);
        return;
    }
    for (ssize_t i = 0; i < n && cl->fd >= 0; i++) {
        char ch = buf[i];
        if (ch == '\n') {
            if (cl->discarding) {
                cl->discarding = 0;
                sendf(c, "err - %d line too long", E2BIG);
            } else {
                cl->in[cl->in_len] = 0;
                if (memchr(cl->in, 0, cl->in_len)) sendf(c, "err - %d bad line", EINVAL);
                else handle_line(c, cl->in);
            }
            cl->in_len = 0;
        } else if (!cl->discarding) {
            if (cl->in_len + 1 >= sizeof cl->in) {
                cl->discarding = 1;
                cl->in_len = 0;
            } else {
                cl->in[cl->in_len++] = ch;
            }
        }
    }
}

static void accept_client(void) {
    int fd = accept4(g_listen, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    int slot = -1;
    for (int c = 0; c < KP_MAX_CLIENTS && slot < 0; c++)
        if (g_clients[c].fd < 0) slot = c;
    if (slot < 0) {
        logf_("too many clients: refusing one");
        close(fd);
        return;
    }
    struct ucred cr;
    socklen_t len = sizeof cr;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) cr.pid = 0;
    struct kp_client *cl = &g_clients[slot];
    memset(cl, 0, sizeof *cl);
    cl->fd = fd;
    cl->pid = cr.pid;
}

/* ---- events ---- */

static int allowed_pid(pid_t pid) {
    if (pid <= 0) return 0;
    if (pid == getpid()) return 1;
    for (int c = 0; c < KP_MAX_CLIENTS; c++)
        if (g_clients[c].fd >= 0 && g_clients[c].hello && g_clients[c].pid == pid) return 1;
    return 0;
}

static void handle_event(struct fanotify_event_metadata *m) {
    if (m->fd < 0) {
        if (m->mask & FAN_Q_OVERFLOW) logf_("event queue overflow");
        return;
    }
    if (allowed_pid(m->pid)) {
        respond(m->fd, FAN_ALLOW);
        return;
    }
    struct stat sb;
    int s = fstat(m->fd, &sb) == 0 ? find_inode(sb.st_dev, sb.st_ino) : -1;
    if (s < 0) {
        respond(m->fd, FAN_ALLOW);
        return;
    }
    struct kp_stream *st = &g_streams[s];
    uint64_t off = 0, end = st->size;
    for (char *p = (char *)m + m->metadata_len; p + sizeof(struct fanotify_event_info_header) <= (char *)m + m->event_len;) {
        struct fanotify_event_info_header *h = (void *)p;
        if (h->len < sizeof *h) break;
        if (h->info_type == FAN_EVENT_INFO_TYPE_RANGE && h->len >= sizeof(struct kp_range_info)) {
            struct kp_range_info *r = (void *)p;
            off = r->offset;
            end = r->count > UINT64_MAX - r->offset ? UINT64_MAX : r->offset + r->count;
        }
        p += h->len;
    }
    if (end > st->size) end = st->size;
    if (off >= end || end <= st->verified) {
        respond(m->fd, FAN_ALLOW); /* past the end of the file, or verified */
        return;
    }
    if (st->state == KP_FAILED) {
        respond(m->fd, KP_DENY_EIO);
        return;
    }
    for (int i = 0; i < KP_MAX_PENDING; i++) {
        if (g_pending[i].fd >= 0) continue;
        g_pending[i] = (struct kp_pending){ .fd = m->fd, .stream = s, .end = end };
        g_npending++;
        return;
    }
    /* Unreachable: the group is not polled while the table is full. */
    respond(m->fd, KP_DENY_EIO);
}

static void read_events(void) {
    /* Aligned for the metadata; a few events at a time so the pending table
       cannot overflow within one read. */
    static uint64_t buf[KP_EVBUF / sizeof(uint64_t)];
    for (;;) {
        if (g_npending + KP_EVMAX > KP_MAX_PENDING) return;
        ssize_t len = read(g_group, buf, sizeof buf);
        if (len < 0) {
            if (errno != EAGAIN && errno != EINTR) logf_("reading events: %s", strerror(errno));
            return;
        }
        struct fanotify_event_metadata *m = (void *)buf;
        for (; FAN_EVENT_OK(m, len); m = FAN_EVENT_NEXT(m, len)) handle_event(m);
    }
}

/* ---- failed streams: who still has the inode open? ---- */

static int dir_holds(int dirfd, const char *sub, char open_by[]) {
    int d = openat(dirfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0) return 0;
    DIR *dir = fdopendir(d);
    if (!dir) {
        close(d);
        return 0;
    }
    int found = 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        if (e->d_name[0] == '.') continue;
        struct stat sb;
        if (fstatat(d, e->d_name, &sb, 0) < 0) continue;
        int s = find_inode(sb.st_dev, sb.st_ino);
        if (s >= 0) open_by[s] = 1, found = 1;
    }
    closedir(dir);
    return found;
}

static void scan_failed(void) {
    static char open_by[KP_MAX_STREAMS];
    int any = 0;
    for (int s = 0; s < KP_MAX_STREAMS; s++) any |= g_streams[s].state == KP_FAILED;
    if (!any) return;
    memset(open_by, 0, sizeof open_by);
    DIR *proc = opendir("/proc");
    if (!proc) return;
    char self[32];
    snprintf(self, sizeof self, "%d", (int)getpid());
    struct dirent *e;
    while ((e = readdir(proc))) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9' || strcmp(e->d_name, self) == 0) continue;
        int pd = openat(dirfd(proc), e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (pd < 0) continue;
        dir_holds(pd, "fd", open_by);
        dir_holds(pd, "map_files", open_by);
        close(pd);
    }
    closedir(proc);
    /* Only an unlinked file is safe to let go: while it has a name, a new
       open could read the zeros of its unverified ranges. */
    for (int s = 0; s < KP_MAX_STREAMS; s++) {
        struct stat sb;
        if (g_streams[s].state == KP_FAILED && !open_by[s] && fstat(g_streams[s].fd, &sb) == 0 && sb.st_nlink == 0)
            stream_forget(s, "failed, unlinked, and no process has it open: mark removed");
    }
}

/* ---- probe ---- */

static int probe(const char *dir) {
    struct utsname u;
    const char *rel = uname(&u) == 0 ? u.release : "?";
    int g = fanotify_init(FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK, O_RDONLY | O_LARGEFILE);
    if (g < 0) {
        if (errno == EPERM) printf("needs root (CAP_SYS_ADMIN) for a fanotify pre-content group\n");
        else printf("fanotify_init: %s (kernel %s)\n", strerror(errno), rel);
        return 0;
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/.vrift-hsm-probe-XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0) {
        printf("cannot create a scratch file in %s: %s\n", dir, strerror(errno));
        return 0;
    }
    unlink(path);
    int r = fanotify_mark(g, FAN_MARK_ADD, FAN_PRE_ACCESS, fd, NULL);
    int e = errno;
    if (r == 0) printf("ok\n");
    else if (e == EINVAL) printf("the kernel (%s) has no fanotify pre-content events (needs Linux >= 6.14)\n", rel);
    else if (e == EOPNOTSUPP || e == ENOTSUP || e == EXDEV) printf("the filesystem of %s has no fanotify pre-content support (ext4, xfs, btrfs have it)\n", dir);
    else printf("fanotify_mark on a file in %s: %s (kernel %s)\n", dir, strerror(e), rel);
    close(fd);
    close(g);
    return 0;
}

/* ---- main ---- */

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static int listen_on(const char *path) {
    char lock[PATH_MAX];
    if (snprintf(lock, sizeof lock, "%s.lock", path) >= (int)sizeof lock) return -1;
    int lk = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lk < 0) {
        logf_("%s: %s", lock, strerror(errno));
        return -1;
    }
    if (flock(lk, LOCK_EX | LOCK_NB) < 0) {
        logf_("another keeper serves %s", path);
        exit(0);
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (ftruncate(lk, 0) < 0 || pwrite(lk, pid, (size_t)n, 0) != n) logf_("%s: cannot write the pid", lock);
    /* lk stays open (and locked) until exit. */
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof a.sun_path) {
        logf_("socket path too long: %s", path);
        return -1;
    }
    strcpy(a.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    unlink(path); /* stale: we hold the lock, so no keeper serves it */
    mode_t old = umask(077);
    int r = bind(fd, (struct sockaddr *)&a, sizeof a);
    umask(old);
    if (r < 0 || chmod(path, 0600) < 0 || listen(fd, 16) < 0) {
        logf_("%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--probe") == 0) return probe(argv[2]);
    int i = 1;
    if (i + 1 < argc && strcmp(argv[i], "--grace-ms") == 0) {
        uint64_t g;
        if (!parse_u64(argv[i + 1], &g) || g > 86400000) {
            fprintf(stderr, "vrift-keeper: bad --grace-ms %s\n", argv[i + 1]);
            return 2;
        }
        g_grace_ms = (int64_t)g;
        i += 2;
    }
    if (i + 1 != argc) {
        fprintf(stderr, "usage: vrift-keeper [--grace-ms N] <socket> | vrift-keeper --probe <dir>\n");
        return 2;
    }
    g_sock_path = argv[i];
    /* Keep no directory of the daemon busy (paths in `watch` are absolute). */
    if (g_sock_path[0] == '/' && chdir("/") < 0) logf_("chdir /: %s", strerror(errno));
    setvbuf(stderr, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    /* Every pending read holds an fd. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    for (int c = 0; c < KP_MAX_CLIENTS; c++) g_clients[c].fd = -1;
    for (int p = 0; p < KP_MAX_PENDING; p++) g_pending[p].fd = -1;
    for (int s = 0; s < KP_MAX_STREAMS; s++) g_streams[s].fd = -1, g_streams[s].owner = -1;

    /* An unlimited queue: past the default 16384 queued events the kernel
       drops a permission event and ALLOWS the access. */
    g_group = fanotify_init(FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK | FAN_UNLIMITED_QUEUE, O_RDONLY | O_LARGEFILE);
    if (g_group < 0) {
        logf_("fanotify_init: %s", strerror(errno));
        return 1;
    }
    g_listen = listen_on(g_sock_path);
    if (g_listen < 0) return 1;
    logf_("serving %s (grace %lld ms)", g_sock_path, (long long)g_grace_ms);

    int64_t idle_since = now_ms(), next_scan = 0;
    while (!g_stop) {
        int64_t t = now_ms();
        /* Orphans whose grace ran out fail. */
        int64_t wake = -1;
        for (int s = 0; s < KP_MAX_STREAMS; s++) {
            struct kp_stream *st = &g_streams[s];
            if (st->state != KP_RUNNING || st->owner >= 0) continue;
            int64_t due = st->orphan_at + g_grace_ms;
            if (due <= t) stream_fail(s, "no daemon came back within the grace period");
            else if (wake < 0 || due < wake) wake = due;
        }
        int failed = 0;
        for (int s = 0; s < KP_MAX_STREAMS; s++) failed |= g_streams[s].state == KP_FAILED;
        if (failed) {
            if (t >= next_scan) {
                scan_failed();
                next_scan = t + KP_SCAN_MS;
            }
            if (wake < 0 || next_scan < wake) wake = next_scan;
        }
        if (nclients() > 0 || nstreams() > 0) {
            idle_since = t;
        } else {
            if (t - idle_since >= g_grace_ms) break;
            int64_t due = idle_since + g_grace_ms;
            if (wake < 0 || due < wake) wake = due;
        }

        struct pollfd pf[2 + KP_MAX_CLIENTS];
        int idx[KP_MAX_CLIENTS];
        int n = 0;
        pf[n++] = (struct pollfd){ .fd = g_group, .events = g_npending + KP_EVMAX <= KP_MAX_PENDING ? POLLIN : 0 };
        pf[n++] = (struct pollfd){ .fd = g_listen, .events = POLLIN };
        for (int c = 0; c < KP_MAX_CLIENTS; c++) {
            if (g_clients[c].fd < 0) continue;
            idx[n - 2] = c;
            pf[n++] = (struct pollfd){ .fd = g_clients[c].fd, .events = POLLIN | (g_clients[c].out_len ? POLLOUT : 0) };
        }
        int timeout = wake < 0 ? -1 : (int)(wake - t < 0 ? 0 : wake - t);
        int r = poll(pf, (nfds_t)n, timeout);
        if (r < 0) {
            if (errno == EINTR) continue;
            logf_("poll: %s", strerror(errno));
            break;
        }
        if (pf[0].revents & POLLIN) read_events();
        if (pf[1].revents & POLLIN) accept_client();
        for (int k = 2; k < n; k++) {
            int c = idx[k - 2];
            if (g_clients[c].fd != pf[k].fd) continue;
            if (pf[k].revents & (POLLIN | POLLHUP | POLLERR)) client_read(c);
        }
        for (int c = 0; c < KP_MAX_CLIENTS; c++) client_flush(c);
    }

    /* Stopping: nothing can hold readers back once the group is gone, so
       fail what is unfinished rather than let them read zeros. */
    for (int s = 0; s < KP_MAX_STREAMS; s++)
        if (g_streams[s].state != KP_FREE) release(s, 1, KP_DENY_EIO);
    unlink(g_sock_path);
    logf_("exiting%s", g_stop ? " (signal)" : ": nothing left to keep");
    return 0;
}
