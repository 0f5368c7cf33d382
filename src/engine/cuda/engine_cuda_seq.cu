/*
 * engine/cuda/engine_cuda_seq.cu: the sequence-model ops of the CUDA engine
 * (embedding, position tables, layer norm, GELU, attention, RNN cells).
 * engine/cpu/engine_cpu_seq.c is the reference: same arguments, same
 * accumulate flags, NULL arguments and row strides, and gpu_check (tests/gpu)
 * compares every op with it.
 *
 * Every op is queued on the engine's one stream (g.stream) and reports a
 * launch failure through the sticky check_launch(). Reductions are
 * deterministic: no float atomics anywhere, so two runs of a step give the
 * same bits (the embedding gradient and the layer-norm weight gradients are
 * the two scatter/column sums; see their kernels).
 *
 * Attention is cuBLAS batched GEMMs (gemm_strided_batched: fp32, or bf16
 * tensor cores with ENGINE_CUDA_BF16) around fused row kernels: the scaled
 * scores Q K^T of all samples of one head in one call, one warp per query row
 * for the masked softmax (causal mask, dropout mask, statistics in fp32),
 * then A V. It materialises the (B, H, T, T) probabilities, as the CPU engine
 * does, since backward reads them; backward's dS needs B*H*T*T floats of
 * scratch (nn_attn_scratch_floats).
 */
#include "engine/cuda/engine_cuda_internal.h"

#include <math.h>

using namespace cuda_engine;

#define WARPS_PER_BLOCK (THREADS / 32)
#define EMBED_COLS      128 /* columns of one embedding-gradient block */
#define LN_ROWS         128 /* rows per partial sum of the layer-norm weight gradients */
#define LN_PARTIAL_MAX  (1u << 20)

/* Partial column sums of layernorm_backward (LN_PARTIAL_MAX floats), made
 * with the table so that no step allocates. */
static float *ln_partial;

/* Blocks of THREADS for one warp per row. */
static unsigned warp_grid(size_t rows)
{
    return grid_for(rows * 32);
}

__device__ static float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ static float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Grid-stride loop of whole warps over rows: r is the same in every lane. */
#define FOR_EACH_WARP_ROW(r, rows)                                                                 \
    for (size_t r = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32; r < (rows);              \
         r += (size_t)gridDim.x * blockDim.x / 32)

