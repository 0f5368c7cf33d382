/*
 * optim/optim.h: optimizers acting on the flat parameter buffer.
 *
 * The trainer passes the averaged gradient (already divided by the global
 * batch). Every rank takes the same step, so the parameters stay identical:
 * either each rank updates all of them, or (sharded, optim_step_slice) each
 * rank updates its slice and the ranks share the slices: those of a node
 * (each still holding the whole state), or every rank, each holding the
 * state of its slice only (optim_create_range, ZeRO-1).
 *
 * Defaults (documented in README): SGD lr 0.01 momentum 0.9;
 * Adam lr 1e-3, beta1 0.9, beta2 0.999, eps 1e-8 (PyTorch's defaults).
 */
#ifndef OPTIM_OPTIM_H
#define OPTIM_OPTIM_H

#include <stddef.h>

#include "core/error.h"

typedef enum optim_kind { OPTIM_SGD = 0, OPTIM_ADAM = 1 } optim_kind;

typedef struct optim_config {
    optim_kind kind;
    float lr;
    float momentum;          /* SGD */
    int nesterov;            /* SGD */
    float beta1, beta2, eps; /* Adam */
    float weight_decay;      /* L2 added to the gradient (coupled) */
    int decoupled;           /* Adam only: weight_decay is AdamW's p -= lr wd p, not L2 */
} optim_config;

typedef struct optim {
    optim_config cfg;
    size_t n;      /* parameters the optimizer steps */
    size_t lo, hi; /* the state covers parameters [lo, hi) only: [0, n) unless sharded */
    int sharded;   /* set by the owner: the state is split across ranks, [lo, hi) is this
                      rank's slice (the same on every rank, even where a slice is whole) */
    long step;     /* steps taken so far */
    float *m;      /* SGD momentum buffer / Adam first moment, hi - lo floats (m[0] is lo's) */
    float *v;      /* Adam second moment (NULL for SGD) */
} optim;

/* Fills defaults for the kind. */
optim_config optim_config_default(optim_kind kind);
/* Parses "sgd" / "adam"; returns -1 with a message for anything else
 * ("adamw" is Adam with decoupled = 1: see optim_config_parse in cli). */
int optim_kind_parse(const char *name, optim_kind *out, core_error *err);
const char *optim_kind_name(optim_kind kind);

int optim_create(optim *o, const optim_config *cfg, size_t n, core_error *err);
/* An optimizer over n parameters that holds the state of [lo, hi) only
 * (hi - lo floats per state buffer): the rank's slice when the state is
 * sharded across ranks. It can only step inside [lo, hi). */
int optim_create_range(optim *o, const optim_config *cfg, size_t n, size_t lo, size_t hi,
                       core_error *err);
/* 1 when the state covers every parameter. */
int optim_state_whole(const optim *o);
/* Bytes of optimizer state for `count` parameters: one buffer for SGD
 * (allocated even without momentum), two for Adam. */
size_t optim_state_bytes(optim_kind kind, size_t count);
void optim_destroy(optim *o);
/* One step: params -= update(grads). lr is the rate for this step (schedules). */
void optim_step(optim *o, float *params, const float *grads, float lr);
/* One step that updates only [a, b) of params and of the state: the sharded
 * step, where each rank updates its own slice. The step count advances as
 * for a whole step; every element gets the bits optim_step would give it.
 * Elements outside [a, b) are left as they are. [a, b) is clipped to the
 * state's [lo, hi). */
void optim_step_slice(optim *o, float *params, const float *grads, float lr, size_t a, size_t b);

/* Number of state buffers the checkpoint must save (1 for SGD, 2 for Adam). */
int optim_state_count(const optim *o);

/* Regularizers and clipping on the averaged gradient (optim/regularize.c),
 * applied by the trainer after the all-reduce, so every rank computes the
 * same values. */
/* g += l1 * sign(p): the gradient of l1 * sum |p| (sign(0) = 0). */
void optim_add_l1(float *grads, const float *params, size_t n, float l1);
/* torch.nn.utils.clip_grad_norm_: if the global L2 norm exceeds max_norm,
 * g *= max_norm / (norm + 1e-6). Returns the norm before clipping. */
double optim_clip_grad_norm(float *grads, size_t n, float max_norm);
/* The clipping of optim_clip_grad_norm with the norm already known. */
void optim_clip_to_norm(float *grads, size_t n, float max_norm, double norm);

#endif
