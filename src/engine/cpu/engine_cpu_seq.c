/*
 * engine/cpu/engine_cpu_seq.c: the CPU implementation of the sequence-model
 * operations of engine_ops (embedding, layer norm, GELU, attention, LSTM and
 * GRU cells, dropout masks) and the softmax cross entropy row of the loss.
 * engine_cpu.c puts them into its table through ENGINE_CPU_SEQ_OPS
 * (engine_cpu_seq.h).
 *
 * Attention is one sgemm per (sample, head, block of 32 query rows): with the
 * causal mask, a block of queries only needs the keys up to its last row, so
 * about 5/8 of the full T x T work is done at T = 128. Masked probabilities
 * are exact zeros, so the few masked entries a block does compute add nothing.
 *
 * Threads (core/par.h), with the same bits at any count: element-wise ops
 * by elements, layer norm and embeddings by rows (the layer norm's weight
 * and bias gradients by columns, each column summed over the rows in order),
 * attention forward by (sample, head). Attention backward, the recurrent
 * cells and dropout masks run on the calling thread (one scratch matrix; a
 * sequential random stream).
 */
#include "engine/cpu/engine_cpu_seq.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "core/par.h"

#define ATTN_BLOCK 32

/* exp, tanh and the sigmoid as branch-free float code that -O3 vectorizes
 * (libm's tanhf/expf are scalar calls and were 40 % of a Transformer step).
 * exp: x = n ln2 + r, |r| <= ln2/2, e^r by its degree-6 Taylor polynomial
 * (relative error < 2e-7), 2^n put into the exponent bits. */
static inline float fast_expf(float x)
{
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    /* round to nearest by the 1.5 * 2^23 trick (vectorizes, unlike roundf) */
    float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693145752f - n * 1.42860677e-6f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.6666667e-1f +
                                                  r * (4.1666668e-2f +
                                                       r * (8.3333338e-3f + r * 1.3888889e-3f)))));
    /* a NaN x stays NaN through r and p; n must be a number for the
     * conversion (a NaN logit reaches here when training diverges) */
    n = n == n ? n : 0.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float fast_tanhf(float x)
{
    /* 1 - 2 / (e^{2x} + 1): exact limits at +-inf, absolute error ~1e-7 */
    return 1.0f - 2.0f / (fast_expf(2.0f * x) + 1.0f);
}

static inline float fast_sigmoidf(float x)
{
    return 1.0f / (1.0f + fast_expf(-x));
}

static size_t token_row(float id, int V)
{
    return id >= 0.0f && id < (float)V ? (size_t)id : 0;
}

/* Element-wise and row-wise work is split above this many floats. */
#define SEQ_GRAIN (16 * 1024)

static size_t rows_grain(int C)
{
    size_t g = SEQ_GRAIN / (size_t)(C > 0 ? C : 1);
    return g > 0 ? g : 1;
}

/* The arguments of the split ops, for their parts. */
typedef struct seq_job {
    float *y, *mean, *rstd, *dw, *db;
    const float *x, *a, *b, *w, *dy, *ids, *table, *cmean, *crstd;
    int V, D, C, rows, causal, B, T, H;
    float *P, *Pd;
    const float *mask;
} seq_job;

static void embed_rows(void *ctx, size_t lo, size_t hi)
{
    const seq_job *j = ctx;
    const size_t D = (size_t)j->D;
    for (size_t i = lo; i < hi; i++)
        memcpy(j->y + i * D, j->table + token_row(j->ids[i], j->V) * D, D * sizeof *j->y);
}

void engine_cpu_embed_forward(float *y, const float *ids, const float *table, size_t n, int V,
                              int D)
{
    seq_job j = {.y = y, .ids = ids, .table = table, .V = V, .D = D};
    core_par_for(n, rows_grain(D), 1, embed_rows, &j);
}

void engine_cpu_embed_backward(float *dtable, const float *dy, const float *ids, size_t n, int V,
                               int D)
{
    for (size_t i = 0; i < n; i++) {
        float *row = dtable + token_row(ids[i], V) * (size_t)D;
        const float *d = dy + i * (size_t)D;
        for (int j = 0; j < D; j++)
            row[j] += d[j];
    }
}

static void add_serial(float *y, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = a[i] + b[i];
}

