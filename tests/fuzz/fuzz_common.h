/*
 * tests/fuzz/fuzz_common.h: a byte cursor over the fuzz input, and a
 * per-process scratch file name, shared by the HDF5-building targets.
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

typedef struct fuzz_in {
    const uint8_t *p;
    size_t n, at;
} fuzz_in;

/* The next byte, or 0 once the input is used up. */
static inline unsigned fuzz_byte(fuzz_in *in)
{
    return in->at < in->n ? in->p[in->at++] : 0u;
}

/* Fills len bytes from the rest of the input, cycling through it. */
static inline void fuzz_fill(fuzz_in *in, void *dst, size_t len)
{
    uint8_t *d = dst;
    size_t rest = in->n > in->at ? in->n - in->at : 0;
    for (size_t i = 0; i < len; i++)
        d[i] = rest ? in->p[in->at + i % rest] : (uint8_t)i;
}

static inline const char *fuzz_scratch(const char *tag)
{
    static char path[256];
    snprintf(path, sizeof path, "/tmp/rt-fuzz-%s-%d.h5", tag, (int)getpid());
    return path;
}

#endif
