/*
 * engine/cuda/engine_cuda_conv.cu: the CUDA engine's convolution.
 *
 * The whole batch in one call, in NCHW (sample-major) so that no transpose
 * sits between a convolution and the next layer:
 *
 * - cuDNN (opened with dlopen, like cuBLAS, so a CPU run never loads it):
 *   a plan per shape (geometry, filters, batch) holds the descriptors and
 *   the forward, backward-data and backward-filter algorithms. By default
 *   they are chosen once by timing every algorithm cuDNN offers
 *   (cudnnFind*, as PyTorch's cudnn.benchmark), keeping only deterministic
 *   ones for the two backward passes: a step gives the same bits when it is
 *   repeated, but timing can pick another algorithm in another process, so
 *   two runs may differ in rounding. RINGTRAIN_CUDNN=heuristic takes cuDNN's
 *   heuristic order instead (the same choice for the same GPU and cuDNN:
 *   runs and resumes that repeat bit for bit). The workspace is one engine
 *   allocation that grows to the largest plan's need; plans beyond 64 shapes
 *   replace the least recently used one.
 * - Without cuDNN (not installed, RINGTRAIN_CUDNN=off, a tensor of 2^31
 *   elements or more, an input that is not packed NCHW, or a 'same' padding
 *   that is not symmetric, which cuDNN cannot express): im2col of the whole
 *   batch and one strided-batched GEMM writing NCHW; backward transposes dy
 *   once to (F, N*OH*OW) for one GEMM per gradient. Its columns live in the
 *   scratch that all layers share.
 *
 * Precision: fp32 convolutions use FMA kernels only (CUDNN_FMA_MATH, exact
 * like the CPU engine); --precision tf32 and bf16 allow TF32 tensor cores
 * (CUDNN_DEFAULT_MATH) in cuDNN, since storage stays fp32; the fallback's
 * GEMMs follow the engine's GEMM precision (bf16 with --precision bf16).
 * The bias (and the activation, unless a maxpool takes it) is one fused
 * kernel after the convolution; its gradient is a deterministic two-pass
 * reduction. The model's parameters are packed without padding, so a conv's
 * weights may sit at any 4-byte offset: cuDNN gets them through a 256-byte
 * aligned copy when they are not 16-byte aligned.
 */
#include "engine/cuda/engine_cuda_internal.h"

extern "C" {
#include "core/log.h"
}

#ifdef RINGTRAIN_HAVE_CUDNN
#include <cudnn.h>
#endif

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

using namespace cuda_engine;

#define RT_STR2(x) #x
#define RT_STR(x)  RT_STR2(x)

#define BIAS_PARTIALS 65536 /* floats of per-block partial sums of the bias gradient */
#define MAX_PLANS     64

static float *bias_partial; /* BIAS_PARTIALS floats on the device */

/* ---- the bias: forward fused with the activation, backward in two passes ---- */

/* partial[c * gridDim.y + b] = the sum of channel c over images
 * [b * per_chunk, (b+1) * per_chunk), summed in a fixed order. */
__global__ void k_bias_grad_partial(const float *dy, int N, int F, int plane, int per_chunk,
                                    float *partial)
{
    __shared__ float sh[THREADS];
    int c = blockIdx.x, b = blockIdx.y;
    int n0 = b * per_chunk, n1 = n0 + per_chunk < N ? n0 + per_chunk : N;
    size_t m = n1 > n0 ? (size_t)(n1 - n0) * plane : 0;
    float s = 0.0f;
    for (size_t j = threadIdx.x; j < m; j += blockDim.x) {
        size_t n = n0 + j / plane, i = j % plane;
        s += dy[(n * F + c) * plane + i];
    }
    sh[threadIdx.x] = s;
    __syncthreads();
    for (unsigned h = blockDim.x / 2; h > 0; h >>= 1) {
        if (threadIdx.x < h)
            sh[threadIdx.x] += sh[threadIdx.x + h];
        __syncthreads();
    }
    if (threadIdx.x == 0)
        partial[(size_t)c * gridDim.y + b] = sh[0];
}

__global__ void k_bias_grad_final(const float *partial, int chunks, int F, float *dbias,
                                  int accumulate)
{
    FOR_EACH(c, (size_t)F)
    {
        double s = 0.0;
        for (int b = 0; b < chunks; b++)
            s += partial[c * chunks + b];
        dbias[c] = accumulate ? dbias[c] + (float)s : (float)s;
    }
}

