/*
 * exec.c — running programs: the exec family, posix_spawn, dlopen.
 *
 * - A virtual executable is run from its CAS twin (<digest>.x, mode 0555);
 *   argv[0] is left as the program passed it. A virtual script ("#!") is
 *   run by its interpreter with the VIRTUAL path as the script argument,
 *   so $0 and relative lookups from the script stay inside the mount.
 * - Children keep the shim: LD_PRELOAD and the VRIFT_* variables are put
 *   back into an environment that lost them; a virtual working directory
 *   travels as VRIFT_CWD. Files written in a mount are real files of its
 *   upper layer, so an inherited descriptor needs nothing from the shim.
 * - glibc's execvp/execlp/posix_spawn call its internal execve, so they
 *   are redone here (PATH search included).
 * - A program the shim cannot see into (static, setuid/setgid, Go) is run
 *   through `vrift _ns-exec` in a private mount namespace where the mounts
 *   are real overlayfs mounts (ns_route). Without VRIFT_NS_EXEC (set by
 *   `vrift run`) it gets a warning on stderr: it runs, and sees the real
 *   filesystem, where a mount is an empty directory (never other bytes).
 */
#include "shim.h"

#include "farm.h"

#include <elf.h>
#include <stdlib.h>

extern char **environ;

/* ---- the environment children must have -------------------------------------- */

static const char *const keep_vars[] = {"VRIFT_VDIRS", "VRIFT_SOCKET", "VRIFT_HOME", "VRIFT_RUN_ID",
                                        "VRIFT_SHIM_TIMEOUT_MS", "VRIFT_NS_EXEC"};
#define NKEEP (sizeof keep_vars / sizeof keep_vars[0])
static char keep_vals[NKEEP][1024]; /* "NAME=value", or "" */

static void audit_init(void);

void vr_exec_init(void)
{
    audit_init();
    for (size_t i = 0; i < NKEEP; i++) {
        const char *v = vr_getenv(keep_vars[i]);
        if (!v)
            continue;
        size_t n = vr_strlcpy(keep_vals[i], keep_vars[i], sizeof keep_vals[i]);
        if (n + 2 + vr_strlen(v) > sizeof keep_vals[i]) {
            keep_vals[i][0] = '\0';
            continue;
        }
        keep_vals[i][n] = '=';
        vr_strlcpy(keep_vals[i] + n + 1, v, sizeof keep_vals[i] - n - 1);
    }
}

/* An environment arena, mmap'd (a vfork child must not malloc). */
struct arena {
    char *base;
    size_t cap, used;
};

static char *arena_put(struct arena *a, const char *s1, const char *s2, const char *s3, const char *s4)
{
    const char *parts[4] = {s1, s2, s3, s4};
    size_t total = 0;
    for (int i = 0; i < 4; i++)
        total += parts[i] ? vr_strlen(parts[i]) : 0;
    if (a->used + total + 1 > a->cap)
        return NULL;
    char *p = a->base + a->used, *q = p;
    for (int i = 0; i < 4; i++) {
        size_t l = parts[i] ? vr_strlen(parts[i]) : 0;
        memcpy(q, parts[i], l);
        q += l;
    }
    *q = '\0';
    a->used += total + 1;
    return p;
}

static int env_has(char *const *envp, const char *entry)
{
    for (; envp && *envp; envp++) {
        const char *a = *envp, *b = entry;
        while (*a && *a == *b)
            a++, b++;
        if (*a == *b)
            return 1;
    }
    return 0;
}

static int name_is(const char *e, const char *name)
{
    size_t n = vr_strlen(name);
    return vr_memeq(e, name, n) && e[n] == '=';
}

/* Does a ':'- or ' '-separated library list (LD_PRELOAD, LD_AUDIT) hold `want` (n bytes)? */
static int list_has(const char *v, const char *want, size_t n)
{
    for (const char *p = v; *p;) {
        const char *q = p;
        while (*q && *q != ':' && *q != ' ')
            q++;
        if ((size_t)(q - p) == n && vr_memeq(p, want, n))
            return 1;
        p = *q ? q + 1 : q;
    }
    return 0;
}

