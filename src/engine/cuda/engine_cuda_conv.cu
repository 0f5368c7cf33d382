/*
 * engine/cuda/engine_cuda_conv.cu: the CUDA engine's convolution.
 *
 * The whole batch in one call, in NCHW (sample-major) so that no transpose
 * sits between a convolution and the next layer:
 *
 * - cuDNN (opened with dlopen, like cuBLAS, so a CPU run never loads it):
 *   a plan per shape (geometry, filters, batch) holds the descriptors and
 *   the forward, backward-data and backward-filter algorithms, chosen once
 *   by timing every algorithm cuDNN offers (cudnnFind*, as PyTorch's
 *   cudnn.benchmark does), keeping only deterministic ones for the two
 *   backward passes so that a rerun gives the same bits. The workspace is
 *   one engine allocation that grows to the largest plan's need.
 * - Without cuDNN (not installed, RINGTRAIN_CUDNN=off, or a 'same' padding
 *   that is not symmetric, which cuDNN cannot express): im2col of the whole
 *   batch and one strided-batched GEMM writing NCHW; backward transposes dy
 *   once to (F, N*OH*OW) for one GEMM per gradient.
 *
 * Precision: fp32 convolutions use FMA kernels only (CUDNN_FMA_MATH, exact
 * like the CPU engine); --precision tf32 and bf16 allow TF32 tensor cores
 * (CUDNN_DEFAULT_MATH): storage stays fp32, so bf16 runs its convolutions
 * in TF32, its GEMMs in bf16. The bias (and the activation, unless a maxpool
 * takes it) is one fused kernel after the convolution; its gradient is a
 * deterministic two-pass reduction.
 */
#include "engine/cuda/engine_cuda_internal.h"

extern "C" {
#include "core/log.h"
}

#ifdef RINGTRAIN_HAVE_CUDNN
#include <cudnn.h>
#endif

#include <dlfcn.h>
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
    if (chunks > BIAS_PARTIALS / F)
        chunks = BIAS_PARTIALS / F;
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
                             int F, const engine_conv_geom *geo, engine_act act, float *work)
{
    int ckk = geo->C * geo->K * geo->K, plane = geo->OH * geo->OW, ncols = batch * plane;
    cuda_ops.im2col(x, batch, geo, work);
    /* y_n (F x plane) = W (F x ckk) * the columns of image n */
    gemm_strided_batched(0, 0, F, plane, ckk, 1.0f, w, ckk, 0, work, ncols, plane, 0.0f, y, plane,
                         (long long)F * plane, batch);
    cuda_ops.bias_act_forward(y, bias, batch, F, plane, act);
}

static void fallback_backward(float *dx, float *dw, float *dbias, float *dy, const float *x,
                              const float *w, int batch, int F, const engine_conv_geom *geo,
                              int accumulate, float *work, float *scratch)
{
    int ckk = geo->C * geo->K * geo->K, plane = geo->OH * geo->OW, ncols = batch * plane;
    float *cols = work, *dyc = work + cols_floats(geo, batch);
    if (dbias)
        bias_grad_nchw(dbias, dy, batch, F, plane, accumulate);
    cuda_ops.nc_to_cn(dyc, dy, F, batch, (size_t)plane); /* (N, F, plane) -> (F, N*plane) */
    cuda_ops.im2col(x, batch, geo, cols);
    cuda_ops.gemm(0, 1, F, ckk, ncols, 1.0f, dyc, ncols, cols, ncols, accumulate ? 1.0f : 0.0f, dw,
                  ckk);
    if (!dx)
        return;
    cuda_ops.gemm(1, 0, ckk, ncols, F, 1.0f, w, ckk, dyc, ncols, 0.0f, scratch, ncols);
    cuda_ops.zero(dx, (size_t)batch * geo->C * geo->H * geo->W);
    cuda_ops.col2im(scratch, batch, geo, dx);
}

/* ---- cuDNN ---- */

#ifdef RINGTRAIN_HAVE_CUDNN

