/*
 * cli/cpu.h: the process's CPU set-up, shared by `train` and `bench`: the
 * OpenBLAS kernel check, which runs before MPI starts and may restart the
 * process once with OPENBLAS_CORETYPE set (docs/PERFORMANCE.md, "The BLAS
 * kernel"), and the `--blas-coretype` flag.
 */
#ifndef CLI_CPU_H
#define CLI_CPU_H

#include "core/error.h"

/* Before MPI_Init: when OpenBLAS runs a kernel older than the CPU supports
 * and neither OPENBLAS_CORETYPE nor --blas-coretype chose it, or when
 * --blas-coretype names another kernel, restarts the process (execvp of
 * argv) with OPENBLAS_CORETYPE set; at most once per process tree. Returns
 * only when no restart was needed or it failed. */
void cli_cpu_reexec(int argc, char **argv);
/* After MPI_Init, on every rank: checks RINGTRAIN_CPU_CONV's value and that
 * --blas-coretype (NULL: none;
 * "openblas": OpenBLAS's own choice, never corrected, for measuring it) took
 * effect (-1 with a usage message if not) and prints, on rank 0, the
 * one line that says a kernel was corrected or could not be. */
int cli_cpu_check(const char *blas_coretype, int rank0, core_error *err);

#endif
