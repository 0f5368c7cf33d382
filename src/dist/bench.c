/*
 * dist/bench.c: the all-reduce benchmark behind `ringtrain bench allreduce`.
 *
 * Runs the chosen backends (ring, mpi, hier) side by side in one job, on the
 * same buffers, alternating backend every iteration so that all see the same
 * machine state. A call's time is the slowest rank's; the table shows the
 * median over iterations, algorithm bandwidth (bytes / time) and bus
 * bandwidth (algbw * 2(p-1)/p, the traffic each link carries in a ring; the
 * figure to compare against link speed), whether the sums were exact (checked
 * on an untimed first call, with the per-call length check on; timed calls run
 * without it) and each backend's speed-up over MPI_Allreduce.
 */
#include "dist/dist_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/mem.h"

#define BENCH_MAX_KINDS 8

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

static int bench_size(dist_world *w, const dist_bench_config *cfg, float *buf, const float *orig,
                      size_t n, double *times, bench_result *res, core_error *err)
{
    int iters = cfg->iters;
    /* Untimed first call per backend, with the length check on: correctness. */
    for (int b = 0; b < cfg->nkinds; b++) {
        double warm;
        if (bench_call(w, cfg->kinds[b], buf, orig, n, &warm, err) != 0)
            return -1;
        res[b].correct = dist_first_failed(w, !bench_check(buf, n, w->size)) < 0;
    }
    int check = w->length_check;
    w->length_check = 0;
    for (int it = 0; it < iters; it++)
        for (int b = 0; b < cfg->nkinds; b++)
            if (bench_call(w, cfg->kinds[b], buf, orig, n, &times[b * iters + it], err) != 0) {
                w->length_check = check;
                return -1;
            }
    w->length_check = check;
    for (int b = 0; b < cfg->nkinds; b++) {
        qsort(times + b * iters, (size_t)iters, sizeof(double), cmp_double);
        res[b].seconds = times[b * iters + iters / 2];
    }
    return 0;
}

static int find_kind(const dist_bench_config *cfg, dist_allreduce_kind k)
{
    for (int b = 0; b < cfg->nkinds; b++)
        if (cfg->kinds[b] == k)
            return b;
    return -1;
}

static void bench_print_header(const dist_world *w, const dist_bench_config *cfg)
{
    char seg[32], line[1024];
    core_log_info("all-reduce benchmark: %d ranks (%d per node), ring segment %s, median of %d "
                  "calls; time per call is the slowest rank's; GB/s = 1e9 B/s; "
                  "busbw = algbw * 2(n-1)/n",
                  w->size, w->local_size,
                  core_format_bytes((double)dist_world_ring_segment(w), seg, sizeof seg),
                  cfg->iters);
    int len = snprintf(line, sizeof line, "%10s", "");
    for (int b = 0; b < cfg->nkinds; b++)
        len += snprintf(line + len, sizeof line - (size_t)len, " | %-35s",
                        dist_allreduce_kind_name(cfg->kinds[b]));
    core_log_info("%s", line);
    len = snprintf(line, sizeof line, "%10s", "size");
    for (int b = 0; b < cfg->nkinds; b++)
        len += snprintf(line + len, sizeof line - (size_t)len, " | %11s %7s %7s %7s", "time/call",
                        "algbw", "busbw", "correct");
    int mpi = find_kind(cfg, DIST_ALLREDUCE_MPI);
    for (int b = 0; mpi >= 0 && b < cfg->nkinds; b++)
        if (b != mpi)
            len += snprintf(line + len, sizeof line - (size_t)len, " | %s/mpi",
                            dist_allreduce_kind_name(cfg->kinds[b]));
    core_log_info("%s", line);
}

static void bench_print_row(const dist_world *w, const dist_bench_config *cfg, size_t bytes,
                            const bench_result *res)
{
    char sz[32], line[1024];
    core_format_bytes((double)bytes, sz, sizeof sz);
    double factor = w->size > 1 ? 2.0 * (w->size - 1) / w->size : 1.0;
    int len = snprintf(line, sizeof line, "%10s", sz);
    for (int b = 0; b < cfg->nkinds; b++) {
        double algbw = res[b].seconds > 0 ? (double)bytes / res[b].seconds / 1e9 : 0.0;
        len += snprintf(line + len, sizeof line - (size_t)len, " | %8.3f ms %7.2f %7.2f %7s",
                        res[b].seconds * 1e3, algbw, algbw * factor, res[b].correct ? "yes" : "NO");
    }
    /* Same bytes and factor for every backend: the busbw ratio is the time ratio. */
    int mpi = find_kind(cfg, DIST_ALLREDUCE_MPI);
    for (int b = 0; mpi >= 0 && b < cfg->nkinds; b++)
        if (b != mpi)
            len += snprintf(line + len, sizeof line - (size_t)len, " | %*.2fx",
                            (int)strlen(dist_allreduce_kind_name(cfg->kinds[b])) + 3,
                            res[b].seconds > 0 ? res[mpi].seconds / res[b].seconds : 0.0);
    core_log_info("%s", line);
}