/* The cuDNN entry points the engine calls, from dlopen. */
static struct {
    void *lib;
    cudnnHandle_t handle;
    decltype(&cudnnCreate) create;
    decltype(&cudnnSetStream) set_stream;
    decltype(&cudnnGetErrorString) error_string;
    decltype(&cudnnGetVersion) version;
    decltype(&cudnnCreateTensorDescriptor) create_tensor;
    decltype(&cudnnSetTensor4dDescriptorEx) set_tensor;
    decltype(&cudnnCreateFilterDescriptor) create_filter;
    decltype(&cudnnSetFilter4dDescriptor) set_filter;
    decltype(&cudnnCreateConvolutionDescriptor) create_conv;
    decltype(&cudnnSetConvolution2dDescriptor) set_conv;
    decltype(&cudnnSetConvolutionMathType) set_math;
    decltype(&cudnnFindConvolutionForwardAlgorithm) find_fwd;
    decltype(&cudnnGetConvolutionForwardWorkspaceSize) ws_fwd;
    decltype(&cudnnConvolutionForward) fwd;
    decltype(&cudnnFindConvolutionBackwardDataAlgorithm) find_bwd_data;
    decltype(&cudnnGetConvolutionBackwardDataWorkspaceSize) ws_bwd_data;
    decltype(&cudnnConvolutionBackwardData) bwd_data;
    decltype(&cudnnFindConvolutionBackwardFilterAlgorithm) find_bwd_filter;
    decltype(&cudnnGetConvolutionBackwardFilterWorkspaceSize) ws_bwd_filter;
    decltype(&cudnnConvolutionBackwardFilter) bwd_filter;
} dnn;

/* One shape's descriptors and algorithms. */
typedef struct conv_plan {
    engine_conv_geom geo;
    int F, batch;
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    size_t ws_fwd, ws_bwd_data, ws_bwd_filter;
} conv_plan;

static conv_plan plans[MAX_PLANS];
static int nplans;
static void *workspace;
static size_t workspace_bytes;

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
        return core_error_set(err, "cuda: cuDNN has no %s: %s", name, dlerror());
    return 0;
}

