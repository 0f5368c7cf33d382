/*
 * train/model_load.h: a model for inference from any checkpoint, on any
 * number of ranks (eval, predict, quantize).
 *
 * Rank 0 resolves the checkpoint (a file, or a directory through its latest
 * pointer), reads the model spec stored in it and the parameters (float32,
 * or int8 from `ringtrain quantize`); the spec, parameters and int8 input
 * scales are broadcast, so the other ranks need not see the file.
 */
#ifndef TRAIN_MODEL_LOAD_H
#define TRAIN_MODEL_LOAD_H

#include <stddef.h>

#include "core/error.h"
#include "dist/dist.h"
#include "nn/model.h"

typedef struct train_loaded {
    nn_model *model;
    int int8;        /* loaded from an int8 file */
    float *scales;   /* int8 input scale per layer (NULL for float) */
    char path[1024]; /* the resolved file */
    long step;       /* rank 0, float checkpoints: the step it was written at (0 for int8) */
    double epoch;    /* rank 0: epochs done at that step, with the fraction of a partial one */
} train_loaded;

/* Collective. max_batch: the largest local batch that will be run. */
int train_model_load(dist_world *w, const char *ckpt, int max_batch, train_loaded *out,
                     core_error *err);
void train_loaded_free(train_loaded *l);

#endif
