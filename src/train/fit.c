/*
 * train/fit.c: the data-parallel fit loop (see train.h).
 *
 * One step: the loader thread has the next local batch ready; forward and
 * backward on the local engine; the gradient buffer (one slice of memory) is
 * summed over ranks; divided by the global batch; every rank takes the same
 * optimizer step (sharded with hier on the CPU: each rank of a node updates
 * its slice of the parameters and copies the others'). Setup and every step
 * end with a collective agreement on failure, so an error on one rank stops
 * all of them with its message.
 */
#define _GNU_SOURCE
#include "train/train.h"

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"
#include "data/data.h"
#include "data/tokens.h"
#include "nn/model.h"
#include "train/checkpoint.h"
#include "train/eval.h"
#include "train/device.h"
#include "train/memplan.h"
#include "train/resize.h"
#include "train/run_dir.h"
#include "train/shard.h"
#include "train/workflow.h"

typedef struct fit_ctx {
    dist_world *w;
    const train_config *cfg;
    int rank, size;
    int local_batch;
    char *spec_text;
    nn_model *model;
    optim opt;
    int opt_ready;
    data_dataset *train_ds, *test_ds;
    data_loader *train_ld, *test_ld;
    long steps_per_epoch;
    train_progress prog;
    char config_text[4096];
    size_t n_total, n_train; /* training samples, and those not held out for validation */
    train_wf *wf;
    train_resize resize;
    dist_buckets *buckets; /* the gradient buffer's all-reduce buckets */
    int sharded;           /* sharded optimizer step: this rank updates [shard_a, shard_b) */
    int zero;              /* ...and holds the state of that slice only (--shard-optimizer all) */
    size_t shard_a, shard_b;
    int micro_batch;       /* samples per forward/backward (local batch / --accumulate) */
    long skipped_steps;    /* steps skipped for non-finite values */
    long test_nan_step;    /* test-only: RINGTRAIN_TEST_NAN_RANK/_STEP poison this step's loss */
    long test_stop_step;   /* test-only: RINGTRAIN_TEST_STOP_STEP stops as a signal would */
    train_device dev;      /* --device cuda: device optimizer state (train/device.h) */
    int gpu;               /* --device cuda: the rank's GPU (train_device_select), else -1 */
    int stepped;           /* this run has begun a step */
    train_run_dir run_dir; /* rank 0: the checkpoint directory's lock */
    int resumed;           /* this run continues a checkpoint */
    /* The epoch in progress: this rank's sums (on rank 0 plus what a resumed
     * checkpoint carried) and its start, less the seconds run before a resume. */
    nn_stats epoch_stats;
    double epoch_t0, epoch_carried_s;
    double window_carried[4]; /* rank 0: the log window a resumed checkpoint carried */
    /* Divergence (--diverge-after): skipped steps in a row, steps run and
     * skipped in this epoch, and the last step whose loss was finite. */
    long skipped_run, epoch_run, epoch_skipped, last_finite_step;
    nn_stats last_finite;
} fit_ctx;

/* The trainer's RNG stream of a rank (dropout masks of sequence layers). */
static uint64_t fit_rng_stream(int rank)
{
    return 0x7472616eULL + (uint64_t)rank;
}

