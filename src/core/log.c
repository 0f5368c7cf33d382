/*
 * core/log.c: rank-aware logging (see log.h).
 */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>

static int log_rank = 0;
static int log_size = 1;

void core_log_set_rank(int rank, int size)
{
    log_rank = rank;
    log_size = size;
}

int core_log_rank(void)
{
    return log_rank;
}

static void log_prefixed(FILE *f, const char *kind, const char *fmt, va_list ap)
{
    char line[2048];
    vsnprintf(line, sizeof line, fmt, ap);
    if (log_size > 1)
        fprintf(f, "ringtrain: [rank %d] %s: %s\n", log_rank, kind, line);
    else
        fprintf(f, "ringtrain: %s: %s\n", kind, line);
    fflush(f);
}

void core_log_info(const char *fmt, ...)
{
    if (log_rank != 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

void core_log_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_prefixed(stderr, "warning", fmt, ap);
    va_end(ap);
}

void core_log_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_prefixed(stderr, "error", fmt, ap);
    va_end(ap);
}
