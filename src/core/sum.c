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

/* Its own loop rather than a shared helper with an optional output: a store
 * through a second pointer that may alias x stops GCC vectorizing the loop
 * (measured: 1.22 ms against 0.47 ms for 4 M floats). */
double core_scale_sum_squares(float *x, size_t n, float scale)
{
    enum { LANES = 8 };
    double acc[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int k = 0; k < LANES; k++) {
            float v = x[i + k] * scale;
            x[i + k] = v;
            acc[k] += (double)v * (double)v;
        }
    for (int k = 0; i < n; i++, k++) {
        float v = x[i] * scale;
        x[i] = v;
        acc[k] += (double)v * (double)v;
    }
    double ss = 0.0;
    for (int k = 0; k < LANES; k++)
        ss += acc[k];
    return ss;
}
