/*
 * train/init_from.h: starting a new training from another checkpoint's
 * weights (fine-tuning, "pretrained weights").
 *
 * Every tensor of the model whose name and shape match a float32 dataset
 * under the file's /params is loaded; the others keep their fresh
 * initialization (e.g. a new classifier head with another number of
 * classes). Optimizer state and progress are not read: the run starts at
 * step 0. `loaded[i]` tells which of the model's tensors were loaded, for
 * freezing them.
 */
#ifndef TRAIN_INIT_FROM_H
#define TRAIN_INIT_FROM_H

#include <stddef.h>

#include "core/error.h"
#include "nn/model.h"

/* report receives lines "loaded conv1.weight (32,1,3,3)" / "not loaded
 * dense2.weight: shape (10,128) in the model, (5,128) in the file" /
 * "not loaded dense3.weight: not in the file"; *nloaded counts the loaded
 * tensors. Fails only when the file cannot be read (or nothing matched). */
int train_init_from(const char *path, nn_model *m, int *loaded, int *nloaded, char *report,
                    size_t report_len, core_error *err);

#endif