/* A node-shared buffer of n floats, what the trainer reduces with hier
 * (hier's zero-copy path; the other backends treat it as ordinary memory),
 * or private memory when /dev/shm lacks room (one warning, from rank 0). */
static float *bench_alloc(dist_world *w, size_t n, const char *who, int *shared, core_error *err)
{
    char why[256];
    *shared = dist_shared_fits(w, n, why, sizeof why);
    if (!*shared && w->rank == 0)
        core_log_warn("%s: %s; every backend reduces private memory instead (hier through its "
                      "staging slots)",
                      who, why);
    return *shared ? dist_shared_alloc(w, n, err)
                   : core_alloc(n * sizeof(float), "benchmark buffer", err);
}

static void bench_free(dist_world *w, float *p, int shared)
{
    if (shared)
        dist_shared_free(w, p);
    else
        core_free(p);
}

int dist_bench_allreduce_run(dist_world *w, const dist_bench_config *cfg_in, core_error *err)
{
    static const size_t default_bytes[] = {1u << 20, 4u << 20, 16u << 20, 64u << 20};
    static const dist_allreduce_kind default_kinds[] = {DIST_ALLREDUCE_RING, DIST_ALLREDUCE_MPI,
                                                        DIST_ALLREDUCE_HIER};
    dist_bench_config cfg = *cfg_in;
    if (!cfg.bytes || cfg.nsizes <= 0) {
        cfg.bytes = default_bytes;
        cfg.nsizes = (int)(sizeof default_bytes / sizeof default_bytes[0]);
    }
    if (!cfg.kinds || cfg.nkinds <= 0) {
        cfg.kinds = default_kinds;
        cfg.nkinds = 3;
    }
    if (cfg.nkinds > BENCH_MAX_KINDS)
        return core_error_set(err, "dist/bench: at most %d backends at once", BENCH_MAX_KINDS);
    if (cfg.iters < 1)
        cfg.iters = 1;
    size_t nmax = 0;
    for (int i = 0; i < cfg.nsizes; i++)
        if (cfg.bytes[i] / sizeof(float) > nmax)
            nmax = cfg.bytes[i] / sizeof(float);
    if (dist_world_reserve(w, nmax, err) != 0)
        return -1;
    /* Every backend reduces the same shared buffer: what the trainer gives
     * them (its gradients live in one), and hier's zero-copy path. */
    int shared;
    float *buf = bench_alloc(w, nmax ? nmax : 1, "bench allreduce", &shared, err);
    float *orig = core_alloc((nmax ? nmax : 1) * sizeof(float), "benchmark buffer", err);
    double *times =
        core_alloc(sizeof(double) * (size_t)cfg.nkinds * (size_t)cfg.iters, "timings", err);
    int rc = (buf && orig && times) ? 0 : -1;
    if (rc == 0)
        bench_print_header(w, &cfg);
    for (int i = 0; rc == 0 && i < cfg.nsizes; i++) {
        size_t n = cfg.bytes[i] / sizeof(float);
        bench_result res[BENCH_MAX_KINDS];
        bench_fill(orig, n, w->rank);
        rc = bench_size(w, &cfg, buf, orig, n, times, res, err);
        if (rc == 0)
            bench_print_row(w, &cfg, n * sizeof(float), res);
    }
    core_free(times);
    core_free(orig);
    bench_free(w, buf, shared);
    return rc == 0 ? 0 : core_error_prefix(err, "dist/bench");
}

int dist_bench_allreduce(dist_world *w, const size_t *bytes, int nsizes, int iters, core_error *err)
{
    static const dist_allreduce_kind kinds[] = {DIST_ALLREDUCE_RING, DIST_ALLREDUCE_MPI};
    dist_bench_config cfg = {bytes, nsizes, kinds, 2, iters};
    return dist_bench_allreduce_run(w, &cfg, err);
}

