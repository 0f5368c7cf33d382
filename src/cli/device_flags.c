/*
 * cli/device_flags.c: parses --device and --precision (see device_flags.h).
 * Whether a GPU is there is the trainer's question (train/device.c), asked
 * collectively, so that every rank fails with the same one line.
 */
#include "cli/device_flags.h"

#include <string.h>

int cli_device_resolve(const char *device, const char *precision, train_config *cfg,
                       core_error *err)
{
    if (strcmp(device, "cpu") == 0)
        cfg->device_cuda = 0;
    else if (strcmp(device, "cuda") == 0)
        cfg->device_cuda = 1;
    else
        return core_error_set(err, "--device: expected 'cpu' or 'cuda', got '%s'", device);
    cfg->bf16 = strcmp(precision, "bf16") == 0;
    cfg->tf32 = strcmp(precision, "tf32") == 0;
    if (!cfg->bf16 && !cfg->tf32 && strcmp(precision, "fp32") != 0)
        return core_error_set(err, "--precision: expected 'fp32', 'tf32' or 'bf16', got '%s'",
                              precision);
    if ((cfg->bf16 || cfg->tf32) && !cfg->device_cuda)
        return core_error_set(err, "--precision %s needs --device cuda", precision);
    return 0;
}
