/*
 * engine/cpu/engine_cpu.c: the reference engine (see engine/engine.h).
 *
 * GEMM is OpenBLAS; everything else is a plain loop whose inner dimension is
 * contiguous and branch-free, so -O3 -march=native vectorizes it. Nothing
 * here allocates except alloc.
 *
 * Threads (core/par.h): each op cuts its work into one contiguous part per
 * thread of the rank, along an axis where parts never write the same
 * element and every element is computed as on one thread: elements for
 * element-wise ops, planes for pooling, rows of the column matrix for
 * im2col, channels for col2im and the bias gradient (each channel's sum keeps
 * its order). These give the same bits at any thread count. A GEMM is split
 * into column (or row) blocks, each one single-threaded OpenBLAS call; its
 * bits can differ from one call's (OpenBLAS's edge kernels), so results are
 * the same for the same thread count, not across counts.
 */
#include "engine/engine.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "core/mem.h"
#include "core/par.h"
#include "core/rng.h"
#include "core/sum.h"
#include "engine/cpu/engine_cpu_conv.h"
#include "engine/cpu/engine_cpu_seq.h"
#include "engine/engine_math.h"

/* Element-wise work is split only above this many floats (64 KiB): below,
 * waking a thread costs about what the loop does. Boundaries fall on
 * multiples of 16 floats (a cache line). */
#define EW_GRAIN (16 * 1024)
#define EW_ALIGN 16

static void zero_range(void *ctx, size_t lo, size_t hi)
{
    memset((float *)ctx + lo, 0, (hi - lo) * sizeof(float));
}

static void cpu_zero(float *x, size_t n)
{
    core_par_for(n, 4 * EW_GRAIN, EW_ALIGN, zero_range, x);
}

typedef struct copy_job {
    float *dst;
    const float *src;
} copy_job;

static void copy_range(void *ctx, size_t lo, size_t hi)
{
    const copy_job *j = ctx;
    memcpy(j->dst + lo, j->src + lo, (hi - lo) * sizeof(float));
}

static void cpu_copy(float *dst, const float *src, size_t n)
{
    copy_job j = {dst, src};
    if (dst != src)
        core_par_for(n, 4 * EW_GRAIN, EW_ALIGN, copy_range, &j);
}

typedef struct gemm_job {
    int ta, tb, M, N, K, lda, ldb, ldc, split_n;
    float alpha, beta;
    const float *A, *B;
    float *C;
} gemm_job;

static void gemm_part(void *ctx, int part, int parts)
{
    const gemm_job *j = ctx;
    CBLAS_TRANSPOSE ta = j->ta ? CblasTrans : CblasNoTrans, tb = j->tb ? CblasTrans : CblasNoTrans;
    size_t lo, hi;
    core_par_range((size_t)(j->split_n ? j->N : j->M), part, parts, 16, &lo, &hi);
    if (hi <= lo)
        return;
    if (j->split_n) /* columns [lo, hi) of C and of op(B) */
        cblas_sgemm(CblasRowMajor, ta, tb, j->M, (int)(hi - lo), j->K, j->alpha, j->A, j->lda,
                    j->tb ? j->B + lo * (size_t)j->ldb : j->B + lo, j->ldb, j->beta, j->C + lo,
                    j->ldc);
    else /* rows [lo, hi) of C and of op(A) */
        cblas_sgemm(CblasRowMajor, ta, tb, (int)(hi - lo), j->N, j->K, j->alpha,
                    j->ta ? j->A + lo : j->A + lo * (size_t)j->lda, j->lda, j->B, j->ldb, j->beta,
                    j->C + lo * (size_t)j->ldc, j->ldc);
}

/* One OpenBLAS call per thread on a block of C's columns (or rows, when C
 * is taller than wide), at least 32 wide; small products stay whole. */
void engine_cpu_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                     int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    gemm_job j = {trans_a, trans_b, M, N, K, lda, ldb, ldc, N >= M, alpha, beta, A, B, C};
    int parts = (double)M * N * K < (double)(1 << 18) ? 1 : core_par_parts(N >= M ? N : M, 32);
    core_par_run(gemm_part, &j, parts);
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

