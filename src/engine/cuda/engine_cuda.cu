/*
 * engine/cuda/engine_cuda.cu: the CUDA engine - the operation table of
 * engine/engine.h on one GPU (see docs/GPU.md).
 *
 * Every buffer from alloc is device memory; every op is queued on ONE
 * non-blocking compute stream, in call order, so the layers' sequence of ops
 * needs no synchronization of its own. Ops that return a value (the loss, a
 * norm, the non-finite flag) and download wait for the stream.
 *
 * GEMM is cuBLAS on row-major matrices (C^T = B^T A^T in cuBLAS's
 * column-major terms); with ENGINE_CUDA_BF16 it runs on bf16 tensor cores
 * with fp32 inputs, outputs and accumulation (CUBLAS_COMPUTE_32F_FAST_16BF):
 * master weights, gradients and reductions stay fp32. Convolutions are the
 * CPU engine's im2col + one GEMM per batch, so the layouts (channel-major
 * activations, column matrix) are identical and the layers do not change.
 * Everything else is a grid-stride kernel per op. Reductions whose result
 * steers the update (sumsq: gradient clipping) are deterministic (fixed
 * partials summed in order), so every rank computes the same value.
 *
 * cuBLAS is opened with dlopen when the engine starts, not linked: its
 * libraries' initializers cost about 0.1 s at every process start, CPU runs
 * included (docs/PERFORMANCE.md, "Start-up").
 *
 * State: one device per process (one rank per GPU), so the stream, the cuBLAS
 * handle and the small result buffers are file-static, created once by
 * engine_cuda(). A CUDA error inside an op is a device fault: it is printed
 * with its op and the process aborts (the library's ops return no status).
 */
extern "C" {
#include "engine/engine.h"
#include "engine/engine_math.h"

#include "core/log.h"
#include "core/mem.h"
}

#include "engine/cuda/engine_cuda_internal.h"

#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RT_STR2(x) #x
#define RT_STR(x)  RT_STR2(x)

using namespace cuda_engine;

namespace cuda_engine
{
cublas_api cb;
engine_state g;
} // namespace cuda_engine

/* A device fault is sticky: the first one is kept for cu_status and every
 * later op is skipped; the trainer stops every rank collectively. */
void cuda_engine::die(const char *what, const char *detail)
{
    if (g.failed)
        return;
    g.failed = 1;
    snprintf(g.error, sizeof g.error, "cuda engine: %s failed: %s (device %d)", what, detail,
             g.device);
    core_log_error("%s", g.error);
}

static int cu_status(core_error *err)
{
    if (!g.failed)
        return 0;
    return core_error_set(err, "%s", g.error);
}

void cuda_engine::check(cudaError_t rc, const char *what)
{
    if (rc != cudaSuccess)
        die(what, cudaGetErrorString(rc));
}

void cuda_engine::check_launch(const char *what)
{
    check(cudaGetLastError(), what);
}

void cuda_engine::check_blas(cublasStatus_t rc, const char *what)
{
    if (rc != CUBLAS_STATUS_SUCCESS)
        die(what, cb.status_string(rc));
}

template <typename F> static int find_symbol(F *fn, const char *name, core_error *err)
{
    *fn = (F)dlsym(cb.lib, name);
    if (!*fn)
        return core_error_set(err, "cuda: cuBLAS has no %s: %s", name, dlerror());
    return 0;
}

void *cuda_engine::open_library(const char *soname, const char *const *dirs, int n)
{
    void *lib = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    for (int i = 0; !lib && i < n; i++) {
        char path[4096];
        if (dirs[i] && snprintf(path, sizeof path, "%s/%s", dirs[i], soname) < (int)sizeof path)
            lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    }
    return lib;
}

/* libcublas.so.<major of the headers>, from the loader's path (the build's
 * RUNPATH names the toolkit) or the toolkit directory CMake found. */
