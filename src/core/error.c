/*
 * core/error.c: error values with a one-line message (see error.h).
 */
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int core_error_set(core_error *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int core_error_prefix(core_error *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    char ctx[CORE_ERROR_MAX];
    char old[CORE_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t n = strnlen(ctx, sizeof ctx - 1);
    if (n > sizeof err->msg - 3)
        n = sizeof err->msg - 3;
    memcpy(err->msg, ctx, n);
    memcpy(err->msg + n, ": ", 2);
    size_t rest = sizeof err->msg - n - 3;
    size_t oldlen = strnlen(old, rest);
    memcpy(err->msg + n + 2, old, oldlen);
    err->msg[n + 2 + oldlen] = '\0';
    return -1;
}

void core_error_clear(core_error *err)
{
    if (err)
        err->msg[0] = '\0';
}
