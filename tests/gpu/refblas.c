/*
 * tests/gpu/refblas.c: a plain reference sgemm (row-major only, double
 * accumulation) behind tests/gpu/shim/cblas.h, so the GPU check's CPU
 * reference needs no BLAS library on the device machine.
 */
#include "cblas.h"

#include <stddef.h>

void cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M,
                 int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                 float beta, float *C, int ldc)
{
    (void)order; /* the engine only uses CblasRowMajor */
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0.0;
            for (int k = 0; k < K; k++) {
                float a = ta == CblasNoTrans ? A[(size_t)i * lda + k] : A[(size_t)k * lda + i];
                float b = tb == CblasNoTrans ? B[(size_t)k * ldb + j] : B[(size_t)j * ldb + k];
                s += (double)a * b;
            }
            float *c = &C[(size_t)i * ldc + j];
            *c = (float)(alpha * s + (beta == 0.0f ? 0.0 : (double)beta * *c));
        }
}

int openblas_get_num_threads(void)
{
    return 1;
}

void openblas_set_num_threads(int n)
{
    (void)n;
}

char *openblas_get_corename(void)
{
    static char name[] = "refblas";
    return name;
}

char *openblas_get_config(void)
{
    static char config[] = "tests/gpu/refblas.c (double accumulation, one thread)";
    return config;
}