/* dbias (+)= the sum of dy (N, F, plane) over N and plane. */
static void bias_grad_nchw(float *dbias, const float *dy, int N, int F, int plane, int accumulate)
{
    if (F <= 0)
        return;
    /* about 16k values a block, as many blocks as fit the partials buffer */
    int chunks = (int)(((size_t)N * plane + 16383) / 16384);
    if (F > BIAS_PARTIALS) { /* one block per channel, no partials */
        cuda_ops.bias_backward(dbias, dy, N, F, plane, accumulate);
        return;
    }
    if (chunks > BIAS_PARTIALS / F)
        chunks = BIAS_PARTIALS / F;
    if (chunks > 65535) /* gridDim.y */
        chunks = 65535;
    if (chunks > N)
        chunks = N;
    if (chunks < 1)
        chunks = 1;
    int per_chunk = (N + chunks - 1) / chunks;
    chunks = N > 0 ? (N + per_chunk - 1) / per_chunk : 1;
    k_bias_grad_partial<<<dim3(F, chunks), THREADS, 0, g.stream>>>(dy, N, F, plane, per_chunk,
                                                                   bias_partial);
    k_bias_grad_final<<<grid_for((size_t)F), THREADS, 0, g.stream>>>(bias_partial, chunks, F, dbias,
                                                                     accumulate);
    check_launch("conv bias gradient");
}

/* ---- the batch-wide fallback: im2col + GEMMs ---- */

static size_t cols_floats(const engine_conv_geom *geo, int batch)
{
    return (size_t)geo->C * geo->K * geo->K * batch * geo->OH * geo->OW;
}

static void fallback_forward(float *y, const float *x, const float *w, const float *bias, int batch,
                             int F, const engine_conv_geom *geo, engine_act act, float *scratch)
{
    int ckk = geo->C * geo->K * geo->K, plane = geo->OH * geo->OW, ncols = batch * plane;
    cuda_ops.im2col(x, batch, geo, scratch);
    /* y_n (F x plane) = W (F x ckk) * the columns of image n */
    gemm_strided_batched(0, 0, F, plane, ckk, 1.0f, w, ckk, 0, scratch, ncols, plane, 0.0f, y,
                         plane, (long long)F * plane, batch);
    cuda_ops.bias_act_forward(y, bias, batch, F, plane, act);
}

/* scratch: the columns (ckk x N*plane), then dy as (F, N*plane); the
 * column gradient reuses the columns' place once dw has read them. */
static void fallback_backward(float *dx, float *dw, float *dbias, float *dy, const float *x,
                              const float *w, int batch, int F, const engine_conv_geom *geo,
                              int accumulate, float *scratch)
{
    int ckk = geo->C * geo->K * geo->K, plane = geo->OH * geo->OW, ncols = batch * plane;
    float *cols = scratch, *dyc = scratch + cols_floats(geo, batch);
    if (dbias)
        bias_grad_nchw(dbias, dy, batch, F, plane, accumulate);
    cuda_ops.nc_to_cn(dyc, dy, F, batch, (size_t)plane); /* (N, F, plane) -> (F, N*plane) */
    cuda_ops.im2col(x, batch, geo, cols);
    cuda_ops.gemm(0, 1, F, ckk, ncols, 1.0f, dyc, ncols, cols, ncols, accumulate ? 1.0f : 0.0f, dw,
                  ckk);
    if (!dx)
        return;
    cuda_ops.gemm(1, 0, ckk, ncols, F, 1.0f, w, ckk, dyc, ncols, 0.0f, cols, ncols);
    cuda_ops.zero(dx, (size_t)batch * geo->C * geo->H * geo->W);
    cuda_ops.col2im(cols, batch, geo, dx);
}

/* ---- cuDNN ---- */

#ifdef RINGTRAIN_HAVE_CUDNN