static int load_cublas(core_error *err)
{
    if (cb.lib)
        return 0;
    const char *soname = "libcublas.so." RT_STR(CUBLAS_VER_MAJOR);
#ifdef RINGTRAIN_CUDA_LIBDIR
    const char *dirs[] = {RINGTRAIN_CUDA_LIBDIR};
#else
    const char *dirs[] = {NULL};
#endif
    cb.lib = open_library(soname, dirs, 1);
    if (!cb.lib)
        return core_error_set(err,
                              "cuda: cannot load cuBLAS (%s): %s; install the CUDA toolkit's "
                              "cuBLAS or add its directory to LD_LIBRARY_PATH",
                              soname, dlerror());
    if (find_symbol(&cb.create, "cublasCreate_v2", err) ||
        find_symbol(&cb.set_stream, "cublasSetStream_v2", err) ||
        find_symbol(&cb.set_math_mode, "cublasSetMathMode", err) ||
        find_symbol(&cb.sgemm, "cublasSgemm_v2", err) ||
        find_symbol(&cb.gemm_ex, "cublasGemmEx", err) ||
        find_symbol(&cb.sgemm_strided_batched, "cublasSgemmStridedBatched", err) ||
        find_symbol(&cb.gemm_strided_batched_ex, "cublasGemmStridedBatchedEx", err) ||
        find_symbol(&cb.status_string, "cublasGetStatusString", err)) {
        dlclose(cb.lib);
        cb.lib = NULL;
        return -1;
    }
    return 0;
}

unsigned cuda_engine::grid_for(size_t n)
{
    size_t b = (n + THREADS - 1) / THREADS;
    if (b < 1)
        b = 1;
    return b > (1u << 20) ? (1u << 20) : (unsigned)b;
}

/* ---- memory ---- */

static void *cu_alloc(size_t bytes, const char *what, core_error *err)
{
    void *p = NULL;
    size_t n = bytes ? bytes : 16;
    cudaError_t rc = cudaMalloc(&p, n);
    if (rc != cudaSuccess) {
        char h[32];
        core_error_set(err, "cuda: cannot allocate %s of GPU memory for %s on device %d: %s",
                       core_format_bytes((double)n, h, sizeof h), what, g.device,
                       cudaGetErrorString(rc));
        return NULL;
    }
    check(cudaMemsetAsync(p, 0, n, g.stream), "zeroing a new allocation");
    check(cudaStreamSynchronize(g.stream), "zeroing a new allocation");
    return p;
}

static void cu_free(void *p)
{
    if (p)
        cudaFree(p);
}

static void cu_zero(float *x, size_t n)
{
    if (n)
        check(cudaMemsetAsync(x, 0, n * sizeof *x, g.stream), "zero");
}

static void cu_copy(float *dst, const float *src, size_t n)
{
    if (dst != src && n)
        check(cudaMemcpyAsync(dst, src, n * sizeof *dst, cudaMemcpyDeviceToDevice, g.stream),
              "copy");
}

static void cu_upload(void *dst, const void *src, size_t bytes)
{
    if (bytes)
        check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, g.stream), "upload");
}

static void cu_download(void *dst, const void *src, size_t bytes)
{
    if (bytes)
        check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, g.stream), "download");
    check(cudaStreamSynchronize(g.stream), "download");
}

static void cu_sync(void)
{
    check(cudaStreamSynchronize(g.stream), "sync");
}

static void *cu_stream(void)
{
    return (void *)g.stream;
}

/* ---- GEMM ---- */

static void cu_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                    int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    cublasOperation_t ob = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t oa = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (g.flags & ENGINE_CUDA_BF16) {
        check_blas(cb.gemm_ex(g.blas, ob, oa, N, M, K, &alpha, B, CUDA_R_32F, ldb, A, CUDA_R_32F,
                              lda, &beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F_FAST_16BF,
                              CUBLAS_GEMM_DEFAULT),
                   "cublasGemmEx (bf16)");
        return;
    }
    check_blas(cb.sgemm(g.blas, ob, oa, N, M, K, &alpha, B, ldb, A, lda, &beta, C, ldc),
               "cublasSgemm");
}

void cuda_engine::gemm_strided_batched(int trans_a, int trans_b, int M, int N, int K, float alpha,
                                       const float *A, int lda, long long stride_a, const float *B,
                                       int ldb, long long stride_b, float beta, float *C, int ldc,
                                       long long stride_c, int count)
{
    cublasOperation_t ob = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t oa = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (g.flags & ENGINE_CUDA_BF16) {
        check_blas(cb.gemm_strided_batched_ex(g.blas, ob, oa, N, M, K, &alpha, B, CUDA_R_32F, ldb,
                                              stride_b, A, CUDA_R_32F, lda, stride_a, &beta, C,
                                              CUDA_R_32F, ldc, stride_c, count,
                                              CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_GEMM_DEFAULT),
                   "cublasGemmStridedBatchedEx (bf16)");
        return;
    }
    check_blas(cb.sgemm_strided_batched(g.blas, ob, oa, N, M, K, &alpha, B, ldb, stride_b, A, lda,
                                        stride_a, &beta, C, ldc, stride_c, count),
               "cublasSgemmStridedBatched");
}

