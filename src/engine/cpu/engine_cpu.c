/*
 * engine/cpu/engine_cpu.c: the reference engine (see engine/engine.h).
 *
 * GEMM is OpenBLAS; everything else is a plain loop whose inner dimension is
 * contiguous and branch-free, so -O3 -march=native vectorizes it. Nothing
 * here allocates except alloc.
 */
#include "engine/engine.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "core/mem.h"
#include "core/rng.h"
#include "core/sum.h"
#include "engine/cpu/engine_cpu_conv.h"
#include "engine/cpu/engine_cpu_seq.h"
#include "engine/engine_math.h"

static void cpu_zero(float *x, size_t n)
{
    memset(x, 0, n * sizeof *x);
}

static void cpu_copy(float *dst, const float *src, size_t n)
{
    if (dst != src)
        memcpy(dst, src, n * sizeof *dst);
}

static void cpu_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                     int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* The output columns [lo, hi) whose input column ow*s - pad + kj lies inside [0, W). */
static void valid_range(int OW, int W, int s, int off, int *lo, int *hi)
{
    int a = off < 0 ? (-off + s - 1) / s : 0;
    int b = (W - 1 - off) < 0 ? 0 : (W - 1 - off) / s + 1;
    if (b > OW)
        b = OW;
    if (a > b)
        a = b;
    *lo = a;
    *hi = b;
}

/* Stride 1 with the output as large as the input ('same' padding, odd K) and
 * the images of one channel contiguous (channel-major, or one channel): then a
 * row (c, ki, kj) of the column matrix is channel c of the whole batch shifted
 * by d = (ki - pad_h) * W + (kj - pad_w) floats, except at the positions whose
 * source pixel lies outside its image. One long copy per row instead of one
 * short copy per image row. */
static int flat_shift_ok(int batch, const engine_conv_geom *g)
{
    size_t plane = (size_t)g->H * g->W;
    return g->stride == 1 && g->OH == g->H && g->OW == g->W && g->n_stride == plane &&
           g->pad_h < g->K && g->pad_w < g->K && (size_t)batch * plane < ((size_t)1 << 31);
}

/* Zeroes the positions of one row (c, ki, kj) whose source pixel is outside
 * its image: whole output rows oh outside [oh_lo, oh_hi), and in the others
 * the columns outside [lo, hi). */
static void zero_outside(float *row, int batch, const engine_conv_geom *g, int ki, int kj)
{
    const int OH = g->OH, OW = g->OW;
    int oh_lo, oh_hi, lo, hi;
    valid_range(OH, g->H, 1, ki - g->pad_h, &oh_lo, &oh_hi);
    valid_range(OW, g->W, 1, kj - g->pad_w, &lo, &hi);
    if (oh_lo == 0 && oh_hi == OH && lo == 0 && hi == OW)
        return;
    for (int n = 0; n < batch; n++) {
        float *img = row + (size_t)n * OH * OW;
        for (int i = 0; i < oh_lo * OW; i++)
            img[i] = 0.0f;
        for (int i = oh_hi * OW; i < OH * OW; i++)
            img[i] = 0.0f;
        for (int oh = oh_lo; oh < oh_hi; oh++) {
            float *r = img + (size_t)oh * OW;
            for (int ow = 0; ow < lo; ow++)
                r[ow] = 0.0f;
            for (int ow = hi; ow < OW; ow++)
                r[ow] = 0.0f;
        }
    }
}

/* Positions p of a row of np whose source p + d lies inside [0, np): [p0, p1).
 * Empty (p0 == p1) when the shift is at least the whole plane, which a kernel
 * much larger than the image gives. */
static void shift_range(long np, long d, long *p0, long *p1)
{
    long a = d < 0 ? -d : 0, b = d > 0 ? np - d : np;
    if (a > np)
        a = np;
    *p0 = a;
    *p1 = b < a ? a : b;
}