static int preload_has_us(const char *v)
{
    size_t n = vr_strlen(vr_lib_path);
    return !n || list_has(v, vr_lib_path, n);
}

/* ---- the loader's audit library (LD_AUDIT, libvrift-audit.so) ------------------ */

/* "LD_AUDIT=<path of libvrift-audit.so>" when this image started with it
 * in LD_AUDIT (as `vrift run` sets it), else "": children get it back the
 * way they get LD_PRELOAD back, and dlopen() relies on it (below). */
static char audit_entry[PATH_MAX + 16];
#define AUDIT_NAME "libvrift-audit.so"

static void audit_init(void)
{
    const char *v = vr_getenv("LD_AUDIT");
    const size_t nl = sizeof AUDIT_NAME - 1;
    for (const char *p = v; p && *p;) {
        const char *q = p;
        while (*q && *q != ':' && *q != ' ')
            q++;
        size_t n = (size_t)(q - p);
        if (p[0] == '/' && n > nl && p[n - nl - 1] == '/' && vr_memeq(q - nl, AUDIT_NAME, nl) &&
            n + 10 < sizeof audit_entry) {
            memcpy(audit_entry, "LD_AUDIT=", 9);
            memcpy(audit_entry + 9, p, n);
            audit_entry[9 + n] = '\0';
            return;
        }
        p = *q ? q + 1 : q;
    }
}

static int audit_on(void) { return audit_entry[0] != '\0'; }

/* Bytes child_env() needs for LD_AUDIT (0: envp's is fine); *need set when it must be rewritten. */
static size_t audit_env_size(char *const *envp, int *need)
{
    if (!audit_on())
        return 0;
    const char *cur = NULL;
    for (char *const *e = envp; e && *e; e++)
        if (name_is(*e, "LD_AUDIT"))
            cur = *e + 9;
    size_t n = vr_strlen(audit_entry) - 9;
    if (!cur || !list_has(cur, audit_entry + 9, n))
        *need = 1;
    return vr_strlen(audit_entry) + (cur ? vr_strlen(cur) + 2 : 0);
}

/* The LD_AUDIT entry for a child whose environment had `cur` (NULL: none). */
static char *audit_env(struct arena *ar, const char *cur)
{
    if (cur && list_has(cur, audit_entry + 9, vr_strlen(audit_entry) - 9))
        return (char *)cur - 9;
    if (!cur || !*cur)
        return audit_entry;
    return arena_put(ar, audit_entry, ":", cur, NULL);
}

/*
 * The environment for a child: envp plus whatever keeps the shim alive in
 * it. child_env_size() says how many bytes child_env() needs (0: envp is
 * fine as it is); the caller provides them on its stack — an exec after
 * vfork() runs in the parent's memory, where an mmap would leak.
 */
static size_t child_env_size(char *const *envp)
{
    if (atomic_load(&vr_on) != 1)
        return 0;
    int need = vr_cwd_is_virtual();
    const char *preload = NULL;
    size_t count = 0;
    for (char *const *e = envp; e && *e; e++, count++) {
        if (name_is(*e, "LD_PRELOAD"))
            preload = *e + 11;
        if (name_is(*e, "VRIFT_CWD"))
            need = 1;
    }
    if (!preload || !preload_has_us(preload))
        need = 1;
    size_t audit_bytes = audit_env_size(envp, &need);
    for (size_t i = 0; i < NKEEP && !need; i++)
        if (keep_vals[i][0] && !env_has(envp, keep_vals[i]))
            need = 1;
    if (!need)
        return 0;
    size_t bytes = (count + NKEEP + 8) * sizeof(char *) + vr_strlen(vr_lib_path) + 64;
    if (preload)
        bytes += vr_strlen(preload);
    bytes += audit_bytes;
    if (vr_cwd_is_virtual())
        bytes += PATH_MAX + 16;
    return (bytes + 7) & ~(size_t)7;
}