/* ---- convolution: im2col / col2im, same layout as the CPU engine ---- */

__global__ void k_im2col(const float *x, engine_conv_geom geo, size_t ncols, size_t total,
                         float *cols)
{
    const size_t plane = (size_t)geo.OH * geo.OW;
    FOR_EACH(idx, total)
    {
        size_t row = idx / ncols, col = idx % ncols;
        int kj = (int)(row % geo.K), ki = (int)((row / geo.K) % geo.K);
        int c = (int)(row / ((size_t)geo.K * geo.K));
        size_t n = col / plane, rem = col % plane;
        int oh = (int)(rem / geo.OW), ow = (int)(rem % geo.OW);
        int ih = oh * geo.stride - geo.pad_h + ki, iw = ow * geo.stride - geo.pad_w + kj;
        float v = 0.0f;
        if (ih >= 0 && ih < geo.H && iw >= 0 && iw < geo.W)
            v = x[n * geo.n_stride + (size_t)c * geo.c_stride + (size_t)ih * geo.W + iw];
        cols[idx] = v;
    }
}

static void cu_im2col(const float *x, int batch, const engine_conv_geom *geo, float *cols)
{
    size_t ncols = (size_t)batch * geo->OH * geo->OW;
    size_t total = (size_t)geo->C * geo->K * geo->K * ncols;
    if (!total)
        return;
    k_im2col<<<grid_for(total), THREADS, 0, g.stream>>>(x, *geo, ncols, total, cols);
    check_launch("im2col");
}

/* One thread per input pixel gathers every column entry that read it:
 * deterministic, no atomics. */
__global__ void k_col2im(const float *cols, engine_conv_geom geo, size_t ncols, size_t total,
                         float *dx)
{
    const size_t plane = (size_t)geo.OH * geo.OW, hw = (size_t)geo.H * geo.W;
    const int K = geo.K, s = geo.stride;
    FOR_EACH(idx, total)
    {
        size_t n = idx / ((size_t)geo.C * hw);
        int c = (int)((idx / hw) % geo.C);
        int h = (int)((idx % hw) / geo.W), w = (int)(idx % geo.W);
        float sum = 0.0f;
        for (int ki = 0; ki < K; ki++) {
            int oh_s = h + geo.pad_h - ki;
            if (oh_s < 0 || oh_s % s)
                continue;
            int oh = oh_s / s;
            if (oh >= geo.OH)
                continue;
            for (int kj = 0; kj < K; kj++) {
                int ow_s = w + geo.pad_w - kj;
                if (ow_s < 0 || ow_s % s)
                    continue;
                int ow = ow_s / s;
                if (ow >= geo.OW)
                    continue;
                size_t row = ((size_t)c * K + ki) * K + kj;
                sum += cols[row * ncols + n * plane + (size_t)oh * geo.OW + ow];
            }
        }
        dx[n * geo.n_stride + (size_t)c * geo.c_stride + (size_t)h * geo.W + w] += sum;
    }
}

static void cu_col2im(float *cols, int batch, const engine_conv_geom *geo, float *dx)
{
    size_t ncols = (size_t)batch * geo->OH * geo->OW;
    size_t total = (size_t)batch * geo->C * geo->H * geo->W;
    if (!total)
        return;
    k_col2im<<<grid_for(total), THREADS, 0, g.stream>>>(cols, *geo, ncols, total, dx);
    check_launch("col2im");
}

/* ---- activations and biases ---- */

__device__ static float act_apply(float v, engine_act act)
{
    switch (act) {
    case ENGINE_ACT_RELU:
        return v > 0.0f ? v : 0.0f;
    case ENGINE_ACT_TANH:
        return tanhf(v);
    case ENGINE_ACT_SIGMOID:
        return 1.0f / (1.0f + expf(-v));
    default:
        return v;
    }
}

__device__ static float act_grad(float dy, float y, engine_act act)
{
    switch (act) {
    case ENGINE_ACT_RELU:
        return y > 0.0f ? dy : 0.0f;
    case ENGINE_ACT_TANH:
        return dy * (1.0f - y * y);
    case ENGINE_ACT_SIGMOID:
        return dy * y * (1.0f - y);
    default:
        return dy;
    }
}

__global__ void k_bias_act(float *y, const float *bias, int channels, size_t inner, size_t total,
                           engine_act act)
{
    FOR_EACH(i, total)
    {
        float v = y[i];
        if (bias)
            v += bias[(i / inner) % (size_t)channels];
        y[i] = act_apply(v, act);
    }
}