static void im2col_flat(const float *x, int batch, const engine_conv_geom *g, float *cols)
{
    const int K = g->K;
    const long np = (long)batch * g->H * g->W;
    for (int c = 0; c < g->C; c++) {
        const float *xc = x + (size_t)c * g->c_stride;
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++) {
                float *row = cols + ((size_t)(c * K + ki) * K + kj) * (size_t)np;
                long d = (long)(ki - g->pad_h) * g->W + (kj - g->pad_w), p0, p1;
                shift_range(np, d, &p0, &p1);
                memset(row, 0, (size_t)p0 * sizeof *row);
                if (p1 > p0)
                    memcpy(row + p0, xc + p0 + d, (size_t)(p1 - p0) * sizeof *row);
                memset(row + p1, 0, (size_t)(np - p1) * sizeof *row);
                zero_outside(row, batch, g, ki, kj);
            }
    }
}

/* The adjoint of im2col_flat. The outside positions of cols are zeroed first
 * (cols is scratch), so the whole row is one shifted add. */
static void col2im_flat(float *cols, int batch, const engine_conv_geom *g, float *dx)
{
    const int K = g->K;
    const long np = (long)batch * g->H * g->W;
    for (int c = 0; c < g->C; c++) {
        float *restrict dc = dx + (size_t)c * g->c_stride;
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++) {
                float *restrict row = cols + ((size_t)(c * K + ki) * K + kj) * (size_t)np;
                long d = (long)(ki - g->pad_h) * g->W + (kj - g->pad_w), p0, p1;
                shift_range(np, d, &p0, &p1);
                zero_outside(row, batch, g, ki, kj);
                float *restrict out = dc + p0 + d;
                const float *restrict in = row + p0;
                for (long i = 0; i < p1 - p0; i++)
                    out[i] += in[i];
            }
    }
}

static void cpu_im2col(const float *x, int batch, const engine_conv_geom *g, float *cols)
{
    if (flat_shift_ok(batch, g)) {
        im2col_flat(x, batch, g, cols);
        return;
    }

    const int K = g->K, s = g->stride, OH = g->OH, OW = g->OW;
    const size_t plane = (size_t)OH * OW;
    const size_t ncols = (size_t)batch * plane;
    for (int c = 0; c < g->C; c++)
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++) {
                float *row = cols + ((size_t)(c * K + ki) * K + kj) * ncols;
                int lo, hi;
                valid_range(OW, g->W, s, kj - g->pad_w, &lo, &hi);
                for (int n = 0; n < batch; n++) {
                    const float *img = x + (size_t)n * g->n_stride + (size_t)c * g->c_stride;
                    for (int oh = 0; oh < OH; oh++) {
                        float *out = row + (size_t)n * plane + (size_t)oh * OW;
                        int ih = oh * s - g->pad_h + ki;
                        if (ih < 0 || ih >= g->H) {
                            memset(out, 0, (size_t)OW * sizeof *out);
                            continue;
                        }
                        const float *in = img + (size_t)ih * g->W + (kj - g->pad_w);
                        for (int ow = 0; ow < lo; ow++)
                            out[ow] = 0.0f;
                        if (s == 1)
                            memcpy(out + lo, in + lo, (size_t)(hi - lo) * sizeof *out);
                        else
                            for (int ow = lo; ow < hi; ow++)
                                out[ow] = in[ow * s];
                        for (int ow = hi; ow < OW; ow++)
                            out[ow] = 0.0f;
                    }
                }
            }
}

static void cpu_col2im(float *cols, int batch, const engine_conv_geom *g, float *dx)
{
    if (flat_shift_ok(batch, g)) {
        col2im_flat(cols, batch, g, dx);
        return;
    }
    const int K = g->K, s = g->stride, OH = g->OH, OW = g->OW;
    const size_t plane = (size_t)OH * OW;
    const size_t ncols = (size_t)batch * plane;
    for (int c = 0; c < g->C; c++)
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++) {
                const float *row = cols + ((size_t)(c * K + ki) * K + kj) * ncols;
                int lo, hi;
                valid_range(OW, g->W, s, kj - g->pad_w, &lo, &hi);
                for (int n = 0; n < batch; n++) {
                    float *img = dx + (size_t)n * g->n_stride + (size_t)c * g->c_stride;
                    for (int oh = 0; oh < OH; oh++) {
                        int ih = oh * s - g->pad_h + ki;
                        if (ih < 0 || ih >= g->H)
                            continue;
                        const float *src = row + (size_t)n * plane + (size_t)oh * OW;
                        float *out = img + (size_t)ih * g->W + (kj - g->pad_w);
                        if (s == 1)
                            for (int ow = lo; ow < hi; ow++)
                                out[ow] += src[ow];
                        else
                            for (int ow = lo; ow < hi; ow++)
                                out[ow * s] += src[ow];
                    }
                }
            }
}

