/*
 * train/checkpoint.h: rank 0's checkpoints, one HDF5 file each.
 *
 * Layout (docs/CHECKPOINT_FORMAT.md), readable with h5py:
 *   /params/<tensor name>      e.g. /params/conv1.weight (32,1,3,3) float32
 *   /optim/m/<tensor name>     first moment / momentum, same shapes
 *   /optim/v/<tensor name>     Adam only
 *   attributes on "/": format_version, step, epoch, batch_in_epoch, seed,
 *     optimizer, optim_step, lr, model_spec (text), config (text),
 *     rng_seed, rng_stream, rng_counter,
 *     world_size, global_batch, train_samples, loader_mem_cap (absent in
 *     older files: read as 0, "as the resuming run"), and epoch_segments
 *     (int64 (k, 3): world, batch, steps) only while an epoch is being
 *     continued at another world size (train/resize.c); epoch_loss_sum,
 *     epoch_correct, epoch_samples, epoch_seconds (the epoch's partial
 *     sums, global), window_loss_sum, window_top1, window_top5,
 *     window_rows (the log window's, global) and blas_threads (absent in older files: read as 0)
 * A checkpoint is written to "<name>.tmp.<pid>", flushed, fsync'd and renamed to
 * "<dir>/ckpt-<step, 9 digits>.h5"; then "<dir>/latest" (a one-line text
 * file naming it) is replaced the same way. A crash at any moment leaves the
 * previous checkpoint and pointer intact.
 */
#ifndef TRAIN_CHECKPOINT_H
#define TRAIN_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/rng.h"
#include "data/data.h"
#include "nn/model.h"
#include "optim/optim.h"

#define TRAIN_CHECKPOINT_VERSION 1

/* Changes of world size (or global batch) within one epoch that a
 * checkpoint can record. */
#define TRAIN_MAX_SEGMENTS 8

typedef struct train_progress {
    long step;           /* optimizer steps completed */
    long epoch;          /* epoch in progress (0-based) */
    long batch_in_epoch; /* batches of that epoch already consumed (in the
                            current segment when nseg > 0) */
    uint64_t seed;       /* run seed */
    core_rng rng;        /* trainer's RNG (dropout etc.) */
    /* The data order (0 when read from a checkpoint that predates them). */
    int world;              /* ranks of the run that wrote the checkpoint */
    int batch;              /* its global batch */
    uint64_t order_samples; /* training samples of the epoch */
    uint64_t order_cap;     /* loader memory cap the epoch's order was drawn with */
    /* Stretches of epoch `seg_epoch` run before the current one at another
     * world size or batch; written only while seg_epoch == epoch. */
    int nseg;
    long seg_epoch;
    data_segment seg[TRAIN_MAX_SEGMENTS];
    /* The epoch in progress so far, summed over ranks (0 at an epoch
     * boundary), so that a resumed epoch reports what an uninterrupted one
     * would; set by the fit loop only while a checkpoint is written. */
    double ep_loss_sum, ep_seconds;
    long ep_correct, ep_count;
    double window[4]; /* the log window's loss, top-1, top-5, rows (train_wf_window_get) */
    int blas_threads; /* OpenBLAS threads of the writing rank (0: unknown or a GPU) */
} train_progress;

/* Writes atomically; *path_out (if not NULL) receives the final path. */
int train_checkpoint_write(const char *dir, nn_model *m, const optim *o, const train_progress *p,
                           const char *config_text, char *path_out, size_t path_len,
                           core_error *err);

/* The optimizer state of a checkpoint range by range, so that it never has
 * to be whole in memory outside the file (the state sharded across ranks:
 * train/shard.c). For each state buffer k (0: /optim/m, 1: /optim/v), each
 * tensor in model order, runs of whole rows (the first dimension) of at
 * most TRAIN_CKPT_RANGE floats, one row when a row is longer: fn(ctx, k,
 * lo, hi) with [lo, hi) in the flat parameter layout. Stops at the first
 * non-zero return of fn and returns it; 0 when every range was visited. */
#define TRAIN_CKPT_RANGE ((size_t)1 << 20)
typedef int (*train_ckpt_range_fn)(void *ctx, int k, size_t lo, size_t hi);
int train_checkpoint_ranges(const nn_model *m, int states, train_ckpt_range_fn fn, void *ctx);
/* Where train_checkpoint_write_from takes the optimizer state: fill(ctx, k,
 * lo, hi, dst, err) puts floats [lo, hi) of state buffer k into dst, called
 * for the ranges of train_checkpoint_ranges in their order (and for no
 * others); -1 with err set fails the write. */
typedef struct train_ckpt_source {
    int (*fill)(void *ctx, int k, size_t lo, size_t hi, float *dst, core_error *err);
    void *ctx;
} train_ckpt_source;
/* train_checkpoint_write with the optimizer state from src instead of o's
 * buffers (o still gives its kind, settings and step); src NULL: o's
 * buffers, which must then be whole. The file is the same. */
int train_checkpoint_write_from(const char *dir, nn_model *m, const optim *o,
                                const train_ckpt_source *src, const train_progress *p,
                                const char *config_text, char *path_out, size_t path_len,
                                core_error *err);
/* Resolves "dir" (through its latest pointer, or the newest complete
 * ckpt-*.h5) or a direct file path to a checkpoint file. */
int train_checkpoint_resolve(const char *dir_or_file, char *path, size_t len, core_error *err);
/* Loads into an already built model (whose spec must match the one stored)
 * and optimizer (o may be NULL to load parameters only). */
int train_checkpoint_read(const char *path, nn_model *m, optim *o, train_progress *p,
                          core_error *err);
/* A checkpoint's optimizer state range by range, never whole in memory (the
 * state sharded across ranks, train/shard.c): after the file's checks (its
 * version, o's optimizer kind, every /optim tensor's presence, shape and
 * type, none extra), o->step is set and sink(ctx, k, lo, hi, src, err)
 * receives the ranges of train_checkpoint_ranges in their order, until one
 * fails. path is a file (train_checkpoint_resolve); the parameters and the
 * progress come from train_checkpoint_read(path, m, NULL, p). */
typedef int (*train_ckpt_sink_fn)(void *ctx, int k, size_t lo, size_t hi, const float *src,
                                  core_error *err);
int train_checkpoint_read_state(const char *path, const nn_model *m, optim *o,
                                train_ckpt_sink_fn sink, void *ctx, core_error *err);
/* Reads the model spec and the training configuration stored in a checkpoint
 * (either pointer may be NULL), e.g. to rebuild the model for evaluation.
 * The strings are allocated with core_alloc; release them with core_free. */
int train_checkpoint_read_text(const char *path, char **model_spec, char **config_text,
                               core_error *err);

/* Removes all but the newest `keep` ckpt-*.h5 files of dir (never the one
 * `latest` names). keep <= 0 keeps everything. */
int train_checkpoint_prune(const char *dir, int keep, core_error *err);

/* 1 when dir exists and holds at least one ckpt-*.h5 file (complete or not). */
int train_checkpoint_any(const char *dir);

/* mkdir -p for a checkpoint directory; fails when dir is not a directory. */
int train_checkpoint_make_dir(const char *dir, core_error *err);

#endif
