/*
 * core/sum.h: reductions written once for every layer that needs them.
 */
#ifndef RINGTRAIN_CORE_SUM_H
#define RINGTRAIN_CORE_SUM_H

#include <stddef.h>

/* Sum of x[i]^2 in double, in 8 interleaved lanes added up in a fixed order
 * at the end: the compiler vectorizes it (one accumulator cannot be, without
 * reassociation, and costs ~4 cycles a float), and the same input gives the
 * same bits on every rank. The gradient norm (clipping) and the CPU engine's
 * sumsq both use it. */
double core_sum_squares(const float *x, size_t n);

#endif
