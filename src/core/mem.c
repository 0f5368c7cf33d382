/*
 * core/mem.c: aligned, zeroed allocation (see mem.h).
 */
#define _DEFAULT_SOURCE /* _SC_PHYS_PAGES */
#include "core/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define HUGE_PAGE ((size_t)2 << 20)
#define HUGE_FROM ((size_t)4 << 20)

void *core_alloc(size_t bytes, const char *what, core_error *err)
{
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded == 0)
        rounded = 64;
    /* A large buffer starts on a huge-page boundary; its size is not rounded
     * up to one, so the kernel backs the whole 2 MiB ranges inside it with
     * huge pages and the tail with small ones: no memory beyond what was
     * asked for (the memory plan's figures stay the resident set's). */
    size_t align = rounded >= HUGE_FROM ? HUGE_PAGE : 64;
    void *p = NULL;
    if (posix_memalign(&p, align, rounded) != 0)
        p = NULL;
    if (!p) {
        char h[32];
        core_error_set(err, "out of memory allocating %s (%s)", what,
                       core_format_bytes((double)bytes, h, sizeof h));
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    if (align == HUGE_PAGE)
        madvise(p, rounded, MADV_HUGEPAGE);
#endif
    memset(p, 0, rounded);
    return p;
}

void core_free(void *p)
{
    free(p);
}

double core_mem_physical(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (double)pages * (double)size : 0.0;
}

const char *core_format_bytes(double bytes, char *buf, size_t len)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024.0 && u < 4) {
        bytes /= 1024.0;
        u++;
    }
    snprintf(buf, len, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
    return buf;
}