static void cpu_act_forward(float *y, const float *x, size_t n, engine_act act)
{
    switch (act) {
    case ENGINE_ACT_RELU:
        for (size_t i = 0; i < n; i++)
            y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case ENGINE_ACT_TANH:
        for (size_t i = 0; i < n; i++)
            y[i] = tanhf(x[i]);
        break;
    case ENGINE_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++)
            y[i] = 1.0f / (1.0f + expf(-x[i]));
        break;
    default:
        cpu_copy(y, x, n);
    }
}

static void cpu_bias_act_forward(float *y, const float *bias, int outer, int channels, int inner,
                                 engine_act act)
{
    for (int o = 0; o < outer; o++) {
        float *yo = y + (size_t)o * channels * inner;
        if (bias && inner == 1) {
            for (int c = 0; c < channels; c++)
                yo[c] += bias[c];
        } else if (bias) {
            for (int c = 0; c < channels; c++) {
                float b = bias[c];
                float *p = yo + (size_t)c * inner;
                for (int i = 0; i < inner; i++)
                    p[i] += b;
            }
        }
        if (act == ENGINE_ACT_RELU) {
            size_t n = (size_t)channels * inner;
            for (size_t i = 0; i < n; i++)
                yo[i] = yo[i] > 0.0f ? yo[i] : 0.0f;
        } else if (act != ENGINE_ACT_NONE) {
            cpu_act_forward(yo, yo, (size_t)channels * inner, act);
        }
    }
}

static void cpu_bias_fill(float *y, const float *bias, int outer, int channels, int inner)
{
    for (int o = 0; o < outer; o++)
        for (int c = 0; c < channels; c++) {
            float *p = y + ((size_t)o * channels + c) * inner;
            float b = bias[c];
            for (int i = 0; i < inner; i++)
                p[i] = b;
        }
}

static void cpu_act_backward(float *dx, const float *dy, const float *y, size_t n, engine_act act)
{
    switch (act) {
    case ENGINE_ACT_RELU:
        for (size_t i = 0; i < n; i++)
            dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
        break;
    case ENGINE_ACT_TANH:
        for (size_t i = 0; i < n; i++)
            dx[i] = dy[i] * (1.0f - y[i] * y[i]);
        break;
    case ENGINE_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++)
            dx[i] = dy[i] * y[i] * (1.0f - y[i]);
        break;
    default:
        cpu_copy(dx, dy, n);
    }
}

/* A sum in 16 independent lanes: without -ffast-math the compiler may not
 * reorder one running float sum, so a single accumulator stays scalar. */
static float sum_floats(const float *p, int n)
{
    enum { L = 16 };
    float acc[L] = {0};
    int i = 0;
    for (; i + L <= n; i += L)
        for (int k = 0; k < L; k++)
            acc[k] += p[i + k];
    float s = 0.0f;
    for (; i < n; i++)
        s += p[i];
    for (int k = 0; k < L; k++)
        s += acc[k];
    return s;
}

static void cpu_bias_backward(float *dbias, const float *dy, int outer, int channels, int inner,
                              int accumulate)
{
    if (!accumulate)
        memset(dbias, 0, (size_t)channels * sizeof *dbias);
    for (int o = 0; o < outer; o++) {
        const float *d = dy + (size_t)o * channels * inner;
        if (inner == 1) {
            for (int c = 0; c < channels; c++)
                dbias[c] += d[c];
            continue;
        }
        for (int c = 0; c < channels; c++)
            dbias[c] += sum_floats(d + (size_t)c * inner, inner);
    }
}