static void add_range(void *ctx, size_t lo, size_t hi)
{
    const seq_job *j = ctx;
    add_serial(j->y + lo, j->a + lo, j->b + lo, hi - lo);
}

void engine_cpu_add(float *y, const float *a, const float *b, size_t n)
{
    seq_job j = {.y = y, .a = a, .b = b};
    core_par_for(n, SEQ_GRAIN, 16, add_range, &j);
}

void engine_cpu_mul(float *y, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = a[i] * b[i];
}

static void add_broadcast_rows(void *ctx, size_t lo, size_t hi)
{
    const seq_job *j = ctx;
    const size_t n = (size_t)j->C;
    for (size_t o = lo; o < hi; o++)
        add_serial(j->y + o * n, j->x + o * n, j->b, n);
}

void engine_cpu_add_broadcast(float *y, const float *x, const float *p, int outer, size_t n)
{
    seq_job j = {.y = y, .x = x, .b = p, .C = (int)n};
    core_par_for((size_t)outer, rows_grain((int)n), 1, add_broadcast_rows, &j);
}

void engine_cpu_dropout_mask(float *mask, size_t n, float p, core_rng *r)
{
    float keep = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++)
        mask[i] = core_rng_uniform(r) < p ? 0.0f : keep;
}

/* Row sums in SUM_LANES independent partial sums (the tail into the first
 * lanes), added up in order at the end: a fixed order (the same bits every
 * run and at every thread count) that -O3 vectorizes, where one running
 * float sum is a chain of dependent adds. */
#define SUM_LANES 16

static float lanes_total(const float *acc)
{
    float t = 0.0f;
    for (int l = 0; l < SUM_LANES; l++)
        t += acc[l];
    return t;
}

static float sum_lanes(const float *x, int n)
{
    float acc[SUM_LANES] = {0.0f};
    int i = 0;
    for (; i + SUM_LANES <= n; i += SUM_LANES)
        for (int l = 0; l < SUM_LANES; l++)
            acc[l] += x[i + l];
    for (int l = 0; i < n; i++, l++)
        acc[l] += x[i];
    return lanes_total(acc);
}

static float dot_lanes(const float *a, const float *b, int n)
{
    float acc[SUM_LANES] = {0.0f};
    int i = 0;
    for (; i + SUM_LANES <= n; i += SUM_LANES)
        for (int l = 0; l < SUM_LANES; l++)
            acc[l] += a[i + l] * b[i + l];
    for (int l = 0; i < n; i++, l++)
        acc[l] += a[i] * b[i];
    return lanes_total(acc);
}

/* The maximum of x[0..n), n >= 1, lane by lane. (A NaN in a lane can hide
 * that lane's maximum; the softmax of such a row is NaN all the same.) */
static float max_lanes(const float *x, int n)
{
    float best = x[0];
    int i = 0;
    if (n >= SUM_LANES) {
        float m[SUM_LANES];
        for (int l = 0; l < SUM_LANES; l++)
            m[l] = x[l];
        for (i = SUM_LANES; i + SUM_LANES <= n; i += SUM_LANES)
            for (int l = 0; l < SUM_LANES; l++)
                m[l] = x[i + l] > m[l] ? x[i + l] : m[l];
        for (int l = 0; l < SUM_LANES; l++)
            best = m[l] > best ? m[l] : best;
    }
    for (; i < n; i++)
        best = x[i] > best ? x[i] : best;
    return best;
}

static void layernorm_forward_rows(void *ctx, size_t lo, size_t hi)
{
    const seq_job *j = ctx;
    const int C = j->C;
    const float *x = j->x, *w = j->w, *b = j->b;
    float *y = j->y, *mean = j->mean, *rstd = j->rstd;
    for (size_t r = lo; r < hi; r++) {
        const float *xr = x + (size_t)r * C;
        float *yr = y + (size_t)r * C;
        float m = sum_lanes(xr, C) / (float)C;
        float dev[SUM_LANES] = {0.0f};
        int i = 0;
        for (; i + SUM_LANES <= C; i += SUM_LANES)
            for (int l = 0; l < SUM_LANES; l++)
                dev[l] += (xr[i + l] - m) * (xr[i + l] - m);
        for (int l = 0; i < C; i++, l++)
            dev[l] += (xr[i] - m) * (xr[i] - m);
        float s = 1.0f / sqrtf(lanes_total(dev) / (float)C + 1e-5f);
        for (i = 0; i < C; i++)
            yr[i] = (xr[i] - m) * s * w[i] + b[i];
        mean[r] = m;
        rstd[r] = s;
    }
}

