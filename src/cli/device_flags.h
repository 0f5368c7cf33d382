/*
 * cli/device_flags.h: `--device cpu|cuda` and `--precision fp32|tf32|bf16` of
 * `ringtrain train` (docs/GPU.md).
 */
#ifndef CLI_DEVICE_FLAGS_H
#define CLI_DEVICE_FLAGS_H

#include "core/error.h"
#include "train/train.h"

/* Sets cfg->device_cuda, cfg->bf16 and cfg->tf32; -1 with a usage message. */
int cli_device_resolve(const char *device, const char *precision, train_config *cfg,
                       core_error *err);

#endif