/* im2col and col2im split over the rows (c, ki, kj) of the column matrix,
 * col2im over channels: the rows of one channel add into the same dx. */
typedef struct conv_job {
    const float *x;
    float *cols, *dx;
    int batch;
    const engine_conv_geom *g;
} conv_job;

/* Rows [r0, r1) of the column matrix. */
static void im2col_flat(void *ctx, size_t r0, size_t r1)
{
    const conv_job *j = ctx;
    const engine_conv_geom *g = j->g;
    const int K = g->K, batch = j->batch;
    const long np = (long)batch * g->H * g->W;
    for (size_t r = r0; r < r1; r++) {
        int c = (int)(r / (size_t)(K * K)), ki = (int)(r / (size_t)K % (size_t)K),
            kj = (int)(r % (size_t)K);
        const float *xc = j->x + (size_t)c * g->c_stride;
        float *row = j->cols + r * (size_t)np;
        long d = (long)(ki - g->pad_h) * g->W + (kj - g->pad_w), p0, p1;
        shift_range(np, d, &p0, &p1);
        memset(row, 0, (size_t)p0 * sizeof *row);
        if (p1 > p0)
            memcpy(row + p0, xc + p0 + d, (size_t)(p1 - p0) * sizeof *row);
        memset(row + p1, 0, (size_t)(np - p1) * sizeof *row);
        zero_outside(row, batch, g, ki, kj);
    }
}

/* The adjoint of im2col_flat, channels [c0, c1). The outside positions of
 * cols are zeroed first (cols is scratch), so the whole row is one shifted
 * add. */