static void cu_bias_act_forward(float *y, const float *bias, int outer, int channels, int inner,
                                engine_act act)
{
    size_t total = (size_t)outer * channels * inner;
    if (!total || (!bias && act == ENGINE_ACT_NONE))
        return;
    k_bias_act<<<grid_for(total), THREADS, 0, g.stream>>>(y, bias, channels, (size_t)inner, total,
                                                          act);
    check_launch("bias_act_forward");
}

__global__ void k_bias_fill(float *y, const float *bias, int channels, size_t inner, size_t total)
{
    FOR_EACH(i, total)
    {
        y[i] = bias[(i / inner) % (size_t)channels];
    }
}

static void cu_bias_fill(float *y, const float *bias, int outer, int channels, int inner)
{
    size_t total = (size_t)outer * channels * inner;
    if (!total)
        return;
    k_bias_fill<<<grid_for(total), THREADS, 0, g.stream>>>(y, bias, channels, (size_t)inner, total);
    check_launch("bias_fill");
}

__global__ void k_act(float *y, const float *x, size_t n, engine_act act)
{
    FOR_EACH(i, n)
    {
        y[i] = act_apply(x[i], act);
    }
}

static void cu_act_forward(float *y, const float *x, size_t n, engine_act act)
{
    if (!n)
        return;
    k_act<<<grid_for(n), THREADS, 0, g.stream>>>(y, x, n, act);
    check_launch("act_forward");
}

__global__ void k_act_back(float *dx, const float *dy, const float *y, size_t n, engine_act act)
{
    FOR_EACH(i, n)
    {
        dx[i] = act_grad(dy[i], y[i], act);
    }
}

static void cu_act_backward(float *dx, const float *dy, const float *y, size_t n, engine_act act)
{
    if (!n)
        return;
    k_act_back<<<grid_for(n), THREADS, 0, g.stream>>>(dx, dy, y, n, act);
    check_launch("act_backward");
}

__device__ static double block_sum(double v)
{
    __shared__ double sh[THREADS];
    sh[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s)
            sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}

/* One block per channel; the sum over (outer, inner) in double. */
__global__ void k_bias_back(float *dbias, const float *dy, int outer, int channels, int inner,
                            int accumulate)
{
    int c = blockIdx.x;
    size_t m = (size_t)outer * inner;
    double sum = 0.0;
    for (size_t j = threadIdx.x; j < m; j += blockDim.x) {
        size_t o = j / (size_t)inner, i = j % (size_t)inner;
        sum += dy[(o * channels + c) * inner + i];
    }
    sum = block_sum(sum);
    if (threadIdx.x == 0)
        dbias[c] = accumulate ? dbias[c] + (float)sum : (float)sum;
}

static void cu_bias_backward(float *dbias, const float *dy, int outer, int channels, int inner,
                             int accumulate)
{
    if (channels <= 0)
        return;
    k_bias_back<<<channels, THREADS, 0, g.stream>>>(dbias, dy, outer, channels, inner, accumulate);
    check_launch("bias_backward");
}

/* ---- pooling ---- */

/* Ties keep the first maximum in window order, as the CPU engine does. */
__global__ void k_maxpool(float *y, int32_t *argmax, const float *x, size_t total, int H, int W,
                          int K, int S, int OH, int OW, int relu)
{
    FOR_EACH(i, total)
    {
        size_t p = i / ((size_t)OH * OW);
        int oh = (int)((i / OW) % OH), ow = (int)(i % OW);
        float bv;
        argmax[i] = engine_max_window(x + p * H * W, oh, ow, K, S, W, &bv);
        y[i] = relu && !(bv > 0.0f) ? 0.0f : bv;
    }
}

static void cu_maxpool_forward(float *y, int32_t *argmax, const float *x, int planes, int H, int W,
                               int K, int S, int OH, int OW, int relu)
{
    size_t total = (size_t)planes * OH * OW;
    if (!total)
        return;
    k_maxpool<<<grid_for(total), THREADS, 0, g.stream>>>(y, argmax, x, total, H, W, K, S, OH, OW,
                                                         relu);
    check_launch("maxpool_forward");
}

/* relu_y (may be NULL): the pool's output; an output passes gradient only
 * where it is > 0 (the folded backward of a relu before the pool). */
