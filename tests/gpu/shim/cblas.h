/*
 * tests/gpu/shim/cblas.h: the BLAS calls the CPU engine makes, for the
 * GPU check's stand-alone build on a machine without OpenBLAS (the device
 * machine). tests/gpu/refblas.c implements it; the real build uses OpenBLAS.
 */
#ifndef RT_GPU_SHIM_CBLAS_H
#define RT_GPU_SHIM_CBLAS_H

typedef enum CBLAS_ORDER { CblasRowMajor = 101, CblasColMajor = 102 } CBLAS_ORDER;
typedef enum CBLAS_TRANSPOSE {
    CblasNoTrans = 111,
    CblasTrans = 112,
    CblasConjTrans = 113
} CBLAS_TRANSPOSE;

void cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M,
                 int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                 float beta, float *C, int ldc);
/* OpenBLAS's own calls: the reference sgemm has one thread and names
 * itself as its kernel. */
int openblas_get_num_threads(void);
void openblas_set_num_threads(int n);
char *openblas_get_corename(void);
char *openblas_get_config(void);

#endif