/* The common 2x2 stride-2 window, in blocks of a constant 8 outputs that the
 * compiler turns into vector code; rows of 14 or 7 outputs would otherwise
 * run as scalar code with data-dependent branches.
 *
 * When the windows tile the input exactly and rows hold at least 4 outputs,
 * the rows of all planes follow each other at a fixed pitch, so every row is
 * done in whole blocks of 8: a block that runs past the end of its row writes
 * into the next row, which is processed afterwards and overwrites it. Only the
 * very last row must stay inside the buffers; it runs one output at a time. */
static int pool2_rows_ok(int H, int W, int OH, int OW)
{
    return H == 2 * OH && W == 2 * OW && OW >= 4;
}

static inline void pool2_fwd_one(float *o, int32_t *a, const float *r0, const float *r1, int i,
                                 int W)
{
    float v0 = r0[0], v1 = r0[1], v2 = r1[0], v3 = r1[1];
    float m01 = v1 > v0 ? v1 : v0;
    int i01 = v1 > v0 ? i + 1 : i;
    float m23 = v3 > v2 ? v3 : v2;
    int i23 = v3 > v2 ? i + W + 1 : i + W;
    *o = m23 > m01 ? m23 : m01;
    *a = m23 > m01 ? i23 : i01;
}

static inline void pool2_fwd_8(float *o, int32_t *a, const float *restrict r0,
                               const float *restrict r1, int i0, int W)
{
    for (int k = 0; k < 8; k++) {
        float v0 = r0[2 * k], v1 = r0[2 * k + 1], v2 = r1[2 * k], v3 = r1[2 * k + 1];
        int i = i0 + 2 * k;
        float m01 = v1 > v0 ? v1 : v0;
        int i01 = v1 > v0 ? i + 1 : i;
        float m23 = v3 > v2 ? v3 : v2;
        int i23 = v3 > v2 ? i + W + 1 : i + W;
        o[k] = m23 > m01 ? m23 : m01;
        a[k] = m23 > m01 ? i23 : i01;
    }
}

static void maxpool2x2(float *y, int32_t *argmax, const float *x, int planes, int H, int W, int OH,
                       int OW)
{
    const size_t rows = (size_t)planes * OH;
    const int blocks = pool2_rows_ok(H, W, OH, OW);
    for (size_t q = 0; q < rows; q++) {
        size_t p = q / (size_t)OH;
        int oh = (int)(q % (size_t)OH);
        const float *r0 = x + p * H * W + (size_t)(2 * oh) * W, *r1 = r0 + W;
        float *o = y + q * (size_t)OW;
        int32_t *a = argmax + q * (size_t)OW;
        int base = 2 * oh * W, ow = 0;
        if (blocks && q + 1 < rows)
            for (; ow < OW; ow += 8)
                pool2_fwd_8(o + ow, a + ow, r0 + 2 * ow, r1 + 2 * ow, base + 2 * ow, W);
        for (; ow < OW; ow++)
            pool2_fwd_one(o + ow, a + ow, r0 + 2 * ow, r1 + 2 * ow, base + 2 * ow, W);
    }
}

static void relu_inplace(float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = y[i] > 0.0f ? y[i] : 0.0f;
}

static void cpu_maxpool_forward(float *y, int32_t *argmax, const float *x, int planes, int H, int W,
                                int K, int S, int OH, int OW, int relu)
{
    if (K == 2 && S == 2) {
        maxpool2x2(y, argmax, x, planes, H, W, OH, OW);
        if (relu)
            relu_inplace(y, (size_t)planes * OH * OW);
        return;
    }
    for (int p = 0; p < planes; p++) {
        const float *in = x + (size_t)p * H * W;
        float *out = y + (size_t)p * OH * OW;
        int32_t *am = argmax + (size_t)p * OH * OW;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++)
                am[oh * OW + ow] = engine_max_window(in, oh, ow, K, S, W, &out[oh * OW + ow]);
    }
    if (relu)
        relu_inplace(y, (size_t)planes * OH * OW);
}

/* v if cond, else +0, through a bit mask: in scalar code a select or a
 * multiply by 0/1 compiles to a branch, which random data mispredicts. */