__global__ void k_maxpool_back(float *dx, const float *dy, const int32_t *argmax,
                               const float *relu_y, size_t total, int H, int W, int OH, int OW)
{
    FOR_EACH(i, total)
    {
        if (relu_y && !(relu_y[i] > 0.0f))
            continue;
        size_t p = i / ((size_t)OH * OW);
        atomicAdd(dx + p * H * W + argmax[i], dy[i]);
    }
}

static void cu_maxpool_backward(float *dx, const float *dy, const int32_t *argmax,
                                const float *relu_y, int planes, int H, int W, int K, int S, int OH,
                                int OW)
{
    (void)K;
    (void)S;
    cu_zero(dx, (size_t)planes * H * W);
    size_t total = (size_t)planes * OH * OW;
    if (!total)
        return;
    k_maxpool_back<<<grid_for(total), THREADS, 0, g.stream>>>(dx, dy, argmax, relu_y, total, H, W,
                                                              OH, OW);
    check_launch("maxpool_backward");
}

__global__ void k_avgpool(float *y, const float *x, size_t total, int H, int W, int K, int S,
                          int OH, int OW)
{
    const float scale = 1.0f / (float)(K * K);
    FOR_EACH(i, total)
    {
        size_t p = i / ((size_t)OH * OW);
        int oh = (int)((i / OW) % OH), ow = (int)(i % OW);
        const float *in = x + p * H * W;
        float sum = 0.0f;
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++)
                sum += in[(oh * S + ki) * W + ow * S + kj];
        y[i] = sum * scale;
    }
}

static void cu_avgpool_forward(float *y, const float *x, int planes, int H, int W, int K, int S,
                               int OH, int OW)
{
    size_t total = (size_t)planes * OH * OW;
    if (!total)
        return;
    k_avgpool<<<grid_for(total), THREADS, 0, g.stream>>>(y, x, total, H, W, K, S, OH, OW);
    check_launch("avgpool_forward");
}

/* One thread per input pixel gathers the windows that cover it. */
__global__ void k_avgpool_back(float *dx, const float *dy, size_t total, int H, int W, int K, int S,
                               int OH, int OW)
{
    const float scale = 1.0f / (float)(K * K);
    FOR_EACH(i, total)
    {
        size_t p = i / ((size_t)H * W);
        int h = (int)((i / W) % H), w = (int)(i % W);
        const float *d = dy + p * OH * OW;
        float sum = 0.0f;
        for (int ki = 0; ki < K; ki++) {
            int oh_s = h - ki;
            if (oh_s < 0 || oh_s % S || oh_s / S >= OH)
                continue;
            for (int kj = 0; kj < K; kj++) {
                int ow_s = w - kj;
                if (ow_s < 0 || ow_s % S || ow_s / S >= OW)
                    continue;
                sum += d[(oh_s / S) * OW + ow_s / S] * scale;
            }
        }
        dx[i] = sum;
    }
}

static void cu_avgpool_backward(float *dx, const float *dy, int planes, int H, int W, int K, int S,
                                int OH, int OW)
{
    size_t total = (size_t)planes * H * W;
    if (!total)
        return;
    k_avgpool_back<<<grid_for(total), THREADS, 0, g.stream>>>(dx, dy, total, H, W, K, S, OH, OW);
    check_launch("avgpool_backward");
}

/* ---- layout transposes ---- */

/* to_nc = 1: dst (N, C, S) from src (C, N, S); 0: the reverse. Indexed by dst. */
__global__ void k_transpose_cn(float *dst, const float *src, int C, int N, size_t S, size_t total,
                               int to_nc)
{
    FOR_EACH(i, total)
    {
        size_t s = i % S, a = (i / S);
        if (to_nc) {
            size_t c = a % C, n = a / C;
            dst[i] = src[(c * N + n) * S + s];
        } else {
            size_t n = a % N, c = a / N;
            dst[i] = src[(n * C + c) * S + s];
        }
    }
}

static void cu_cn_to_nc(float *dst, const float *src, int C, int N, size_t S)
{
    size_t total = (size_t)C * N * S;
    if (!total)
        return;
    k_transpose_cn<<<grid_for(total), THREADS, 0, g.stream>>>(dst, src, C, N, S, total, 1);
    check_launch("cn_to_nc");
}

static void cu_nc_to_cn(float *dst, const float *src, int C, int N, size_t S)
{
    size_t total = (size_t)C * N * S;
    if (!total)
        return;
    k_transpose_cn<<<grid_for(total), THREADS, 0, g.stream>>>(dst, src, C, N, S, total, 0);
    check_launch("nc_to_cn");
}

/* ---- softmax cross-entropy ---- */