static char *const *child_env(char *const *envp, char *mem, size_t cap)
{
    struct arena arena, *ar = &arena;
    char cwd[PATH_MAX];
    size_t cwdlen = vr_cwd_is_virtual() ? vr_cwd_get(cwd, sizeof cwd) : 0;
    const char *preload = NULL, *audit = NULL;
    size_t count = 0;
    for (char *const *e = envp; e && *e; e++, count++) {
        if (name_is(*e, "LD_PRELOAD"))
            preload = *e + 11;
        if (name_is(*e, "LD_AUDIT"))
            audit = *e + 9;
    }
    char **out = (char **)(void *)mem;
    ar->base = mem;
    ar->cap = cap;
    ar->used = (count + NKEEP + 8) * sizeof(char *);
    if (ar->used > cap)
        return envp;
    size_t k = 0;
    for (char *const *e = envp; e && *e; e++) {
        if (name_is(*e, "LD_PRELOAD") || name_is(*e, "VRIFT_CWD"))
            continue;
        if (audit_on() && name_is(*e, "LD_AUDIT"))
            continue;
        int skip = 0;
        for (size_t i = 0; i < NKEEP; i++)
            if (keep_vals[i][0] && name_is(*e, keep_vars[i]))
                skip = 1;
        if (!skip)
            out[k++] = *e;
    }
    for (size_t i = 0; i < NKEEP; i++)
        if (keep_vals[i][0])
            out[k++] = keep_vals[i];
    char *pl;
    if (!preload || !*preload)
        pl = arena_put(ar, "LD_PRELOAD=", vr_lib_path, NULL, NULL);
    else if (preload_has_us(preload))
        pl = (char *)preload - 11;
    else
        pl = arena_put(ar, "LD_PRELOAD=", vr_lib_path, ":", preload);
    if (pl)
        out[k++] = pl;
    if (audit_on()) {
        char *a = audit_env(ar, audit);
        if (a)
            out[k++] = a;
    }
    if (cwdlen > 0) {
        char *c = arena_put(ar, "VRIFT_CWD=", cwd, NULL, NULL);
        if (c)
            out[k++] = c;
    }
    out[k] = NULL;
    return out;
}

/* ---- what is being run --------------------------------------------------------- */

static _Atomic int warned_blind;

/* Reads the ELF facts of an executable: 1 static, 2 Go, 3 set-id, 0 fine / not ELF. */
static int blind_kind(const char *path)
{
    int fd = vr_openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct stat st;
    int kind = 0;
    if (vr_fstat(fd, &st) == 0 && (st.st_mode & (S_ISUID | S_ISGID)))
        kind = 3;
    Elf64_Ehdr eh;
    if (!kind && vr_pread(fd, &eh, sizeof eh, 0) == (long)sizeof eh && vr_memeq(eh.e_ident, ELFMAG, SELFMAG) &&
        eh.e_ident[EI_CLASS] == ELFCLASS64 && eh.e_phentsize == sizeof(Elf64_Phdr) && eh.e_phnum < 256) {
        Elf64_Phdr ph[256];
        long want = (long)eh.e_phnum * (long)sizeof(Elf64_Phdr);
        if (vr_pread(fd, ph, (size_t)want, (long)eh.e_phoff) == want) {
            int interp = 0;
            for (int i = 0; i < eh.e_phnum; i++)
                if (ph[i].p_type == PT_INTERP)
                    interp = 1;
            if (!interp && eh.e_type == ET_EXEC)
                kind = 1;
            /* ET_DYN without PT_INTERP is a static-pie or the dynamic loader
             * itself (ld.so prog): not told apart here; vrift run checks the
             * top-level command more closely. */
            for (int i = 0; !kind && i < eh.e_phnum; i++) {
                if (ph[i].p_type != PT_NOTE || ph[i].p_filesz > 4096)
                    continue;
                unsigned char notes[4096];
                long n = vr_pread(fd, notes, ph[i].p_filesz, (long)ph[i].p_offset);
                for (long o = 0; n > 0 && o + 12 <= n;) {
                    uint32_t nsz, dsz, type;
                    memcpy(&nsz, notes + o, 4);
                    memcpy(&dsz, notes + o + 4, 4);
                    memcpy(&type, notes + o + 8, 4);
                    if (nsz == 3 && o + 15 <= n && vr_memeq(notes + o + 12, "Go", 3))
                        kind = 2;
                    o += 12 + ((nsz + 3) & ~3u) + ((dsz + 3) & ~3u);
                }
            }
        }
    }
    vr_close(fd);
    return kind;
}