__device__ static float sigmoid(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

/* ---- embedding ---- */

/* The CPU engine's rule: ids outside [0, V) read row 0. */
__device__ static size_t token_row(float id, int V)
{
    return id >= 0.0f && id < (float)V ? (size_t)id : 0;
}

__global__ void k_embed_forward(float *y, const float *ids, const float *table, int V, int D,
                                size_t total)
{
    FOR_EACH(i, total)
    {
        size_t r = i / (size_t)D, j = i % (size_t)D;
        y[i] = table[token_row(ids[r], V) * D + j];
    }
}

static void cu_embed_forward(float *y, const float *ids, const float *table, size_t n, int V, int D)
{
    size_t total = n * (size_t)D;
    if (!total)
        return;
    k_embed_forward<<<grid_for(total), THREADS, 0, g.stream>>>(y, ids, table, V, D, total);
    check_launch("embed_forward");
}

/* Deterministic scatter-add without atomics: one block per (vocabulary row,
 * EMBED_COLS columns) scans every id in order, through shared-memory tiles,
 * and adds the rows of dy whose id is its own, in position order - the CPU
 * engine's order, starting from dtable's value. Costs V * n id comparisons:
 * fine for character and BPE vocabularies (V in the hundreds to thousands). */
__global__ void k_embed_backward(float *dtable, const float *dy, const float *ids, size_t n, int V,
                                 int D)
{
    __shared__ int tile[EMBED_COLS];
    const int v = blockIdx.x;
    const int j = blockIdx.y * EMBED_COLS + threadIdx.x;
    float acc = 0.0f;
    int hit = 0;
    for (size_t i0 = 0; i0 < n; i0 += EMBED_COLS) {
        size_t i = i0 + threadIdx.x;
        tile[threadIdx.x] = i < n ? (int)token_row(ids[i], V) : -1;
        __syncthreads();
        size_t m = n - i0 < EMBED_COLS ? n - i0 : EMBED_COLS;
        for (size_t k = 0; k < m; k++) {
            if (tile[k] != v)
                continue;
            if (!hit && j < D)
                acc = dtable[(size_t)v * D + j];
            hit = 1;
            if (j < D)
                acc += dy[(i0 + k) * D + j];
        }
        __syncthreads();
    }
    if (hit && j < D)
        dtable[(size_t)v * D + j] = acc;
}

static void cu_embed_backward(float *dtable, const float *dy, const float *ids, size_t n, int V,
                              int D)
{
    if (!n || V <= 0 || D <= 0)
        return;
    dim3 grid((unsigned)V, (unsigned)((D + EMBED_COLS - 1) / EMBED_COLS));
    k_embed_backward<<<grid, EMBED_COLS, 0, g.stream>>>(dtable, dy, ids, n, V, D);
    check_launch("embed_backward");
}

/* ---- elementwise ---- */

__global__ void k_add(float *y, const float *a, const float *b, size_t n)
{
    FOR_EACH(i, n)
    {
        y[i] = a[i] + b[i];
    }
}

static void cu_add(float *y, const float *a, const float *b, size_t n)
{
    if (!n)
        return;
    k_add<<<grid_for(n), THREADS, 0, g.stream>>>(y, a, b, n);
    check_launch("add");
}

__global__ void k_add_broadcast(float *y, const float *x, const float *p, size_t n, size_t total)
{
    FOR_EACH(i, total)
    {
        y[i] = x[i] + p[i % n];
    }
}

static void cu_add_broadcast(float *y, const float *x, const float *p, int outer, size_t n)
{
    size_t total = (size_t)outer * n;
    if (!total)
        return;
    k_add_broadcast<<<grid_for(total), THREADS, 0, g.stream>>>(y, x, p, n, total);
    check_launch("add_broadcast");
}

/* core/rng.c's generator: draw c (counting from 0) of (seed, stream) is
 * mix64(key + (c + 1) * golden); element i of the mask is draw r->counter + i,
 * exactly what the CPU engine's loop of core_rng_uniform takes. */
#define RNG_GOLDEN 0x9e3779b97f4a7c15ULL

__host__ __device__ static uint64_t rng_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

__global__ void k_dropout_rng(float *mask, size_t n, float p, float keep, uint64_t key,
                              uint64_t counter)
{
    FOR_EACH(i, n)
    {
        uint64_t v = rng_mix64(key + (counter + i + 1) * RNG_GOLDEN);
        float u = (float)(v >> 40) * (1.0f / 16777216.0f);
        mask[i] = u < p ? 0.0f : keep;
    }
}

static void cu_dropout_mask_rng(float *mask, size_t n, float p, core_rng *r)
{
    if (!n)
        return;
    uint64_t key = rng_mix64(r->seed + RNG_GOLDEN) ^ rng_mix64(r->stream * 0xd1b54a32d192ed03ULL);
    k_dropout_rng<<<grid_for(n), THREADS, 0, g.stream>>>(mask, n, p, 1.0f / (1.0f - p), key,
                                                         r->counter);
    check_launch("dropout_mask_rng");
    r->counter += n;
}

/* ---- layer norm (statistics in fp32, one warp per row) ---- */

__global__ void k_layernorm_forward(float *y, float *mean, float *rstd, const float *x,
                                    const float *w, const float *b, size_t rows, int C)
{
    const int lane = threadIdx.x & 31;
    FOR_EACH_WARP_ROW(r, rows)
    {
        const float *xr = x + r * C;
        float s = 0.0f;
        for (int i = lane; i < C; i += 32)
            s += xr[i];
        float m = warp_sum(s) / (float)C;
        float v = 0.0f;
        for (int i = lane; i < C; i += 32)
            v += (xr[i] - m) * (xr[i] - m);
        float rs = 1.0f / sqrtf(warp_sum(v) / (float)C + 1e-5f);
        float *yr = y + r * C;
        for (int i = lane; i < C; i += 32)
            yr[i] = (xr[i] - m) * rs * w[i] + b[i];
        if (lane == 0) {
            mean[r] = m;
            rstd[r] = rs;
        }
    }
}

static void cu_layernorm_forward(float *y, float *mean, float *rstd, const float *x, const float *w,
                                 const float *b, int rows, int C)
{
    if (rows <= 0 || C <= 0)
        return;
    k_layernorm_forward<<<warp_grid((size_t)rows), THREADS, 0, g.stream>>>(y, mean, rstd, x, w, b,
                                                                           (size_t)rows, C);
    check_launch("layernorm_forward");
}

/* dx += the input gradient, one warp per row. */
__global__ void k_layernorm_dx(float *dx, const float *dy, const float *x, const float *mean,
                               const float *rstd, const float *w, size_t rows, int C)
{
    const int lane = threadIdx.x & 31;
    FOR_EACH_WARP_ROW(r, rows)
    {
        const float *xr = x + r * C, *dr = dy + r * C;
        float m = mean[r], s = rstd[r];
        float sum_d = 0.0f, sum_dx = 0.0f;
        for (int i = lane; i < C; i += 32) {
            float dxh = dr[i] * w[i];
            sum_d += dxh;
            sum_dx += dxh * (xr[i] - m) * s;
        }
        sum_d = warp_sum(sum_d) / (float)C;
        sum_dx = warp_sum(sum_dx) / (float)C;
        float *o = dx + r * C;
        for (int i = lane; i < C; i += 32) {
            float xh = (xr[i] - m) * s;
            o[i] += s * (dr[i] * w[i] - sum_d - xh * sum_dx);
        }
    }
}

/* dw and db column sums, deterministic in two passes: block (32 columns,
 * chunk of rows) sums its rows in a fixed order into partial[chunk], then
 * one thread per column adds the chunks in order. */
__global__ void k_layernorm_partials(float *partial, const float *dy, const float *x,
                                     const float *mean, const float *rstd, size_t rows, int C,
                                     size_t rows_per_chunk)
{
    __shared__ float sw[WARPS_PER_BLOCK][33], sb[WARPS_PER_BLOCK][33];
    const int tx = threadIdx.x & 31, ty = threadIdx.x / 32;
    const int col = blockIdx.x * 32 + tx;
    const size_t chunk = blockIdx.y, r0 = chunk * rows_per_chunk;
    const size_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
    float aw = 0.0f, ab = 0.0f;
    if (col < C)
        for (size_t r = r0 + ty; r < r1; r += WARPS_PER_BLOCK) {
            float d = dy[r * C + col];
            aw += d * (x[r * C + col] - mean[r]) * rstd[r];
            ab += d;
        }
    sw[ty][tx] = aw;
    sb[ty][tx] = ab;
    __syncthreads();
    if (ty == 0 && col < C) {
        for (int k = 1; k < WARPS_PER_BLOCK; k++) {
            aw += sw[k][tx];
            ab += sb[k][tx];
        }
        partial[chunk * 2 * C + col] = aw;
        partial[chunk * 2 * C + C + col] = ab;
    }
}

__global__ void k_layernorm_finish(float *dw, float *db, const float *partial, size_t chunks, int C,
                                   int accumulate)
{
    FOR_EACH(col, (size_t)C)
    {
        float aw = 0.0f, ab = 0.0f;
        for (size_t k = 0; k < chunks; k++) {
            aw += partial[k * 2 * C + col];
            ab += partial[k * 2 * C + C + col];
        }
        dw[col] = accumulate ? dw[col] + aw : aw;
        db[col] = accumulate ? db[col] + ab : ab;
    }
}

static void cu_layernorm_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                                  const float *mean, const float *rstd, const float *w, int rows,
                                  int C, int accumulate)
{
    if (C <= 0)
        return;
    if (rows <= 0) {
        if (!accumulate) {
            check(cudaMemsetAsync(dw, 0, (size_t)C * sizeof *dw, g.stream), "layernorm_backward");
            check(cudaMemsetAsync(db, 0, (size_t)C * sizeof *db, g.stream), "layernorm_backward");
        }
        return;
    }
    if (!ln_partial) {
        die("layernorm_backward", "no partial-sum buffer");
        return;
    }
    size_t chunks = ((size_t)rows + LN_ROWS - 1) / LN_ROWS;
    size_t cap = LN_PARTIAL_MAX / (2 * (size_t)C);
    if (cap < 1) {
        die("layernorm_backward", "the row is wider than the partial-sum buffer");
        return;
    }
    if (chunks > cap)
        chunks = cap;
    if (chunks > 65535)
        chunks = 65535;
    size_t per = ((size_t)rows + chunks - 1) / chunks;
    chunks = ((size_t)rows + per - 1) / per;
    dim3 grid((unsigned)((C + 31) / 32), (unsigned)chunks);
    k_layernorm_partials<<<grid, THREADS, 0, g.stream>>>(ln_partial, dy, x, mean, rstd,
                                                         (size_t)rows, C, per);
    k_layernorm_finish<<<grid_for((size_t)C), THREADS, 0, g.stream>>>(dw, db, ln_partial, chunks, C,
                                                                      accumulate);
    if (dx)
        k_layernorm_dx<<<warp_grid((size_t)rows), THREADS, 0, g.stream>>>(dx, dy, x, mean, rstd, w,
                                                                          (size_t)rows, C);
    check_launch("layernorm_backward");
}

