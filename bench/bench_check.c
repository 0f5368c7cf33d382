/*
 * bench/bench_check.c: what the trainer's non-finite check of the gradients
 * costs on hier's zero-copy path, side by side in one run.
 *
 *   mpirun -np 2 build/bench/bench_check [--floats N] [--iters K]
 *
 * Three modes on the same node-shared buffer, alternating call by call so
 * that machine noise hits them alike, each behind a barrier:
 *   unchecked  the all-reduce alone (one bucket, no overlap)
 *   fused      the all-reduce with check_finite: hier finds the ranks with
 *              NaN or Inf inputs while it sums (what the trainer runs)
 *   scan+sum   a separate scan of the rank's buffer, then the all-reduce
 *              (what the trainer ran before the check was fused)
 * Prints the median time per call of each (the slowest rank's) and the
 * ratios to unchecked. Not a test; never run by ctest.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "dist/dist.h"

enum { UNCHECKED, FUSED, SCAN, NMODES };
static const char *names[NMODES] = {"unchecked", "fused", "scan+sum"};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int one_call(dist_world *w, dist_buckets *b, float *g, size_t n, int scan, double *t,
                    core_error *err)
{
    for (size_t i = 0; i < n; i++)
        g[i] = (float)(i % 7);
    if (dist_barrier(w, err) != 0)
        return -1;
    double t0 = core_now();
    volatile int bad = scan ? dist_has_nonfinite(g, n) : 0;
    (void)bad;
    dist_buckets_begin(b, 1);
    dist_buckets_ready(b, n);
    if (dist_buckets_wait(b, err) != 0)
        return -1;
    int32_t us = (int32_t)((core_now() - t0) * 1e7); /* 0.1 us */
    if (dist_max_i32(w, &us, 1, err) != 0)
        return -1;
    *t = 1e-7 * us;
    return 0;
}

int main(int argc, char **argv)
{
    size_t n = 421642; /* the tutorial CNN's gradients */
    int iters = 300;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--floats") == 0)
            n = (size_t)atol(argv[i + 1]);
        else if (strcmp(argv[i], "--iters") == 0)
            iters = atoi(argv[i + 1]);
    }
    core_error err;
    dist_world *w = NULL;
    if (dist_world_init(&argc, &argv, &w, &err) != 0) {
        fprintf(stderr, "bench_check: %s\n", err.msg);
        return 1;
    }
    float *g = n > 0 && iters > 0 ? dist_shared_alloc(w, n, &err) : NULL;
    dist_buckets *b[2] = {NULL, NULL};
    int rc = g ? 0 : -1;
    if (!g && n > 0 && iters > 0)
        fprintf(stderr, "bench_check: %s\n", err.msg);
    else if (!g)
        fprintf(stderr, "bench_check: --floats and --iters must be positive\n");
    for (int c = 0; c < 2 && rc == 0; c++) {
        dist_bucket_config cfg = {
            DIST_ALLREDUCE_HIER, n * sizeof(float), n * sizeof(float), 0.0, 0, c, NULL, 0};
        rc = dist_buckets_create(w, g, n, &cfg, &b[c], &err);
    }
    double *t = rc == 0 ? calloc((size_t)NMODES * (size_t)iters, sizeof *t) : NULL;
    if (rc == 0 && !t)
        rc = -1;
    for (int it = 0; it < iters && rc == 0; it++)
        for (int m = 0; m < NMODES && rc == 0; m++)
            rc = one_call(w, b[m == FUSED], g, n, m == SCAN, &t[(size_t)m * iters + it], &err);
    if (rc == 0 && dist_rank(w) == 0) {
        double med[NMODES];
        for (int m = 0; m < NMODES; m++) {
            qsort(t + (size_t)m * iters, (size_t)iters, sizeof *t, cmp_double);
            med[m] = t[(size_t)m * iters + iters / 2];
        }
        printf("bench_check: hier zero-copy all-reduce of %zu floats, %d ranks, median of %d "
               "calls each, alternating\n",
               n, dist_size(w), iters);
        for (int m = 0; m < NMODES; m++)
            printf("  %-10s %9.1f us  %.2fx unchecked\n", names[m], 1e6 * med[m],
                   med[UNCHECKED] > 0 ? med[m] / med[UNCHECKED] : 0.0);
    } else if (rc != 0 && t) {
        fprintf(stderr, "bench_check: %s\n", err.msg);
    }
    free(t);
    dist_buckets_free(b[0]);
    dist_buckets_free(b[1]);
    dist_shared_free(w, g);
    dist_world_finalize(w);
    return rc == 0 ? 0 : 1;
}
