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
} train_bench_step_config;

int train_bench_step(dist_world *w, const train_bench_step_config *cfg, core_error *err);

#endif
