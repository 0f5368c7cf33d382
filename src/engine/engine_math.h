/*
 * engine/engine_math.h: the per-row and per-element arithmetic the CPU and
 * CUDA engines share, written once so both compute the same values. C code
 * (engine/cpu) and CUDA code (engine/cuda, where the functions are also
 * device functions) include it.
 */
#ifndef ENGINE_ENGINE_MATH_H
#define ENGINE_ENGINE_MATH_H

#include <math.h>
#include <stddef.h>

#ifdef __CUDACC__
#define ENGINE_HD __host__ __device__
#else
#define ENGINE_HD
#endif

/* Softmax of one row of logits z into p: p = expf(z - max) scaled by
 * 1 / (double sum). Returns the argmax (the first among ties). When y is a
 * class, *loss gets its cross entropy as log-sum-exp in double (the value
 * gradient checks difference); otherwise *loss is left alone. The CUDA
 * engine's; the CPU engine has a vectorized one (engine_cpu_softmax_row,
 * tested against this). */
static inline ENGINE_HD int engine_softmax_row(float *p, const float *z, int classes, int y,
                                               double *loss)
{
    int arg = 0;
    float mx = z[0];
    for (int k = 1; k < classes; k++)
        if (z[k] > mx) {
            mx = z[k];
            arg = k;
        }
    double sum = 0.0;
    for (int k = 0; k < classes; k++) {
        p[k] = expf(z[k] - mx);
        sum += p[k];
    }
    float inv = (float)(1.0 / sum);
    for (int k = 0; k < classes; k++)
        p[k] *= inv;
    if (y >= 0 && y < classes) {
        double lse = 0.0;
        for (int k = 0; k < classes; k++)
            lse += exp((double)z[k] - (double)mx);
        *loss = log(lse) - ((double)z[y] - (double)mx);
    }
    return arg;
}

/* Max of the K x K window of output (oh, ow) at stride S over one input
 * plane of width W: its index in the plane, the value in *v; ties keep the
 * first maximum in window order. */
static inline ENGINE_HD int engine_max_window(const float *in, int oh, int ow, int K, int S, int W,
                                              float *v)
{
    int best = oh * S * W + ow * S;
    float bv = in[best];
    for (int ki = 0; ki < K; ki++)
        for (int kj = 0; kj < K; kj++) {
            int idx = (oh * S + ki) * W + ow * S + kj;
            if (in[idx] > bv) {
                bv = in[idx];
                best = idx;
            }
        }
    *v = bv;
    return best;
}

/* SGD with optional (Nesterov) momentum and L2 weight decay, element i
 * (optim/optim.c is the reference). */
static inline ENGINE_HD void engine_sgd_one(float *p, const float *g, float *buf, size_t i,
                                            float lr, float mu, float wd, int nesterov)
{
    float d = g[i] + wd * p[i];
    if (mu == 0.0f) {
        p[i] -= lr * d;
        return;
    }
    float b = mu * buf[i] + d;
    buf[i] = b;
    p[i] -= lr * (nesterov ? d + mu * b : b);
}

#endif
