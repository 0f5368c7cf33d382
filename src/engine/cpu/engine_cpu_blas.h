/*
 * engine/cpu/engine_cpu_blas.h: which OpenBLAS kernel this process runs, what
 * the CPU could run, and the rank's threads.
 *
 * OpenBLAS (DYNAMIC_ARCH builds) picks its kernel once, when the library is
 * loaded; on a CPU model it does not know (a VM's "Intel(R) Xeon(R)
 * Processor") it can fall back to an old generic kernel and run 4-5x slower
 * without a word. The library only reports; the decision to restart the
 * process with OPENBLAS_CORETYPE set belongs to the command (cli/cpu.c).
 */
#ifndef ENGINE_CPU_BLAS_H
#define ENGINE_CPU_BLAS_H

#include <stddef.h>

/* The kernel OpenBLAS runs ("SkylakeX", "Haswell", "Prescott", ...). */
const char *engine_cpu_blas_core(void);
/* 1 when OpenBLAS was built with DYNAMIC_ARCH (OPENBLAS_CORETYPE works). */
int engine_cpu_blas_dynamic(void);
/* The best x86-64 kernel for this CPU's features ("Cooperlake" with
 * AVX-512 BF16, "SkylakeX" with AVX-512F, "Haswell" with AVX2 + FMA,
 * "Sandybridge" with AVX) and the feature's name in *feature; NULL on other
 * CPUs and architectures. */
const char *engine_cpu_blas_best(const char **feature);
/* The vector level a kernel name stands for: 3 AVX-512, 2 AVX2, 1 AVX,
 * 0 older (Prescott, Nehalem, Core2, ...). Case-insensitive. */
int engine_cpu_blas_level(const char *core);
/* 1 when OpenBLAS's kernel is older than the CPU supports (*best, *feature
 * say what it could run). */
int engine_cpu_blas_outdated(const char **best, const char **feature);

/* The rank's compute threads: the engine's non-GEMM ops run on a pool of n
 * threads (core/par.c) and its GEMMs are split over the same threads, so
 * OpenBLAS's own pool is set to 1 thread and the two never compete for the
 * cores. n = 1: everything on the calling thread. Returns the count set. */
int engine_cpu_set_threads(int n);

#endif