static void warn_blind(const char *shown, const char *real)
{
    int k = blind_kind(real);
    if (!k || atomic_exchange(&warned_blind, 1))
        return;
    static const char *const why[] = {"", " is statically linked", " is a Go program", " is setuid/setgid"};
    char msg[PATH_MAX + 64];
    size_t n = vr_strlcpy(msg, shown, sizeof msg);
    vr_strlcpy(msg + n, why[k], sizeof msg - n);
    vr_say(msg, ": it cannot see vrift mounts (they look empty to it); materialize the tree for it instead", NULL);
}

/* ---- programs the shim cannot see: a private mount namespace ------------------------
 *
 * A static, Go or set-id program is run as `<node> <package>/bin/vrift.js
 * _ns-exec <path> <argv...>` (src/cli/ns-exec-main.ts) when `vrift run` set
 * VRIFT_NS_EXEC (the node binary): it runs the program in a mount namespace
 * where every mount is a real overlayfs, and merges its writes back after.
 * That process runs WITHOUT the shim (LD_PRELOAD removed); a virtual working
 * directory travels as VRIFT_CWD. The package is found from the shim's own
 * path (<package>/shim/build/libvrift.so).
 */

/* The node binary and the CLI script, or 0 when this cannot be done (then: a warning). */
static int ns_exec_cmd(const char **node, char *cli, size_t cap)
{
    const char *v = NULL;
    for (size_t i = 0; i < NKEEP; i++)
        if (vr_memeq(keep_vars[i], "VRIFT_NS_EXEC", 14) && keep_vals[i][0])
            v = keep_vals[i] + 14;
    if (!v || v[0] != '/')
        return 0;
    static const char tail[] = "/shim/build/libvrift.so";
    size_t n = vr_strlen(vr_lib_path), t = sizeof tail - 1;
    if (n <= t || n - t + 16 > cap || !vr_memeq(vr_lib_path + n - t, tail, t))
        return 0;
    memcpy(cli, vr_lib_path, n - t);
    vr_strlcpy(cli + n - t, "/bin/vrift.js", cap - (n - t));
    *node = v;
    return 1;
}

/*
 * Fills nargv (count_args(argv) + 6 slots) and nenv (as many slots as the
 * child environment has, + 1) for running `path` through `vrift _ns-exec`,
 * when `target` (what the kernel would run) is a program the shim cannot
 * see. Returns its blind kind, or 0 (run it as usual), or -kind when it is
 * blind but cannot be rerouted (then it has warned).
 */
static int ns_route(const char *path, const char *target, char *const argv[], char *const *env, char **nargv,
                    char **nenv, char *cli, size_t clicap)
{
    int k = blind_kind(target);
    if (!k)
        return 0;
    const char *node;
    if (!ns_exec_cmd(&node, cli, clicap)) {
        warn_blind(path, target);
        return -k;
    }
    int j = 0;
    nargv[j++] = (char *)node;
    nargv[j++] = cli;
    nargv[j++] = (char *)"_ns-exec";
    nargv[j++] = (char *)path;
    for (int i = 0; argv && argv[i]; i++)
        nargv[j++] = argv[i];
    if (j == 4)
        nargv[j++] = (char *)path;
    nargv[j] = NULL;
    j = 0;
    for (char *const *e = env; e && *e; e++)
        if (!name_is(*e, "LD_PRELOAD"))
            nenv[j++] = *e;
    nenv[j] = NULL;
    return k;
}

static int env_count(char *const *env)
{
    int n = 0;
    while (env && env[n])
        n++;
    return n;
}

/*
 * Works out what to hand the kernel for `path`: *target is a real path
 * (in buf), and for a virtual script interp/arg/script say how to run
 * it. Returns 0, or -errno.
 */