static char *read_text_file(const char *path, const char *what, core_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        core_error_set(err, "%s: cannot open %s: %s", path, what, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0)
            break;
        if (len + 1 == cap) {
            char *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    int read_failed = ferror(f);
    fclose(f);
    if (!buf) {
        core_error_set(err, "%s: out of memory reading %s", path, what);
        return NULL;
    }
    if (read_failed) {
        free(buf);
        core_error_set(err, "%s: read error on %s", path, what);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

static void describe_line(const char *text)
{
    core_log_info("  %s", text);
}

/* Opens a dataset and checks that its samples fit the model's input. */
static int open_dataset(fit_ctx *c, const char *path, data_dataset **out, core_error *err)
{
    const train_config *cfg = c->cfg;
    if (data_dataset_open(path, cfg->x_name, cfg->y_name, nn_model_num_classes(c->model), out,
                          err) != 0)
        return -1;
    int dims[NN_MAX_DIMS];
    int nd = nn_model_input_dims(c->model, dims);
    return data_dataset_match_input(*out, dims, nd, cfg->wf.layout, cfg->model_path, err);
}

static int setup_model(fit_ctx *c, core_error *err)
{
    const train_config *cfg = c->cfg;
    c->spec_text = read_text_file(cfg->model_path, "model spec", err);
    if (!c->spec_text)
        return -1;
    int acc = cfg->accumulate > 0 ? cfg->accumulate : 1;
    c->micro_batch = (c->local_batch + acc - 1) / acc;
    if (c->micro_batch < 1)
        c->micro_batch = 1;
    const engine_ops *engine = train_device_engine(cfg, c->gpu, err);
    /* parsed only: the memory plan comes before any large allocation */
    nn_model_opts mo = {c->micro_batch, engine, cfg->max_memory < 0 ? INFINITY : cfg->max_memory,
                        cfg->recompute};
    return engine ? nn_model_parse(c->spec_text, cfg->model_path, &mo, &c->model, err) : -1;
}

/* The rank's memory plan (train/memplan.h), printed for every rank by rank
 * 0 and checked against --max-memory on every rank before the model, the
 * optimizer state and the all-reduce scratch are allocated. */
static int plan_memory(fit_ctx *c, core_error *err)
{
    const train_config *cfg = c->cfg;
    char why[160] = "";
    double limit = cfg->max_memory > 0.0 ? cfg->max_memory : 0.0;
    if (cfg->max_memory == 0.0)
        limit = train_memplan_default_limit(dist_local_size(c->w), why, sizeof why);
    size_t n = nn_model_param_count(c->model);
    double comm = c->size > 1 ? 4.0 * (double)((n + (size_t)c->size - 1) / (size_t)c->size) : 0.0;
    double loader = (double)data_loader_mem_bytes(c->train_ld) +
                    (c->test_ld ? (double)data_loader_mem_bytes(c->test_ld) : 0.0);
    train_memplan p;
    /* the loader's buffers are resident already: count them once; whole
     * MiB, so that ranks with the same plan print as one line */
    double process = ceil((train_memplan_resident() - loader) / 1048576.0) * 1048576.0;
    double eval = train_eval_bytes(nn_model_num_classes(c->model)); /* the workflow's */
    /* the optimizer state this rank holds: its slice's with --shard-optimizer all */
    double full = train_memplan_optim_bytes(&cfg->optim, n, 1.0);
    double held =
        (double)train_optim_state_bytes(&cfg->optim, n, cfg->shard_optim, c->size, c->rank,
                                        nn_model_engine(c->model)->device_memory);
    train_memplan_make(&p, c->model, &cfg->optim, full > 0.0 ? held / full : 1.0, c->micro_batch,
                       loader, comm, eval, process > 0.0 ? process : 0.0,
                       c->rank == 0 && cfg->ckpt_dir != NULL);
    if (train_memplan_report(c->w, &p, limit, why, err) != 0)
        return -1;
    return train_agree(c->w, train_memplan_check(&p, limit, cfg->model_path, why, err) != 0, err);
}

static int allocate(fit_ctx *c, core_error *err)
{
    const train_config *cfg = c->cfg;
    if (nn_model_alloc(c->model, err) != 0)
        return -1;
    nn_model_init_params(c->model, cfg->seed);
    nn_model_set_rng(c->model, &c->prog.rng); /* dropout draws from the checkpointed RNG */
    c->zero = train_optim_create(c->w, nn_model_engine(c->model), &cfg->optim,
                                 nn_model_param_count(c->model), cfg->shard_optim, &c->opt,
                                 &c->shard_a, &c->shard_b, err);
    if (c->zero < 0)
        return -1;
    c->sharded = c->zero;
    c->opt_ready = 1;
    if (train_device_create(&c->dev, nn_model_engine(c->model), &c->opt, err) != 0)
        return -1;
    return dist_world_reserve(c->w, nn_model_param_count(c->model), err);
}

static int setup_memory(fit_ctx *c, core_error *err)
{
    if (plan_memory(c, err) != 0)
        return -1;
    return train_agree(c->w, allocate(c, err) != 0, err);
}

/* ---- token files (language models, docs/SEQUENCE_MODELS.md) ----
 * A token file feeds windows of the model's input length T: every rank reads
 * its own contiguous part of the stream; the test file is evaluated on
 * windows tiling each rank's part. */
static int token_loader(fit_ctx *c, const char *path, int eval, long limit, data_loader **out,
                        core_error *err)
{
    int dims[NN_MAX_DIMS];
    if (nn_model_input_dims(c->model, dims) != 1 || nn_model_labels_per_sample(c->model) != dims[0])
        return core_error_set(err,
                              "%s is a token file, but %s is not a language model over 'input "
                              "T' with a loss at every position",
                              path, c->cfg->model_path);
    data_token_loader_config tc = {0};
    tc.T = dims[0];
    tc.batch = c->local_batch;
    tc.eval = eval;
    tc.seed = c->cfg->seed;
    tc.rank = c->rank;
    tc.world = c->size;
    tc.limit = limit > 0 ? (size_t)limit : 0;
    tc.limit_flag = eval ? "--test-limit" : "--train-limit";
    tc.mem_cap_bytes = c->cfg->loader_mem_cap;
    return data_loader_create_tokens(path, &tc, nn_model_num_classes(c->model), out, err);
}

static int setup_token_data(fit_ctx *c, core_error *err)
{
    const train_config *cfg = c->cfg;
    if (token_loader(c, cfg->train_path, 0, cfg->train_limit, &c->train_ld, err) != 0)
        return -1;
    if (!cfg->test_path)
        return 0;
    return token_loader(c, cfg->test_path, 1, cfg->test_limit, &c->test_ld, err);
}

/* Fewer training samples than one global batch: the hint names the change
 * that makes a run possible (a smaller held-out fraction, fewer ranks, or a
 * smaller batch), with a value that works. */
static int too_few_samples(const fit_ctx *c, core_error *err)
{
    const train_config *cfg = c->cfg;
    size_t total = c->n_total, n = c->n_train, batch = (size_t)cfg->batch;
    if (n < total && total >= batch && total >= (size_t)c->size)
        return core_error_set(err,
                              "%s: --val-fraction %g holds out %zu of the %zu samples, leaving %zu "
                              "for training, fewer than one global batch of %zu; lower "
                              "--val-fraction to %.4g or less (or --batch-size)",
                              cfg->train_path, (double)cfg->wf.val_fraction, total - n, total, n,
                              batch, floor(1e4 * (double)(total - batch) / (double)total) / 1e4);
    if (n < (size_t)c->size)
        return core_error_set(err,
                              "%s: %zu training sample(s) are fewer than the %d ranks (every rank "
                              "takes at least one sample a step); run on at most %zu rank(s) "
                              "with --batch-size %zu or less",
                              cfg->train_path, n, c->size, n, n);
    return core_error_set(err,
                          "%s: %zu training samples are fewer than one global batch of %zu; lower "
                          "--batch-size to %zu or less",
                          cfg->train_path, n, batch, n);
}

static int setup_data(fit_ctx *c, core_error *err)
{
    const train_config *cfg = c->cfg;
    if (data_tokens_is_token_file(cfg->train_path))
        return setup_token_data(c, err);
    if (open_dataset(c, cfg->train_path, &c->train_ds, err) != 0)
        return -1;
    size_t n = data_dataset_count(c->train_ds);
    if (cfg->train_limit > 0 && (size_t)cfg->train_limit < n)
        n = (size_t)cfg->train_limit;
    c->n_total = n;
    n = c->n_train = train_wf_train_count(&cfg->wf, n);
    if (n < (size_t)cfg->batch)
        return too_few_samples(c, err);
    data_loader_config lc = {0};
    data_shard_range(n, c->rank, c->size, &lc.shard_start, &lc.shard_count);
    lc.batch = c->local_batch;
    lc.shuffle = 1;
    lc.drop_last = 1;
    lc.seed = cfg->seed;
    lc.rank = c->rank;
    lc.mem_cap_bytes = cfg->loader_mem_cap;
    if (data_loader_create(c->train_ds, &lc, &c->train_ld, err) != 0)
        return -1;

    if (!cfg->test_path)
        return 0;
    if (open_dataset(c, cfg->test_path, &c->test_ds, err) != 0)
        return -1;
    size_t nt = data_dataset_count(c->test_ds);
    if (cfg->test_limit > 0 && (size_t)cfg->test_limit < nt)
        nt = (size_t)cfg->test_limit;
    data_loader_config tc = {0};
    data_shard_range(nt, c->rank, c->size, &tc.shard_start, &tc.shard_count);
    tc.batch = c->local_batch;
    tc.shuffle = 0;
    tc.drop_last = 0;
    tc.seed = cfg->seed;
    tc.rank = c->rank;
    tc.mem_cap_bytes = cfg->loader_mem_cap;
    return data_loader_create(c->test_ds, &tc, &c->test_ld, err);
}

/* Every rank must take the same number of steps per epoch: the minimum over ranks. */
static int agree_steps(fit_ctx *c, core_error *err)
{
    int32_t neg = -(int32_t)data_loader_batches(c->train_ld);
    if (dist_max_i32(c->w, &neg, 1, err) != 0)
        return -1;
    c->steps_per_epoch = -(long)neg;
    if (c->steps_per_epoch <= 0)
        return core_error_set(err, "%s: not enough samples for one step of global batch %d",
                              c->cfg->train_path, c->cfg->batch);
    return 0;
}

static const char *resume_source(const train_config *cfg)
{
    return cfg->resume_auto ? cfg->ckpt_dir : cfg->resume;
}

/* Rank 0 takes the checkpoint directory's lock (one job per directory) and
 * decides from what the directory holds whether the run resumes (--resume
 * auto); every rank follows. A fresh run never replaces another run's
 * checkpoints unless --overwrite says so. Comes before anything reads or
 * writes the directory (the workflow opens the metrics file to append on
 * resume, and --init-from yields to the resumed weights). */
static int claim_dir(fit_ctx *c, core_error *err)
{
    const train_config *cfg = c->cfg;
    int32_t resume = cfg->resume != NULL;
    int failed = 0;
    if (c->rank == 0 && cfg->ckpt_dir) {
        failed = train_run_dir_lock(&c->run_dir, cfg->ckpt_dir, err) != 0;
        int any = !failed && train_checkpoint_any(cfg->ckpt_dir);
        if (cfg->resume_auto)
            resume = any;
        if (any && !resume && !cfg->overwrite)
            failed = core_error_set(err,
                                    "%s holds checkpoints of another run; continue it with "
                                    "--resume auto, write to a new --checkpoint-dir, or replace "
                                    "them with --overwrite",
                                    cfg->ckpt_dir) != 0;
        else if (any && !resume) {
            failed = train_run_dir_clear(cfg->ckpt_dir, err) != 0;
            if (!failed)
                core_log_info("--overwrite: removed the checkpoints of the earlier run in %s",
                              cfg->ckpt_dir);
        }
    }
    if (train_agree(c->w, failed, err) != 0 ||
        dist_broadcast(c->w, &resume, sizeof resume, 0, err) != 0)
        return -1;
    c->resumed = resume != 0;
    if (cfg->resume_auto && !resume)
        core_log_info("--resume auto: no checkpoint in %s yet, starting fresh", cfg->ckpt_dir);
    return 0;
}

/* The engine's BLAS threads (0 where they do not apply). */
static int blas_threads(const fit_ctx *c)
{
    const engine_ops *e = nn_model_engine(c->model);
    return e->blas_threads ? e->blas_threads() : 0;
}

/* Rank 0 reads the checkpoint; its parameters, optimizer state and progress
 * are then broadcast, so other ranks need not see the checkpoint file. A
 * state sharded across ranks goes from the file to the slices of this
 * world size range by range (train_checkpoint_load). */
static int resume_from(fit_ctx *c, core_error *err)
{
    int failed = 0;
    char path[1024] = "";
    if (c->rank == 0) {
        failed = train_checkpoint_resolve(resume_source(c->cfg), path, sizeof path, err) != 0 ||
                 (!c->zero && train_checkpoint_read(path, c->model, &c->opt, &c->prog, err) != 0);
    }
    if (train_agree(c->w, failed, err) != 0)
        return -1;
    if (c->zero && train_checkpoint_load(c->w, path, c->model, &c->opt, &c->prog, err) != 0)
        return -1;
    if (c->rank == 0) {
        core_log_info("resuming from %s (epoch %ld, step %ld)", path, c->prog.epoch + 1,
                      c->prog.step);
        int threads = blas_threads(c);
        if (c->prog.blas_threads > 0 && threads > 0 && threads != c->prog.blas_threads)
            core_log_warn("resuming with %d compute thread(s) per rank, the checkpoint was "
                          "written with %d: training goes on, but not bit for bit as the "
                          "uninterrupted run (resume with --threads %d for that)",
                          threads, c->prog.blas_threads, c->prog.blas_threads);
    }
    size_t n = nn_model_param_count(c->model);
    if (!c->zero && dist_broadcast(c->w, c->opt.m, n * sizeof(float), 0, err) != 0)
        return -1;
    if (!c->zero && c->opt.v && dist_broadcast(c->w, c->opt.v, n * sizeof(float), 0, err) != 0)
        return -1;
    if (dist_broadcast(c->w, &c->opt.step, sizeof c->opt.step, 0, err) != 0)
        return -1;
    if (dist_broadcast(c->w, &c->prog, sizeof c->prog, 0, err) != 0)
        return -1;
    /* rank 0's progress, but each rank keeps its own RNG stream (dropout masks
     * differ across ranks); the counters advance alike on every rank */
    c->prog.rng.stream = fit_rng_stream(c->rank);
    /* The epoch's sums so far are global: rank 0 carries them, and the
     * epoch line's reduction adds the other ranks' new steps. */
    if (c->rank == 0) {
        c->epoch_stats = (nn_stats){c->prog.ep_loss_sum, c->prog.ep_correct, c->prog.ep_count};
        memcpy(c->window_carried, c->prog.window, sizeof c->window_carried);
    }
    c->epoch_carried_s = c->prog.ep_seconds;
    c->prog.ep_loss_sum = c->prog.ep_seconds = 0.0;
    c->prog.ep_correct = c->prog.ep_count = 0;
    memset(c->prog.window, 0, sizeof c->prog.window);
    return 0;
}

static void format_config(fit_ctx *c)
{
    const train_config *cfg = c->cfg;
    snprintf(c->config_text, sizeof c->config_text,
             "model=%s\ntrain=%s\ntest=%s\nx_name=%s\ny_name=%s\nepochs=%d\nbatch=%d\n"
             "optimizer=%s\nlr=%g\nmomentum=%g\nweight_decay=%g\nseed=%llu\nworld=%d\n"
             "allreduce=%s\n",
             cfg->model_path, cfg->train_path, cfg->test_path ? cfg->test_path : "", cfg->x_name,
             cfg->y_name, cfg->epochs, cfg->batch, optim_kind_name(cfg->optim.kind),
             (double)cfg->optim.lr, (double)cfg->optim.momentum, (double)cfg->optim.weight_decay,
             (unsigned long long)cfg->seed, c->size, dist_allreduce_kind_name(cfg->allreduce));
}

static int setup_workflow(fit_ctx *c, core_error *err)
{
    const train_config *cfg = c->cfg;
    train_wf_setup s = {c->w,
                        &cfg->wf,
                        c->model,
                        &c->opt,
                        &c->prog,
                        c->config_text,
                        cfg->ckpt_dir,
                        c->train_ds,
                        cfg->train_path,
                        cfg->x_name,
                        cfg->y_name,
                        c->n_total,
                        c->n_train,
                        c->local_batch,
                        c->steps_per_epoch,
                        cfg->epochs,
                        cfg->batch,
                        cfg->log_every,
                        cfg->seed,
                        c->resumed /* claim_dir's decision */,
                        cfg->loader_mem_cap,
                        c->test_ld,
                        c->sharded};
    return train_wf_create(&c->wf, &s, err);
}

/* Collective: every rank checks that it agrees with rank 0 on what must be
 * identical (a mismatch fails every rank with the ranks named, never a
 * deadlock), then the gradient buckets and their comm thread are set up. */
static int setup_comm(fit_ctx *c, core_error *err)
{
    const train_config *cfg = c->cfg;
    if (dist_world_set_comm_timeout(c->w, cfg->comm_timeout, err) != 0)
        return -1;
    char schema[256];
    int dims[DATA_MAX_DIMS] = {0};
    int nd = c->train_ds ? data_dataset_sample_dims(c->train_ds, dims) : 0;
    snprintf(schema, sizeof schema, "%s samples=%zu dims=%d:%d,%d,%d,%d classes=%d",
             c->train_ds ? "samples" : "tokens", c->n_train, nd, dims[0], dims[1], dims[2], dims[3],
             nn_model_num_classes(c->model));
    if (dist_check_same(c->w, "model spec", c->spec_text, strlen(c->spec_text), err) != 0 ||
        dist_check_same_i64(c->w, "parameter count", (int64_t)nn_model_param_count(c->model),
                            err) != 0 ||
        dist_check_same_i64(c->w, "global batch (--batch-size)", cfg->batch, err) != 0 ||
        dist_check_same_i64(c->w, "--accumulate", cfg->accumulate, err) != 0 ||
        dist_check_same(c->w, "training data (samples, shape, classes)", schema, strlen(schema),
                        err) != 0)
        return -1;
    int overlap = cfg->overlap;
    if (overlap == TRAIN_OVERLAP_AUTO) {
        cpu_set_t cpus;
        int ncpu = sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 2;
        overlap = c->dev.e != NULL || ncpu > 1;
        core_log_info("overlap %s (auto: %s)", overlap ? "on" : "off",
                      c->dev.e  ? "GPU engine"
                      : overlap ? "more than one CPU per rank"
                                : "one CPU per rank, the comm thread would slow backward");
    }
    dist_bucket_config bc = {
        cfg->allreduce, cfg->first_bucket_bytes, cfg->bucket_bytes, 0.0, overlap, 1, NULL, 0};
    if (c->dev.e) {
        /* Device gradients: the non-finite scan is an engine op after the
         * wait, and one rank has nothing to reduce (no host backend may touch
         * device memory). */
        bc.check_finite = 0;
        if (c->size == 1 && bc.kind != DIST_ALLREDUCE_NCCL)
            bc.kind = DIST_ALLREDUCE_RING;
        if (bc.kind == DIST_ALLREDUCE_NCCL &&
            train_agree(c->w, dist_nccl_init(c->w, c->gpu, c->dev.e->stream(), err) != 0, err) != 0)
            return -1;
    }
    if (train_buckets_create(c->w, c->model, bc, &c->buckets, err) != 0)
        return -1;
    if (c->dev.e && c->size > 1 && bc.kind != DIST_ALLREDUCE_NCCL) {
        /* ring, hier, mpi: the device gradients are summed via pinned host memory */
        dist_stage st;
        int failed = dist_stage_cuda(c->dev.e->stream(), &st, err) != 0 ||
                     dist_buckets_set_stage(c->buckets, st, err) != 0;
        if (train_agree(c->w, failed, err) != 0)
            return -1;
    }
    if (c->zero) {
        char mine[32], whole[32];
        if (c->rank == 0)
            core_log_info("optimizer state sharded over all %d rank(s) (rank 0 holds and updates "
                          "parameters %zu..%zu of %zu: %s of optimizer state instead of %s)",
                          c->size, c->shard_a, c->shard_b, nn_model_param_count(c->model),
                          core_format_bytes(
                              (double)optim_state_bytes(cfg->optim.kind, c->shard_b - c->shard_a),
                              mine, sizeof mine),
                          core_format_bytes((double)optim_state_bytes(
                                                cfg->optim.kind, nn_model_param_count(c->model)),
                                            whole, sizeof whole));
        return 0;
    }
    int sh = cfg->shard_optim == TRAIN_SHARD_NODE
                 ? train_shard_params(c->w, c->model, 1, &c->shard_a, &c->shard_b, err)
                 : 0;
    if (sh < 0)
        return -1;
    c->sharded = sh;
    if (sh && c->rank == 0)
        core_log_info("optimizer step sharded over the %d rank(s) of each node (rank 0 updates "
                      "parameters %zu..%zu of %zu)",
                      dist_local_size(c->w), c->shard_a, c->shard_b,
                      nn_model_param_count(c->model));
    return 0;
}

/* Test-only hook: RINGTRAIN_TEST_NAN_RANK=r RINGTRAIN_TEST_NAN_STEP=s make
 * rank r's loss NaN at step s (1-based), to test the non-finite policy end
 * to end. The gradient scan itself is tested in tests/mpi/test_comm.c. */
static void read_test_hooks(fit_ctx *c)
{
    const char *r = getenv("RINGTRAIN_TEST_NAN_RANK"), *st = getenv("RINGTRAIN_TEST_NAN_STEP");
    c->test_nan_step = -1;
    if (r && st && atoi(r) == c->rank)
        c->test_nan_step = atol(st);
    const char *stop = getenv("RINGTRAIN_TEST_STOP_STEP");
    c->test_stop_step = stop ? atol(stop) : -1;
}

static int setup(fit_ctx *c, core_error *err)
{
    const train_config *cfg = c->cfg;
    read_test_hooks(c);
    train_cpu_setup(c->w, cfg->threads);
    c->local_batch = cfg->batch / c->size + (c->rank < cfg->batch % c->size ? 1 : 0);
    if (cfg->batch < c->size)
        return train_agree(
            c->w,
            core_error_set(err,
                           "--batch-size %d is smaller than the number of ranks (%d); "
                           "the global batch is split across ranks: use --batch-size %d or "
                           "more, or fewer ranks",
                           cfg->batch, c->size, c->size) != 0,
            err);
    if (train_device_select(cfg, c->w, &c->gpu, err) != 0)
        return -1;
    if (claim_dir(c, err) != 0)
        return -1;
    if (train_agree(c->w, setup_model(c, err) != 0, err) != 0)
        return -1;
    if (train_agree(c->w, setup_data(c, err) != 0, err) != 0)
        return -1;
    if (setup_memory(c, err) != 0)
        return -1;
    if (train_agree(c->w, agree_steps(c, err) != 0, err) != 0)
        return -1;
    if (setup_comm(c, err) != 0)
        return -1;
    c->prog.seed = cfg->seed;
    c->prog.rng = core_rng_make(cfg->seed, fit_rng_stream(c->rank));
    if (c->resumed && resume_from(c, err) != 0)
        return -1;
    c->prog.blas_threads = blas_threads(c); /* what this run's checkpoints record */
    if (train_agree(c->w,
                    train_resize_prepare(&c->resize, &c->prog, cfg, c->train_ds, c->size, c->rank,
                                         err) != 0,
                    err) != 0)
        return -1;
    if (setup_workflow(c, err) != 0)
        return -1;
    /* Same seed gives the same parameters everywhere, but rank 0's copy is
     * the definition: broadcasting it guards against any divergence. */
    if (dist_broadcast(c->w, nn_model_params(c->model),
                       nn_model_param_count(c->model) * sizeof(float), 0, err) != 0)
        return -1;
    train_device_push(&c->dev, c->model, &c->opt);
    format_config(c);
    train_wf_config_text(c->wf, c->config_text, sizeof c->config_text);
    return 0;
}

static void teardown(fit_ctx *c)
{
    dist_buckets_free(c->buckets);
    train_wf_free(c->wf);
    data_loader_free(c->train_ld);
    data_loader_free(c->test_ld);
    data_dataset_close(c->train_ds);
    data_dataset_close(c->test_ds);
    train_resize_free(&c->resize);
    if (c->opt_ready)
        optim_destroy(&c->opt);
    train_device_free(&c->dev);
    nn_model_free(c->model);
    free(c->spec_text);
    train_run_dir_unlock(&c->run_dir);
}

/* Global sums of (loss_sum, correct, count). */
static int reduce_stats(dist_world *w, const nn_stats *local, nn_stats *global, core_error *err)
{
    double v[3] = {local->loss_sum, (double)local->correct, (double)local->count};
    if (dist_sum_f64(w, v, 3, err) != 0)
        return -1;
    global->loss_sum = v[0];
    global->correct = (long)v[1];
    global->count = (long)v[2];
    return 0;
}

/* Forward and backward over the local batch in micro-batches; only the last
 * backward feeds the bucket scheduler, which all-reduces each bucket as soon
 * as backward has filled it. A rank whose batch failed to load contributes
 * zeros, so nobody is left waiting in the all-reduce. */
static void compute_gradients(fit_ctx *c, const data_batch *b, int failed, nn_stats *stats)
{
    size_t n = nn_model_param_count(c->model);
    if (failed) {
        nn_model_engine(c->model)->zero(nn_model_grads(c->model), n);
        dist_buckets_begin(c->buckets, c->prog.step);
        dist_buckets_ready(c->buckets, n);
        return;
    }
    size_t in = nn_model_input_size(c->model);
    size_t lps = (size_t)nn_model_labels_per_sample(c->model);
    int micro = c->micro_batch;
    for (int off = 0; off < b->n; off += micro) {
        int cnt = b->n - off < micro ? b->n - off : micro;
        int last = off + cnt >= b->n;
        nn_model_forward(c->model, b->x + (size_t)off * in, b->y + (size_t)off * lps, cnt, 1,
                         stats);
        train_wf_observe(c->wf, b->y + (size_t)off * lps, cnt * (int)lps);
        if (last)
            dist_buckets_begin(c->buckets, c->prog.step);
        nn_model_backward(c->model, off > 0, last ? dist_buckets_on_ready : NULL,
                          last ? c->buckets : NULL);
    }
}

/* Collective, every rank at the same step: the run has diverged (why says
 * how it showed). The line names the step and the last finite training loss
 * (the mean over the global batch of the last step that was not skipped). */
static int diverged(fit_ctx *c, long step, const char *why, core_error *err)
{
    double v[2] = {c->last_finite.loss_sum, (double)c->last_finite.count};
    if (dist_sum_f64(c->w, v, 2, err) != 0)
        return -1;
    char last[128] = "no step had a finite loss";
    if (c->last_finite_step > 0 && v[1] > 0)
        snprintf(last, sizeof last, "the last finite training loss was %.4f (step %ld)",
                 v[0] / v[1], c->last_finite_step);
    return core_error_set(err,
                          "training diverged at step %ld: %s; %s; lower --lr, add --clip-norm or "
                          "check the data",
                          step, why, last);
}

/* One training step. After the gradients are summed, ONE small MAX
 * reduction agrees on three flags: a load failure (every rank stops with its
 * message), a non-finite loss or gradient (skip or stop, per --nonfinite) and
 * a stop signal (*stop: checkpoint after this step). The optimizer state
 * never sees a non-finite gradient. */
static int step_once(fit_ctx *c, const data_batch *b, int failed, nn_stats *stats, int *stop,
                     core_error *err)
{
    train_wf_before_step(c->wf, c->prog.step);
    compute_gradients(c, b, failed, stats);
    core_error comm_err;
    if (dist_buckets_wait(c->buckets, &comm_err) != 0) {
        core_log_error("%s", comm_err.msg);
        dist_world_abort(c->w, 1);
        return core_error_set(err, "%s", comm_err.msg);
    }
    int local[DIST_FLAG_COUNT] = {0}, first[DIST_FLAG_COUNT];
    if (c->test_nan_step == c->prog.step + 1)
        stats->loss_sum = NAN;
    int grads_nonfinite =
        c->dev.e ? train_device_nonfinite(&c->dev, c->model) : dist_buckets_nonfinite(c->buckets);
    local[DIST_FLAG_NONFINITE] = !failed && (grads_nonfinite || !isfinite(stats->loss_sum));
    local[DIST_FLAG_PREEMPT] =
        train_signals_pending() != 0 || c->test_stop_step == c->prog.step + 1;
    local[DIST_FLAG_FAILED] = failed || (c->dev.e && c->dev.e->status(err) != 0);
    if (dist_agree_flags(c->w, c->prog.step, local, first, DIST_FLAG_COUNT, &comm_err) != 0)
        return core_error_set(err, "%s", comm_err.msg);
    if (first[DIST_FLAG_FAILED] >= 0)
        return train_report_rank(c->w, first[DIST_FLAG_FAILED], err);
    *stop = first[DIST_FLAG_PREEMPT] >= 0;
    int decision =
        dist_nonfinite_decide(c->cfg->nonfinite, c->prog.step + 1, first[DIST_FLAG_NONFINITE], err);
    if (decision < 0)
        return -1;
    c->epoch_run++;
    if (decision > 0) {
        c->skipped_steps++;
        c->skipped_run++;
        c->epoch_skipped++;
        memset(stats, 0, sizeof *stats);
        core_log_info("step %ld: non-finite loss or gradient on rank %d; step skipped on every "
                      "rank (%ld skipped so far)",
                      c->prog.step + 1, first[DIST_FLAG_NONFINITE], c->skipped_steps);
        if (c->cfg->diverge_after > 0 && c->skipped_run >= c->cfg->diverge_after) {
            char why[128];
            snprintf(why, sizeof why,
                     "the last %ld steps all had a non-finite loss or gradient and were skipped "
                     "(--diverge-after %ld)",
                     c->skipped_run, c->cfg->diverge_after);
            return diverged(c, c->prog.step + 1, why, err);
        }
        return 0;
    }
    c->skipped_run = 0;
    c->last_finite = *stats;
    c->last_finite_step = c->prog.step + 1;
    size_t n = nn_model_param_count(c->model);
    float *grads = nn_model_grads(c->model);
    /* per-position losses sum over tokens: divide by the global token count */
    float scale = 1.0f / ((float)c->cfg->batch * (float)nn_model_labels_per_sample(c->model));
    if (c->dev.e) {
        double norm = train_device_grad_norm(&c->dev, c->model, scale, c->cfg->wf.clip_norm);
        train_device_step(&c->dev, c->model, &c->opt, train_wf_grad_norm_lr(c->wf, norm));
        train_wf_after_update(c->wf);
        return 0;
    }
    float lr = train_wf_update_grads(c->wf, grads, n, scale);
    if (!c->sharded) {
        optim_step(&c->opt, nn_model_params(c->model), grads, lr);
        train_wf_after_update(c->wf);
        return 0;
    }
    /* Sharded: this rank's slice, frozen tensors put back, then the other
     * ranks' slices (each owner has put its frozen values back first). */
    optim_step_slice(&c->opt, nn_model_params(c->model), grads, lr, c->shard_a, c->shard_b);
    train_wf_after_update(c->wf);
    int rc = c->zero ? dist_zero_allgather(c->w, nn_model_params(c->model), n, &comm_err)
                     : dist_shared_allgather(c->w, nn_model_params(c->model), n, &comm_err);
    if (rc != 0)
        return core_error_set(err, "%s", comm_err.msg);
    return 0;
}

static int write_checkpoint(fit_ctx *c, train_result *res, core_error *err)
{
    if (!c->cfg->ckpt_dir)
        return 0;
    train_device_pull(&c->dev, c->model, &c->opt);
    if (train_optim_gather(c->w, &c->opt, c->sharded, err) != 0)
        return -1;
    /* mid-epoch: the epoch's sums and the log window so far travel with the
     * checkpoint, summed over ranks */
    double v[7] = {c->epoch_stats.loss_sum, (double)c->epoch_stats.correct,
                   (double)c->epoch_stats.count};
    train_wf_window_get(c->wf, v + 3);
    if (c->prog.batch_in_epoch > 0 && dist_sum_f64(c->w, v, 7, err) != 0)
        return -1;
    train_progress p = c->prog;
    if (p.batch_in_epoch > 0) {
        p.ep_loss_sum = v[0];
        p.ep_correct = (long)v[1];
        p.ep_count = (long)v[2];
        memcpy(p.window, v + 3, sizeof p.window);
    }
    p.ep_seconds = c->prog.batch_in_epoch > 0 ? core_now() - c->epoch_t0 : 0.0;
    /* collective: with the optimizer state sharded across ranks, every rank sends its part */
    int failed =
        train_checkpoint_save(c->w, c->cfg->ckpt_dir, c->model, &c->opt, &p, c->config_text,
                              res->last_checkpoint, sizeof res->last_checkpoint, err) != 0;
    if (c->rank == 0) {
        if (!failed)
            core_log_info("checkpoint: %s", res->last_checkpoint);
        if (!failed && c->cfg->keep_ckpts > 0 &&
            train_checkpoint_prune(c->cfg->ckpt_dir, c->cfg->keep_ckpts, err) != 0) {
            core_log_warn("%s", err->msg);
        }
    }
    return train_agree(c->w, failed, err);
}

/* Every rank saw the stop flag at the same step boundary: rank 0 saves the
 * exact position (after the step that saw the signal) and all return. */
static int stop_for_signal(fit_ctx *c, train_result *res, core_error *err)
{
    core_log_info("stop requested by signal at step %ld (epoch %ld, batch %ld): saving a "
                  "checkpoint and exiting with %d so the job can be requeued",
                  c->prog.step, c->prog.epoch + 1, c->prog.batch_in_epoch, TRAIN_EXIT_PREEMPTED);
    res->preempted = 1;
    res->steps = c->prog.step;
    return write_checkpoint(c, res, err);
}

static int run_epoch(fit_ctx *c, train_result *res, core_error *err)
{
    const train_config *cfg = c->cfg;
    long epoch = c->prog.epoch, steps;
    if (train_agree(c->w,
                    train_resize_begin_epoch(&c->resize, c->train_ld, &c->prog, c->steps_per_epoch,
                                             &steps, err) != 0,
                    err) != 0)
        return -1;
    long first_batch = c->prog.batch_in_epoch;
    c->epoch_t0 = core_now() - c->epoch_carried_s;
    c->epoch_carried_s = 0.0;
    c->epoch_run = c->epoch_skipped = 0;
    train_wf_epoch_begin(c->wf, epoch, first_batch);
    train_wf_window_add(c->wf, c->window_carried);
    memset(c->window_carried, 0, sizeof c->window_carried);
    for (long b = first_batch; b < steps; b++) {
        data_batch batch = {0};
        int rc = data_loader_next(c->train_ld, &batch, err);
        if (rc == 0)
            core_error_set(err, "%s: loader ended the epoch after %ld of %ld batches",
                           cfg->train_path, b, steps);
        else if (rc < 0)
            core_error_prefix(err, "step %ld", c->prog.step + 1);
        if (!c->stepped) {
            c->stepped = 1;
            double age = core_process_age();
            if (age >= 0)
                core_log_info("start-up: first step begins %.2f s after process start", age);
        }
        int stop = 0;
        nn_stats s = {0};
        if (step_once(c, &batch, rc != 1, &s, &stop, err) != 0)
            return -1;
        train_resize_trace(&c->resize, &batch, &c->prog);
        c->epoch_stats.loss_sum += s.loss_sum;
        c->epoch_stats.correct += s.correct;
        c->epoch_stats.count += s.count;
        c->prog.step++;
        c->prog.batch_in_epoch = b + 1;
        if (cfg->wf.eval_every > 0) /* validation may save the best weights */
            train_device_pull(&c->dev, c->model, &c->opt);
        /* the step's metrics first: a stop at a log step keeps its record */
        int counted = s.count > 0 ? batch.n * nn_model_labels_per_sample(c->model) : 0;
        if (train_wf_after_step(c->wf, b + 1, counted, s.loss_sum, err) != 0) /* skipped: 0 */
            return -1;
        if (stop)
            return stop_for_signal(c, res, err);
        if (cfg->ckpt_every > 0 && c->prog.step % cfg->ckpt_every == 0 && b + 1 < steps &&
            write_checkpoint(c, res, err) != 0)
            return -1;
        if (train_wf_should_stop(c->wf))
            break;
    }
    double train_seconds = core_now() - c->epoch_t0;
    nn_stats g;
    if (reduce_stats(c->w, &c->epoch_stats, &g, err) != 0)
        return -1;
    memset(&c->epoch_stats, 0, sizeof c->epoch_stats);
    res->final_loss = g.count ? g.loss_sum / (double)g.count : NAN;
    /* g.count counts labels: tokens for a language model */
    res->images_per_second = train_seconds > 0 ? (double)g.count / train_seconds : 0.0;
    res->per_token = nn_model_labels_per_sample(c->model) > 1;
    char line[512];
    int len = snprintf(line, sizeof line, "epoch %ld/%d  train loss %.4f acc %.2f%%", epoch + 1,
                       cfg->epochs, res->final_loss,
                       g.count ? 100.0 * (double)g.correct / (double)g.count : 0.0);
    train_device_pull(&c->dev, c->model, &c->opt);
    if (train_wf_epoch_end(c->wf, line, sizeof line, &res->test_loss, &res->test_accuracy, err) !=
        0)
        return -1;
    len = (int)strlen(line);
    snprintf(line + len, sizeof line - (size_t)len, "  |  %.0f %s (%.1f s)", res->images_per_second,
             res->per_token ? "tok/s" : "img/s", train_seconds);
    core_log_info("%s", line);
    if (c->epoch_run > 0 && c->epoch_skipped == c->epoch_run) {
        snprintf(line, sizeof line,
                 "every step of epoch %ld had a non-finite loss or gradient and was skipped",
                 epoch + 1);
        return diverged(c, c->prog.step, line, err);
    }
    if (c->test_ld && !isfinite(res->test_loss)) {
        snprintf(line, sizeof line, "the test loss after epoch %ld is not finite", epoch + 1);
        return diverged(c, c->prog.step, line, err);
    }
    c->prog.epoch = epoch + 1;
    c->prog.batch_in_epoch = 0;
    res->epochs_done = (int)c->prog.epoch;
    res->steps = c->prog.step;
    return write_checkpoint(c, res, err);
}

void train_config_defaults(train_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->x_name = "images";
    cfg->y_name = "labels";
    cfg->epochs = 5;
    cfg->batch = 64;
    cfg->optim = optim_config_default(OPTIM_ADAM);
    cfg->seed = 1;
    cfg->allreduce = DIST_ALLREDUCE_HIER;
    cfg->log_every = 100;
    cfg->accumulate = 1;
    cfg->overlap = TRAIN_OVERLAP_AUTO;
    cfg->shard_optim = 1;
    cfg->comm_timeout = DIST_COMM_TIMEOUT_DEFAULT;
    cfg->nonfinite = DIST_NONFINITE_SKIP;
    cfg->diverge_after = 20;
    train_wf_config_defaults(&cfg->wf);
}

int train_fit(dist_world *w, const train_config *cfg, train_result *res, core_error *err)
{
    fit_ctx c = {0};
    c.w = w;
    c.cfg = cfg;
    c.run_dir.fd = -1;
    c.rank = dist_rank(w);
    c.size = dist_size(w);
    memset(res, 0, sizeof *res);
    res->test_loss = NAN;
    res->test_accuracy = NAN;
    int rc = setup(&c, err);
    if (rc == 0) {
        core_log_info("model %s: %zu parameters; %d rank(s), global batch %d (%d per rank), %ld "
                      "steps per epoch, optimizer %s lr %g, all-reduce %s",
                      cfg->model_path, nn_model_param_count(c.model), c.size, cfg->batch,
                      c.local_batch, c.steps_per_epoch,
                      cfg->optim.decoupled ? "adamw" : optim_kind_name(cfg->optim.kind),
                      (double)cfg->optim.lr, dist_allreduce_kind_name(cfg->allreduce));
        if (c.rank == 0)
            nn_model_describe(c.model, describe_line);
        train_wf_describe(c.wf);
        res->steps = c.prog.step;
        res->epochs_done = (int)c.prog.epoch;
    }
    long first_epoch = c.prog.epoch;
    if (rc == 0 && c.resumed && first_epoch >= cfg->epochs)
        core_log_info("nothing to train: the checkpoint has completed %ld of %d epochs",
                      first_epoch, cfg->epochs);
    while (rc == 0 && !res->preempted && c.prog.epoch < cfg->epochs && !train_wf_should_stop(c.wf))
        rc = run_epoch(&c, res, err);
    res->epochs_run = (int)(c.prog.epoch - first_epoch);
    res->skipped_steps = c.skipped_steps;
    if (rc == 0 && !res->preempted) {
        train_device_pull(&c.dev, c.model, &c.opt);
        rc = train_wf_finish(c.wf, &res->test_loss, &res->test_accuracy, err);
    }
    teardown(&c);
    return rc;
}
