/*
 * train/bench_step.c: `ringtrain bench step` (see bench_step.h).
 *
 * The two modes alternate step by step on the same model and buffers, so
 * machine noise hits both alike. Per mode and phase the median over ranks'
 * maxima is reported: a step is as slow as its slowest rank.
 *
 *   communication alone  = the all-reduce time without overlap (it all runs
 *                          inside dist_buckets_wait, after backward), with
 *                          the trainer's non-finite check of the gradients
 *   exposed              = dist_buckets_wait with overlap (what backward did
 *                          not hide)
 *   hidden               = 1 - exposed / communication alone
 *
 * "optimizer" is the scale by 1/batch and the optimizer step; when the step
 * is sharded (hier on the CPU, as train does), this rank's slice and the
 * all-gather of the others' slices.
 */
#define _GNU_SOURCE /* sched_getaffinity */
#include "train/bench_step.h"
#include "train/train.h"

#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/rng.h"
#include "core/sum.h"
#include "nn/model.h"
#include "optim/optim.h"
#include "train/eval.h"

enum { PH_FWD, PH_BWD, PH_COMM, PH_OPT, PH_STEP, PH_COUNT };
static const char *phase_names[PH_COUNT] = {"forward", "backward", "comm wait", "optimizer",
                                            "step"};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static char *read_spec(const char *path, core_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        core_error_set(err, "%s: cannot open model spec", path);
        return NULL;
    }
    char *text = calloc(1, 1 << 20);
    size_t len = text ? fread(text, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (!text || len == 0) {
        free(text);
        core_error_set(err, "%s: empty or unreadable model spec", path);
        return NULL;
    }
    return text;
}

typedef struct bench_ctx {
    nn_model *m;
    optim opt;
    float *x;
    int32_t *y;
    int local;
    float scale;
    int sharded; /* the optimizer step updates [sa, sb), then the all-gather */
    size_t sa, sb;
    dist_world *w;
} bench_ctx;

/* What the trainer does after the all-reduce: the division by the batch
 * with the gradient norm in the same pass, then the optimizer step (sharded:
 * this rank's slice and the all-gather). */
static int bench_update(bench_ctx *b, core_error *err)
{
    size_t n = nn_model_param_count(b->m);
    float *g = nn_model_grads(b->m);
    volatile double ss = core_scale_sum_squares(g, n, b->scale);
    (void)ss;
    if (!b->sharded) {
        optim_step(&b->opt, nn_model_params(b->m), g, b->opt.cfg.lr);
        return 0;
    }
    optim_step_slice(&b->opt, nn_model_params(b->m), g, b->opt.cfg.lr, b->sa, b->sb);
    return dist_shared_allgather(b->w, nn_model_params(b->m), n, err);
}

/* One step in the given bucket mode; t[] receives the phase durations. */
static int timed_step(bench_ctx *b, dist_buckets *buckets, long step, double *t, core_error *err)
{
    nn_stats st = {0};
    double t0 = core_now();
    nn_model_forward(b->m, b->x, b->y, b->local, 1, &st);
    double t1 = core_now();
    dist_buckets_begin(buckets, step);
    nn_model_backward(b->m, 0, dist_buckets_on_ready, buckets);
    double t2 = core_now();
    if (dist_buckets_wait(buckets, err) != 0)
        return -1;
    int local[DIST_FLAG_COUNT] = {0}, first[DIST_FLAG_COUNT];
    local[DIST_FLAG_NONFINITE] = dist_buckets_nonfinite(buckets);
    if (dist_agree_flags(b->w, step, local, first, DIST_FLAG_COUNT, err) != 0)
        return -1;
    double t3 = core_now();
    if (bench_update(b, err) != 0)
        return -1;
    double t4 = core_now();
    t[PH_FWD] = t1 - t0;
    t[PH_BWD] = t2 - t1;
    t[PH_COMM] = t3 - t2;
    t[PH_OPT] = t4 - t3;
    t[PH_STEP] = t4 - t0;
    return 0;
}