/* The cuDNN entry points the engine calls, from dlopen. */
static struct {
    void *lib;
    cudnnHandle_t handle;
    int heuristic; /* RINGTRAIN_CUDNN=heuristic: cuDNN's order, not timing */
    decltype(&cudnnCreate) create;
    decltype(&cudnnSetStream) set_stream;
    decltype(&cudnnGetErrorString) error_string;
    decltype(&cudnnGetVersion) version;
    decltype(&cudnnOpsVersionCheck) ops_check;
    decltype(&cudnnCnnVersionCheck) cnn_check;
    decltype(&cudnnCreateTensorDescriptor) create_tensor;
    decltype(&cudnnDestroyTensorDescriptor) destroy_tensor;
    decltype(&cudnnSetTensor4dDescriptorEx) set_tensor;
    decltype(&cudnnCreateFilterDescriptor) create_filter;
    decltype(&cudnnDestroyFilterDescriptor) destroy_filter;
    decltype(&cudnnSetFilter4dDescriptor) set_filter;
    decltype(&cudnnCreateConvolutionDescriptor) create_conv;
    decltype(&cudnnDestroyConvolutionDescriptor) destroy_conv;
    decltype(&cudnnSetConvolution2dDescriptor) set_conv;
    decltype(&cudnnSetConvolutionMathType) set_math;
    decltype(&cudnnGetConvolutionForwardAlgorithmMaxCount) max_fwd;
    decltype(&cudnnGetConvolutionBackwardDataAlgorithmMaxCount) max_bwd_data;
    decltype(&cudnnGetConvolutionBackwardFilterAlgorithmMaxCount) max_bwd_filter;
    /* the Find* calls (timing) or the *_v7 calls (heuristics): one signature */
    decltype(&cudnnFindConvolutionForwardAlgorithm) find_fwd;
    decltype(&cudnnFindConvolutionBackwardDataAlgorithm) find_bwd_data;
    decltype(&cudnnFindConvolutionBackwardFilterAlgorithm) find_bwd_filter;
    decltype(&cudnnGetConvolutionForwardWorkspaceSize) ws_fwd;
    decltype(&cudnnConvolutionForward) fwd;
    decltype(&cudnnGetConvolutionBackwardDataWorkspaceSize) ws_bwd_data;
    decltype(&cudnnConvolutionBackwardData) bwd_data;
    decltype(&cudnnGetConvolutionBackwardFilterWorkspaceSize) ws_bwd_filter;
    decltype(&cudnnConvolutionBackwardFilter) bwd_filter;
} dnn;

/* One shape's descriptors and algorithms; one convolution descriptor per
 * pass, each with the math type its algorithm was chosen with. */
typedef struct conv_plan {
    engine_conv_geom geo;
    int F, batch, used;
    unsigned long last_use;
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv_fwd, conv_data, conv_filter;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    size_t ws_fwd, ws_bwd_data, ws_bwd_filter;
} conv_plan;

static conv_plan plans[MAX_PLANS];
static unsigned long plan_clock;
static void *workspace;
static size_t workspace_bytes;
static float *wstage; /* 256-byte aligned copies of misaligned weights and their gradient */
static size_t wstage_floats;

static const char *fwd_names[] = {
    "implicit_gemm", "implicit_precomp_gemm", "gemm", "direct", "fft", "fft_tiling",
    "winograd",      "winograd_nonfused"};
static const char *bwd_data_names[] = {"algo_0",     "algo_1",   "fft",
                                       "fft_tiling", "winograd", "winograd_nonfused"};
static const char *bwd_filter_names[] = {
    "algo_0", "algo_1", "fft", "algo_3", "winograd", "winograd_nonfused", "fft_tiling"};

static const char *algo_name(const char *const *names, int count, int algo)
{
    return algo >= 0 && algo < count ? names[algo] : "?";
}

template <typename F> static int dnn_symbol(F *fn, const char *name, core_error *err)
{
    *fn = (F)dlsym(dnn.lib, name);
    if (!*fn)
        return core_error_set(err, "cuDNN has no %s: %s", name, dlerror());
    return 0;
}

