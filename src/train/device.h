/*
 * train/device.h: the fit loop's GPU path (docs/GPU.md).
 *
 * With --device cuda the model's parameters, gradients and activations live
 * on the GPU for the whole run, and so do the optimizer's moments: the step
 * (divide by the global batch, clip, SGD/Adam update) is engine ops over the
 * flat device buffers. The host copies - the model's parameter view and the
 * optim struct's moments, which checkpoints, resume, broadcasts and the
 * workflow read and write - are synchronized only at those rare points:
 * train_device_push after set-up (initialization, resume, --init-from),
 * train_device_pull before anything reads them. On the CPU engine (e == NULL)
 * every function here does nothing and fit.c keeps its own path.
 */
#ifndef TRAIN_DEVICE_H
#define TRAIN_DEVICE_H

#include <stddef.h>

#include "core/error.h"
#include "dist/dist.h"
#include "engine/engine.h"
#include "nn/model.h"
#include "optim/optim.h"
#include "train/train.h"

typedef struct train_device {
    const engine_ops *e; /* NULL: the CPU path */
    float *m, *v;        /* optimizer moments on the device */
    size_t n;
} train_device;

/* Collective, on every rank before anything else can block: the GPU this
 * rank uses with --device cuda (dist_gpu_select: local rank mod the GPUs it
 * sees; sharing one between ranks only with RINGTRAIN_GPUS_SHARED=1 and
 * ring, hier or mpi), -1 on the CPU. Fails on every rank with the same line. */
int train_device_select(const train_config *cfg, dist_world *w, int *gpu, core_error *err);

/* The engine of cfg->device: engine_cpu(), or the CUDA engine on `gpu`
 * (train_device_select); NULL with one clear line in err. Checks the flags
 * that the GPU path does not support yet (see docs/GPU.md). */
const engine_ops *train_device_engine(const train_config *cfg, int gpu, core_error *err);

int train_device_create(train_device *d, const engine_ops *e, const optim *o, core_error *err);
void train_device_free(train_device *d);
/* Host -> device: the parameter view and the optimizer moments. */
void train_device_push(train_device *d, nn_model *m, const optim *o);
/* Device -> host: the same, so checkpoints and the workflow see the run as it is. */
void train_device_pull(train_device *d, nn_model *m, optim *o);

/* One optimizer step on the device: grads *= scale, clip to clip_norm (> 0),
 * then optim's rule with learning rate lr_of(the norm). Advances o->step as
 * optim_step does. Returns the gradient norm before clipping. */
double train_device_grad_norm(train_device *d, nn_model *m, float scale, float clip_norm);
void train_device_step(train_device *d, nn_model *m, optim *o, float lr);

/* 1 when the local gradients hold a NaN or an Inf. */
int train_device_nonfinite(train_device *d, nn_model *m);

#endif
