/*
 * engine/cpu/engine_cpu_winograd.h: 3x3 stride-1 convolutions by Winograd's
 * F(2x2, 3x3) (engine_cpu_winograd.c), with the signatures of the engine's
 * conv ops; engine_cpu_conv.c chooses between it and im2col.
 */
#ifndef ENGINE_CPU_WINOGRAD_H
#define ENGINE_CPU_WINOGRAD_H

#include "engine/engine.h"

/* The widest output row, in tiles of 2 (outputs up to 512 wide). */
#define WINOGRAD_MAX_TILES_W 256

/* 1 when g (with F filters) is a convolution this method computes. */
int engine_cpu_winograd_fits(const engine_conv_geom *g, int F);
void engine_cpu_winograd_plan(const engine_conv_geom *g, int F, int max_batch, size_t *work,
                              size_t *scratch);
void engine_cpu_winograd_forward(float *y, const float *x, const float *w, const float *bias,
                                 int batch, int F, const engine_conv_geom *g, engine_act act,
                                 float *work, float *scratch);
void engine_cpu_winograd_backward(float *dx, float *dw, float *dbias, float *dy, const float *x,
                                  const float *w, int batch, int F, const engine_conv_geom *g,
                                  int accumulate, float *work, float *scratch);

#endif