struct plan {
    char target[PATH_MAX];
    char interp[PATH_MAX];
    char arg[256];
    int script;
    int has_arg;
};

/*
 * A program of a mount runs from its link farm entry (farm.h: a hard link
 * to the same blob or upper file, named by its path in the mount), not
 * from the CAS: its $ORIGIN (RUNPATH $ORIGIN/../lib) and /proc/self/exe are
 * then the farm's mirror of its directory, which the loader's audit
 * library maps back to the mount. If no entry can be made, the CAS path.
 */
static void farm_target(const struct vr_path *p, struct plan *pl)
{
    struct vrift_farm f;
    struct stat st;
    char link[PATH_MAX];
    if (vrift_farm_init(&f, vr_mounts[p->mount].name, vr_mounts[p->mount].r) != 0 || vr_fstatat(AT_FDCWD, pl->target, &st, 0) != 0)
        return;
    if (vrift_farm_link(&f, p->rel, p->rellen, pl->target, &st, link, sizeof link) > 0)
        vr_strlcpy(pl->target, link, sizeof pl->target);
}

static int plan_exec(const char *path, struct plan *pl)
{
    pl->script = 0;
    pl->has_arg = 0;
    struct vr_path p;
    vr_resolve(AT_FDCWD, path, VR_FOLLOW, &p);
    if (p.kind == VP_PASS) {
        vr_strlcpy(pl->target, path, sizeof pl->target);
        return 0;
    }
    if (p.kind == VP_REAL) {
        vr_strlcpy(pl->target, p.rel, sizeof pl->target);
        return 0;
    }
    if (p.err)
        return p.err;
    if ((p.res.mode & S_IFMT) != S_IFREG)
        return -EACCES;
    int fd;
    if (vr_path_is_upper(&p)) {
        /* a file written in the mount: the real file, with its own mode */
        if (vr_upper_path(p.mount, p.res.entry.u.digest, pl->target, sizeof pl->target) < 0)
            return -ENAMETOOLONG;
        fd = vr_openat(AT_FDCWD, pl->target, O_RDONLY | O_CLOEXEC, 0);
        struct stat st;
        if (fd >= 0 && (vr_fstat(fd, &st) != 0 || !(st.st_mode & 0111))) {
            vr_close(fd);
            return -EACCES;
        }
        if (fd < 0)
            return fd == -ENOENT ? -ENOENT : -EACCES;
    } else if (!(p.res.mode & 0111)) {
        return -EACCES;
    } else {
        if (vr_learn_digest(p.mount, p.rel, p.rellen, &p.res) != 0)
            return -EACCES;
        vrift_vdir_reader *r = vr_mounts[p.mount].r;
        vrift_vdir_blob_path(r, p.res.entry.u.digest, 1, pl->target, sizeof pl->target);
        fd = vr_openat(AT_FDCWD, pl->target, O_RDONLY | O_CLOEXEC, 0);
    }
    if (fd == -ENOENT) {
        if (vr_fetch(p.mount, p.res.entry.u.digest, p.res.mode) == 0)
            fd = vr_openat(AT_FDCWD, pl->target, O_RDONLY | O_CLOEXEC, 0);
    }
    if (fd < 0)
        return -EACCES;
    char head[PATH_MAX];
    long n = vr_pread(fd, head, sizeof head - 1, 0);
    vr_close(fd);
    if (n >= 4 && memcmp(head, ELFMAG, SELFMAG) == 0)
        farm_target(&p, pl);
    if (n >= 2 && head[0] == '#' && head[1] == '!') {
        head[n] = '\0';
        char *s = head + 2;
        while (*s == ' ' || *s == '\t')
            s++;
        char *e = s;
        while (*e && *e != ' ' && *e != '\t' && *e != '\n')
            e++;
        if (e == s)
            return -ENOEXEC;
        char *line_end = e;
        while (*line_end && *line_end != '\n')
            line_end++;
        if (!*line_end && n == (long)sizeof head - 1)
            return -ENOEXEC;
        size_t il = (size_t)(e - s);
        memcpy(pl->interp, s, il);
        pl->interp[il] = '\0';
        char *a = e;
        while (a < line_end && (*a == ' ' || *a == '\t'))
            a++;
        char *ae = line_end;
        while (ae > a && (ae[-1] == ' ' || ae[-1] == '\t' || ae[-1] == '\r'))
            ae--;
        if (ae > a && (size_t)(ae - a) < sizeof pl->arg) {
            memcpy(pl->arg, a, (size_t)(ae - a));
            pl->arg[ae - a] = '\0';
            pl->has_arg = 1;
        }
        pl->script = 1;
    }
    return 0;
}