/* ---- GELU (tanh approximation) ---- */

#define GELU_K 0.7978845608028654f /* sqrt(2 / pi) */

__global__ void k_gelu_forward(float *y, const float *x, size_t n)
{
    FOR_EACH(i, n)
    {
        float v = x[i];
        y[i] = 0.5f * v * (1.0f + tanhf(GELU_K * (v + 0.044715f * v * v * v)));
    }
}

static void cu_gelu_forward(float *y, const float *x, size_t n)
{
    if (!n)
        return;
    k_gelu_forward<<<grid_for(n), THREADS, 0, g.stream>>>(y, x, n);
    check_launch("gelu_forward");
}

__global__ void k_gelu_backward(float *dx, const float *dy, const float *x, size_t n)
{
    FOR_EACH(i, n)
    {
        float v = x[i];
        float t = tanhf(GELU_K * (v + 0.044715f * v * v * v));
        float dt = (1.0f - t * t) * GELU_K * (1.0f + 3.0f * 0.044715f * v * v);
        dx[i] = dy[i] * (0.5f * (1.0f + t) + 0.5f * v * dt);
    }
}

static void cu_gelu_backward(float *dx, const float *dy, const float *x, size_t n)
{
    if (!n)
        return;
    k_gelu_backward<<<grid_for(n), THREADS, 0, g.stream>>>(dx, dy, x, n);
    check_launch("gelu_backward");
}