/* Alternates overlap on / off step by step; prints the medians. */
static int bench_run(dist_world *w, const train_bench_step_config *cfg, bench_ctx *b,
                     dist_buckets *modes[2], core_error *err)
{
    int steps = cfg->steps;
    double *samples = calloc((size_t)2 * PH_COUNT * (size_t)steps, sizeof(double));
    if (!samples)
        return core_error_set(err, "bench step: out of memory");
    int rc = 0;
    long step = 0;
    for (int i = 0; i < cfg->warmup + steps && rc == 0; i++) {
        for (int mode = 0; mode < 2 && rc == 0; mode++) {
            double t[PH_COUNT] = {0}, tmax[PH_COUNT];
            rc = dist_barrier(w, err); /* every rank starts the step together */
            if (rc == 0)
                rc = timed_step(b, modes[mode], step++, t, err);
            /* a step is as slow as its slowest rank */
            int32_t us[PH_COUNT];
            for (int p = 0; p < PH_COUNT; p++)
                us[p] = (int32_t)(t[p] * 1e6);
            if (rc == 0)
                rc = dist_max_i32(w, us, PH_COUNT, err);
            for (int p = 0; p < PH_COUNT; p++)
                tmax[p] = 1e-6 * (double)us[p];
            if (rc == 0 && i >= cfg->warmup)
                for (int p = 0; p < PH_COUNT; p++)
                    samples[((size_t)mode * PH_COUNT + (size_t)p) * (size_t)steps +
                            (size_t)(i - cfg->warmup)] = tmax[p];
        }
    }
    if (rc == 0 && dist_rank(w) == 0) {
        double med[2][PH_COUNT];
        for (int mode = 0; mode < 2; mode++)
            for (int p = 0; p < PH_COUNT; p++)
                med[mode][p] =
                    median(samples + ((size_t)mode * PH_COUNT + (size_t)p) * (size_t)steps, steps);
        printf("%-12s", "");
        for (int p = 0; p < PH_COUNT; p++)
            printf(" %11s", phase_names[p]);
        printf("   (ms, median of %d steps, slowest rank)\n", steps);
        const char *labels[2] = {"overlap on", "overlap off"};
        for (int mode = 0; mode < 2; mode++) {
            printf("%-12s", labels[mode]);
            for (int p = 0; p < PH_COUNT; p++)
                printf(" %11.2f", 1e3 * med[mode][p]);
            printf("\n");
        }
        double alone = med[1][PH_COMM], exposed = med[0][PH_COMM];
        double hidden = alone > 0 ? 100.0 * (1.0 - exposed / alone) : 0.0;
        printf("communication: %.2f ms without overlap, %.2f ms exposed with overlap: %.0f%% "
               "hidden behind backward; step %.2f -> %.2f ms (%.2fx)\n",
               1e3 * alone, 1e3 * exposed, hidden, 1e3 * med[1][PH_STEP], 1e3 * med[0][PH_STEP],
               med[0][PH_STEP] > 0 ? med[1][PH_STEP] / med[0][PH_STEP] : 0.0);
        fflush(stdout);
    }
    free(samples);
    return rc;
}

/* The model for `local` samples per rank (global batch `global`), Adam,
 * synthetic inputs; one bucket scheduler per mode (overlap[mode]), with the
 * trainer's non-finite check; the sharded optimizer step when asked and
 * possible. Collective. */
static int bench_setup(dist_world *w, const char *model_path, int local, int global,
                       dist_allreduce_kind kind, size_t first_bytes, size_t bucket_bytes, int shard,
                       const int *overlap, int nmodes, bench_ctx *b, dist_buckets **modes,
                       core_error *err)
{
    b->w = w;
    b->local = local;
    b->scale = 1.0f / (float)global;
    char *spec = read_spec(model_path, err);
    int failed = !spec || nn_model_create(spec, model_path, local, &b->m, err) != 0;
    free(spec);
    if (dist_first_failed(w, failed) >= 0)
        return failed ? -1 : core_error_set(err, "bench: another rank failed to build the model");
    nn_model_init_params(b->m, 1);
    optim_config oc = optim_config_default(OPTIM_ADAM);
    int rc = optim_create(&b->opt, &oc, nn_model_param_count(b->m), err);
    size_t in = nn_model_input_size(b->m);
    if (rc == 0) {
        b->x = core_alloc((size_t)local * in * sizeof(float), "bench inputs", err);
        b->y = core_alloc((size_t)local * sizeof(int32_t), "bench labels", err);
        rc = b->x && b->y ? 0 : -1;
    }
    if (dist_first_failed(w, rc != 0) >= 0)
        return rc != 0 ? -1 : core_error_set(err, "bench: another rank is out of memory");
    core_rng r = core_rng_make(7, (uint64_t)dist_rank(w));
    for (size_t i = 0; i < (size_t)local * in; i++)
        b->x[i] = core_rng_uniform(&r);
    for (int i = 0; i < local; i++)
        b->y[i] = (int32_t)core_rng_below(&r, (uint64_t)nn_model_num_classes(b->m));
    for (int mode = 0; mode < nmodes && rc == 0; mode++) {
        dist_bucket_config bc = {kind, first_bytes, bucket_bytes, 0.0, overlap[mode], 1, NULL, 0};
        rc = train_buckets_create(w, b->m, bc, &modes[mode], err);
    }
    if (rc == 0) {
        int sh = train_shard_params(w, b->m, shard, &b->sa, &b->sb, err);
        rc = sh < 0 ? -1 : 0;
        b->sharded = sh > 0;
    }
    return rc;
}

