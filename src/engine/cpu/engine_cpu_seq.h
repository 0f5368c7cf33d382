/*
 * engine/cpu/engine_cpu_seq.h: the CPU sequence-model ops (engine_cpu_seq.c),
 * the initializers engine_cpu.c appends to its op table, and the GEMM that
 * the files of engine/cpu/ share.
 */
#ifndef ENGINE_CPU_SEQ_H
#define ENGINE_CPU_SEQ_H

#include "engine/engine.h"

/* The CPU engine's GEMM (engine_cpu.c): split over the rank's threads
 * (core/par.h); every file of engine/cpu/ that multiplies matrices outside
 * a thread's part calls it rather than cblas_sgemm, so that it uses them. */
void engine_cpu_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                     int lda, const float *B, int ldb, float beta, float *C, int ldc);

void engine_cpu_embed_forward(float *y, const float *ids, const float *table, size_t n, int V,
                              int D);
void engine_cpu_embed_backward(float *dtable, const float *dy, const float *ids, size_t n, int V,
                               int D);
void engine_cpu_add(float *y, const float *a, const float *b, size_t n);
void engine_cpu_mul(float *y, const float *a, const float *b, size_t n);
void engine_cpu_add_broadcast(float *y, const float *x, const float *p, int outer, size_t n);
void engine_cpu_dropout_mask(float *mask, size_t n, float p, core_rng *r);
void engine_cpu_layernorm_forward(float *y, float *mean, float *rstd, const float *x,
                                  const float *w, const float *b, int rows, int C);
void engine_cpu_layernorm_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                                   const float *mean, const float *rstd, const float *w, int rows,
                                   int C, int accumulate);
void engine_cpu_gelu_forward(float *y, const float *x, size_t n);
void engine_cpu_gelu_backward(float *dx, const float *dy, const float *x, size_t n);
/* engine_math.h's engine_softmax_row with a vectorized exp (relative error
 * < 3e-7) and the loss as log of the double sum of the float exponentials:
 * softmax of logits z into p, the argmax (the first among ties), and for a
 * class y its cross entropy in *loss. 8192-class rows of a language model's
 * head spent 5 % of a step in libm's expf and exp. */
int engine_cpu_softmax_row(float *p, const float *z, int classes, int y, double *loss);
void engine_cpu_attn_forward(float *out, float *P, float *Pd, const float *mask, const float *qkv,
                             int B, int T, int H, int D, int causal);
void engine_cpu_attn_backward(float *dqkv, const float *dout, const float *P, const float *Pd,
                              const float *mask, const float *qkv, float *scratch, int B, int T,
                              int H, int D, int causal);
void engine_cpu_lstm_cell_forward(float *g, const float *c_prev, float *c, float *h, int B, int H,
                                  size_t ldg, size_t ldh);
void engine_cpu_lstm_cell_backward(float *dg, float *dc, const float *dh, const float *g,
                                   const float *c_prev, const float *c, int B, int H, size_t ldg,
                                   size_t ldh);
void engine_cpu_gru_cell_forward(float *gx, const float *gh, const float *h_prev, float *h, int B,
                                 int H, size_t ldg, size_t ldh);
void engine_cpu_gru_cell_backward(float *dgx, float *dgh, float *dh_prev, const float *dh,
                                  const float *gx, const float *gh, const float *h_prev, int B,
                                  int H, size_t ldg, size_t ldh);

/* The sequence section of the CPU op table, in engine.h's order. */
#define ENGINE_CPU_SEQ_OPS                                                                         \
    .embed_forward = engine_cpu_embed_forward, .embed_backward = engine_cpu_embed_backward,        \
    .add = engine_cpu_add, .add_broadcast = engine_cpu_add_broadcast,                              \
    .dropout_mask_rng = engine_cpu_dropout_mask,                                                   \
    .layernorm_forward = engine_cpu_layernorm_forward,                                             \
    .layernorm_backward = engine_cpu_layernorm_backward, .gelu_forward = engine_cpu_gelu_forward,  \
    .gelu_backward = engine_cpu_gelu_backward, .attn_forward = engine_cpu_attn_forward,            \
    .attn_backward = engine_cpu_attn_backward, .lstm_cell_forward = engine_cpu_lstm_cell_forward,  \
    .lstm_cell_backward = engine_cpu_lstm_cell_backward,                                           \
    .gru_cell_forward = engine_cpu_gru_cell_forward,                                               \
    .gru_cell_backward = engine_cpu_gru_cell_backward,

#endif