void engine_cpu_layernorm_forward(float *y, float *mean, float *rstd, const float *x,
                                  const float *w, const float *b, int rows, int C)
{
    seq_job j = {.y = y, .mean = mean, .rstd = rstd, .x = x, .w = w, .b = b, .C = C};
    core_par_for((size_t)rows, rows_grain(C), 1, layernorm_forward_rows, &j);
}

/* dx of rows [lo, hi). */
static void layernorm_dx_rows(void *ctx, size_t lo, size_t hi)
{
    const seq_job *j = ctx;
    const int C = j->C;
    const float *w = j->w;
    for (size_t r = lo; r < hi; r++) {
        const float *xr = j->x + r * C, *dr = j->dy + r * C;
        float m = j->cmean[r], s = j->crstd[r];
        float acc_dx[SUM_LANES] = {0.0f};
        int i = 0;
        for (; i + SUM_LANES <= C; i += SUM_LANES)
            for (int l = 0; l < SUM_LANES; l++)
                acc_dx[l] += dr[i + l] * w[i + l] * ((xr[i + l] - m) * s);
        for (int l = 0; i < C; i++, l++)
            acc_dx[l] += dr[i] * w[i] * ((xr[i] - m) * s);
        float sum_d = dot_lanes(dr, w, C) / (float)C, sum_dx = lanes_total(acc_dx) / (float)C;
        float *o = j->y + r * C;
        for (i = 0; i < C; i++) {
            float xh = (xr[i] - m) * s;
            o[i] += s * (dr[i] * w[i] - sum_d - xh * sum_dx);
        }
    }
}

/* dw and db of columns [lo, hi), each summed over the rows in order. */
static void layernorm_dw_columns(void *ctx, size_t lo, size_t hi)
{
    const seq_job *j = ctx;
    const size_t C = (size_t)j->C;
    for (int r = 0; r < j->rows; r++) {
        const float *xr = j->x + r * C, *dr = j->dy + r * C;
        float m = j->cmean[r], s = j->crstd[r];
        for (size_t i = lo; i < hi; i++) {
            float xh = (xr[i] - m) * s;
            j->dw[i] += dr[i] * xh;
            j->db[i] += dr[i];
        }
    }
}

void engine_cpu_layernorm_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                                   const float *mean, const float *rstd, const float *w, int rows,
                                   int C, int accumulate)
{
    if (!accumulate) {
        memset(dw, 0, (size_t)C * sizeof *dw);
        memset(db, 0, (size_t)C * sizeof *db);
    }
    seq_job j = {.y = dx,
                 .dw = dw,
                 .db = db,
                 .x = x,
                 .w = w,
                 .dy = dy,
                 .cmean = mean,
                 .crstd = rstd,
                 .C = C,
                 .rows = rows};
    size_t cols_grain = SEQ_GRAIN / (size_t)(rows > 0 ? rows : 1);
    core_par_for((size_t)C, cols_grain > 0 ? cols_grain : 1, 16, layernorm_dw_columns, &j);
    if (dx)
        core_par_for((size_t)rows, rows_grain(C), 1, layernorm_dx_rows, &j);
}

#define GELU_K 0.7978845608028654f /* sqrt(2 / pi) */

static void gelu_forward_range(void *ctx, size_t lo, size_t hi)
{
    const seq_job *j = ctx;
    for (size_t i = lo; i < hi; i++) {
        float v = j->x[i];
        j->y[i] = 0.5f * v * (1.0f + fast_tanhf(GELU_K * (v + 0.044715f * v * v * v)));
    }
}

void engine_cpu_gelu_forward(float *y, const float *x, size_t n)
{
    seq_job j = {.y = y, .x = x};
    core_par_for(n, SEQ_GRAIN, 16, gelu_forward_range, &j);
}

static void gelu_backward_range(void *ctx, size_t lo, size_t hi)
{
    const seq_job *j = ctx;
    const float *x = j->x, *dy = j->dy;
    float *dx = j->y;
    for (size_t i = lo; i < hi; i++) {
        float v = x[i];
        float t = fast_tanhf(GELU_K * (v + 0.044715f * v * v * v));
        float dt = (1.0f - t * t) * GELU_K * (1.0f + 3.0f * 0.044715f * v * v);
        dx[i] = dy[i] * (0.5f * (1.0f + t) + 0.5f * v * dt);
    }
}