/* ---- attention ---- */

/* Softmax of score rows in place (rows = B*H*T, query i = row % T), keys past
 * what a row sees (causal: j > i) become 0; Pd = P * mask when mask is set. */
__global__ void k_attn_softmax(float *P, float *Pd, const float *mask, size_t rows, int T,
                               int causal)
{
    const int lane = threadIdx.x & 31;
    FOR_EACH_WARP_ROW(r, rows)
    {
        float *p = P + r * T;
        int n = causal ? (int)(r % (size_t)T) + 1 : T;
        float mx = -INFINITY;
        for (int j = lane; j < n; j += 32)
            mx = fmaxf(mx, p[j]);
        mx = warp_max(mx);
        float sum = 0.0f;
        for (int j = lane; j < n; j += 32) {
            float e = expf(p[j] - mx);
            p[j] = e;
            sum += e;
        }
        float inv = 1.0f / warp_sum(sum);
        for (int j = lane; j < T; j += 32) {
            float v = j < n ? p[j] * inv : 0.0f;
            p[j] = v;
            if (mask)
                Pd[r * T + j] = v * mask[r * T + j];
        }
    }
}

/* In place on dS (holding dA = dO V^T): dP = dA (* mask), then
 * dS = scale * P * (dP - sum_j P dP); 0 where the row does not see the key. */