/* One thread per row, the CPU engine's arithmetic: p = expf(z - max) scaled
 * by 1 / (double sum), the loss as log-sum-exp in double. */
__global__ void k_softmax_xent(float *probs, const float *logits, const int32_t *labels, int batch,
                               int classes, double *acc)
{
    FOR_EACH(b, (size_t)batch)
    {
        int y = labels ? labels[b] : -1;
        double loss = 0.0;
        int arg = engine_softmax_row(probs + b * classes, logits + b * classes, classes, y, &loss);
        if (y < 0 || y >= classes)
            continue;
        atomicAdd(acc, loss);
        if (arg == y && isfinite(loss)) /* NaN outputs are never right */
            atomicAdd((unsigned long long *)(acc + 1), 1ULL);
    }
}

static double cu_softmax_xent_forward(float *probs, const float *logits, const int32_t *labels,
                                      int batch, int classes, long *correct)
{
    if (batch <= 0)
        return 0.0;
    if (labels)
        check(cudaMemsetAsync(g.acc, 0, 2 * sizeof(double), g.stream), "softmax_xent_forward");
    k_softmax_xent<<<grid_for((size_t)batch), THREADS, 0, g.stream>>>(probs, logits, labels, batch,
                                                                      classes, g.acc);
    check_launch("softmax_xent_forward");
    if (!labels)
        return 0.0;
    cu_download(g.host, g.acc, 2 * sizeof(double));
    unsigned long long hits;
    memcpy(&hits, g.host + 1, sizeof hits);
    if (correct)
        *correct += (long)hits;
    return g.host[0];
}

__global__ void k_xent_back(float *dlogits, const int32_t *labels, int batch, int classes)
{
    FOR_EACH(b, (size_t)batch)
    {
        int y = labels[b];
        if (y >= 0 && y < classes)
            dlogits[b * classes + y] -= 1.0f;
    }
}

static void cu_softmax_xent_backward(float *dlogits, const float *probs, const int32_t *labels,
                                     int batch, int classes)
{
    cu_copy(dlogits, probs, (size_t)batch * classes);
    if (!labels || batch <= 0)
        return;
    k_xent_back<<<grid_for((size_t)batch), THREADS, 0, g.stream>>>(dlogits, labels, batch, classes);
    check_launch("softmax_xent_backward");
}

/* ---- elementwise, reductions, dropout ---- */

__global__ void k_scale(float *x, size_t n, float a)
{
    FOR_EACH(i, n)
    {
        x[i] *= a;
    }
}

static void cu_scale(float *x, size_t n, float a)
{
    if (!n || a == 1.0f)
        return;
    k_scale<<<grid_for(n), THREADS, 0, g.stream>>>(x, n, a);
    check_launch("scale");
}

__global__ void k_mul(float *y, const float *a, const float *b, size_t n)
{
    FOR_EACH(i, n)
    {
        y[i] = a[i] * b[i];
    }
}

static void cu_mul(float *y, const float *a, const float *b, size_t n)
{
    if (!n)
        return;
    k_mul<<<grid_for(n), THREADS, 0, g.stream>>>(y, a, b, n);
    check_launch("mul");
}

/* core/rng.c's generator, element i = draw i of (seed, stream). */
__host__ __device__ static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

__global__ void k_dropout_mask(float *mask, size_t n, float p, float keep, uint64_t key)
{
    FOR_EACH(i, n)
    {
        uint64_t v = mix64(key + (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ULL);
        float u = (float)(v >> 40) * (1.0f / 16777216.0f);
        mask[i] = u >= p ? keep : 0.0f;
    }
}

static void cu_dropout_mask(float *mask, size_t n, float p, uint64_t seed, uint64_t stream)
{
    if (!n)
        return;
    uint64_t key = mix64(seed + 0x9e3779b97f4a7c15ULL) ^ mix64(stream * 0xd1b54a32d192ed03ULL);
    k_dropout_mask<<<grid_for(n), THREADS, 0, g.stream>>>(mask, n, p, 1.0f / (1.0f - p), key);
    check_launch("dropout_mask");
}

/* Deterministic: PARTIALS fixed blocks, then one block sums them in order. */
__global__ void k_sumsq_partial(const float *x, size_t n, double *partial)
{
    double s = 0.0;
    FOR_EACH(i, n)
    {
        s += (double)x[i] * (double)x[i];
    }
    s = block_sum(s);
    if (threadIdx.x == 0)
        partial[blockIdx.x] = s;
}

__global__ void k_sum_partials(const double *partial, int count, double *out)
{
    double s = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x)
        s += partial[i];
    s = block_sum(s);
    if (threadIdx.x == 0)
        *out = s;
}