void engine_cpu_gelu_backward(float *dx, const float *dy, const float *x, size_t n)
{
    seq_job j = {.y = dx, .x = x, .dy = dy};
    core_par_for(n, SEQ_GRAIN, 16, gelu_backward_range, &j);
}

static void sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc)
{
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
                K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* sum_lanes in double: the loss of an 8192-class row wants the sum's digits. */
static double sum_lanes_f64(const float *x, int n)
{
    double part[SUM_LANES] = {0.0}, sum = 0.0;
    int k = 0;
    for (; k + SUM_LANES <= n; k += SUM_LANES)
        for (int i = 0; i < SUM_LANES; i++)
            part[i] += x[k + i];
    for (; k < n; k++)
        sum += x[k];
    for (int i = 0; i < SUM_LANES; i++)
        sum += part[i];
    return sum;
}

/* The first index of the maximum of x[0..n), the maximum in *mx. */
static int lane_argmax(const float *x, int n, float *mx)
{
    float best = max_lanes(x, n);
    *mx = best;
    for (int k = 0; k < n; k++)
        if (x[k] == best)
            return k;
    return 0;
}

int engine_cpu_softmax_row(float *p, const float *z, int classes, int y, double *loss)
{
    float mx;
    int arg = lane_argmax(z, classes, &mx);
    for (int k = 0; k < classes; k++)
        p[k] = fast_expf(z[k] - mx);
    double sum = sum_lanes_f64(p, classes);
    float inv = (float)(1.0 / sum);
    for (int k = 0; k < classes; k++)
        p[k] *= inv;
    if (y >= 0 && y < classes)
        *loss = log(sum) - ((double)z[y] - (double)mx);
    return arg;
}

/* Row-wise softmax of rows [r0, r1) of a T x T block, keys [0, kend); causal
 * rows see keys <= their own index. Entries past what a row sees become 0. */
static void softmax_rows(float *P, int r0, int r1, int kend, int T, int causal)
{
    for (int i = r0; i < r1; i++) {
        float *p = P + (size_t)i * T;
        int n = causal ? i + 1 : kend;
        float mx = max_lanes(p, n);
        for (int j = 0; j < n; j++)
            p[j] = fast_expf(p[j] - mx);
        float inv = 1.0f / sum_lanes(p, n);
        for (int j = 0; j < n; j++)
            p[j] *= inv;
        for (int j = n; j < T; j++)
            p[j] = 0.0f;
    }
}

/* (sample, head) pairs [lo, hi): each writes its own P block and its head's
 * columns of out. */
static void attn_forward_heads(void *ctx, size_t lo, size_t hi)
{
    const seq_job *j = ctx;
    const int T = j->T, H = j->H, D = j->D, causal = j->causal;
    const int dh = D / H, ld = 3 * D;
    const float scale = 1.0f / sqrtf((float)dh);
    const float *qkv = j->x, *mask = j->mask;
    float *out = j->y, *P = j->P, *Pd = j->Pd;
    for (size_t bh = lo; bh < hi; bh++) {
        const int b = (int)(bh / (size_t)H), h = (int)(bh % (size_t)H);
        const float *q = qkv + (size_t)b * T * ld + h * dh;
        const float *k = q + D, *v = q + 2 * D;
        size_t pt = ((size_t)b * H + h) * T * T;
        float *p = P + pt;
        float *o = out + (size_t)b * T * D + h * dh;
        for (int r0 = 0; r0 < T; r0 += ATTN_BLOCK) {
            int r1 = r0 + ATTN_BLOCK < T ? r0 + ATTN_BLOCK : T;
            int kend = causal ? r1 : T;
            sgemm(0, 1, r1 - r0, kend, dh, scale, q + (size_t)r0 * ld, ld, k, ld, 0.0f,
                  p + (size_t)r0 * T, T);
            softmax_rows(p, r0, r1, kend, T, causal);
            const float *a = p;
            if (mask) {
                engine_cpu_mul(Pd + pt + (size_t)r0 * T, p + (size_t)r0 * T,
                               mask + pt + (size_t)r0 * T, (size_t)(r1 - r0) * T);
                a = Pd + pt;
            }
            sgemm(0, 0, r1 - r0, dh, kend, 1.0f, a + (size_t)r0 * T, T, v, ld, 0.0f,
                  o + (size_t)r0 * D, D);
        }
    }
}

void engine_cpu_attn_forward(float *out, float *P, float *Pd, const float *mask, const float *qkv,
                             int B, int T, int H, int D, int causal)
{
    seq_job j = {.y = out,
                 .x = qkv,
                 .D = D,
                 .causal = causal,
                 .B = B,
                 .T = T,
                 .H = H,
                 .P = P,
                 .Pd = Pd,
                 .mask = mask};
    core_par_for((size_t)B * H, 1, 1, attn_forward_heads, &j);
}

void engine_cpu_attn_backward(float *dqkv, const float *dout, const float *P, const float *Pd,
                              const float *mask, const float *qkv, float *scratch, int B, int T,
                              int H, int D, int causal)
{
    const int dh = D / H, ld = 3 * D;
    const float scale = 1.0f / sqrtf((float)dh);
    float *dS = scratch;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            size_t base = (size_t)b * T * ld + h * dh;
            const float *q = qkv + base, *k = q + D, *v = q + 2 * D;
            float *dq = dqkv + base, *dk = dq + D, *dv = dq + 2 * D;
            size_t pt = ((size_t)b * H + h) * T * T;
            const float *p = P + pt, *a = mask ? Pd + pt : p;
            const float *dO = dout + (size_t)b * T * D + h * dh;
            for (int r0 = 0; r0 < T; r0 += ATTN_BLOCK) {
                int r1 = r0 + ATTN_BLOCK < T ? r0 + ATTN_BLOCK : T;
                int kend = causal ? r1 : T;
                /* dA = dO V^T; for key blocks, dV = A^T dO over the rows that see them */
                sgemm(0, 1, r1 - r0, kend, dh, 1.0f, dO + (size_t)r0 * D, D, v, ld, 0.0f,
                      dS + (size_t)r0 * T, T);
                int rows_from = causal ? r0 : 0;
                sgemm(1, 0, r1 - r0, dh, T - rows_from, 1.0f, a + (size_t)rows_from * T + r0, T,
                      dO + (size_t)rows_from * D, D, 0.0f, dv + (size_t)r0 * ld, ld);
                for (int i = r0; i < r1; i++) {
                    float *d = dS + (size_t)i * T;
                    const float *pi = p + (size_t)i * T;
                    int n = causal ? i + 1 : kend;
                    if (mask)
                        engine_cpu_mul(d, d, mask + pt + (size_t)i * T, (size_t)n);
                    float dot = dot_lanes(pi, d, n);
                    for (int j = 0; j < n; j++)
                        d[j] = scale * pi[j] * (d[j] - dot);
                    for (int j = n; j < kend; j++)
                        d[j] = 0.0f;
                }
                /* dQ = dS K over the keys this block sees */
                sgemm(0, 0, r1 - r0, dh, kend, 1.0f, dS + (size_t)r0 * T, T, k, ld, 0.0f,
                      dq + (size_t)r0 * ld, ld);
            }
            /* dK = dS^T Q, per key block over the query rows that see it */
            for (int c0 = 0; c0 < T; c0 += ATTN_BLOCK) {
                int c1 = c0 + ATTN_BLOCK < T ? c0 + ATTN_BLOCK : T;
                int rows_from = causal ? c0 : 0;
                sgemm(1, 0, c1 - c0, dh, T - rows_from, 1.0f, dS + (size_t)rows_from * T + c0, T,
                      q + (size_t)rows_from * ld, ld, 0.0f, dk + (size_t)c0 * ld, ld);
            }
        }
}

