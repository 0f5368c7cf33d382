/*
 * train/bench_step.h: `ringtrain bench step`, the anatomy of one training
 * step — forward, backward, exposed communication, optimizer — measured with
 * the gradient all-reduce overlapped with backward and, in the same run,
 * without overlap, so that the share of communication hidden behind backward
 * is a measured ratio, not a guess. Synthetic data: no file is read.
 */
#ifndef TRAIN_BENCH_STEP_H
#define TRAIN_BENCH_STEP_H

#include <stddef.h>

#include "core/error.h"
#include "dist/dist.h"

typedef struct train_bench_step_config {
    const char *model_path;
    int batch;  /* global */
    int steps;  /* timed steps per mode (median reported) */
    int warmup; /* untimed steps per mode */
    dist_allreduce_kind kind;
    size_t bucket_bytes, first_bucket_bytes; /* 0: defaults */
    int shard_optim;                         /* as train_config.shard_optim */
    int threads;                             /* as train_config.threads */
} train_bench_step_config;

int train_bench_step(dist_world *w, const train_bench_step_config *cfg, core_error *err);

/* `ringtrain bench scaling`: the data-parallel scaling of training steps,
 * with the noise of a shared machine cancelled out. In one job, every round
 * has a phase where all ranks train together (the trainer's step: buckets,
 * flag agreement, sharded or whole optimizer step) and, for each rank, a
 * phase where it trains alone (what a 1-rank job's step does: no
 * all-reduce) while the others sleep; `steps` steps of `local_batch` samples
 * per rank each, the order rotating. The phases of a round are a second or
 * two apart, so a slow minute of the machine hits all of them, and each
 * core's own speed enters the 1-rank figure. Prints per round and the
 * medians of (size-rank throughput) / (sum of the 1-rank throughputs) and
 * of the same against the slowest core alone. Synthetic data. */
typedef struct train_bench_scaling_config {
    const char *model_path;
    int local_batch; /* samples per rank, in both phases */
    int rounds;
    int steps; /* per phase */
    dist_allreduce_kind kind;
    int shard_optim;
    int threads; /* as train_config.threads */
} train_bench_scaling_config;

int train_bench_scaling(dist_world *w, const train_bench_scaling_config *cfg, core_error *err);

#endif
