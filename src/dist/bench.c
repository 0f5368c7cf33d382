/*
 * dist/bench.c: the all-reduce benchmark behind `ringtrain bench allreduce`.
 *
 * Runs ringtrain's ring and MPI_Allreduce side by side in one job, on the same
 * buffers, alternating backend every iteration so that both see the same
 * machine state. A call's time is the slowest rank's; the table shows the
 * median over iterations, algorithm bandwidth (bytes / time) and bus
 * bandwidth (algbw * 2(p-1)/p, the traffic each link carries in a ring; the
 * figure to compare against link speed), and whether the sums were exact.
 */
#include "dist/dist_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/mem.h"

#define BENCH_BACKENDS 2

static const dist_allreduce_kind bench_kinds[BENCH_BACKENDS] = {DIST_ALLREDUCE_RING,
                                                                DIST_ALLREDUCE_MPI};

/* Small integers, so that every summation order gives the exact same float. */
static float bench_value(size_t i, int rank)
{
    return (float)((i * 7 + (size_t)rank * 3) % 64);
}

static void bench_fill(float *x, size_t n, int rank)
{
    for (size_t i = 0; i < n; i++)
        x[i] = bench_value(i, rank);
}

static int bench_check(const float *x, size_t n, int size)
{
    for (size_t i = 0; i < n; i++) {
        float want = 0.0f;
        for (int r = 0; r < size; r++)
            want += bench_value(i, r);
        if (x[i] != want)
            return 0;
    }
    return 1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct bench_result {
    double seconds; /* median time per call, slowest rank */
    int correct;    /* 1 when every rank had the exact sum */
} bench_result;

/* One timed call: the slowest rank's time. */
static int bench_call(dist_world *w, dist_allreduce_kind k, float *buf, const float *orig, size_t n,
                      double *seconds, core_error *err)
{
    memcpy(buf, orig, n * sizeof(float));
    if (dist_barrier(w, err) != 0)
        return -1;
    double t0 = MPI_Wtime();
    if (dist_allreduce_sum(w, k, buf, n, err) != 0)
        return -1;
    double dt = MPI_Wtime() - t0;
    int rc = MPI_Allreduce(&dt, seconds, 1, MPI_DOUBLE, MPI_MAX, w->ctl);
    return rc == MPI_SUCCESS ? 0 : dist_mpi_error(w, err, rc, "dist/bench: timing");
}

static int bench_size(dist_world *w, float *buf, const float *orig, size_t n, int iters,
                      double *times, bench_result *res, core_error *err)
{
    for (int b = 0; b < BENCH_BACKENDS; b++) {
        double warm;
        if (bench_call(w, bench_kinds[b], buf, orig, n, &warm, err) != 0)
            return -1;
        res[b].correct = dist_first_failed(w, !bench_check(buf, n, w->size)) < 0;
    }
    for (int it = 0; it < iters; it++)
        for (int b = 0; b < BENCH_BACKENDS; b++)
            if (bench_call(w, bench_kinds[b], buf, orig, n, &times[b * iters + it], err) != 0)
                return -1;
    for (int b = 0; b < BENCH_BACKENDS; b++) {
        qsort(times + b * iters, (size_t)iters, sizeof(double), cmp_double);
        res[b].seconds = times[b * iters + iters / 2];
    }
    return 0;
}

static void bench_print_header(const dist_world *w, int iters)
{
    char seg[32];
    core_log_info("all-reduce benchmark: %d ranks (%d per node), ring segment %s, "
                  "median of %d calls; GB/s = 1e9 B/s",
                  w->size, w->local_size,
                  core_format_bytes((double)dist_world_ring_segment(w), seg, sizeof seg), iters);
    core_log_info("%10s  %-5s %11s %10s %10s %8s", "size", "kind", "time/call", "algbw", "busbw",
                  "correct");
}

static void bench_print_row(const dist_world *w, size_t bytes, const bench_result *res)
{
    char sz[32];
    core_format_bytes((double)bytes, sz, sizeof sz);
    double factor = 2.0 * (w->size - 1) / w->size;
    for (int b = 0; b < BENCH_BACKENDS; b++) {
        double algbw = (double)bytes / res[b].seconds / 1e9;
        core_log_info("%10s  %-5s %9.3f ms %10.2f %10.2f %8s", b == 0 ? sz : "",
                      dist_allreduce_kind_name(bench_kinds[b]), res[b].seconds * 1e3, algbw,
                      algbw * factor, res[b].correct ? "yes" : "NO");
    }
    core_log_info("%10s  ring/mpi busbw ratio: %.2f", "", res[1].seconds / res[0].seconds);
}

int dist_bench_allreduce(dist_world *w, const size_t *bytes, int nsizes, int iters, core_error *err)
{
    static const size_t default_bytes[] = {1u << 20, 4u << 20, 16u << 20, 64u << 20};
    if (!bytes) {
        bytes = default_bytes;
        nsizes = (int)(sizeof default_bytes / sizeof default_bytes[0]);
    }
    if (iters < 1)
        iters = 1;
    size_t nmax = 0;
    for (int i = 0; i < nsizes; i++)
        if (bytes[i] / sizeof(float) > nmax)
            nmax = bytes[i] / sizeof(float);
    if (dist_world_reserve(w, nmax, err) != 0)
        return -1;
    float *buf = core_alloc((nmax ? nmax : 1) * sizeof(float), "benchmark buffer", err);
    float *orig = core_alloc((nmax ? nmax : 1) * sizeof(float), "benchmark buffer", err);
    double *times = core_alloc(sizeof(double) * BENCH_BACKENDS * (size_t)iters, "timings", err);
    int rc = (buf && orig && times) ? 0 : -1;
    if (rc == 0)
        bench_print_header(w, iters);
    for (int i = 0; rc == 0 && i < nsizes; i++) {
        size_t n = bytes[i] / sizeof(float);
        bench_result res[BENCH_BACKENDS];
        bench_fill(orig, n, w->rank);
        rc = bench_size(w, buf, orig, n, iters, times, res, err);
        if (rc == 0)
            bench_print_row(w, n * sizeof(float), res);
    }
    core_free(times);
    core_free(orig);
    core_free(buf);
    return rc == 0 ? 0 : core_error_prefix(err, "dist/bench");
}