static int dnn_symbols(core_error *err)
{
    const char *fwd = dnn.heuristic ? "cudnnGetConvolutionForwardAlgorithm_v7"
                                    : "cudnnFindConvolutionForwardAlgorithm";
    const char *data = dnn.heuristic ? "cudnnGetConvolutionBackwardDataAlgorithm_v7"
                                     : "cudnnFindConvolutionBackwardDataAlgorithm";
    const char *filter = dnn.heuristic ? "cudnnGetConvolutionBackwardFilterAlgorithm_v7"
                                       : "cudnnFindConvolutionBackwardFilterAlgorithm";
    return dnn_symbol(&dnn.create, "cudnnCreate", err) ||
           dnn_symbol(&dnn.set_stream, "cudnnSetStream", err) ||
           dnn_symbol(&dnn.error_string, "cudnnGetErrorString", err) ||
           dnn_symbol(&dnn.version, "cudnnGetVersion", err) ||
           dnn_symbol(&dnn.ops_check, "cudnnOpsVersionCheck", err) ||
           dnn_symbol(&dnn.cnn_check, "cudnnCnnVersionCheck", err) ||
           dnn_symbol(&dnn.create_tensor, "cudnnCreateTensorDescriptor", err) ||
           dnn_symbol(&dnn.destroy_tensor, "cudnnDestroyTensorDescriptor", err) ||
           dnn_symbol(&dnn.set_tensor, "cudnnSetTensor4dDescriptorEx", err) ||
           dnn_symbol(&dnn.create_filter, "cudnnCreateFilterDescriptor", err) ||
           dnn_symbol(&dnn.destroy_filter, "cudnnDestroyFilterDescriptor", err) ||
           dnn_symbol(&dnn.set_filter, "cudnnSetFilter4dDescriptor", err) ||
           dnn_symbol(&dnn.create_conv, "cudnnCreateConvolutionDescriptor", err) ||
           dnn_symbol(&dnn.destroy_conv, "cudnnDestroyConvolutionDescriptor", err) ||
           dnn_symbol(&dnn.set_conv, "cudnnSetConvolution2dDescriptor", err) ||
           dnn_symbol(&dnn.set_math, "cudnnSetConvolutionMathType", err) ||
           dnn_symbol(&dnn.max_fwd, "cudnnGetConvolutionForwardAlgorithmMaxCount", err) ||
           dnn_symbol(&dnn.max_bwd_data, "cudnnGetConvolutionBackwardDataAlgorithmMaxCount", err) ||
           dnn_symbol(&dnn.max_bwd_filter, "cudnnGetConvolutionBackwardFilterAlgorithmMaxCount",
                      err) ||
           dnn_symbol(&dnn.find_fwd, fwd, err) || dnn_symbol(&dnn.find_bwd_data, data, err) ||
           dnn_symbol(&dnn.find_bwd_filter, filter, err) ||
           dnn_symbol(&dnn.ws_fwd, "cudnnGetConvolutionForwardWorkspaceSize", err) ||
           dnn_symbol(&dnn.fwd, "cudnnConvolutionForward", err) ||
           dnn_symbol(&dnn.ws_bwd_data, "cudnnGetConvolutionBackwardDataWorkspaceSize", err) ||
           dnn_symbol(&dnn.bwd_data, "cudnnConvolutionBackwardData", err) ||
           dnn_symbol(&dnn.ws_bwd_filter, "cudnnGetConvolutionBackwardFilterWorkspaceSize", err) ||
           dnn_symbol(&dnn.bwd_filter, "cudnnConvolutionBackwardFilter", err);
}

/* libcudnn.so.<major>: the loader's path, the directory CMake found, the
 * toolkit's. cuDNN 9's library is a shim that loads its sub-libraries on
 * first use, so the ops and cnn version checks make sure they load now. */
static int dnn_load(int heuristic, core_error *err)
{
    const char *soname = "libcudnn.so." RT_STR(CUDNN_MAJOR);
    dnn.heuristic = heuristic;
    const char *dirs[2] = {NULL, NULL};
#ifdef RINGTRAIN_CUDNN_LIBDIR
    dirs[0] = RINGTRAIN_CUDNN_LIBDIR;
#endif
#ifdef RINGTRAIN_CUDA_LIBDIR
    dirs[1] = RINGTRAIN_CUDA_LIBDIR;
#endif
    dnn.lib = open_library(soname, dirs, 2);
    if (!dnn.lib)
        return core_error_set(err, "cannot load %s: %s", soname, dlerror());
    cudnnStatus_t rc = CUDNN_STATUS_SUCCESS;
    if (dnn_symbols(err) == 0) {
        rc = dnn.ops_check();
        if (rc == CUDNN_STATUS_SUCCESS)
            rc = dnn.cnn_check();
        if (rc == CUDNN_STATUS_SUCCESS)
            rc = dnn.create(&dnn.handle);
        if (rc == CUDNN_STATUS_SUCCESS)
            rc = dnn.set_stream(dnn.handle, g.stream);
        if (rc == CUDNN_STATUS_SUCCESS)
            return 0;
        core_error_set(err, "cuDNN's set-up failed: %s", dnn.error_string(rc));
    }
    dlclose(dnn.lib);
    dnn.lib = NULL;
    return -1;
}

static int dnn_ok(cudnnStatus_t rc, const char *what)
{
    if (rc == CUDNN_STATUS_SUCCESS)
        return 1;
    die(what, dnn.error_string(rc));
    return 0;
}

/* cuDNN pads symmetrically: a 'same' convolution whose extra pixel goes to
 * the bottom/right (even K, or stride > 1) runs on the fallback, and so does
 * an input that is not packed NCHW (on this engine only a caller's
 * channel-major buffer is) and a tensor that cuDNN's int sizes cannot hold.
 * Whether it fits can only change from no to yes as the batch shrinks, so
 * the plan made for the largest batch covers every smaller one. */