static void bench_teardown(bench_ctx *b, dist_buckets **modes, int nmodes)
{
    for (int mode = 0; mode < nmodes; mode++)
        dist_buckets_free(modes[mode]);
    core_free(b->x);
    core_free(b->y);
    if (b->opt.m)
        optim_destroy(&b->opt);
    nn_model_free(b->m);
}

int train_bench_step(dist_world *w, const train_bench_step_config *cfg, core_error *err)
{
    bench_ctx b = {0};
    int rank = dist_rank(w), size = dist_size(w);
    int local = cfg->batch / size + (rank < cfg->batch % size ? 1 : 0);
    if (cfg->batch < size)
        return core_error_set(err, "bench step: --batch-size %d is smaller than the %d ranks",
                              cfg->batch, size);
    train_cpu_setup(w, cfg->threads);
    dist_buckets *modes[2] = {NULL, NULL};
    const int overlap[2] = {1, 0};
    int rc = bench_setup(w, cfg->model_path, local, cfg->batch, cfg->kind, cfg->first_bucket_bytes,
                         cfg->bucket_bytes, cfg->shard_optim, overlap, 2, &b, modes, err);
    if (rc == 0) {
        size_t n = nn_model_param_count(b.m);
        char hb[32];
        core_log_info("bench step: %s, %zu parameters (%s of gradients), %d rank(s), global "
                      "batch %d (%d per rank), all-reduce %s in %d bucket(s), optimizer step %s",
                      cfg->model_path, n, core_format_bytes((double)n * 4.0, hb, sizeof hb), size,
                      cfg->batch, b.local, dist_allreduce_kind_name(cfg->kind),
                      dist_buckets_count(modes[0]), b.sharded ? "sharded" : "whole");
        rc = bench_run(w, cfg, &b, modes, err);
    }
    bench_teardown(&b, modes, 2);
    return rc;
}

/* ---- bench scaling ---- */

/* What a 1-rank job's step does: forward, backward, the non-finite scan,
 * the scale with the norm, the whole optimizer step (no all-reduce, no flags
 * to agree; solo models are never sharded). */
static int alone_step(bench_ctx *b, core_error *err)
{
    nn_stats st = {0};
    nn_model_forward(b->m, b->x, b->y, b->local, 1, &st);
    nn_model_backward(b->m, 0, NULL, NULL);
    volatile int bad = dist_has_nonfinite(nn_model_grads(b->m), nn_model_param_count(b->m));
    (void)bad;
    return bench_update(b, err);
}

/* One phase of `steps` steps; returns its seconds. who < 0: every rank
 * together (the slowest rank's time); else rank `who` alone while the
 * others sleep in an idle barrier. */
static int phase(dist_world *w, bench_ctx *b, bench_ctx *solo, dist_buckets *bk, int who, int steps,
                 long *step, double *secs, core_error *err)
{
    if (dist_barrier(w, err) != 0)
        return -1;
    int32_t us = 0;
    if (who < 0 || dist_rank(w) == who) {
        double t0 = core_now(), t[PH_COUNT];
        for (int i = 0; i < steps; i++) {
            if (who >= 0 ? alone_step(solo, err) != 0 : timed_step(b, bk, (*step)++, t, err) != 0)
                return -1;
        }
        us = (int32_t)((core_now() - t0) * 1e6);
    }
    if (who >= 0 && dist_barrier_idle(w, err) != 0)
        return -1;
    if (dist_max_i32(w, &us, 1, err) != 0)
        return -1;
    *secs = 1e-6 * (double)us;
    return 0;
}

