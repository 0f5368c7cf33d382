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
/* x[i] *= scale for every i, and the sum of the squares of the scaled values
 * with the same lanes and order as core_sum_squares: the same bits as the
 * two passes, in one (the trainer's scale by 1/batch and gradient norm). */
double core_scale_sum_squares(float *x, size_t n, float scale);

#endif