static int dnn_fits(const engine_conv_geom *geo, int F, int batch)
{
    const size_t limit = (size_t)1 << 31;
    size_t plane = (size_t)geo->H * geo->W, oplane = (size_t)geo->OH * geo->OW;
    return dnn.lib && geo->c_stride == plane && geo->n_stride == plane * geo->C &&
           (size_t)batch * geo->C * plane < limit && (size_t)batch * F * oplane < limit &&
           (geo->H + 2 * geo->pad_h - geo->K) / geo->stride + 1 == geo->OH &&
           (geo->W + 2 * geo->pad_w - geo->K) / geo->stride + 1 == geo->OW &&
           geo->H + 2 * geo->pad_h >= geo->K && geo->W + 2 * geo->pad_w >= geo->K;
}

static int same_shape(const conv_plan *p, const engine_conv_geom *geo, int F, int batch)
{
    const engine_conv_geom *a = &p->geo;
    return p->used && p->F == F && p->batch == batch && a->C == geo->C && a->H == geo->H &&
           a->W == geo->W && a->K == geo->K && a->stride == geo->stride && a->pad_h == geo->pad_h &&
           a->pad_w == geo->pad_w && a->OH == geo->OH && a->OW == geo->OW &&
           a->c_stride == geo->c_stride && a->n_stride == geo->n_stride;
}

/* The first (fastest, or first by heuristics) algorithm that ran, within
 * the memory cap, deterministic when asked. */
template <typename Perf> static int pick(const Perf *perf, int n, int deterministic)
{
    const size_t cap = (size_t)1 << 30;
    for (int i = 0; i < n; i++)
        if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= cap &&
            (!deterministic || perf[i].determinism == CUDNN_DETERMINISTIC))
            return i;
    return -1;
}

/* Grows an engine buffer (the workspace, the weight staging) outside any
 * step's work: everything queued is finished before the old one is freed. */
static int grow(void **buf, size_t *have, size_t bytes, const char *what)
{
    if (bytes <= *have)
        return 1;
    check(cudaStreamSynchronize(g.stream), what);
    if (*buf)
        cudaFree(*buf);
    *buf = NULL;
    *have = 0;
    cudaError_t rc = cudaMalloc(buf, bytes);
    if (rc != cudaSuccess) {
        *buf = NULL;
        die(what, cudaGetErrorString(rc));
        return 0;
    }
    *have = bytes;
    return 1;
}

static void release(conv_plan *p)
{
    if (!p->used)
        return;
    dnn.destroy_tensor(p->x);
    dnn.destroy_tensor(p->y);
    dnn.destroy_filter(p->w);
    dnn.destroy_conv(p->conv_fwd);
    dnn.destroy_conv(p->conv_data);
    dnn.destroy_conv(p->conv_filter);
    p->used = 0;
}

