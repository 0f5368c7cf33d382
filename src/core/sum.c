/*
 * core/sum.c: see sum.h.
 */
#include "core/sum.h"

double core_sum_squares(const float *x, size_t n)
{
    enum { LANES = 8 };
    double acc[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int k = 0; k < LANES; k++)
            acc[k] += (double)x[i + k] * (double)x[i + k];
    for (int k = 0; i < n; i++, k++)
        acc[k] += (double)x[i] * (double)x[i];
    double ss = 0.0;
    for (int k = 0; k < LANES; k++)
        ss += acc[k];
    return ss;
}