static double cu_sumsq(const float *x, size_t n)
{
    if (!n)
        return 0.0;
    k_sumsq_partial<<<PARTIALS, THREADS, 0, g.stream>>>(x, n, g.partial);
    k_sum_partials<<<1, THREADS, 0, g.stream>>>(g.partial, PARTIALS, g.acc);
    check_launch("sumsq");
    cu_download(g.host, g.acc, sizeof(double));
    return g.host[0];
}

__global__ void k_nonfinite(const float *x, size_t n, int *flag)
{
    FOR_EACH(i, n)
    if (!isfinite(x[i]))
        *flag = 1;
}

static int cu_nonfinite(const float *x, size_t n)
{
    if (!n)
        return 0;
    check(cudaMemsetAsync(g.flag, 0, sizeof(int), g.stream), "nonfinite");
    k_nonfinite<<<grid_for(n), THREADS, 0, g.stream>>>(x, n, g.flag);
    check_launch("nonfinite");
    int f = 0;
    cu_download(&f, g.flag, sizeof f);
    return f;
}

/* ---- optimizer updates (engine.h; optim/optim.c is the reference) ---- */

__global__ void k_sgd(float *p, const float *gr, float *buf, size_t n, float lr, float mu, float wd,
                      int nesterov)
{
    FOR_EACH(i, n)
    {
        engine_sgd_one(p, gr, buf, i, lr, mu, wd, nesterov);
    }
}

static void cu_sgd_update(float *p, const float *gr, float *buf, size_t n, float lr, float mu,
                          float wd, int nesterov)
{
    if (!n)
        return;
    k_sgd<<<grid_for(n), THREADS, 0, g.stream>>>(p, gr, buf, n, lr, mu, wd, nesterov);
    check_launch("sgd_update");
}

__global__ void k_adam(float *p, const float *gr, float *m, float *v, size_t n, float decay,
                       float step_size, float bc2_sqrt, float b1, float b2, float eps, float wd)
{
    const float c1 = 1.0f - b1, c2 = 1.0f - b2;
    FOR_EACH(i, n)
    {
        float pi = p[i] * decay;
        float d = gr[i] + wd * pi;
        float mi = m[i] + c1 * (d - m[i]);
        float vi = b2 * v[i] + c2 * (d * d);
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * (mi / (sqrtf(vi) / bc2_sqrt + eps));
    }
}

static void cu_adam_update(float *p, const float *gr, float *m, float *v, size_t n, float decay,
                           float step_size, float bc2_sqrt, float b1, float b2, float eps, float wd)
{
    if (!n)
        return;
    k_adam<<<grid_for(n), THREADS, 0, g.stream>>>(p, gr, m, v, n, decay, step_size, bc2_sqrt, b1,
                                                  b2, eps, wd);
    check_launch("adam_update");
}

/* Filled by name in fill_table(), so ops appended to engine_ops by other
 * work stay NULL instead of shifting (C++17 has no designated initializers). */
engine_ops cuda_engine::cuda_ops;

static void fill_table(void)
{
    cuda_ops.alloc = cu_alloc;
    cuda_ops.free = cu_free;
    cuda_ops.zero = cu_zero;
    cuda_ops.copy = cu_copy;
    cuda_ops.gemm = cu_gemm;
    cuda_ops.im2col = cu_im2col;
    cuda_ops.col2im = cu_col2im;
    cuda_ops.bias_act_forward = cu_bias_act_forward;
    cuda_ops.bias_fill = cu_bias_fill;
    cuda_ops.act_forward = cu_act_forward;
    cuda_ops.act_backward = cu_act_backward;
    cuda_ops.bias_backward = cu_bias_backward;
    cuda_ops.maxpool_forward = cu_maxpool_forward;
    cuda_ops.maxpool_backward = cu_maxpool_backward;
    cuda_ops.avgpool_forward = cu_avgpool_forward;
    cuda_ops.avgpool_backward = cu_avgpool_backward;
    cuda_ops.cn_to_nc = cu_cn_to_nc;
    cuda_ops.nc_to_cn = cu_nc_to_cn;
    cuda_ops.softmax_xent_forward = cu_softmax_xent_forward;
    cuda_ops.softmax_xent_backward = cu_softmax_xent_backward;
    cuda_ops.device_memory = 1;
    cuda_ops.upload = cu_upload;
    cuda_ops.download = cu_download;
    cuda_ops.sync = cu_sync;
    cuda_ops.stream = cu_stream;
    cuda_ops.scale = cu_scale;
    cuda_ops.mul = cu_mul;
    cuda_ops.dropout_mask = cu_dropout_mask;
    cuda_ops.sumsq = cu_sumsq;
    cuda_ops.nonfinite = cu_nonfinite;
    cuda_ops.sgd_update = cu_sgd_update;
    cuda_ops.adam_update = cu_adam_update;
    cuda_ops.status = cu_status;
    cuda_fill_seq_ops(&cuda_ops);
}