__global__ void k_attn_softmax_back(float *dS, const float *P, const float *mask, size_t rows,
                                    int T, int causal, float scale)
{
    const int lane = threadIdx.x & 31;
    FOR_EACH_WARP_ROW(r, rows)
    {
        float *d = dS + r * T;
        const float *p = P + r * T;
        int n = causal ? (int)(r % (size_t)T) + 1 : T;
        float dot = 0.0f;
        for (int j = lane; j < n; j += 32) {
            float v = mask ? d[j] * mask[r * T + j] : d[j];
            d[j] = v;
            dot += p[j] * v;
        }
        dot = warp_sum(dot);
        for (int j = lane; j < T; j += 32)
            d[j] = j < n ? scale * p[j] * (d[j] - dot) : 0.0f;
    }
}

/* One head's view of the (B, T, 3D) qkv buffer and the (B, H, T, T) tables
 * for gemm_strided_batched over the B samples. */
struct head_view {
    long long qkv_stride, tt_stride, out_stride; /* floats between samples */
    size_t q, k, v, tt, out;                     /* offsets of head h */
};

static head_view head(int T, int H, int D, int h)
{
    int dh = D / H;
    head_view hv;
    hv.qkv_stride = (long long)T * 3 * D;
    hv.tt_stride = (long long)H * T * T;
    hv.out_stride = (long long)T * D;
    hv.q = (size_t)h * dh;
    hv.k = hv.q + (size_t)D;
    hv.v = hv.q + 2 * (size_t)D;
    hv.tt = (size_t)h * T * T;
    hv.out = (size_t)h * dh;
    return hv;
}

static void cu_attn_forward(float *out, float *P, float *Pd, const float *mask, const float *qkv,
                            int B, int T, int H, int D, int causal)
{
    if (B <= 0 || T <= 0)
        return;
    const int dh = D / H, ld = 3 * D;
    const float scale = 1.0f / sqrtf((float)dh);
    for (int h = 0; h < H; h++) {
        head_view v = head(T, H, D, h);
        gemm_strided_batched(0, 1, T, T, dh, scale, qkv + v.q, ld, v.qkv_stride, qkv + v.k, ld,
                             v.qkv_stride, 0.0f, P + v.tt, T, v.tt_stride, B);
    }
    size_t rows = (size_t)B * H * T;
    k_attn_softmax<<<warp_grid(rows), THREADS, 0, g.stream>>>(P, Pd, mask, rows, T, causal);
    check_launch("attn_forward softmax");
    const float *A = mask ? Pd : P;
    for (int h = 0; h < H; h++) {
        head_view v = head(T, H, D, h);
        gemm_strided_batched(0, 0, T, dh, T, 1.0f, A + v.tt, T, v.tt_stride, qkv + v.v, ld,
                             v.qkv_stride, 0.0f, out + v.out, D, v.out_stride, B);
    }
}