static void col2im_flat(void *ctx, size_t c0, size_t c1)
{
    const conv_job *j = ctx;
    const engine_conv_geom *g = j->g;
    const int K = g->K, batch = j->batch;
    float *cols = j->cols, *dx = j->dx;
    const long np = (long)batch * g->H * g->W;
    for (int c = (int)c0; c < (int)c1; c++) {
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

static void im2col_rows(void *ctx, size_t r0, size_t r1)
{
    const conv_job *j = ctx;
    const engine_conv_geom *g = j->g;
    const int K = g->K, s = g->stride, OH = g->OH, OW = g->OW, batch = j->batch;
    const size_t plane = (size_t)OH * OW;
    const size_t ncols = (size_t)batch * plane;
    for (size_t r = r0; r < r1; r++) {
        int c = (int)(r / (size_t)(K * K)), ki = (int)(r / (size_t)K % (size_t)K),
            kj = (int)(r % (size_t)K);
        float *row = j->cols + r * ncols;
        int lo, hi;
        valid_range(OW, g->W, s, kj - g->pad_w, &lo, &hi);
        for (int n = 0; n < batch; n++) {
            const float *img = j->x + (size_t)n * g->n_stride + (size_t)c * g->c_stride;
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

/* Rows per part: at least a few of conv2's 14x14x5-image rows. */
#define CONV_GRAIN 4

static void cpu_im2col(const float *x, int batch, const engine_conv_geom *g, float *cols)
{
    conv_job j = {x, cols, NULL, batch, g};
    size_t rows = (size_t)g->C * g->K * g->K;
    core_par_for(rows, CONV_GRAIN, 1, flat_shift_ok(batch, g) ? im2col_flat : im2col_rows, &j);
}

static void col2im_channels(void *ctx, size_t c0, size_t c1)
{
    const conv_job *j = ctx;
    const engine_conv_geom *g = j->g;
    const float *cols = j->cols;
    float *dx = j->dx;
    const int K = g->K, s = g->stride, OH = g->OH, OW = g->OW, batch = j->batch;
    const size_t plane = (size_t)OH * OW;
    const size_t ncols = (size_t)batch * plane;
    for (int c = (int)c0; c < (int)c1; c++)
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

static void cpu_col2im(float *cols, int batch, const engine_conv_geom *g, float *dx)
{
    conv_job j = {NULL, cols, dx, batch, g};
    core_par_for((size_t)g->C, 1, 1, flat_shift_ok(batch, g) ? col2im_flat : col2im_channels, &j);
}

static void act_forward_serial(float *y, const float *x, size_t n, engine_act act)
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
        if (y != x)
            memcpy(y, x, n * sizeof *y);
    }
}

/* The arguments of the element-wise and per-plane ops, for their parts. */
typedef struct ew_job {
    float *y;
    const float *x, *dy, *b;
    engine_act act;
    int outer, channels, inner;
} ew_job;

static void act_forward_range(void *ctx, size_t lo, size_t hi)
{
    const ew_job *j = ctx;
    act_forward_serial(j->y + lo, j->x + lo, hi - lo, j->act);
}

static void cpu_act_forward(float *y, const float *x, size_t n, engine_act act)
{
    ew_job j = {.y = y, .x = x, .act = act};
    core_par_for(n, EW_GRAIN, EW_ALIGN, act_forward_range, &j);
}

static void add_row(float *restrict y, const float *restrict b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] += b[i];
}

/* Rows [lo, hi) of `inner` floats (row q has channel q % channels): bias,
 * then the activation. */
static void bias_act_rows(void *ctx, size_t lo, size_t hi)
{
    const ew_job *j = ctx;
    const int inner = j->inner;
    if (j->b && inner == 1) {
        /* one division per run of channels, not per element (the token-wise
         * linear layers' bias: 5 % of a GPT step with a division each) */
        const size_t C = (size_t)j->channels;
        for (size_t q = lo; q < hi;) {
            size_t c = q % C, n = C - c < hi - q ? C - c : hi - q;
            add_row(j->y + q, j->b + c, n);
            q += n;
        }
    } else if (j->b) {
        for (size_t q = lo; q < hi; q++) {
            float b = j->b[q % (size_t)j->channels];
            float *p = j->y + q * (size_t)inner;
            for (int i = 0; i < inner; i++)
                p[i] += b;
        }
    }
    float *yo = j->y + lo * (size_t)inner;
    size_t n = (hi - lo) * (size_t)inner;
    if (j->act == ENGINE_ACT_RELU) {
        for (size_t i = 0; i < n; i++)
            yo[i] = yo[i] > 0.0f ? yo[i] : 0.0f;
    } else if (j->act != ENGINE_ACT_NONE) {
        act_forward_serial(yo, yo, n, j->act);
    }
}

/* Rows per part so that a part holds at least EW_GRAIN floats. */
static size_t row_grain(int inner)
{
    size_t g = EW_GRAIN / (size_t)(inner > 0 ? inner : 1);
    return g > 0 ? g : 1;
}

static void cpu_bias_act_forward(float *y, const float *bias, int outer, int channels, int inner,
                                 engine_act act)
{
    ew_job j = {.y = y, .b = bias, .act = act, .channels = channels, .inner = inner};
    core_par_for((size_t)outer * channels, row_grain(inner), 1, bias_act_rows, &j);
}

static void bias_fill_rows(void *ctx, size_t lo, size_t hi)
{
    const ew_job *j = ctx;
    if (j->inner == 1) { /* (rows, channels): whole runs of the bias */
        const size_t C = (size_t)j->channels;
        for (size_t q = lo; q < hi;) {
            size_t c = q % C, n = C - c < hi - q ? C - c : hi - q;
            memcpy(j->y + q, j->b + c, n * sizeof *j->y);
            q += n;
        }
        return;
    }
    for (size_t q = lo; q < hi; q++) {
        float *p = j->y + q * (size_t)j->inner;
        float b = j->b[q % (size_t)j->channels];
        for (int i = 0; i < j->inner; i++)
            p[i] = b;
    }
}

static void cpu_bias_fill(float *y, const float *bias, int outer, int channels, int inner)
{
    ew_job j = {.y = y, .b = bias, .channels = channels, .inner = inner};
    core_par_for((size_t)outer * channels, row_grain(inner), 1, bias_fill_rows, &j);
}

static void act_backward_serial(float *dx, const float *dy, const float *y, size_t n,
                                engine_act act)
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
        if (dx != dy)
            memcpy(dx, dy, n * sizeof *dx);
    }
}

static void act_backward_range(void *ctx, size_t lo, size_t hi)
{
    const ew_job *j = ctx;
    act_backward_serial(j->y + lo, j->dy + lo, j->x + lo, hi - lo, j->act);
}

/* (y holds dx, x holds the activation's output) */
static void cpu_act_backward(float *dx, const float *dy, const float *y, size_t n, engine_act act)
{
    ew_job j = {.y = dx, .x = y, .dy = dy, .act = act};
    core_par_for(n, EW_GRAIN, EW_ALIGN, act_backward_range, &j);
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

/* Channels [c0, c1): each channel's sum over o in the serial order. */
static void bias_backward_channels(void *ctx, size_t c0, size_t c1)
{
    const ew_job *j = ctx;
    const int channels = j->channels, inner = j->inner, outer = j->outer;
    float *dbias = j->y;
    for (int o = 0; o < outer; o++) {
        const float *d = j->dy + (size_t)o * channels * inner;
        if (inner == 1) {
            for (size_t c = c0; c < c1; c++)
                dbias[c] += d[c];
            continue;
        }
        for (size_t c = c0; c < c1; c++)
            dbias[c] += sum_floats(d + c * (size_t)inner, inner);
    }
}

static void cpu_bias_backward(float *dbias, const float *dy, int outer, int channels, int inner,
                              int accumulate)
{
    if (!accumulate)
        memset(dbias, 0, (size_t)channels * sizeof *dbias);
    ew_job j = {.y = dbias, .dy = dy, .outer = outer, .channels = channels, .inner = inner};
    size_t per_channel = (size_t)outer * inner;
    size_t grain = EW_GRAIN / (per_channel > 0 ? per_channel : 1);
    core_par_for((size_t)channels, grain > 0 ? grain : 1, inner == 1 ? EW_ALIGN : 1,
                 bias_backward_channels, &j);
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

/* Output rows [q0, q1): a part's last row, like the very last, stays inside
 * its row, so parts never write into each other's rows. */
static void maxpool2x2(float *y, int32_t *argmax, const float *x, size_t q0, size_t q1, int H,
                       int W, int OH, int OW)
{
    const int blocks = pool2_rows_ok(H, W, OH, OW);
    for (size_t q = q0; q < q1; q++) {
        size_t p = q / (size_t)OH;
        int oh = (int)(q % (size_t)OH);
        const float *r0 = x + p * H * W + (size_t)(2 * oh) * W, *r1 = r0 + W;
        float *o = y + q * (size_t)OW;
        int32_t *a = argmax + q * (size_t)OW;
        int base = 2 * oh * W, ow = 0;
        if (blocks && q + 1 < q1)
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

typedef struct pool_job {
    float *y, *dx;
    int32_t *argmax;
    const float *x, *dy, *relu_y;
    const int32_t *am;
    int H, W, K, S, OH, OW, relu;
} pool_job;

/* Planes [p0, p1). */
static void maxpool_forward_planes(void *ctx, size_t p0, size_t p1)
{
    const pool_job *j = ctx;
    const int H = j->H, W = j->W, K = j->K, S = j->S, OH = j->OH, OW = j->OW;
    float *y = j->y;
    int32_t *argmax = j->argmax;
    const float *x = j->x;
    const size_t plane = (size_t)OH * OW;
    if (K == 2 && S == 2) {
        maxpool2x2(y, argmax, x, p0 * (size_t)OH, p1 * (size_t)OH, H, W, OH, OW);
        if (j->relu)
            relu_inplace(y + p0 * plane, (p1 - p0) * plane);
        return;
    }
    for (size_t p = p0; p < p1; p++) {
        const float *in = x + (size_t)p * H * W;
        float *out = y + (size_t)p * OH * OW;
        int32_t *am = argmax + (size_t)p * OH * OW;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++)
                am[oh * OW + ow] = engine_max_window(in, oh, ow, K, S, W, &out[oh * OW + ow]);
    }
    if (j->relu)
        relu_inplace(y + p0 * plane, (p1 - p0) * plane);
}

/* The pooling ops' job: the geometry, then each op sets its buffers. */
static pool_job pool_job_of(int H, int W, int K, int S, int OH, int OW)
{
    pool_job j = {0};
    j.H = H;
    j.W = W;
    j.K = K;
    j.S = S;
    j.OH = OH;
    j.OW = OW;
    return j;
}

/* Planes per part: at least EW_GRAIN input floats. */
static size_t plane_grain(int H, int W)
{
    size_t g = EW_GRAIN / ((size_t)H * W > 0 ? (size_t)H * W : 1);
    return g > 0 ? g : 1;
}

static void cpu_maxpool_forward(float *y, int32_t *argmax, const float *x, int planes, int H, int W,
                                int K, int S, int OH, int OW, int relu)
{
    pool_job j = pool_job_of(H, W, K, S, OH, OW);
    j.y = y;
    j.argmax = argmax;
    j.x = x;
    j.relu = relu;
    core_par_for((size_t)planes, plane_grain(H, W), 1, maxpool_forward_planes, &j);
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
static void maxpool_backward_planes(void *ctx, size_t p0, size_t p1)
{
    const pool_job *j = ctx;
    const int H = j->H, W = j->W, OH = j->OH, OW = j->OW;
    float *dx = j->dx;
    const float *dy = j->dy, *relu_y = j->relu_y;
    const int32_t *argmax = j->am;
    memset(dx + p0 * H * W, 0, (p1 - p0) * H * W * sizeof *dx);
    for (size_t p = p0; p < p1; p++) {
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

static void cpu_maxpool_backward(float *dx, const float *dy, const int32_t *argmax,
                                 const float *relu_y, int planes, int H, int W, int K, int S,
                                 int OH, int OW)
{
    pool_job j = pool_job_of(H, W, K, S, OH, OW);
    j.dx = dx;
    j.dy = dy;
    j.am = argmax;
    j.relu_y = relu_y;
    core_par_for((size_t)planes, plane_grain(H, W), 1, maxpool_backward_planes, &j);
}

static void avgpool_forward_planes(void *ctx, size_t p0, size_t p1)
{
    const pool_job *j = ctx;
    const int H = j->H, W = j->W, K = j->K, S = j->S, OH = j->OH, OW = j->OW;
    const float *x = j->x;
    float *y = j->y;
    const float scale = 1.0f / (float)(K * K);
    for (size_t p = p0; p < p1; p++) {
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

static void cpu_avgpool_forward(float *y, const float *x, int planes, int H, int W, int K, int S,
                                int OH, int OW)
{
    pool_job j = pool_job_of(H, W, K, S, OH, OW);
    j.y = y;
    j.x = x;
    core_par_for((size_t)planes, plane_grain(H, W), 1, avgpool_forward_planes, &j);
}

static void avgpool_backward_planes(void *ctx, size_t p0, size_t p1)
{
    const pool_job *j = ctx;
    const int H = j->H, W = j->W, K = j->K, S = j->S, OH = j->OH, OW = j->OW;
    const float *dy = j->dy;
    float *dx = j->dx;
    const float scale = 1.0f / (float)(K * K);
    memset(dx + p0 * H * W, 0, (p1 - p0) * H * W * sizeof *dx);
    for (size_t p = p0; p < p1; p++) {
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

static void cpu_avgpool_backward(float *dx, const float *dy, int planes, int H, int W, int K, int S,
                                 int OH, int OW)
{
    pool_job j = pool_job_of(H, W, K, S, OH, OW);
    j.dx = dx;
    j.dy = dy;
    core_par_for((size_t)planes, plane_grain(H, W), 1, avgpool_backward_planes, &j);
}

typedef struct perm_job {
    float *dst;
    const float *src;
    int C, N, to_nc;
    size_t S;
} perm_job;

/* Channels [c0, c1). */
static void permute_channels(void *ctx, size_t c0, size_t c1)
{
    const perm_job *j = ctx;
    const size_t C = (size_t)j->C, N = (size_t)j->N, S = j->S;
    for (size_t c = c0; c < c1; c++)
        for (size_t n = 0; n < N; n++) {
            size_t cn = (c * N + n) * S, nc = (n * C + c) * S;
            memcpy(j->dst + (j->to_nc ? nc : cn), j->src + (j->to_nc ? cn : nc),
                   S * sizeof *j->dst);
        }
}

static void cpu_cn_to_nc(float *dst, const float *src, int C, int N, size_t S)
{
    perm_job j = {dst, src, C, N, 1, S};
    core_par_for((size_t)C, row_grain((int)(N * S)), 1, permute_channels, &j);
}

static void cpu_nc_to_cn(float *dst, const float *src, int C, int N, size_t S)
{
    perm_job j = {dst, src, C, N, 0, S};
    core_par_for((size_t)C, row_grain((int)(N * S)), 1, permute_channels, &j);
}

/* The loss is summed in blocks of rows whose size depends on the batch only
 * (64 rows, more past 64 * SOFTMAX_BLOCKS), each block in order, then the
 * blocks in order: the same bits at any thread count. */
#define SOFTMAX_BLOCKS 256

typedef struct softmax_job {
    float *probs;
    const float *logits;
    const int32_t *labels;
    int batch, classes, block;
    double loss[SOFTMAX_BLOCKS];
    long correct[SOFTMAX_BLOCKS];
} softmax_job;

static void softmax_blocks(void *ctx, size_t k0, size_t k1)
{
    softmax_job *j = ctx;
    for (size_t k = k0; k < k1; k++) {
        int b0 = (int)k * j->block, b1 = b0 + j->block < j->batch ? b0 + j->block : j->batch;
        double loss = 0.0;
        long correct = 0;
        for (int b = b0; b < b1; b++) {
            /* out-of-range labels are the data module's to reject: no loss here */
            int y = j->labels ? j->labels[b] : -1;
            double row = 0.0;
            int arg =
                engine_cpu_softmax_row(j->probs + (size_t)b * j->classes,
                                       j->logits + (size_t)b * j->classes, j->classes, y, &row);
            loss += row;
            correct += j->labels && arg == y && isfinite(row); /* NaN outputs are never right */
        }
        j->loss[k] = loss;
        j->correct[k] = correct;
    }
}

static double cpu_softmax_xent_forward(float *probs, const float *logits, const int32_t *labels,
                                       int batch, int classes, long *correct)
{
    softmax_job j;
    j.probs = probs;
    j.logits = logits;
    j.labels = labels;
    j.batch = batch;
    j.classes = classes;
    j.block = 64;
    while ((batch + j.block - 1) / j.block > SOFTMAX_BLOCKS)
        j.block *= 2;
    size_t blocks = (size_t)(batch + j.block - 1) / (size_t)j.block;
    size_t grain = EW_GRAIN / ((size_t)j.block * (size_t)classes);
    core_par_for(blocks, grain > 0 ? grain : 1, 1, softmax_blocks, &j);
    double loss = 0.0;
    for (size_t k = 0; k < blocks; k++) {
        loss += j.loss[k];
        if (correct)
            *correct += j.correct[k];
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

typedef struct scale_job {
    float *y;
    const float *a, *b;
    float s;
} scale_job;

static void scale_range(void *ctx, size_t lo, size_t hi)
{
    const scale_job *j = ctx;
    for (size_t i = lo; i < hi; i++)
        j->y[i] *= j->s;
}

static void cpu_scale(float *x, size_t n, float a)
{
    scale_job j = {x, NULL, NULL, a};
    core_par_for(n, EW_GRAIN, EW_ALIGN, scale_range, &j);
}

static void mul_range(void *ctx, size_t lo, size_t hi)
{
    const scale_job *j = ctx;
    for (size_t i = lo; i < hi; i++)
        j->y[i] = j->a[i] * j->b[i];
}

static void cpu_mul(float *y, const float *a, const float *b, size_t n)
{
    scale_job j = {y, a, b, 0.0f};
    core_par_for(n, EW_GRAIN, EW_ALIGN, mul_range, &j);
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

/* The threads a GEMM is split over: the rank's compute threads (--threads;
 * OpenBLAS's own pool is kept at 1, engine_cpu_blas.c). */
static int cpu_blas_threads(void)
{
    return core_par_threads();
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
                                   .gemm = engine_cpu_gemm,
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
