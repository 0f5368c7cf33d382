/*
 * train/train.h: the fit loop — data-parallel training of one model on one
 * HDF5 dataset, with per-epoch evaluation and rank-0 checkpoints.
 *
 * Every rank calls train_fit with the same configuration. Failures are
 * agreed collectively: when any rank fails (bad file, read error, checkpoint
 * error), every rank returns -1 with the failing rank's message, so the CLI
 * exits non-zero everywhere instead of hanging in a collective.
 */
#ifndef TRAIN_TRAIN_H
#define TRAIN_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "dist/dist.h"
#include "nn/model.h"
#include "optim/optim.h"
#include "train/workflow.h"

/* --overlap auto: on when the rank may run on more than one CPU (the comm
 * thread then has a core of its own) or computes on a GPU; off when it is
 * bound to one CPU, where the comm thread's cycles come out of backward. */
#define TRAIN_OVERLAP_AUTO (-1)

typedef struct train_config {
    const char *model_path; /* model spec file */
    const char *train_path; /* HDF5 training file */
    const char *test_path;  /* HDF5 test file (evaluated after each epoch); may be NULL */
    const char *x_name;     /* sample dataset name, default "images" */
    const char *y_name;     /* label dataset name, default "labels" */
    long train_limit;       /* use only the first N training samples (0 = all) */
    long test_limit;        /* use only the first N test samples (0 = all) */
    int epochs;
    int batch;          /* GLOBAL batch, split across ranks */
    optim_config optim; /* kind, lr, momentum, betas, weight decay */
    uint64_t seed;
    const char *ckpt_dir; /* NULL = no checkpoints */
    const char *resume;   /* checkpoint dir or file to continue from; NULL = fresh */
    dist_allreduce_kind allreduce;
    int log_every;         /* progress line every N steps (0 = only per epoch) */
    size_t loader_mem_cap; /* bytes; 0 = the loader's default */
    long ckpt_every;       /* also checkpoint every N steps (0 = after each epoch only) */
    int keep_ckpts;        /* keep the newest K checkpoints (0 = all) */
    int resume_auto;       /* resume from ckpt_dir when it holds a checkpoint, else start fresh */
    int accumulate;        /* compute each local batch in N micro-batches, reduce once */
    int overlap;           /* all-reduce buckets on the comm thread while backward runs:
                              1 on, 0 off, TRAIN_OVERLAP_AUTO (default) */
    int shard_optim;       /* train_shard_mode (train/shard.h): TRAIN_SHARD_NODE (default): with
                              hier's node-shared gradients, each rank of a node updates a slice
                              of the parameters (train_shard_params); TRAIN_SHARD_ALL: each rank
                              holds the optimizer state of its slice only; TRAIN_SHARD_OFF */
    size_t bucket_bytes;   /* 0: DIST_BUCKET_DEFAULT (25 MiB) */
    size_t first_bucket_bytes;       /* 0: DIST_FIRST_BUCKET_DEFAULT (1 MiB) */
    double comm_timeout;             /* watchdog seconds for a collective */
    dist_nonfinite_policy nonfinite; /* NaN/Inf on any rank: skip the step or stop */
    long diverge_after; /* this many skipped steps in a row end the run as diverged (0: never);
                           an epoch whose every step was skipped always does */
    int overwrite;      /* a fresh run may replace the checkpoints in ckpt_dir */
    train_wf_config wf; /* validation, metrics, regularization, schedules... (workflow.h) */
    int device_cuda;    /* --device cuda: the CUDA engine on the rank's local GPU (docs/GPU.md) */
    int bf16;           /* --precision bf16: GEMMs on bf16 tensor cores, fp32 master weights */
    int tf32;           /* --precision tf32: GEMMs and convolutions on TF32 tensor cores */
    double max_memory;  /* --max-memory bytes per rank: 0 the default (what the machine or the
                           Slurm allocation gives a rank, train/memplan.h), < 0 no limit */
    nn_recompute recompute; /* --recompute blocks: blocks re-run their forward in backward */
    int threads;            /* compute threads per rank (0: train_cpu_setup's default) */
} train_config;

/* Exit code of a run stopped by a signal after writing its checkpoint
 * (EX_TEMPFAIL): batch scripts requeue the job on it. */
#define TRAIN_EXIT_PREEMPTED 75

typedef struct train_result {
    long steps;
    int epochs_done;
    int epochs_run;             /* of them, epochs this process trained (0: a relaunch of a
                                   finished run) */
    double final_loss;          /* mean training loss of the last epoch */
    double test_loss;           /* of the last evaluation (NAN if none) */
    double test_accuracy;       /* in [0, 1] (NAN if none) */
    double images_per_second;   /* whole job, training steps only, last epoch; tokens/s when
                                   per_token */
    int per_token;              /* a language model: the rate counts tokens */
    char last_checkpoint[1024]; /* empty if none written */
    int preempted;              /* stopped by a signal, checkpoint written */
    long skipped_steps;         /* steps skipped for non-finite values */
} train_result;

void train_config_defaults(train_config *cfg);

/* The rank's compute threads (train/cpu.c): `requested`, or when 0 the
 * default of core_par_default_threads for this node's ranks; sizes the
 * engine's pool (OpenBLAS's own pool goes to 1) and logs, on rank 0, the BLAS
 * kernel and the thread count. Returns the count. */
int train_cpu_setup(dist_world *w, int requested);

int train_fit(dist_world *w, const train_config *cfg, train_result *res, core_error *err);

/* Preemption signals ("TERM,USR1", "none"): the handler only sets a flag that
 * train_fit agrees on across ranks at the next step boundary. */
int train_signals_install(const char *spec, core_error *err);
/* The signal received (0 if none). */
int train_signals_pending(void);

#endif
