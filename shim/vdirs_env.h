/*
 * vdirs_env.h — splitting $VRIFT_VDIRS, the comma-separated VDir names of
 * a `vrift run`. Shared by the shim (mounts.c) and the loader's audit
 * library (audit.c), which cannot share state: the audit library lives in
 * its own link-map namespace, so each opens the VDirs itself.
 */
#ifndef VRIFT_VDIRS_ENV_H
#define VRIFT_VDIRS_ENV_H

#include <stddef.h>

#include "vrift_vdir.h"

/**
 * Takes the next name from the list at *p and advances *p past it (and
 * its comma). Empty elements are skipped.
 *
 * @param name  receives the NUL-terminated name (VRIFT_VDIR_NAME_MAX + 1 bytes)
 * @return 1 with a name, -1 for an element longer than VRIFT_VDIR_NAME_MAX
 *         (skipped: the caller counts it as a mount that failed), 0 at the end
 */
static inline int vrift_vdirs_next(const char **p, char name[VRIFT_VDIR_NAME_MAX + 1])
{
    const char *s = *p;
    while (*s == ',')
        s++;
    if (!*s) {
        *p = s;
        return 0;
    }
    size_t n = 0;
    while (s[n] && s[n] != ',')
        n++;
    *p = s + n + (s[n] == ',');
    if (n > VRIFT_VDIR_NAME_MAX)
        return -1;
    for (size_t i = 0; i < n; i++)
        name[i] = s[i];
    name[n] = '\0';
    return 1;
}

#endif /* VRIFT_VDIRS_ENV_H */
