/*
 * engine/cuda/engine_cuda_internal.h: what the CUDA engine's source files
 * share (engine_cuda.cu: memory, GEMM, convolution, the CNN ops, the
 * optimizer; engine_cuda_seq.cu: the sequence-model ops). One device per
 * process, so the stream, the library handles and the small result buffers
 * are one state object, created by engine_cuda().
 */
#ifndef ENGINE_CUDA_INTERNAL_H
#define ENGINE_CUDA_INTERNAL_H

extern "C" {
#include "engine/engine.h"
}

#include <cublas_v2.h>
#include <cuda_runtime.h>

#define THREADS  256
#define PARTIALS 1024 /* blocks (and partial sums) of the deterministic reductions */

/* Grid-stride loop over [0, n). */
#define FOR_EACH(i, n)                                                                             \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                        \
         i += (size_t)gridDim.x * blockDim.x)

namespace cuda_engine
{

/* The cuBLAS entry points the engine calls, from dlopen (load_cublas). */
struct cublas_api {
    void *lib;
    decltype(&cublasCreate_v2) create;
    decltype(&cublasSetStream_v2) set_stream;
    decltype(&cublasSetMathMode) set_math_mode;
    decltype(&cublasSgemm_v2) sgemm;
    cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                              const void *, const void *, cudaDataType, int, const void *,
                              cudaDataType, int, const void *, void *, cudaDataType, int,
                              cublasComputeType_t, cublasGemmAlgo_t); /* the C entry point */
    decltype(&cublasSgemmStridedBatched) sgemm_strided_batched;
    cublasStatus_t (*gemm_strided_batched_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t,
                                              int, int, int, const void *, const void *,
                                              cudaDataType, int, long long, const void *,
                                              cudaDataType, int, long long, const void *, void *,
                                              cudaDataType, int, long long, int,
                                              cublasComputeType_t, cublasGemmAlgo_t);
    decltype(&cublasGetStatusString) status_string;
};

struct engine_state {
    int ready, device, flags;
    cudaStream_t stream;
    cublasHandle_t blas;
    double *partial; /* PARTIALS doubles */
    double *acc;     /* [0] loss sum (double), [1] top-1 count (as unsigned long long) */
    int *flag;       /* non-finite flag */
    double *host;    /* pinned: 4 doubles of results */
    char name[192];
    int failed;      /* a CUDA/cuBLAS error happened (sticky) */
    char error[512]; /* its message */
};

extern cublas_api cb;
extern engine_state g;
extern engine_ops cuda_ops; /* the engine's table */

/* A device fault is sticky: the first is kept for status(), later ops do nothing. */
void die(const char *what, const char *detail);
void check(cudaError_t rc, const char *what);
void check_launch(const char *what);
void check_blas(cublasStatus_t rc, const char *what);
/* dlopen of soname from the loader's path, else from each of the n
 * directories of dirs (NULL entries are skipped). */
void *open_library(const char *soname, const char *const *dirs, int n);
/* Blocks of THREADS for n elements (capped; kernels loop with FOR_EACH). */
unsigned grid_for(size_t n);
/* Row-major C_i = alpha op(A_i) op(B_i) + beta C_i for i < count, A_i = A + i * stride_a
 * (likewise B, C), in the engine's precision (fp32, or bf16 tensor cores with
 * ENGINE_CUDA_BF16): attention's per-head products in one call. */
void gemm_strided_batched(int trans_a, int trans_b, int M, int N, int K, float alpha,
                          const float *A, int lda, long long stride_a, const float *B, int ldb,
                          long long stride_b, float beta, float *C, int ldc, long long stride_c,
                          int count);

} // namespace cuda_engine

/* engine_cuda_conv.cu: fills the convolution entries of the table and opens
 * cuDNN when it is there; desc receives what convolutions run on. */
int cuda_conv_init(engine_ops *t, char *desc, size_t len, core_error *err);

/* engine_cuda_seq.cu: fills the sequence-model entries of the table. */
void cuda_fill_seq_ops(engine_ops *t);

#endif