static inline float keep_if(float v, int cond)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    u &= 0u - (uint32_t)(cond != 0);
    memcpy(&v, &u, sizeof v);
    return v;
}

/* A scatter through argmax after one clearing pass. (Writing every input
 * element once from 2x2 blocks measured slower inside the training step.) */
static void cpu_maxpool_backward(float *dx, const float *dy, const int32_t *argmax,
                                 const float *relu_y, int planes, int H, int W, int K, int S,
                                 int OH, int OW)
{
    memset(dx, 0, (size_t)planes * H * W * sizeof *dx);
    for (int p = 0; p < planes; p++) {
        float *d = dx + (size_t)p * H * W;
        const float *g = dy + (size_t)p * OH * OW;
        const int32_t *am = argmax + (size_t)p * OH * OW;
        if (!relu_y) {
            for (int i = 0; i < OH * OW; i++)
                d[am[i]] += g[i];
            continue;
        }
        const float *ry = relu_y + (size_t)p * OH * OW;
        for (int i = 0; i < OH * OW; i++)
            d[am[i]] += keep_if(g[i], ry[i] > 0.0f);
    }
}

static void cpu_avgpool_forward(float *y, const float *x, int planes, int H, int W, int K, int S,
                                int OH, int OW)
{
    const float scale = 1.0f / (float)(K * K);
    for (int p = 0; p < planes; p++) {
        const float *in = x + (size_t)p * H * W;
        float *out = y + (size_t)p * OH * OW;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                float sum = 0.0f;
                for (int ki = 0; ki < K; ki++)
                    for (int kj = 0; kj < K; kj++)
                        sum += in[(oh * S + ki) * W + ow * S + kj];
                out[oh * OW + ow] = sum * scale;
            }
    }
}

static void cpu_avgpool_backward(float *dx, const float *dy, int planes, int H, int W, int K, int S,
                                 int OH, int OW)
{
    const float scale = 1.0f / (float)(K * K);
    memset(dx, 0, (size_t)planes * H * W * sizeof *dx);
    for (int p = 0; p < planes; p++) {
        float *d = dx + (size_t)p * H * W;
        const float *g = dy + (size_t)p * OH * OW;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                float v = g[oh * OW + ow] * scale;
                for (int ki = 0; ki < K; ki++)
                    for (int kj = 0; kj < K; kj++)
                        d[(oh * S + ki) * W + ow * S + kj] += v;
            }
    }
}

static void cpu_cn_to_nc(float *dst, const float *src, int C, int N, size_t S)
{
    for (int c = 0; c < C; c++)
        for (int n = 0; n < N; n++)
            memcpy(dst + ((size_t)n * C + c) * S, src + ((size_t)c * N + n) * S, S * sizeof *dst);
}

static void cpu_nc_to_cn(float *dst, const float *src, int C, int N, size_t S)
{
    for (int c = 0; c < C; c++)
        for (int n = 0; n < N; n++)
            memcpy(dst + ((size_t)c * N + n) * S, src + ((size_t)n * C + c) * S, S * sizeof *dst);
}

static double cpu_softmax_xent_forward(float *probs, const float *logits, const int32_t *labels,
                                       int batch, int classes, long *correct)
{
    double loss = 0.0;
    for (int b = 0; b < batch; b++) {
        /* out-of-range labels are the data module's to reject: no loss here */
        int y = labels ? labels[b] : -1;
        double row = 0.0;
        int arg = engine_softmax_row(probs + (size_t)b * classes, logits + (size_t)b * classes,
                                     classes, y, &row);
        loss += row;
        if (correct && labels && arg == y && isfinite(row)) /* NaN outputs are never right */
            (*correct)++;
    }
    return loss;
}

static void cpu_softmax_xent_backward(float *dlogits, const float *probs, const int32_t *labels,
                                      int batch, int classes)
{
    cpu_copy(dlogits, probs, (size_t)batch * classes);
    if (!labels)
        return;
    for (int b = 0; b < batch; b++)
        if (labels[b] >= 0 && labels[b] < classes)
            dlogits[(size_t)b * classes + labels[b]] -= 1.0f;
}