void engine_cpu_lstm_cell_forward(float *g, const float *c_prev, float *c, float *h, int B, int H,
                                  size_t ldg, size_t ldh)
{
    for (int b = 0; b < B; b++) {
        float *gi = g + (size_t)b * ldg, *gf = gi + H, *gg = gi + 2 * H, *go = gi + 3 * H;
        const float *cp = c_prev ? c_prev + (size_t)b * ldh : NULL;
        float *cb = c + (size_t)b * ldh, *hb = h + (size_t)b * ldh;
        for (int j = 0; j < H; j++) {
            float i = fast_sigmoidf(gi[j]), f = fast_sigmoidf(gf[j]), gv = fast_tanhf(gg[j]),
                  o = fast_sigmoidf(go[j]);
            float cv = i * gv + (cp ? f * cp[j] : 0.0f);
            gi[j] = i;
            gf[j] = f;
            gg[j] = gv;
            go[j] = o;
            cb[j] = cv;
            hb[j] = o * fast_tanhf(cv);
        }
    }
}

void engine_cpu_lstm_cell_backward(float *dg, float *dc, const float *dh, const float *g,
                                   const float *c_prev, const float *c, int B, int H, size_t ldg,
                                   size_t ldh)
{
    for (int b = 0; b < B; b++) {
        const float *gi = g + (size_t)b * ldg, *gf = gi + H, *gg = gi + 2 * H, *go = gi + 3 * H;
        float *di = dg + (size_t)b * ldg, *df = di + H, *dgg = di + 2 * H, *dob = di + 3 * H;
        const float *cp = c_prev ? c_prev + (size_t)b * ldh : NULL;
        const float *cb = c + (size_t)b * ldh, *dhb = dh + (size_t)b * H;
        float *dcb = dc + (size_t)b * H;
        for (int j = 0; j < H; j++) {
            float tc = fast_tanhf(cb[j]);
            float i = gi[j], f = gf[j], gv = gg[j], o = go[j];
            float dcv = dcb[j] + dhb[j] * o * (1.0f - tc * tc);
            dob[j] = dhb[j] * tc * o * (1.0f - o);
            di[j] = dcv * gv * i * (1.0f - i);
            dgg[j] = dcv * i * (1.0f - gv * gv);
            df[j] = cp ? dcv * cp[j] * f * (1.0f - f) : 0.0f;
            dcb[j] = dcv * f;
        }
    }
}