static void cu_attn_backward(float *dqkv, const float *dout, const float *P, const float *Pd,
                             const float *mask, const float *qkv, float *scratch, int B, int T,
                             int H, int D, int causal)
{
    if (B <= 0 || T <= 0)
        return;
    const int dh = D / H, ld = 3 * D;
    const float scale = 1.0f / sqrtf((float)dh);
    const float *A = mask ? Pd : P;
    float *dS = scratch;
    for (int h = 0; h < H; h++) {
        head_view v = head(T, H, D, h);
        /* dA = dO V^T, dV = A^T dO */
        gemm_strided_batched(0, 1, T, T, dh, 1.0f, dout + v.out, D, v.out_stride, qkv + v.v, ld,
                             v.qkv_stride, 0.0f, dS + v.tt, T, v.tt_stride, B);
        gemm_strided_batched(1, 0, T, dh, T, 1.0f, A + v.tt, T, v.tt_stride, dout + v.out, D,
                             v.out_stride, 0.0f, dqkv + v.v, ld, v.qkv_stride, B);
    }
    size_t rows = (size_t)B * H * T;
    k_attn_softmax_back<<<warp_grid(rows), THREADS, 0, g.stream>>>(dS, P, mask, rows, T, causal,
                                                                   scale);
    check_launch("attn_backward softmax");
    for (int h = 0; h < H; h++) {
        head_view v = head(T, H, D, h);
        /* dQ = dS K, dK = dS^T Q */
        gemm_strided_batched(0, 0, T, dh, T, 1.0f, dS + v.tt, T, v.tt_stride, qkv + v.k, ld,
                             v.qkv_stride, 0.0f, dqkv + v.q, ld, v.qkv_stride, B);
        gemm_strided_batched(1, 0, T, dh, T, 1.0f, dS + v.tt, T, v.tt_stride, qkv + v.q, ld,
                             v.qkv_stride, 0.0f, dqkv + v.k, ld, v.qkv_stride, B);
    }
}

/* ---- LSTM and GRU cells: one thread per (row, unit) ---- */

__global__ void k_lstm_forward(float *gt, const float *c_prev, float *c, float *h, int H,
                               size_t ldg, size_t ldh, size_t total)
{
    FOR_EACH(idx, total)
    {
        size_t b = idx / (size_t)H, j = idx % (size_t)H;
        float *gi = gt + b * ldg + j;
        float i = sigmoid(gi[0]), f = sigmoid(gi[H]), gv = tanhf(gi[2 * H]), o = sigmoid(gi[3 * H]);
        float cv = i * gv + (c_prev ? f * c_prev[b * ldh + j] : 0.0f);
        gi[0] = i;
        gi[H] = f;
        gi[2 * H] = gv;
        gi[3 * H] = o;
        c[b * ldh + j] = cv;
        h[b * ldh + j] = o * tanhf(cv);
    }
}

static void cu_lstm_cell_forward(float *gt, const float *c_prev, float *c, float *h, int B, int H,
                                 size_t ldg, size_t ldh)
{
    size_t total = (size_t)B * H;
    if (!total)
        return;
    k_lstm_forward<<<grid_for(total), THREADS, 0, g.stream>>>(gt, c_prev, c, h, H, ldg, ldh, total);
    check_launch("lstm_cell_forward");
}

__global__ void k_lstm_backward(float *dg, float *dc, const float *dh, const float *gt,
                                const float *c_prev, const float *c, int H, size_t ldg, size_t ldh,
                                size_t total)
{
    FOR_EACH(idx, total)
    {
        size_t b = idx / (size_t)H, j = idx % (size_t)H;
        const float *gi = gt + b * ldg + j;
        float *di = dg + b * ldg + j;
        float tc = tanhf(c[b * ldh + j]);
        float i = gi[0], f = gi[H], gv = gi[2 * H], o = gi[3 * H];
        float dhv = dh[idx];
        float dcv = dc[idx] + dhv * o * (1.0f - tc * tc);
        di[3 * H] = dhv * tc * o * (1.0f - o);
        di[0] = dcv * gv * i * (1.0f - i);
        di[2 * H] = dcv * i * (1.0f - gv * gv);
        di[H] = c_prev ? dcv * c_prev[b * ldh + j] * f * (1.0f - f) : 0.0f;
        dc[idx] = dcv * f;
    }
}

static void cu_lstm_cell_backward(float *dg, float *dc, const float *dh, const float *gt,
                                  const float *c_prev, const float *c, int B, int H, size_t ldg,
                                  size_t ldh)
{
    size_t total = (size_t)B * H;
    if (!total)
        return;
    k_lstm_backward<<<grid_for(total), THREADS, 0, g.stream>>>(dg, dc, dh, gt, c_prev, c, H, ldg,
                                                               ldh, total);
    check_launch("lstm_cell_backward");
}

