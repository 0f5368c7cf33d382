/*
 * tests/gpu/shim/cblas.h: the BLAS calls the CPU engine makes, for the
 * GPU check's stand-alone build on a machine without OpenBLAS (the device
 * machine). tests/gpu/refblas.c implements it; the real build uses OpenBLAS.
 */
#ifndef RT_GPU_SHIM_CBLAS_H
#define RT_GPU_SHIM_CBLAS_H

enum CBLAS_ORDER { CblasRowMajor = 101, CblasColMajor = 102 };
enum CBLAS_TRANSPOSE { CblasNoTrans = 111, CblasTrans = 112, CblasConjTrans = 113 };

void cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M,
                 int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                 float beta, float *C, int ldc);
/* OpenBLAS's thread count (the reference sgemm has one thread). */
int openblas_get_num_threads(void);

#endif
