/*
 * core/mem.h: aligned allocation with a clear error when memory runs out.
 *
 * Buffers are 64-byte aligned (one cache line, one AVX-512 vector) and zeroed.
 * Buffers of 4 MiB or more (activations, parameters, optimizer state) start
 * on a 2 MiB boundary and ask for transparent huge pages (MADV_HUGEPAGE:
 * most distributions enable them only where asked), so that the step's
 * passes over them miss the TLB less: the tutorial CNN's step took 0.97x
 * the CPU time (docs/PERFORMANCE.md). Allocation happens at start-up only;
 * nothing in a training step allocates.
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