static int count_args(char *const argv[])
{
    int n = 0;
    while (argv && argv[n])
        n++;
    return n;
}

/* execve with everything above; depth guards "#!" chains. */
static int exec_depth(const char *path, char *const argv[], char *const envp[], int depth)
{
    if (!vr_active() || depth > 4)
        return real_execve(path, argv, envp);
    int saved = errno;
    struct plan plan, *pl = &plan;
    int rc = plan_exec(path, pl);
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    if (pl->script) {
        int argc = count_args(argv);
        char *nargv[argc + 4];
        int k = 0;
        nargv[k++] = pl->interp;
        if (pl->has_arg)
            nargv[k++] = pl->arg;
        nargv[k++] = (char *)path;
        for (int i = 1; i < argc; i++)
            nargv[k++] = argv[i];
        nargv[k] = NULL;
        errno = saved;
        return exec_depth(pl->interp, nargv, envp, depth + 1);
    }
    size_t need = child_env_size(envp);
    _Alignas(8) char envmem[need ? need : 8];
    char *const *env = need ? child_env(envp, envmem, need) : envp;
    {
        char *nargv[count_args(argv) + 6], *nenv[env_count(env) + 1], cli[PATH_MAX];
        if (ns_route(path, pl->target, argv, env, nargv, nenv, cli, sizeof cli) > 0) {
            errno = saved;
            real_execve(nargv[0], nargv, nenv);
            warn_blind(path, pl->target); /* node is gone: run it as before */
        }
    }
    errno = saved;
    return real_execve(pl->target, argv, env);
}

SHIM_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
    return exec_depth(path, argv, envp, 0);
}

SHIM_EXPORT int execv(const char *path, char *const argv[]) { return exec_depth(path, argv, environ, 0); }

/* PATH search, as glibc's execvpe does it (including the ENOEXEC -> sh fallback). */
static int execvpe_impl(const char *file, char *const argv[], char *const envp[])
{
    if (!file || !*file) {
        errno = ENOENT;
        return -1;
    }
    int has_slash = 0;
    for (const char *c = file; *c; c++)
        if (*c == '/')
            has_slash = 1;
    if (has_slash) {
        exec_depth(file, argv, envp, 0);
        if (errno == ENOEXEC) {
            int argc = count_args(argv);
            char *nargv[argc + 3];
            nargv[0] = (char *)"/bin/sh";
            nargv[1] = (char *)file;
            for (int i = 1; i <= argc; i++)
                nargv[i + 1] = argv[i];
            exec_depth("/bin/sh", nargv, envp, 0);
        }
        return -1;
    }
    const char *path = vr_getenv("PATH");
    if (!path)
        path = "/bin:/usr/bin";
    size_t fl = vr_strlen(file);
    int got_eacces = 0;
    for (const char *p = path;; p++) {
        const char *start = p;
        while (*p && *p != ':')
            p++;
        size_t dl = (size_t)(p - start);
        char cand[PATH_MAX];
        if (dl + fl + 2 < sizeof cand) {
            size_t k = 0;
            if (dl == 0)
                cand[k++] = '.';
            else {
                memcpy(cand, start, dl);
                k = dl;
            }
            cand[k++] = '/';
            memcpy(cand + k, file, fl + 1);
            exec_depth(cand, argv, envp, 0);
            int e = errno;
            if (e == ENOEXEC) {
                int argc = count_args(argv);
                char *nargv[argc + 3];
                nargv[0] = (char *)"/bin/sh";
                nargv[1] = cand;
                for (int i = 1; i <= argc; i++)
                    nargv[i + 1] = argv[i];
                exec_depth("/bin/sh", nargv, envp, 0);
                return -1;
            }
            if (e == EACCES)
                got_eacces = 1;
            else if (e != ENOENT && e != ENOTDIR && e != ESTALE && e != ENODEV && e != ETIMEDOUT)
                return -1;
        }
        if (!*p)
            break;
    }
    errno = got_eacces ? EACCES : ENOENT;
    return -1;
}