__global__ void k_gru_forward(float *gx, const float *gh, const float *h_prev, float *h, int H,
                              size_t ldg, size_t ldh, size_t total)
{
    FOR_EACH(idx, total)
    {
        size_t b = idx / (size_t)H, j = idx % (size_t)H;
        float *x = gx + b * ldg + j;
        const float *hh = gh + b * ldg + j;
        float r = sigmoid(x[0] + hh[0]), z = sigmoid(x[H] + hh[H]);
        float n = tanhf(x[2 * H] + r * hh[2 * H]);
        x[0] = r;
        x[H] = z;
        x[2 * H] = n;
        h[b * ldh + j] = (1.0f - z) * n + (h_prev ? z * h_prev[b * ldh + j] : 0.0f);
    }
}

static void cu_gru_cell_forward(float *gx, const float *gh, const float *h_prev, float *h, int B,
                                int H, size_t ldg, size_t ldh)
{
    size_t total = (size_t)B * H;
    if (!total)
        return;
    k_gru_forward<<<grid_for(total), THREADS, 0, g.stream>>>(gx, gh, h_prev, h, H, ldg, ldh, total);
    check_launch("gru_cell_forward");
}

__global__ void k_gru_backward(float *dgx, float *dgh, float *dh_prev, const float *dh,
                               const float *gx, const float *gh, const float *h_prev, int H,
                               size_t ldg, size_t ldh, size_t total)
{
    FOR_EACH(idx, total)
    {
        size_t b = idx / (size_t)H, j = idx % (size_t)H;
        const float *x = gx + b * ldg + j;
        float r = x[0], z = x[H], n = x[2 * H];
        float hn = gh[b * ldg + j + 2 * H];
        float hpv = h_prev ? h_prev[b * ldh + j] : 0.0f;
        float d = dh[idx];
        float dn = d * (1.0f - z) * (1.0f - n * n);
        float dz = d * (hpv - n) * z * (1.0f - z);
        float dr = dn * hn * r * (1.0f - r);
        float *dx = dgx + b * ldg + j, *dhh = dgh + b * ldg + j;
        dx[0] = dhh[0] = dr;
        dx[H] = dhh[H] = dz;
        dx[2 * H] = dn;
        dhh[2 * H] = dn * r;
        dh_prev[idx] = d * z;
    }
}

static void cu_gru_cell_backward(float *dgx, float *dgh, float *dh_prev, const float *dh,
                                 const float *gx, const float *gh, const float *h_prev, int B,
                                 int H, size_t ldg, size_t ldh)
{
    size_t total = (size_t)B * H;
    if (!total)
        return;
    k_gru_backward<<<grid_for(total), THREADS, 0, g.stream>>>(dgx, dgh, dh_prev, dh, gx, gh, h_prev,
                                                              H, ldg, ldh, total);
    check_launch("gru_cell_backward");
}

void cuda_fill_seq_ops(engine_ops *t)
{
    if (!ln_partial)
        check(cudaMalloc((void **)&ln_partial, LN_PARTIAL_MAX * sizeof(float)),
              "allocating the layer-norm partial sums");
    t->embed_forward = cu_embed_forward;
    t->embed_backward = cu_embed_backward;
    t->add = cu_add;
    t->add_broadcast = cu_add_broadcast;
    t->dropout_mask_rng = cu_dropout_mask_rng;
    t->layernorm_forward = cu_layernorm_forward;
    t->layernorm_backward = cu_layernorm_backward;
    t->gelu_forward = cu_gelu_forward;
    t->gelu_backward = cu_gelu_backward;
    t->attn_forward = cu_attn_forward;
    t->attn_backward = cu_attn_backward;
    t->lstm_cell_forward = cu_lstm_cell_forward;
    t->lstm_cell_backward = cu_lstm_cell_backward;
    t->gru_cell_forward = cu_gru_cell_forward;
    t->gru_cell_backward = cu_gru_cell_backward;
}
