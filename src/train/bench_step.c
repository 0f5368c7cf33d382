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
#include "train/bench_step.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/rng.h"
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
    double t3 = core_now();
    size_t n = nn_model_param_count(b->m);
    float *g = nn_model_grads(b->m);
    for (size_t i = 0; i < n; i++)
        g[i] *= b->scale;
    if (!b->sharded)
        optim_step(&b->opt, nn_model_params(b->m), g, b->opt.cfg.lr);
    else {
        optim_step_slice(&b->opt, nn_model_params(b->m), g, b->opt.cfg.lr, b->sa, b->sb);
        if (dist_shared_allgather(b->w, nn_model_params(b->m), n, err) != 0)
            return -1;
    }
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

int train_bench_step(dist_world *w, const train_bench_step_config *cfg, core_error *err)
{
    bench_ctx b = {0};
    int rank = dist_rank(w), size = dist_size(w);
    b.local = cfg->batch / size + (rank < cfg->batch % size ? 1 : 0);
    if (b.local < 1)
        return core_error_set(err, "bench step: --batch-size %d is smaller than the %d ranks",
                              cfg->batch, size);
    b.scale = 1.0f / (float)cfg->batch;
    char *spec = read_spec(cfg->model_path, err);
    int failed = !spec || nn_model_create(spec, cfg->model_path, b.local, &b.m, err) != 0;
    free(spec);
    if (dist_first_failed(w, failed) >= 0)
        return failed ? -1 : core_error_set(err, "bench step: another rank failed to build");
    nn_model_init_params(b.m, 1);
    optim_config oc = optim_config_default(OPTIM_ADAM);
    dist_buckets *modes[2] = {NULL, NULL};
    int rc = optim_create(&b.opt, &oc, nn_model_param_count(b.m), err);
    size_t in = nn_model_input_size(b.m);
    if (rc == 0) {
        b.x = core_alloc((size_t)b.local * in * sizeof(float), "bench inputs", err);
        b.y = core_alloc((size_t)b.local * sizeof(int32_t), "bench labels", err);
        rc = b.x && b.y ? 0 : -1;
    }
    if (rc == 0) {
        core_rng r = core_rng_make(7, (uint64_t)rank);
        for (size_t i = 0; i < (size_t)b.local * in; i++)
            b.x[i] = core_rng_uniform(&r);
        for (int i = 0; i < b.local; i++)
            b.y[i] = (int32_t)core_rng_below(&r, (uint64_t)nn_model_num_classes(b.m));
        for (int mode = 0; mode < 2 && rc == 0; mode++) {
            dist_bucket_config bc = {
                cfg->kind, cfg->first_bucket_bytes, cfg->bucket_bytes, 0.0, mode == 0, 1, NULL, 0};
            rc = train_buckets_create(w, b.m, bc, &modes[mode], err);
        }
    }
    if (rc == 0) {
        b.w = w;
        int sh = train_shard_params(w, b.m, cfg->shard_optim, &b.sa, &b.sb, err);
        rc = sh < 0 ? -1 : 0;
        b.sharded = sh > 0;
    }
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
    dist_buckets_free(modes[0]);
    dist_buckets_free(modes[1]);
    core_free(b.x);
    core_free(b.y);
    if (b.opt.m)
        optim_destroy(&b.opt);
    nn_model_free(b.m);
    return rc;
}
