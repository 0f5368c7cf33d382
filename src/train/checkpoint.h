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
 *     continued at another world size (train/resize.c)
 * A checkpoint is written to "<name>.tmp", flushed, fsync'd and renamed to
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
} train_progress;

/* Writes atomically; *path_out (if not NULL) receives the final path. */
int train_checkpoint_write(const char *dir, nn_model *m, const optim *o, const train_progress *p,
                           const char *config_text, char *path_out, size_t path_len,
                           core_error *err);
/* Resolves "dir" (through its latest pointer, or the newest complete
 * ckpt-*.h5) or a direct file path to a checkpoint file. */
int train_checkpoint_resolve(const char *dir_or_file, char *path, size_t len, core_error *err);
/* Loads into an already built model (whose spec must match the one stored)
 * and optimizer (o may be NULL to load parameters only). */
int train_checkpoint_read(const char *path, nn_model *m, optim *o, train_progress *p,
                          core_error *err);
/* Reads the model spec and the training configuration stored in a checkpoint
 * (either pointer may be NULL), e.g. to rebuild the model for evaluation.
 * The strings are allocated with core_alloc; release them with core_free. */
int train_checkpoint_read_text(const char *path, char **model_spec, char **config_text,
                               core_error *err);

/* Removes all but the newest `keep` ckpt-*.h5 files of dir (never the one
 * `latest` names). keep <= 0 keeps everything. */
int train_checkpoint_prune(const char *dir, int keep, core_error *err);

/* At start-up (rank 0): creates dir if needed and proves a file can be
 * created in it, so a bad --checkpoint-dir (a file, no permission, a
 * read-only file system) ends the run before any training. */
int train_checkpoint_dir_check(const char *dir, core_error *err);

/* 1 when dir exists and holds at least one ckpt-*.h5 file (complete or not). */
int train_checkpoint_any(const char *dir);

#endif
