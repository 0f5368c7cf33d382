/*
 * tests/gpu/gpu_check.h: what the GPU check's files share (gpu_check.c: the
 * CNN ops, training and throughput; gpu_check_seq.c: the sequence ops).
 */
#ifndef TESTS_GPU_CHECK_H
#define TESTS_GPU_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "engine/engine.h"

#define TOL 1e-4

extern const engine_ops *C, *G; /* the CPU reference and the CUDA engine */
extern int failures;            /* rows that failed */
extern core_error err;

double now(void);
/* n uniform floats in [lo, hi) from seed (malloc'ed). */
float *host_rand(size_t n, uint64_t seed, float lo, float hi);
/* A device copy of host memory (exits 2 when the GPU is out of memory). */
void *dev_copy(const void *h, size_t bytes);
float *dev_f(const float *h, size_t n);
/* max |a-b| / max(1, |a|, |b|); NaN counts as infinite. */
double max_rel(const float *a, const float *b, size_t n);
/* Compares host `want` with device `got_dev` (n floats): one PASS/FAIL row at TOL. */
void report(const char *op, const float *want, const float *got_dev, size_t n);
void report_value(const char *op, double want, double got, double tol);

/* The text of a file (a spec) in a static buffer, or NULL. */
char *read_file(const char *path);

/* gpu_check_seq.c: every sequence op, CPU vs GPU (rows through report). */
void gpu_check_seq_ops(void);
/* `gpu_check seqbench SPEC B T [bf16]` (argv[1] == "seqbench"): creates the
 * engines itself when C and G are still NULL (bf16 needs that); exit code. */
int gpu_check_seq_bench(int argc, char **argv);

#endif