static void report_scaling(const train_bench_scaling_config *cfg, int size, const double *t)
{
    int R = cfg->rounds, P = size + 1; /* per round: together, then each rank alone */
    double *mean = malloc((size_t)R * 3 * sizeof *mean), *slow = mean + R, *tog = mean + 2 * R;
    if (!mean)
        return;
    printf("round  together ms/step  alone ms/step (rank 0..%d)  vs mean 1-rank  vs slowest "
           "1-rank\n",
           size - 1);
    for (int r = 0; r < R; r++) {
        const double *x = t + (size_t)r * (size_t)P;
        double inv = 0.0, worst = 0.0;
        tog[r] = x[0] / cfg->steps;
        printf("%5d  %16.3f ", r + 1, 1e3 * tog[r]);
        for (int q = 0; q < size; q++) {
            double a = x[1 + q] / cfg->steps;
            inv += 1.0 / a;
            worst = a > worst ? a : worst;
            printf(" %.3f", 1e3 * a);
        }
        /* size-rank throughput over the sum of the 1-rank throughputs */
        mean[r] = (double)size / (tog[r] * inv);
        slow[r] = worst / tog[r];
        printf("   %.3f  %.3f\n", mean[r], slow[r]);
    }
    printf("%d-rank throughput = %.3f x the sum of the 1-rank throughputs of its cores (median "
           "of %d rounds); %.3f x %d x the slowest core's\n",
           size, median(mean, R), R, median(slow, R), size);
    printf("median step: %.3f ms together\n", 1e3 * median(tog, R));
    fflush(stdout);
    free(mean);
}

int train_bench_scaling(dist_world *w, const train_bench_scaling_config *cfg, core_error *err)
{
    int size = dist_size(w);
    if (size < 2)
        return core_error_set(err, "bench scaling: needs at least 2 ranks (it compares each "
                                   "rank alone with all of them)");
    /* b: the job's model (shared memory, buckets); solo: each rank's model
     * for its alone phases, private like a 1-rank job's, so that neither
     * run's parameters and optimizer state disturb the other's. */
    train_cpu_setup(w, cfg->threads);
    bench_ctx b = {0}, solo = {0};
    dist_buckets *bk = NULL;
    /* the trainer's --overlap auto: a comm thread only with a spare CPU */
    cpu_set_t cpus;
    int overlap = sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_COUNT(&cpus) > 1;
    int rc = bench_setup(w, cfg->model_path, cfg->local_batch, cfg->local_batch * size, cfg->kind,
                         0, 0, cfg->shard_optim, &overlap, 1, &b, &bk, err);
    if (rc == 0)
        rc = bench_setup(w, cfg->model_path, cfg->local_batch, cfg->local_batch, cfg->kind, 0, 0, 0,
                         NULL, 0, &solo, NULL, err);
    int P = size + 1;
    double *t = rc == 0 ? calloc((size_t)cfg->rounds * (size_t)P, sizeof *t) : NULL;
    if (rc == 0 && !t)
        rc = core_error_set(err, "bench scaling: out of memory");
    if (rc == 0)
        core_log_info("bench scaling: %s, %d per rank; all %d ranks together (all-reduce %s, "
                      "overlap %s, optimizer step %s) and each rank alone, %d steps each, in %d "
                      "rounds with the order rotating",
                      cfg->model_path, cfg->local_batch, size, dist_allreduce_kind_name(cfg->kind),
                      overlap ? "on" : "off", b.sharded ? "sharded" : "whole", cfg->steps,
                      cfg->rounds);
    long step = 0;
    double warm;
    for (int k = 0; k < P && rc == 0; k++) /* warm-up: one phase of each */
        rc = phase(w, &b, &solo, bk, k - 1, cfg->steps, &step, &warm, err);
    for (int r = 0; r < cfg->rounds && rc == 0; r++)
        for (int k = 0; k < P && rc == 0; k++) {
            int slot = (k + r) % P; /* 0: together, 1 + q: rank q alone */
            rc = phase(w, &b, &solo, bk, slot - 1, cfg->steps, &step,
                       &t[(size_t)r * (size_t)P + (size_t)slot], err);
        }
    if (rc == 0 && dist_rank(w) == 0)
        report_scaling(cfg, size, t);
    free(t);
    bench_teardown(&b, &bk, 1);
    bench_teardown(&solo, NULL, 0);
    return rc;
}