void engine_cpu_gru_cell_forward(float *gx, const float *gh, const float *h_prev, float *h, int B,
                                 int H, size_t ldg, size_t ldh)
{
    for (int b = 0; b < B; b++) {
        float *xr = gx + (size_t)b * ldg, *xz = xr + H, *xn = xr + 2 * H;
        const float *hr = gh + (size_t)b * ldg, *hz = hr + H, *hn = hr + 2 * H;
        const float *hp = h_prev ? h_prev + (size_t)b * ldh : NULL;
        float *hb = h + (size_t)b * ldh;
        for (int j = 0; j < H; j++) {
            float r = fast_sigmoidf(xr[j] + hr[j]), z = fast_sigmoidf(xz[j] + hz[j]);
            float n = fast_tanhf(xn[j] + r * hn[j]);
            xr[j] = r;
            xz[j] = z;
            xn[j] = n;
            hb[j] = (1.0f - z) * n + (hp ? z * hp[j] : 0.0f);
        }
    }
}

void engine_cpu_gru_cell_backward(float *dgx, float *dgh, float *dh_prev, const float *dh,
                                  const float *gx, const float *gh, const float *h_prev, int B,
                                  int H, size_t ldg, size_t ldh)
{
    for (int b = 0; b < B; b++) {
        const float *r = gx + (size_t)b * ldg, *z = r + H, *n = r + 2 * H;
        const float *hn = gh + (size_t)b * ldg + 2 * H;
        float *dxr = dgx + (size_t)b * ldg, *dxz = dxr + H, *dxn = dxr + 2 * H;
        float *dhr = dgh + (size_t)b * ldg, *dhz = dhr + H, *dhn = dhr + 2 * H;
        const float *hp = h_prev ? h_prev + (size_t)b * ldh : NULL;
        const float *d = dh + (size_t)b * H;
        float *dp = dh_prev + (size_t)b * H;
        for (int j = 0; j < H; j++) {
            float hpv = hp ? hp[j] : 0.0f;
            float dn = d[j] * (1.0f - z[j]) * (1.0f - n[j] * n[j]);
            float dz = d[j] * (hpv - n[j]) * z[j] * (1.0f - z[j]);
            float dr = dn * hn[j] * r[j] * (1.0f - r[j]);
            dxr[j] = dhr[j] = dr;
            dxz[j] = dhz[j] = dz;
            dxn[j] = dn;
            dhn[j] = dn * r[j];
            dp[j] = d[j] * z[j];
        }
    }
}