/* ---- device-memory ops (engine.h): plain memory on the CPU ---- */

static void cpu_transfer(void *dst, const void *src, size_t bytes)
{
    if (dst != src && bytes)
        memcpy(dst, src, bytes);
}

static void cpu_sync(void) {}

static void *cpu_stream(void)
{
    return NULL;
}

static void cpu_scale(float *x, size_t n, float a)
{
    for (size_t i = 0; i < n; i++)
        x[i] *= a;
}

static void cpu_mul(float *y, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = a[i] * b[i];
}

static void cpu_dropout_mask(float *mask, size_t n, float p, uint64_t seed, uint64_t stream)
{
    core_rng r = core_rng_make(seed, stream);
    const float keep = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++)
        mask[i] = core_rng_uniform(&r) >= p ? keep : 0.0f;
}

static double cpu_sumsq(const float *x, size_t n)
{
    return core_sum_squares(x, n);
}

static int cpu_nonfinite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 1;
    return 0;
}

static void cpu_sgd_update(float *restrict p, const float *restrict g, float *restrict buf,
                           size_t n, float lr, float mu, float wd, int nesterov)
{
    for (size_t i = 0; i < n; i++)
        engine_sgd_one(p, g, buf, i, lr, mu, wd, nesterov);
}

static int cpu_status(core_error *err)
{
    (void)err;
    return 0;
}

static int cpu_blas_threads(void)
{
    return openblas_get_num_threads();
}

static void cpu_adam_update(float *restrict p, const float *restrict g, float *restrict m,
                            float *restrict v, size_t n, float decay, float step_size,
                            float bc2_sqrt, float b1, float b2, float eps, float wd)
{
    const float c1 = 1.0f - b1, c2 = 1.0f - b2;
    for (size_t i = 0; i < n; i++) {
        float pi = p[i] * decay;
        float d = g[i] + wd * pi;
        float mi = m[i] + c1 * (d - m[i]);
        float vi = b2 * v[i] + c2 * (d * d);
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * (mi / (sqrtf(vi) / bc2_sqrt + eps));
    }
}

static const engine_ops cpu_ops = {.name = "cpu",
                                   .alloc = core_alloc,
                                   .free = core_free,
                                   .zero = cpu_zero,
                                   .copy = cpu_copy,
                                   .gemm = cpu_gemm,
                                   .im2col = cpu_im2col,
                                   .col2im = cpu_col2im,
                                   .bias_act_forward = cpu_bias_act_forward,
                                   .bias_fill = cpu_bias_fill,
                                   .act_forward = cpu_act_forward,
                                   .act_backward = cpu_act_backward,
                                   .bias_backward = cpu_bias_backward,
                                   .maxpool_forward = cpu_maxpool_forward,
                                   .maxpool_backward = cpu_maxpool_backward,
                                   .avgpool_forward = cpu_avgpool_forward,
                                   .avgpool_backward = cpu_avgpool_backward,
                                   .cn_to_nc = cpu_cn_to_nc,
                                   .nc_to_cn = cpu_nc_to_cn,
                                   .softmax_xent_forward = cpu_softmax_xent_forward,
                                   .softmax_xent_backward = cpu_softmax_xent_backward,
                                   .device_memory = 0,
                                   .upload = cpu_transfer,
                                   .download = cpu_transfer,
                                   .sync = cpu_sync,
                                   .stream = cpu_stream,
                                   .scale = cpu_scale,
                                   .mul = cpu_mul,
                                   .dropout_mask = cpu_dropout_mask,
                                   .sumsq = cpu_sumsq,
                                   .nonfinite = cpu_nonfinite,
                                   .sgd_update = cpu_sgd_update,
                                   .adam_update = cpu_adam_update,
                                   .status = cpu_status,
                                   .blas_threads = cpu_blas_threads,
                                   /* convolution: engine_cpu_conv.c */
                                   ENGINE_CPU_CONV_OPS,
                                   /* sequence models: engine_cpu_seq.c */
                                   ENGINE_CPU_SEQ_OPS};

const engine_ops *engine_cpu(void)
{
    return &cpu_ops;
}