static int conv_desc(const conv_plan *p, cudnnConvolutionDescriptor_t *d, cudnnMathType_t math)
{
    const engine_conv_geom *a = &p->geo;
    return dnn_ok(dnn.create_conv(d), "cudnnCreateConvolutionDescriptor") &&
           dnn_ok(dnn.set_conv(*d, a->pad_h, a->pad_w, a->stride, a->stride, 1, 1,
                               CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                  "cudnnSetConvolution2dDescriptor") &&
           dnn_ok(dnn.set_math(*d, math), "cudnnSetConvolutionMathType");
}

static int describe(conv_plan *p)
{
    const engine_conv_geom *a = &p->geo;
    cudnnMathType_t math =
        (g.flags & (ENGINE_CUDA_TF32 | ENGINE_CUDA_BF16)) ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
    int plane = a->OH * a->OW;
    p->used = 1; /* from here on, release() frees what was made */
    return dnn_ok(dnn.create_tensor(&p->x), "cudnnCreateTensorDescriptor") &&
           dnn_ok(dnn.set_tensor(p->x, CUDNN_DATA_FLOAT, p->batch, a->C, a->H, a->W,
                                 (int)a->n_stride, (int)a->c_stride, a->W, 1),
                  "cudnnSetTensor4dDescriptorEx (input)") &&
           dnn_ok(dnn.create_tensor(&p->y), "cudnnCreateTensorDescriptor") &&
           dnn_ok(dnn.set_tensor(p->y, CUDNN_DATA_FLOAT, p->batch, p->F, a->OH, a->OW, p->F * plane,
                                 plane, a->OW, 1),
                  "cudnnSetTensor4dDescriptorEx (output)") &&
           dnn_ok(dnn.create_filter(&p->w), "cudnnCreateFilterDescriptor") &&
           dnn_ok(dnn.set_filter(p->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, p->F, a->C, a->K, a->K),
                  "cudnnSetFilter4dDescriptor") &&
           conv_desc(p, &p->conv_fwd, math) && conv_desc(p, &p->conv_data, math) &&
           conv_desc(p, &p->conv_filter, math);
}

/* The three passes' algorithms for this shape (timed, or by heuristics),
 * each pass's descriptor set to the math type its algorithm runs with. */
static int choose(conv_plan *p)
{
    int mf = 0, md = 0, mw = 0, nf = 0, nd = 0, nw = 0;
    if (!dnn_ok(dnn.max_fwd(dnn.handle, &mf), "cudnnGetConvolutionForwardAlgorithmMaxCount") ||
        !dnn_ok(dnn.max_bwd_data(dnn.handle, &md),
                "cudnnGetConvolutionBackwardDataAlgorithmMaxCount") ||
        !dnn_ok(dnn.max_bwd_filter(dnn.handle, &mw),
                "cudnnGetConvolutionBackwardFilterAlgorithmMaxCount"))
        return 0;
    cudnnConvolutionFwdAlgoPerf_t *fp =
        (cudnnConvolutionFwdAlgoPerf_t *)calloc((size_t)mf + 1, sizeof *fp);
    cudnnConvolutionBwdDataAlgoPerf_t *dp =
        (cudnnConvolutionBwdDataAlgoPerf_t *)calloc((size_t)md + 1, sizeof *dp);
    cudnnConvolutionBwdFilterAlgoPerf_t *wp =
        (cudnnConvolutionBwdFilterAlgoPerf_t *)calloc((size_t)mw + 1, sizeof *wp);
    int ok = fp && dp && wp;
    if (!ok)
        die("cuDNN algorithm search", "out of host memory");
    check(cudaStreamSynchronize(g.stream), "cuDNN algorithm search");
    ok = ok &&
         dnn_ok(dnn.find_fwd(dnn.handle, p->x, p->w, p->conv_fwd, p->y, mf, &nf, fp),
                "choosing the forward algorithm") &&
         dnn_ok(dnn.find_bwd_data(dnn.handle, p->w, p->y, p->conv_data, p->x, md, &nd, dp),
                "choosing the backward-data algorithm") &&
         dnn_ok(dnn.find_bwd_filter(dnn.handle, p->x, p->y, p->conv_filter, p->w, mw, &nw, wp),
                "choosing the backward-filter algorithm");
    /* an algorithm whose trial allocation failed leaves the error behind */
    (void)cudaGetLastError();
    int f = ok ? pick(fp, nf, 0) : -1, d = ok ? pick(dp, nd, 1) : -1, w = ok ? pick(wp, nw, 1) : -1;
    if (ok && (f < 0 || d < 0 || w < 0)) {
        die("cuDNN algorithm search", "no algorithm can run this convolution");
        ok = 0;
    }
    if (ok) {
        p->fwd = fp[f].algo;
        p->bwd_data = dp[d].algo;
        p->bwd_filter = wp[w].algo;
        ok = dnn_ok(dnn.set_math(p->conv_fwd, fp[f].mathType), "cudnnSetConvolutionMathType") &&
             dnn_ok(dnn.set_math(p->conv_data, dp[d].mathType), "cudnnSetConvolutionMathType") &&
             dnn_ok(dnn.set_math(p->conv_filter, wp[w].mathType), "cudnnSetConvolutionMathType") &&
             dnn_ok(dnn.ws_fwd(dnn.handle, p->x, p->w, p->conv_fwd, p->y, p->fwd, &p->ws_fwd),
                    "cudnnGetConvolutionForwardWorkspaceSize") &&
             dnn_ok(dnn.ws_bwd_data(dnn.handle, p->w, p->y, p->conv_data, p->x, p->bwd_data,
                                    &p->ws_bwd_data),
                    "cudnnGetConvolutionBackwardDataWorkspaceSize") &&
             dnn_ok(dnn.ws_bwd_filter(dnn.handle, p->x, p->y, p->conv_filter, p->w, p->bwd_filter,
                                      &p->ws_bwd_filter),
                    "cudnnGetConvolutionBackwardFilterWorkspaceSize");
    }
    if (ok) {
        size_t need = p->ws_fwd > p->ws_bwd_data ? p->ws_fwd : p->ws_bwd_data;
        need = need > p->ws_bwd_filter ? need : p->ws_bwd_filter;
        size_t weights = 2 * (size_t)p->F * p->geo.C * p->geo.K * p->geo.K;
        size_t stage_bytes = wstage_floats * sizeof(float);
        ok = grow(&workspace, &workspace_bytes, need, "allocating the cuDNN workspace") &&
             grow((void **)&wstage, &stage_bytes, weights * sizeof(float),
                  "allocating the conv weight staging");
        wstage_floats = stage_bytes / sizeof(float);
    }
    if (ok) {
        const engine_conv_geom *a = &p->geo;
        core_log_info("cuda: conv %dx%dx%d -> %d k%d s%d batch %d: cuDNN (%s) forward %s "
                      "(%.3f ms), backward data %s (%.3f ms), backward filter %s (%.3f ms)",
                      a->C, a->H, a->W, p->F, a->K, a->stride, p->batch,
                      dnn.heuristic ? "heuristic" : "timed", algo_name(fwd_names, 8, p->fwd),
                      fp[f].time, algo_name(bwd_data_names, 6, p->bwd_data), dp[d].time,
                      algo_name(bwd_filter_names, 7, p->bwd_filter), wp[w].time);
    }
    free(fp), free(dp), free(wp);
    return ok;
}

static conv_plan *plan_for(const engine_conv_geom *geo, int F, int batch)
{
    conv_plan *p = NULL, *oldest = &plans[0];
    for (int i = 0; i < MAX_PLANS && !p; i++) {
        if (same_shape(&plans[i], geo, F, batch))
            p = &plans[i];
        else if (!plans[i].used || (oldest->used && plans[i].last_use < oldest->last_use))
            oldest = &plans[i];
    }
    if (p) {
        p->last_use = ++plan_clock;
        return p;
    }
    p = oldest; /* a free slot, else the least recently used plan */
    release(p);
    memset(p, 0, sizeof *p);
    p->geo = *geo;
    p->F = F;
    p->batch = batch;
    p->last_use = ++plan_clock;
    if (!describe(p) || !choose(p)) {
        release(p);
        return NULL;
    }
    return p;
}

static int aligned(const void *ptr)
{
    return ((uintptr_t)ptr & 15) == 0;
}

static void dnn_forward(float *y, const float *x, const float *w, const float *bias, int batch,
                        int F, const engine_conv_geom *geo, engine_act act)
{
    conv_plan *p = plan_for(geo, F, batch);
    if (!p)
        return;
    size_t nw = (size_t)F * geo->C * geo->K * geo->K;
    if (!aligned(w)) {
        check(cudaMemcpyAsync(wstage, w, nw * sizeof *w, cudaMemcpyDeviceToDevice, g.stream),
              "conv weight staging");
        w = wstage;
    }
    const float one = 1.0f, zero = 0.0f;
    dnn_ok(dnn.fwd(dnn.handle, &one, p->x, x, p->w, w, p->conv_fwd, p->fwd, workspace, p->ws_fwd,
                   &zero, p->y, y),
           "cudnnConvolutionForward");
    cuda_ops.bias_act_forward(y, bias, batch, F, geo->OH * geo->OW, act);
}

static void dnn_backward(float *dx, float *dw, float *dbias, float *dy, const float *x,
                         const float *w, int batch, int F, const engine_conv_geom *geo,
                         int accumulate)
{
    conv_plan *p = plan_for(geo, F, batch);
    if (!p)
        return;
    size_t nw = (size_t)F * geo->C * geo->K * geo->K;
    const float one = 1.0f, zero = 0.0f, beta = accumulate ? 1.0f : 0.0f;
    if (dbias)
        bias_grad_nchw(dbias, dy, batch, F, geo->OH * geo->OW, accumulate);
    float *dw_use = dw;
    if (!aligned(dw)) {
        dw_use = wstage + nw;
        if (accumulate)
            check(cudaMemcpyAsync(dw_use, dw, nw * sizeof *dw, cudaMemcpyDeviceToDevice, g.stream),
                  "conv weight-gradient staging");
    }
    dnn_ok(dnn.bwd_filter(dnn.handle, &one, p->x, x, p->y, dy, p->conv_filter, p->bwd_filter,
                          workspace, p->ws_bwd_filter, &beta, p->w, dw_use),
           "cudnnConvolutionBackwardFilter");
    if (dw_use != dw)
        check(cudaMemcpyAsync(dw, dw_use, nw * sizeof *dw, cudaMemcpyDeviceToDevice, g.stream),
              "conv weight-gradient staging");
    if (!dx)
        return;
    if (!aligned(w)) {
        check(cudaMemcpyAsync(wstage, w, nw * sizeof *w, cudaMemcpyDeviceToDevice, g.stream),
              "conv weight staging");
        w = wstage;
    }
    dnn_ok(dnn.bwd_data(dnn.handle, &one, p->w, w, p->y, dy, p->conv_data, p->bwd_data, workspace,
                        p->ws_bwd_data, &zero, p->x, dx),
           "cudnnConvolutionBackwardData");
}

#else /* built without cuDNN's headers: the fallback only */

static int dnn_load(int heuristic, core_error *err)
{
    (void)heuristic;
    return core_error_set(err, "ringtrain was built without cuDNN's headers");
}
static int dnn_fits(const engine_conv_geom *geo, int F, int batch)
{
    (void)geo, (void)F, (void)batch;
    return 0;
}
static void dnn_forward(float *, const float *, const float *, const float *, int, int,
                        const engine_conv_geom *, engine_act)
{
}
static void dnn_backward(float *, float *, float *, float *, const float *, const float *, int, int,
                         const engine_conv_geom *, int)
{
}

#endif

/* ---- the ops ---- */

/* cuDNN's eligibility with one image (a batch too large for it still
 * falls back, per call). */
static const char *cu_conv_method(const engine_conv_geom *geo, int F)
{
    return dnn_fits(geo, F, 1) ? "cuDNN" : "im2col + GEMM";
}

static void cu_conv_plan(const engine_conv_geom *geo, int F, int max_batch, size_t *work,
                         size_t *scratch)
{
    *work = 0;
    *scratch = 0;
    if (!dnn_fits(geo, F, max_batch))
        *scratch = cols_floats(geo, max_batch) + (size_t)F * max_batch * geo->OH * geo->OW;
}

static void cu_conv_forward(float *y, const float *x, const float *w, const float *bias, int batch,
                            int F, const engine_conv_geom *geo, engine_act act, float *work,
                            float *scratch)
{
    (void)work;
    if (batch <= 0 || g.failed)
        return;
    if (dnn_fits(geo, F, batch))
        dnn_forward(y, x, w, bias, batch, F, geo, act);
    else
        fallback_forward(y, x, w, bias, batch, F, geo, act, scratch);
}

static void cu_conv_backward(float *dx, float *dw, float *dbias, float *dy, const float *x,
                             const float *w, int batch, int F, const engine_conv_geom *geo,
                             int accumulate, float *work, float *scratch)
{
    (void)work;
    if (batch <= 0 || g.failed)
        return;
    if (dnn_fits(geo, F, batch))
        dnn_backward(dx, dw, dbias, dy, x, w, batch, F, geo, accumulate);
    else
        fallback_backward(dx, dw, dbias, dy, x, w, batch, F, geo, accumulate, scratch);
}

int cuda_conv_init(engine_ops *t, char *desc, size_t len, core_error *err)
{
    cudaError_t rc = cudaMalloc((void **)&bias_partial, BIAS_PARTIALS * sizeof(float));
    if (rc != cudaSuccess)
        return core_error_set(err, "cuda: cannot allocate the bias-gradient partials: %s",
                              cudaGetErrorString(rc));
    t->conv_out_chan_major = 0;
    t->conv_method = cu_conv_method;
    t->conv_plan = cu_conv_plan;
    t->conv_forward = cu_conv_forward;
    t->conv_backward = cu_conv_backward;
    const char *want = getenv("RINGTRAIN_CUDNN");
    if (want && (strcmp(want, "off") == 0 || strcmp(want, "0") == 0)) {
        snprintf(desc, len, "convolutions: im2col + GEMM (RINGTRAIN_CUDNN=%s)", want);
        return 0;
    }
    if (want && *want && strcmp(want, "heuristic") != 0 && strcmp(want, "find") != 0)
        return core_error_set(err,
                              "RINGTRAIN_CUDNN=%s: expected 'find' (the default), 'heuristic' or "
                              "'off'",
                              want);
    core_error why = {0};
    if (dnn_load(want && strcmp(want, "heuristic") == 0, &why) != 0) {
        snprintf(desc, len, "convolutions: im2col + GEMM (no cuDNN: %.200s)", why.msg);
        core_log_warn("cuda: cuDNN not available (%s); convolutions run as im2col + GEMM over "
                      "the batch",
                      why.msg);
        return 0;
    }
#ifdef RINGTRAIN_HAVE_CUDNN
    size_t v = dnn.version();
    snprintf(desc, len, "cuDNN %zu.%zu.%zu%s", v / 10000, (v / 100) % 100, v % 100,
             dnn.heuristic ? " heuristic" : "");
#endif
    return 0;
}
