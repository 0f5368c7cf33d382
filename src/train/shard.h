/*
 * train/shard.h: how the optimizer is split over the ranks
 * (--shard-optimizer off|node|all; docs/COMMUNICATION.md, "The sharded
 * optimizer step" and "ZeRO-1 across every rank").
 *
 *   off   every rank updates every parameter and holds the whole state;
 *   node  (hier's node-shared gradients, CPU) each rank of a node updates
 *         its slice of node-shared parameters; every rank still holds the
 *         whole state, gathered before checkpoints (train_shard_params);
 *   all   (any backend, CPU) each rank of the job holds the optimizer state
 *         of its slice only (ZeRO-1: 1/N of the memory), updates that slice,
 *         and the parameters are all-gathered. Checkpoints gather the state
 *         to rank 0 range by range as the file is written; resume scatters
 *         it to the slices of the new world size.
 *
 * Every mode gives the same bits: the update is element-wise and each
 * element is updated by exactly one rank with the same code.
 */
#ifndef TRAIN_SHARD_H
#define TRAIN_SHARD_H

#include <stddef.h>

#include "core/error.h"
#include "dist/dist.h"
#include "engine/engine.h"
#include "nn/model.h"
#include "optim/optim.h"
#include "train/checkpoint.h"

typedef enum train_shard_mode {
    TRAIN_SHARD_OFF = 0,
    TRAIN_SHARD_NODE = 1, /* the default; "on" is accepted for it */
    TRAIN_SHARD_ALL = 2,
} train_shard_mode;

/* "off", "node", "all", and "on" (= node); else -1 with a message. */
int train_shard_mode_parse(const char *name, int *mode, core_error *err);
const char *train_shard_mode_name(int mode);

/* Bytes of optimizer state that rank `rank` of `world` holds for n
 * parameters: its slice's with `all` on a host engine, the whole state
 * otherwise (node mode shares the update, not the memory). For the
 * start-up memory plan; rank 0's slice is the largest. */
size_t train_optim_state_bytes(const optim_config *cfg, size_t n, int mode, int world, int rank,
                               int device_memory);

/* The run's optimizer over n parameters. With `all` on a host engine: the
 * state of this rank's slice [*a, *b) only (dist_zero_slice), returns 1;
 * otherwise the whole state, *a = 0, *b = n, returns 0 (`all` with a GPU
 * engine: one warning line on rank 0). -1 on error. Not collective. */
int train_optim_create(dist_world *w, const engine_ops *e, const optim_config *cfg, size_t n,
                       int mode, optim *o, size_t *a, size_t *b, core_error *err);

/* Collective: rank 0 writes a checkpoint (train_checkpoint_write). When the
 * optimizer state is sharded across ranks (o->sharded), every
 * rank takes part: the state comes to rank 0 range by range
 * (train_checkpoint_ranges, at most TRAIN_CKPT_RANGE floats at a time) as
 * the file is written, so rank 0 never holds it whole outside the file; a
 * write that fails part way still completes every range's exchange.
 * Returns rank 0's result on rank 0 (callers agree on it afterwards), 0 on
 * the other ranks unless communication failed. */
int train_checkpoint_save(dist_world *w, const char *dir, nn_model *m, const optim *o,
                          const train_progress *p, const char *config_text, char *path_out,
                          size_t path_len, core_error *err);

/* Collective, to resume with the state sharded across ranks (o->sharded):
 * rank 0 reads the checkpoint file `path` (ignored elsewhere): the
 * parameters into m and the progress into p (rank 0's; the caller
 * broadcasts them), and the optimizer state range by range
 * (train_checkpoint_read_state) straight to the slices of this world size,
 * whatever the world size that wrote it; every rank's o->step is set. A read
 * that fails part way still completes every range's exchange; the failure
 * is agreed (every rank returns -1 with rank 0's message). */
int train_checkpoint_load(dist_world *w, const char *path, nn_model *m, optim *o, train_progress *p,
                          core_error *err);

#endif