static int init_state(int device, int flags, core_error *err)
{
    cudaError_t rc = cudaSetDevice(device);
    if (rc == cudaSuccess)
        rc = cudaStreamCreateWithFlags(&g.stream, cudaStreamNonBlocking);
    if (rc != cudaSuccess)
        return core_error_set(err, "cuda: cannot use device %d: %s", device,
                              cudaGetErrorString(rc));
    cublasStatus_t brc = cb.create(&g.blas);
    if (brc == CUBLAS_STATUS_SUCCESS)
        brc = cb.set_stream(g.blas, g.stream);
    if (brc == CUBLAS_STATUS_SUCCESS)
        brc = cb.set_math_mode(g.blas, (flags & ENGINE_CUDA_TF32) ? CUBLAS_TF32_TENSOR_OP_MATH
                                                                  : CUBLAS_DEFAULT_MATH);
    if (brc != CUBLAS_STATUS_SUCCESS)
        return core_error_set(err, "cuda: cuBLAS initialization failed on device %d: %s", device,
                              cb.status_string(brc));
    g.device = device;
    g.partial = (double *)cu_alloc(PARTIALS * sizeof(double), "reduction partials", err);
    g.acc = g.partial ? (double *)cu_alloc(4 * sizeof(double), "op results", err) : NULL;
    g.flag = g.acc ? (int *)cu_alloc(sizeof(int), "non-finite flag", err) : NULL;
    if (!g.flag)
        return -1;
    rc = cudaMallocHost((void **)&g.host, 4 * sizeof(double));
    if (rc != cudaSuccess)
        return core_error_set(err, "cuda: cannot allocate pinned host memory: %s",
                              cudaGetErrorString(rc));
    g.flags = flags;
    fill_table();
    char conv[256];
    if (cuda_conv_init(&cuda_ops, conv, sizeof conv, err) != 0)
        return -1;
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, device) != cudaSuccess)
        snprintf(prop.name, sizeof prop.name, "unknown");
    const char *precision = (flags & ENGINE_CUDA_BF16)   ? "bf16 GEMM, TF32 conv"
                            : (flags & ENGINE_CUDA_TF32) ? "tf32"
                                                         : "fp32";
    snprintf(g.name, sizeof g.name, "cuda:%d (%.80s, sm_%d%d, %s, %.60s)", device, prop.name,
             prop.major, prop.minor, precision, conv);
    cuda_ops.name = g.name;
    g.ready = 1;
    return 0;
}

extern "C" const engine_ops *engine_cuda(int device, int flags, core_error *err)
{
    if (g.ready) {
        if (device != g.device || flags != g.flags) {
            core_error_set(err,
                           "cuda: the engine already runs on device %d; one device per "
                           "process",
                           g.device);
            return NULL;
        }
        return &cuda_ops;
    }
    if (load_cublas(err)) /* first: a machine without a GPU still checks the library */
        return NULL;
    int count = 0;
    cudaError_t rc = cudaGetDeviceCount(&count);
    if (rc != cudaSuccess || count == 0) {
        core_error_set(err,
                       "no CUDA device: %s; run without --device cuda, or on a machine with an "
                       "NVIDIA GPU and its driver",
                       rc != cudaSuccess ? cudaGetErrorString(rc) : "the driver reports 0 GPUs");
        return NULL;
    }
    /* A rank that sees exactly one GPU (srun --gpus-per-task=1, or
     * CUDA_VISIBLE_DEVICES set per rank) uses it whatever its local rank. */
    if (count == 1)
        device = 0;
    if (device < 0 || device >= count) {
        core_error_set(err,
                       "no CUDA device %d: this machine has %d GPU(s); the device is the rank's "
                       "local rank, so start at most %d rank(s) per node",
                       device, count, count);
        return NULL;
    }
    if (init_state(device, flags, err) != 0)
        return NULL;
    return &cuda_ops;
}
