/*
 * core/error.h: errors as values.
 *
 * Every fallible function in the library takes a `core_error *` last and
 * returns 0 on success or -1 on failure after filling the message. Messages
 * read as one line: "<where>: <what was wrong>[; <what to do>]". Callers add
 * context on the way up with core_error_prefix(). Only the CLI decides to end
 * the process.
 */
#ifndef CORE_ERROR_H
#define CORE_ERROR_H

#include <stddef.h>

#define CORE_ERROR_MAX 1024

typedef struct core_error {
    char msg[CORE_ERROR_MAX];
} core_error;

/* Sets the message (printf-style) and returns -1, so `return core_error_set(...)` reads well. */
int core_error_set(core_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prepends "<context>: " to the message already set; returns -1. */
int core_error_prefix(core_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void core_error_clear(core_error *err);

#endif
