/*
 * engine/cpu/engine_cpu_conv.h: the CPU engine's convolution
 * (engine_cpu_conv.c), and the initializers engine_cpu.c puts in its table.
 */
#ifndef ENGINE_CPU_CONV_H
#define ENGINE_CPU_CONV_H

#include "engine/engine.h"

/* Floats in the L2 cache (read at run time; 1 MiB when the system does not
 * say): the size of the working sets the convolutions keep in cache. */
size_t engine_cpu_l2_floats(void);
/* RINGTRAIN_CPU_CONV: unset, "winograd" (3x3 stride-1 convolutions with 8+
 * channels by Winograd) or "im2col" (every convolution by im2col); -1 with
 * a message for any other value. */
int engine_cpu_conv_check_env(core_error *err);
const char *engine_cpu_conv_method(const engine_conv_geom *g, int F);
void engine_cpu_conv_plan(const engine_conv_geom *g, int F, int max_batch, size_t *work,
                          size_t *scratch);
void engine_cpu_conv_forward(float *y, const float *x, const float *w, const float *bias, int batch,
                             int F, const engine_conv_geom *g, engine_act act, float *work,
                             float *scratch);
void engine_cpu_conv_backward(float *dx, float *dw, float *dbias, float *dy, const float *x,
                              const float *w, int batch, int F, const engine_conv_geom *g,
                              int accumulate, float *work, float *scratch);

#define ENGINE_CPU_CONV_OPS                                                                        \
    .conv_out_chan_major = 1, .conv_method = engine_cpu_conv_method,                               \
    .conv_plan = engine_cpu_conv_plan, .conv_forward = engine_cpu_conv_forward,                    \
    .conv_backward = engine_cpu_conv_backward
#endif