SHIM_EXPORT int execvp(const char *file, char *const argv[])
{
    if (!vr_active())
        return real_execvp(file, argv);
    return execvpe_impl(file, argv, environ);
}

SHIM_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
    if (!vr_active())
        return real_execvpe(file, argv, envp);
    return execvpe_impl(file, argv, envp);
}

#define COLLECT_ARGS(first, ap, argv, with_env, envp_out)        \
    int argc_ = 1;                                               \
    {                                                            \
        va_list c_;                                              \
        va_copy(c_, ap);                                         \
        while (va_arg(c_, char *) != NULL)                       \
            argc_++;                                             \
        va_end(c_);                                              \
    }                                                            \
    char *argv[argc_ + 1];                                       \
    argv[0] = (char *)(first);                                   \
    for (int i_ = 1; i_ <= argc_; i_++)                          \
        argv[i_] = va_arg(ap, char *);                           \
    if (with_env)                                                \
        envp_out = va_arg(ap, char **);

SHIM_EXPORT int execl(const char *path, const char *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    char **envp_unused = NULL;
    COLLECT_ARGS(arg, ap, argv, 0, envp_unused);
    va_end(ap);
    (void)envp_unused;
    return exec_depth(path, argv, environ, 0);
}

SHIM_EXPORT int execlp(const char *file, const char *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    char **envp_unused = NULL;
    COLLECT_ARGS(arg, ap, argv, 0, envp_unused);
    va_end(ap);
    (void)envp_unused;
    return execvp(file, argv);
}

SHIM_EXPORT int execle(const char *path, const char *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    char **envp = NULL;
    COLLECT_ARGS(arg, ap, argv, 1, envp);
    va_end(ap);
    return exec_depth(path, argv, envp, 0);
}

/* ---- posix_spawn: the child runs glibc's internal execve -------------------------- */

static int spawn_impl(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                      const posix_spawnattr_t *at, char *const argv[], char *const envp[], int search)
{
    char found[PATH_MAX];
    if (search) {
        int slash = 0;
        for (const char *c = path; *c; c++)
            if (*c == '/')
                slash = 1;
        if (!slash) {
            /* only a virtual hit needs our help; otherwise glibc searches */
            const char *sp = vr_getenv("PATH");
            if (!sp)
                sp = "/bin:/usr/bin";
            size_t fl = vr_strlen(path);
            int hit = 0;
            for (const char *p = sp; !hit; p++) {
                const char *start = p;
                while (*p && *p != ':')
                    p++;
                size_t dl = (size_t)(p - start);
                if (dl && dl + fl + 2 < sizeof found) {
                    memcpy(found, start, dl);
                    found[dl] = '/';
                    memcpy(found + dl + 1, path, fl + 1);
                    struct vr_path vp;
                    vr_resolve(AT_FDCWD, found, VR_FOLLOW, &vp);
                    if (vp.kind == VP_VIRT && vp.err == 0)
                        hit = 1;
                    else if (vp.kind != VP_VIRT && real_access(vp.kind == VP_REAL ? vp.rel : found, X_OK) == 0)
                        break; /* a real one comes first: glibc finds it */
                }
                if (!*p)
                    break;
            }
            if (hit)
                path = found, search = 0;
        }
    }
    struct plan plan, *pl = &plan;
    int rc = search ? 0 : plan_exec(path, pl);
    if (rc < 0)
        return -rc;
    size_t need = child_env_size(envp);
    _Alignas(8) char envmem[need ? need : 8];
    char *const *env = need ? child_env(envp, envmem, need) : envp;
    int argc = count_args(argv);
    char *nargv[argc + 4];
    char *const *use_argv = argv;
    const char *target = search ? path : pl->target;
    if (!search && pl->script) {
        int k = 0;
        nargv[k++] = pl->interp;
        if (pl->has_arg)
            nargv[k++] = pl->arg;
        nargv[k++] = (char *)path;
        for (int i = 1; i < argc; i++)
            nargv[k++] = argv[i];
        nargv[k] = NULL;
        use_argv = nargv;
        struct plan ip; /* the interpreter may be virtual too */
        if (plan_exec(pl->interp, &ip) == 0 && !ip.script)
            memcpy(pl->interp, ip.target, sizeof pl->interp);
        target = pl->interp;
    }
    if (!search && !pl->script) {
        char *ns_argv[argc + 6], *ns_env[env_count(env) + 1], cli[PATH_MAX];
        if (ns_route(path, pl->target, argv, env, ns_argv, ns_env, cli, sizeof cli) > 0)
            return real_posix_spawn(pid, ns_argv[0], fa, at, ns_argv, ns_env);
    }
    return search ? real_posix_spawnp(pid, target, fa, at, use_argv, env)
                  : real_posix_spawn(pid, target, fa, at, use_argv, env);
}

