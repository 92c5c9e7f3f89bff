/*
 * request.c — change requests to the daemon (UPPER, LINK, MKDIR, UNLINK,
 * RENAME ...), and what happens when it is gone.
 *
 * A request is built in a fixed buffer (no malloc) and sent on this
 * process's connection (ipc.c). When the daemon cannot be reached the mount
 * is "detached": reads keep being served from the last published VDir and
 * upper files already open keep working (they are real files), but every
 * change fails with EROFS — never a write into the real mount-point
 * directory. The connection is retried at most every 250 ms (here and in
 * vr_check_daemon); the first success re-attaches: a restarted daemon
 * republishes each VDir under the same name, and readers follow it.
 */
#include "shim.h"

#include "vrift_proto.h"

_Atomic int vr_detached;
static _Atomic long next_try_ns;
static _Atomic int detach_said;

static long mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

void vr_detach(const char *why)
{
    atomic_store(&next_try_ns, mono_ns() + 250000000L);
    if (atomic_exchange(&vr_detached, 1))
        return;
    if (!atomic_exchange(&detach_said, 1) && vr_first_in_run())
        vr_say(why, "; mounts stay readable, changes fail (EROFS) until it is back", NULL);
}

void vr_reattached(void)
{
    if (atomic_exchange(&vr_detached, 0))
        atomic_store(&detach_said, 0);
}

/* While detached: 1 if it is time to try the daemon again. */
static int may_retry(void)
{
    long now = mono_ns(), next = atomic_load(&next_try_ns);
    if (now < next)
        return 0;
    return atomic_compare_exchange_strong(&next_try_ns, &next, now + 250000000L);
}

void vr_req_str(struct vr_req *p, uint16_t tag, const char *s, size_t len)
{
    size_t w = vrift_proto_field(p->b + p->n, sizeof p->b - p->n, tag, s, (uint32_t)len);
    if (!w)
        p->bad = 1;
    p->n += w;
}

void vr_req_u32(struct vr_req *p, uint16_t tag, uint32_t v)
{
    size_t w = vrift_proto_field_u32(p->b + p->n, sizeof p->b - p->n, tag, v);
    if (!w)
        p->bad = 1;
    p->n += w;
}

void vr_req_u64(struct vr_req *p, uint16_t tag, uint64_t v)
{
    uint8_t le[8];
    vrift_proto_put_u64(le, v);
    size_t w = vrift_proto_field(p->b + p->n, sizeof p->b - p->n, tag, le, sizeof le);
    if (!w)
        p->bad = 1;
    p->n += w;
}

void vr_req_hex(struct vr_req *p, uint16_t tag, const uint8_t bytes[32])
{
    char hex[VRIFT_LAYOUT_DIGEST_HEX];
    vrift_layout_hex(bytes, hex);
    vr_req_str(p, tag, hex, sizeof hex);
}

void vr_req_mount(struct vr_req *p, int mount, const char *rel, size_t rellen)
{
    p->n = 0;
    p->bad = 0;
    vr_req_str(p, VRIFT_F_PATH, vr_mounts[mount].root, vr_mounts[mount].rootlen);
    vr_req_str(p, VRIFT_F_REL, rel, rellen);
}

int vr_may_change(void)
{
    if (atomic_load(&vr_on) != 1)
        return -EROFS;
    if (atomic_load(&vr_detached) && !may_retry())
        return -EROFS;
    return 0;
}

/* Whether a change may be sent now: 0, or why not. */
static int may_send(const struct vr_req *p)
{
    return p->bad ? -ENAMETOOLONG : vr_may_change();
}

/* After a send: a transport failure detaches (EROFS); success re-attaches. */
static int sent(int rc)
{
    if (rc < 0) {
        vr_detach(rc == -ETIMEDOUT ? "the vrift daemon did not answer in time" : "lost the vrift daemon");
        return -EROFS;
    }
    vr_reattached();
    return 0;
}

int vr_request(uint16_t type, struct vr_req *p, struct vr_reply *rep)
{
    int rc = may_send(p);
    if (rc < 0)
        return rc;
    struct vr_reply local;
    struct vr_reply *r = rep ? rep : &local;
    rc = sent(vr_ipc_call(type, p->b, p->n, r));
    if (rc < 0)
        return rc;
    return r->ok ? 0 : -r->err;
}

int vr_request_async(uint16_t type, struct vr_req *p)
{
    int rc = may_send(p);
    return rc < 0 ? rc : sent(vr_ipc_send(type, p->b, p->n));
}

int vr_fetch(int mount, const uint8_t digest[32], uint32_t mode)
{
    return vr_fetch_stream(mount, digest, mode, NULL, 0);
}

int vr_fetch_stream(int mount, const uint8_t digest[32], uint32_t mode, char *partial, size_t cap)
{
    return vr_fetch_for(mount, NULL, 0, digest, mode, partial, cap, NULL);
}

int vr_fetch_for(int mount, const char *rel, size_t rellen, const uint8_t digest[32], uint32_t mode, char *partial,
                 size_t cap, uint64_t *ctime_ns)
{
    struct vr_req p = {0};
    vr_req_str(&p, VRIFT_F_PATH, vr_mounts[mount].root, vr_mounts[mount].rootlen);
    if (rel)
        vr_req_str(&p, VRIFT_F_REL, rel, rellen);
    vr_req_hex(&p, VRIFT_F_DIGEST, digest);
    vr_req_u32(&p, VRIFT_F_MODE, mode); /* executable: the daemon makes the blob's exec twin too */
    if (partial) {
        vr_req_u32(&p, VRIFT_F_STREAM, 1);
        partial[0] = '\0';
    }
    struct vr_reply rep;
    /* Only the daemon can bring the bytes: while it is gone (restarting),
     * the open waits for it, up to FETCH_WAIT_NS, rather than fail. */
    const long FETCH_WAIT_NS = 20000000000L;
    long until = mono_ns() + FETCH_WAIT_NS;
    for (;;) {
        int rc = vr_request(VRIFT_MSG_FETCH, &p, &rep);
        if (rc == 0 && partial)
            vr_strlcpy(partial, rep.path, cap);
        if (rc == 0 && ctime_ns)
            *ctime_ns = rep.ctime_ns;
        if (rc != -EROFS)
            return rc;
        if (mono_ns() >= until || atomic_load(&vr_on) != 1)
            return -EIO;
        struct timespec ts = {0, 100000000};
        VR_SYS2(SYS_nanosleep, &ts, NULL);
    }
}

int vr_learn_digest(int mount, const char *rel, size_t rellen, struct vrift_vdir_result *res)
{
    static const uint8_t none[32];
    if (!vr_digest_unknown(res))
        return 0;
    if (vr_fetch_for(mount, rel, rellen, none, res->mode, NULL, 0, NULL) != 0)
        return -EIO;
    struct vrift_vdir_result again;
    if (vrift_vdir_lookup(vr_mounts[mount].r, rel, rellen, &again) != 0 || memcmp(again.entry.u.digest, none, sizeof none) == 0)
        return -EIO;
    *res = again;
    return 0;
}
