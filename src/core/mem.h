/*
 * core/mem.h: aligned allocation with a clear error when memory runs out.
 *
 * Buffers are 64-byte aligned (one cache line, one AVX-512 vector) and zeroed.
 * Allocation happens at start-up only; nothing in a training step allocates.
 */
#ifndef CORE_MEM_H
#define CORE_MEM_H

#include <stddef.h>

#include "core/error.h"

void *core_alloc(size_t bytes, const char *what, core_error *err);
void core_free(void *p);

/* Bytes of physical memory of the machine (0 if unknown). */
double core_mem_physical(void);

/* "1.5 GiB"-style human-readable size into buf; returns buf. */
const char *core_format_bytes(double bytes, char *buf, size_t len);

#endif