SHIM_EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                            const posix_spawnattr_t *at, char *const argv[], char *const envp[])
{
    if (!vr_active())
        return real_posix_spawn(pid, path, fa, at, argv, envp);
    return spawn_impl(pid, path, fa, at, argv, envp, 0);
}

SHIM_EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
                             const posix_spawnattr_t *at, char *const argv[], char *const envp[])
{
    if (!vr_active())
        return real_posix_spawnp(pid, file, fa, at, argv, envp);
    return spawn_impl(pid, file, fa, at, argv, envp, 1);
}

/* ---- dlopen: the dynamic loader opens files itself --------------------------------- */

/*
 * With the audit library in this process (LD_AUDIT), ld.so maps a mount
 * path to the mount's link farm itself, so the library's $ORIGIN is the
 * farm twin of its mount directory and its $ORIGIN rpaths work: hand it
 * the absolute mount path of the file (symlinks resolved, so a relative
 * name against a virtual cwd works too). NULL when that fails (the audit
 * library did not load, or the loader refused): the caller then tries the
 * CAS blob, as without the audit library.
 */
static void *dlopen_mount_path(const struct vr_path *p, int flags)
{
    if (!audit_on() || p->kind != VP_VIRT || p->err != 0 || (p->res.mode & S_IFMT) != S_IFREG)
        return NULL;
    char abs[PATH_MAX];
    if (vr_abs_of(p->mount, p->rel, p->rellen, abs, sizeof abs) < 0)
        return NULL;
    return real_dlopen(abs, flags);
}

SHIM_EXPORT void *dlopen(const char *path, int flags)
{
    if (path && vr_active()) {
        int slash = 0;
        for (const char *c = path; *c; c++)
            if (*c == '/')
                slash = 1;
        if (slash) {
            struct vr_path p;
            vr_resolve(AT_FDCWD, path, VR_FOLLOW, &p);
            if (p.kind == VP_REAL)
                return real_dlopen(p.rel, flags);
            void *h = dlopen_mount_path(&p, flags);
            if (h)
                return h;
            if (p.kind == VP_VIRT && vr_path_is_upper(&p)) {
                char real[PATH_MAX];
                if (vr_upper_path(p.mount, p.res.entry.u.digest, real, sizeof real) > 0)
                    return real_dlopen(real, flags);
            }
            if (p.kind == VP_VIRT && p.err == 0 && (p.res.mode & S_IFMT) == S_IFREG &&
                vr_learn_digest(p.mount, p.rel, p.rellen, &p.res) == 0) {
                char blob[PATH_MAX];
                vrift_vdir_blob_path(vr_mounts[p.mount].r, p.res.entry.u.digest, 0, blob, sizeof blob);
                struct stat st;
                if (vr_fstatat(AT_FDCWD, blob, &st, 0) != 0)
                    vr_fetch(p.mount, p.res.entry.u.digest, p.res.mode);
                return real_dlopen(blob, flags);
            }
        }
    }
    return real_dlopen(path, flags);
}