static double cpu_clock(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A fixed amount of cache-resident arithmetic, standing in for backward.
 * Returns the wall time; *others gets the CPU time that the process's OTHER
 * threads (the comm thread, MPI's) used meanwhile. */
static double compute_loop(float *x, size_t n, int reps, double *others)
{
    double t0 = MPI_Wtime();
    double p0 = cpu_clock(CLOCK_PROCESS_CPUTIME_ID), c0 = cpu_clock(CLOCK_THREAD_CPUTIME_ID);
    for (int r = 0; r < reps; r++)
        for (size_t i = 0; i < n; i++)
            x[i] = x[i] * 0.999f + 0.001f;
    double mine = cpu_clock(CLOCK_THREAD_CPUTIME_ID) - c0;
    *others = cpu_clock(CLOCK_PROCESS_CPUTIME_ID) - p0 - mine;
    return MPI_Wtime() - t0;
}

/* Barrier and broadcast that wait with backoff: a blocking MPI_Barrier
 * would spin on the rank that finishes first and slow the others down. */
static int polite_barrier(dist_world *w, core_error *err)
{
    MPI_Request req;
    int rc = MPI_Ibarrier(w->ctl, &req);
    if (rc != MPI_SUCCESS)
        return dist_mpi_error(w, err, rc, "MPI_Ibarrier");
    return dist_wait_req(w, &req, -1, "barrier", err);
}

static int polite_bcast(dist_world *w, double *x, int n, core_error *err)
{
    MPI_Request req;
    int rc = MPI_Ibcast(x, n, MPI_DOUBLE, 0, w->ctl, &req);
    if (rc != MPI_SUCCESS)
        return dist_mpi_error(w, err, rc, "MPI_Ibcast");
    return dist_wait_req(w, &req, 0, "broadcast", err);
}

/*
 * One trial: rank 0 hands its whole buffer to the comm thread (if `pending`)
 * and computes; every other rank computes first and only then joins the
 * all-reduce, so rank 0's comm thread waits for the whole compute time.
 * r[0] = rank 0's compute wall time, r[1] = the CPU time its other threads
 * used meanwhile.
 */
static int idle_trial(dist_world *w, dist_buckets *b, size_t n, float *work, size_t wn, int reps,
                      int pending, double r[2], core_error *err)
{
    if (polite_barrier(w, err) != 0)
        return -1;
    if (pending && w->rank == 0) {
        dist_buckets_begin(b, 1);
        dist_buckets_ready(b, n);
    }
    r[0] = compute_loop(work, wn, reps, &r[1]);
    if (pending && w->rank != 0) {
        dist_buckets_begin(b, 1);
        dist_buckets_ready(b, n);
    }
    if (pending && dist_buckets_wait(b, err) != 0)
        return -1;
    return polite_bcast(w, r, 2, err);
}

int dist_bench_idle(dist_world *w, dist_allreduce_kind kind, int trials, core_error *err)
{
    if (w->size < 2)
        return core_error_set(err, "dist/bench idle: needs at least 2 ranks");
    size_t n = (size_t)1 << 20, wn = 16384;
    int reps = 1000;
    int shared;
    float *g = bench_alloc(w, n, "bench idle", &shared, err);
    float *work = core_alloc(wn * sizeof(float), "work", err);
    /* [case][trial]: wall time, and the other threads' CPU time. */
    double *wall = core_alloc(sizeof(double) * 3 * (size_t)trials, "timings", err);
    double *cpu = core_alloc(sizeof(double) * 3 * (size_t)trials, "timings", err);
    dist_bucket_config cfg = {kind, 0, 0, 0, 1, 0, NULL, 0};
    dist_buckets *b = NULL;
    int rc = g && work && wall && cpu ? dist_buckets_create(w, g, n, &cfg, &b, err) : -1;
    if (rc == 0) {
        /* About half a second of compute per trial, as rank 0 measures it. */
        double unused, dt = compute_loop(work, wn, reps, &unused);
        double r = reps * (0.5 / (dt > 1e-6 ? dt : 1e-6));
        rc = polite_bcast(w, &r, 1, err);
        reps = (int)r;
    }
    int spin = w->wait_spin;
    /* The three cases alternate every trial, so that all see the same machine. */
    static const int pending[3] = {0, 1, 1}, spinning[3] = {0, 0, 1};
    for (int i = 0; rc == 0 && i < trials; i++)
        for (int c = 0; rc == 0 && c < 3; c++) {
            double r[2];
            w->wait_spin = spinning[c];
            rc = idle_trial(w, b, n, work, wn, reps, pending[c], r, err);
            wall[c * trials + i] = r[0];
            cpu[c * trials + i] = r[1] / r[0];
        }
    w->wait_spin = spin;
    if (rc == 0) {
        static const char *names[3] = {"no collective pending", "comm thread waiting (backoff)",
                                       "comm thread waiting (spinning)"};
        core_log_info("comm thread cost to compute: %d ranks, %s, median of %d trials; rank 0 "
                      "computes ~0.5 s while its comm thread waits for peers still computing",
                      w->size, dist_allreduce_kind_name(kind), trials);
        core_log_info("  %-32s %12s %26s", "case", "compute wall", "CPU of rank 0's other threads");
        for (int c = 0; c < 3; c++) {
            qsort(wall + c * trials, (size_t)trials, sizeof(double), cmp_double);
            qsort(cpu + c * trials, (size_t)trials, sizeof(double), cmp_double);
            core_log_info("  %-32s %10.3f s %19.1f%% of a core", names[c],
                          wall[c * trials + trials / 2], 100.0 * cpu[c * trials + trials / 2]);
        }
    }
    dist_buckets_free(b);
    core_free(cpu);
    core_free(wall);
    core_free(work);
    bench_free(w, g, shared);
    return rc == 0 ? 0 : core_error_prefix(err, "dist/bench idle");
}