static int dnn_load(core_error *err)
{
    const char *soname = "libcudnn.so." RT_STR(CUDNN_MAJOR);
    dnn.lib = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
#ifdef RINGTRAIN_CUDNN_LIBDIR
    if (!dnn.lib)
        dnn.lib = dlopen(RINGTRAIN_CUDNN_LIBDIR "/libcudnn.so." RT_STR(CUDNN_MAJOR),
                         RTLD_NOW | RTLD_LOCAL);
#endif
#ifdef RINGTRAIN_CUDA_LIBDIR
    if (!dnn.lib)
        dnn.lib = dlopen(RINGTRAIN_CUDA_LIBDIR "/libcudnn.so." RT_STR(CUDNN_MAJOR),
                         RTLD_NOW | RTLD_LOCAL);
#endif
    if (!dnn.lib)
        return core_error_set(err, "cannot load %s: %s", soname, dlerror());
    if (dnn_symbol(&dnn.create, "cudnnCreate", err) ||
        dnn_symbol(&dnn.set_stream, "cudnnSetStream", err) ||
        dnn_symbol(&dnn.error_string, "cudnnGetErrorString", err) ||
        dnn_symbol(&dnn.version, "cudnnGetVersion", err) ||
        dnn_symbol(&dnn.create_tensor, "cudnnCreateTensorDescriptor", err) ||
        dnn_symbol(&dnn.set_tensor, "cudnnSetTensor4dDescriptorEx", err) ||
        dnn_symbol(&dnn.create_filter, "cudnnCreateFilterDescriptor", err) ||
        dnn_symbol(&dnn.set_filter, "cudnnSetFilter4dDescriptor", err) ||
        dnn_symbol(&dnn.create_conv, "cudnnCreateConvolutionDescriptor", err) ||
        dnn_symbol(&dnn.set_conv, "cudnnSetConvolution2dDescriptor", err) ||
        dnn_symbol(&dnn.set_math, "cudnnSetConvolutionMathType", err) ||
        dnn_symbol(&dnn.find_fwd, "cudnnFindConvolutionForwardAlgorithm", err) ||
        dnn_symbol(&dnn.ws_fwd, "cudnnGetConvolutionForwardWorkspaceSize", err) ||
        dnn_symbol(&dnn.fwd, "cudnnConvolutionForward", err) ||
        dnn_symbol(&dnn.find_bwd_data, "cudnnFindConvolutionBackwardDataAlgorithm", err) ||
        dnn_symbol(&dnn.ws_bwd_data, "cudnnGetConvolutionBackwardDataWorkspaceSize", err) ||
        dnn_symbol(&dnn.bwd_data, "cudnnConvolutionBackwardData", err) ||
        dnn_symbol(&dnn.find_bwd_filter, "cudnnFindConvolutionBackwardFilterAlgorithm", err) ||
        dnn_symbol(&dnn.ws_bwd_filter, "cudnnGetConvolutionBackwardFilterWorkspaceSize", err) ||
        dnn_symbol(&dnn.bwd_filter, "cudnnConvolutionBackwardFilter", err)) {
        dlclose(dnn.lib);
        dnn.lib = NULL;
        return -1;
    }
    cudnnStatus_t rc = dnn.create(&dnn.handle);
    if (rc == CUDNN_STATUS_SUCCESS)
        rc = dnn.set_stream(dnn.handle, g.stream);
    if (rc != CUDNN_STATUS_SUCCESS) {
        core_error_set(err, "cudnnCreate failed: %s", dnn.error_string(rc));
        dlclose(dnn.lib);
        dnn.lib = NULL;
        return -1;
    }
    return 0;
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
 * an input that is not packed NCHW (cuDNN's fast algorithms want it; on this
 * engine only a caller's channel-major buffer is). */
static int dnn_fits(const engine_conv_geom *geo)
{
    size_t plane = (size_t)geo->H * geo->W;
    return dnn.lib && geo->c_stride == plane && geo->n_stride == plane * geo->C &&
           (geo->H + 2 * geo->pad_h - geo->K) / geo->stride + 1 == geo->OH &&
           (geo->W + 2 * geo->pad_w - geo->K) / geo->stride + 1 == geo->OW &&
           geo->H + 2 * geo->pad_h >= geo->K && geo->W + 2 * geo->pad_w >= geo->K;
}

static int same_shape(const conv_plan *p, const engine_conv_geom *geo, int F, int batch)
{
    const engine_conv_geom *a = &p->geo;
    return p->F == F && p->batch == batch && a->C == geo->C && a->H == geo->H && a->W == geo->W &&
           a->K == geo->K && a->stride == geo->stride && a->pad_h == geo->pad_h &&
           a->pad_w == geo->pad_w && a->OH == geo->OH && a->OW == geo->OW &&
           a->c_stride == geo->c_stride && a->n_stride == geo->n_stride;
}

/* The fastest algorithm that ran, within the memory cap, deterministic when asked. */
template <typename Perf> static int pick(const Perf *perf, int n, int deterministic)
{
    const size_t cap = (size_t)1 << 30;
    for (int i = 0; i < n; i++)
        if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= cap &&
            (!deterministic || perf[i].determinism == CUDNN_DETERMINISTIC))
            return i;
    return -1;
}

static int grow_workspace(size_t bytes)
{
    if (bytes <= workspace_bytes)
        return 1;
    check(cudaStreamSynchronize(g.stream), "conv workspace");
    if (workspace)
        cudaFree(workspace);
    workspace = NULL;
    workspace_bytes = 0;
    cudaError_t rc = cudaMalloc(&workspace, bytes);
    if (rc != cudaSuccess) {
        workspace = NULL;
        die("allocating the cuDNN workspace", cudaGetErrorString(rc));
        return 0;
    }
    workspace_bytes = bytes;
    return 1;
}

static int describe(conv_plan *p)
{
    const engine_conv_geom *a = &p->geo;
    cudnnMathType_t math =
        (g.flags & (ENGINE_CUDA_TF32 | ENGINE_CUDA_BF16)) ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
    int plane = a->OH * a->OW;
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
           dnn_ok(dnn.create_conv(&p->conv), "cudnnCreateConvolutionDescriptor") &&
           dnn_ok(dnn.set_conv(p->conv, a->pad_h, a->pad_w, a->stride, a->stride, 1, 1,
                               CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                  "cudnnSetConvolution2dDescriptor") &&
           dnn_ok(dnn.set_math(p->conv, math), "cudnnSetConvolutionMathType");
}

/* Times every algorithm of the three passes once for this shape. */
static int choose(conv_plan *p)
{
    cudnnConvolutionFwdAlgoPerf_t fp[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    cudnnConvolutionBwdDataAlgoPerf_t dp[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    cudnnConvolutionBwdFilterAlgoPerf_t wp[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int nf = 0, nd = 0, nw = 0;
    check(cudaStreamSynchronize(g.stream), "conv algorithm search");
    if (!dnn_ok(dnn.find_fwd(dnn.handle, p->x, p->w, p->conv, p->y,
                             CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &nf, fp),
                "cudnnFindConvolutionForwardAlgorithm") ||
        !dnn_ok(dnn.find_bwd_data(dnn.handle, p->w, p->y, p->conv, p->x,
                                  CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &nd, dp),
                "cudnnFindConvolutionBackwardDataAlgorithm") ||
        !dnn_ok(dnn.find_bwd_filter(dnn.handle, p->x, p->y, p->conv, p->w,
                                    CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &nw, wp),
                "cudnnFindConvolutionBackwardFilterAlgorithm"))
        return 0;
    int f = pick(fp, nf, 0), d = pick(dp, nd, 1), w = pick(wp, nw, 1);
    if (f < 0 || d < 0 || w < 0) {
        die("cuDNN algorithm search", "no algorithm ran for this convolution");
        return 0;
    }
    p->fwd = fp[f].algo;
    p->bwd_data = dp[d].algo;
    p->bwd_filter = wp[w].algo;
    if (!dnn_ok(dnn.ws_fwd(dnn.handle, p->x, p->w, p->conv, p->y, p->fwd, &p->ws_fwd),
                "cudnnGetConvolutionForwardWorkspaceSize") ||
        !dnn_ok(
            dnn.ws_bwd_data(dnn.handle, p->w, p->y, p->conv, p->x, p->bwd_data, &p->ws_bwd_data),
            "cudnnGetConvolutionBackwardDataWorkspaceSize") ||
        !dnn_ok(dnn.ws_bwd_filter(dnn.handle, p->x, p->y, p->conv, p->w, p->bwd_filter,
                                  &p->ws_bwd_filter),
                "cudnnGetConvolutionBackwardFilterWorkspaceSize"))
        return 0;
    size_t need = p->ws_fwd > p->ws_bwd_data ? p->ws_fwd : p->ws_bwd_data;
    need = need > p->ws_bwd_filter ? need : p->ws_bwd_filter;
    if (!grow_workspace(need))
        return 0;
    const engine_conv_geom *a = &p->geo;
    core_log_info("cuda: conv %dx%dx%d -> %d k%d s%d batch %d: cuDNN forward %s (%.3f ms), "
                  "backward data %s (%.3f ms), backward filter %s (%.3f ms)",
                  a->C, a->H, a->W, p->F, a->K, a->stride, p->batch,
                  algo_name(fwd_names, 8, p->fwd), fp[f].time,
                  algo_name(bwd_data_names, 6, p->bwd_data), dp[d].time,
                  algo_name(bwd_filter_names, 7, p->bwd_filter), wp[w].time);
    return 1;
}

static conv_plan *plan_for(const engine_conv_geom *geo, int F, int batch)
{
    for (int i = 0; i < nplans; i++)
        if (same_shape(&plans[i], geo, F, batch))
            return &plans[i];
    if (nplans == MAX_PLANS) {
        die("cuDNN plan cache", "more than 64 convolution shapes");
        return NULL;
    }
    conv_plan *p = &plans[nplans];
    memset(p, 0, sizeof *p);
    p->geo = *geo;
    p->F = F;
    p->batch = batch;
    if (!describe(p) || !choose(p))
        return NULL;
    nplans++;
    return p;
}

static void dnn_forward(float *y, const float *x, const float *w, const float *bias, int batch,
                        int F, const engine_conv_geom *geo, engine_act act)
{
    conv_plan *p = plan_for(geo, F, batch);
    if (!p)
        return;
    const float one = 1.0f, zero = 0.0f;
    dnn_ok(dnn.fwd(dnn.handle, &one, p->x, x, p->w, w, p->conv, p->fwd, workspace, p->ws_fwd, &zero,
                   p->y, y),
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
    const float one = 1.0f, zero = 0.0f, beta = accumulate ? 1.0f : 0.0f;
    if (dbias)
        bias_grad_nchw(dbias, dy, batch, F, geo->OH * geo->OW, accumulate);
    dnn_ok(dnn.bwd_filter(dnn.handle, &one, p->x, x, p->y, dy, p->conv, p->bwd_filter, workspace,
                          p->ws_bwd_filter, &beta, p->w, dw),
           "cudnnConvolutionBackwardFilter");
    if (dx)
        dnn_ok(dnn.bwd_data(dnn.handle, &one, p->w, w, p->y, dy, p->conv, p->bwd_data, workspace,
                            p->ws_bwd_data, &zero, p->x, dx),
               "cudnnConvolutionBackwardData");
}

#else /* built without cuDNN's headers: the fallback only */

static int dnn_load(core_error *err)
{
    return core_error_set(err, "ringtrain was built without cuDNN's headers");
}
static int dnn_fits(const engine_conv_geom *geo)
{
    (void)geo;
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

static void cu_conv_plan(const engine_conv_geom *geo, int F, int max_batch, size_t *work,
                         size_t *scratch)
{
    if (dnn_fits(geo)) {
        *work = 0;
        *scratch = 0;
        return;
    }
    size_t out = (size_t)F * max_batch * geo->OH * geo->OW;
    *work = cols_floats(geo, max_batch) + out;
    *scratch = cols_floats(geo, max_batch);
}

static void cu_conv_forward(float *y, const float *x, const float *w, const float *bias, int batch,
                            int F, const engine_conv_geom *geo, engine_act act, float *work)
{
    if (batch <= 0 || g.failed)
        return;
    if (dnn_fits(geo))
        dnn_forward(y, x, w, bias, batch, F, geo, act);
    else
        fallback_forward(y, x, w, bias, batch, F, geo, act, work);
}

static void cu_conv_backward(float *dx, float *dw, float *dbias, float *dy, const float *x,
                             const float *w, int batch, int F, const engine_conv_geom *geo,
                             int accumulate, float *work, float *scratch)
{
    if (batch <= 0 || g.failed)
        return;
    if (dnn_fits(geo))
        dnn_backward(dx, dw, dbias, dy, x, w, batch, F, geo, accumulate);
    else
        fallback_backward(dx, dw, dbias, dy, x, w, batch, F, geo, accumulate, work, scratch);
}

int cuda_conv_init(engine_ops *t, char *desc, size_t len, core_error *err)
{
    cudaError_t rc = cudaMalloc((void **)&bias_partial, BIAS_PARTIALS * sizeof(float));
    if (rc != cudaSuccess)
        return core_error_set(err, "cuda: cannot allocate the bias-gradient partials: %s",
                              cudaGetErrorString(rc));
    t->conv_out_chan_major = 0;
    t->conv_plan = cu_conv_plan;
    t->conv_forward = cu_conv_forward;
    t->conv_backward = cu_conv_backward;
    const char *want = getenv("RINGTRAIN_CUDNN");
    if (want && (strcmp(want, "off") == 0 || strcmp(want, "0") == 0)) {
        snprintf(desc, len, "convolutions: im2col + GEMM (RINGTRAIN_CUDNN=%s)", want);
        return 0;
    }
    core_error why = {0};
    if (dnn_load(&why) != 0) {
        snprintf(desc, len, "convolutions: im2col + GEMM (no cuDNN: %.200s)", why.msg);
        core_log_warn("cuda: cuDNN not available (%s); convolutions run as im2col + GEMM over "
                      "the batch",
                      why.msg);
        return 0;
    }
#ifdef RINGTRAIN_HAVE_CUDNN
    size_t v = dnn.version();
    snprintf(desc, len, "cuDNN %zu.%zu.%zu", v / 10000, (v / 100) % 100, v % 100);
#endif
    return 0;
}
