/*
 * nn/seq.h: helpers shared by the sequence layer kinds (internal to nn/).
 *
 * A sequence sample is (T, C), sample-major: a batch is (B, T, C) and most
 * sequence ops see it as B*T rows of C. Token ids enter the model as floats
 * (exact up to 2^24) in an `input T` sample and are read by `embed`.
 *
 * The multi-head attention core is a sub-layer used by both `attention` and
 * `block transformer`, so it is written once here with its own buffers.
 */
#ifndef NN_SEQ_H
#define NN_SEQ_H

#include "nn/layer.h"

/* The entries layers.c appends to its table of kinds. */
#define NN_SEQ_KINDS                                                                               \
    &nn_kind_embed, &nn_kind_posenc, &nn_kind_layernorm, &nn_kind_gelu, &nn_kind_linear,           \
        &nn_kind_attention, &nn_kind_block, &nn_kind_rnn, &nn_kind_lstm, &nn_kind_gru,

/* The first engine op a sequence kind calls that engine e lacks (a NULL
 * entry: a backend still being written), or NULL when it has them all (and
 * for every other kind). The model checks this at creation. */
const char *nn_seq_missing_op(const nn_layer_kind *kind, const engine_ops *e);

/* (T, C) sample-major input, or a parse error naming the layer. */
int nn_seq_input(const nn_layer *l, const nn_parse_ctx *ctx, int *T, int *C);
/* A probability in [0, 1) for "dropout P". */
int nn_parse_prob(const nn_parse_ctx *ctx, const char *what, const char *tok, float *out);
/* w[0..n) ~ N(0, std^2) */
void nn_init_normal(float *w, size_t n, float std, core_rng *r);
void nn_init_const(float *w, size_t n, float v);

/* y (rows x out) = x (rows x in) W^T + b, W (out, in) as torch.nn.Linear; b may be NULL. */
void nn_linear_forward(const engine_ops *e, float *y, const float *x, const float *w,
                       const float *b, int rows, int in, int out);
/* dW, db (+)= per accumulate; dx (rows x in) = dy W when dx is not NULL. */
void nn_linear_backward(const engine_ops *e, float *dx, float *dw, float *db, const float *dy,
                        const float *x, const float *w, int rows, int in, int out, int accumulate);

/* Multi-head self-attention: tensors qkv.weight (3D, D), qkv.bias (3D),
 * proj.weight (D, D), proj.bias (D), in that order. */
typedef struct nn_attn {
    int T, D, H, causal;
    float dropout; /* on the attention probabilities, training only */
} nn_attn;

typedef struct nn_attn_buf {
    float *qkv, *ctx, *P, *Pd, *mask; /* Pd, mask only when dropout > 0 */
    int masked;                       /* the last forward applied dropout */
} nn_attn_buf;

/* Declares the four tensors under `prefix` ("" or "attn.") on l. */
void nn_attn_add_tensors(nn_layer *l, const nn_attn *a, const char *prefix);
size_t nn_attn_work_floats(const nn_attn *a, int max_batch);
size_t nn_attn_scratch_floats(const nn_attn *a, int max_batch);
/* Points buf into work (nn_attn_work_floats of it); returns the floats used. */
size_t nn_attn_place(const nn_attn *a, int max_batch, float *work, nn_attn_buf *buf);
void nn_attn_init(const nn_attn *a, float *const *p, core_rng *r);
/* y (B, T, D) = proj(attention(x)); p: the four tensors. */
void nn_attn_forward(const nn_attn *a, const engine_ops *e, nn_attn_buf *buf, float *const *p,
                     float *y, const float *x, int B, int training, core_rng *rng);
/* From dy (B, T, D): the tensors' gradients g (+)= per accumulate and dx
 * (written, not added; NULL to skip). scratch: nn_attn_scratch_floats. */
void nn_attn_backward(const nn_attn *a, const engine_ops *e, const nn_attn_buf *buf,
                      float *const *p, float *const *g, float *dx, const float *dy, const float *x,
                      float *scratch, int B, int accumulate);

#endif

/* ---- recurrent layers (rnn.c, lstm.c, gru.c) ----
 * `KIND H [all|last]` over (T, C): G gate blocks of H (rnn 1, gru 3, lstm 4),
 * tensors weight_ih_l0 (G*H, C), weight_hh_l0 (G*H, H), bias_ih_l0 (G*H),
 * bias_hh_l0 (G*H), as torch.nn.RNN/GRU/LSTM(batch_first=True). Output (T, H)
 * for `all` (the default), (H) for `last`. Buffers are (B, T, .) sample-major,
 * so step t of every sample is a strided set of rows. */
typedef struct nn_rec {
    int T, C, H, G, last;
    engine_act act; /* rnn only */
    int max_batch;
} nn_rec;

enum { NN_REC_WIH, NN_REC_WHH, NN_REC_BIH, NN_REC_BHH };

int nn_rec_parse(nn_layer *l, nn_rec *r, int G, int argc, char **argv, const nn_parse_ctx *ctx);
void nn_rec_init(nn_layer *l, const nn_rec *r, core_rng *rng);
void nn_rec_describe(const nn_rec *r, const char *extra, char *buf, size_t len);
/* The (B, T, H) hidden states: l->y itself for `all`, else work. */
float *nn_rec_states(nn_layer *l, const nn_rec *r, float *work);
/* y = last step of h for `last` (no-op for `all`); on a device engine it
 * uses the layer's scratch (B*T*H floats). */
void nn_rec_output(nn_layer *l, const nn_rec *r, const engine_ops *e, const float *h, int B);
/* Floats of scratch nn_rec_dy_steps needs (0 for `last`). */
size_t nn_rec_dy_steps_floats(const nn_rec *r, int max_batch);
/* For `all`: the output gradient (B, T, H) reordered to (T, B, H) into buf,
 * so that step t of every sample is one contiguous block (one engine op per
 * step, not one per sample); returns it, or NULL for `last`. */
const float *nn_rec_dy_steps(const nn_layer *l, const nn_rec *r, const engine_ops *e, float *buf,
                             int B);
/* dh (B, H) = R + the output gradient at step t (dy_steps: nn_rec_dy_steps). */
void nn_rec_step_grad(const nn_layer *l, const nn_rec *r, const engine_ops *e, float *dh,
                      const float *R, const float *dy_steps, int t, int B);
/* Parameter and input gradients once the pre-activation gradients of every
 * step are known: dgx (input side, incl. bias_ih) and dgh (recurrent side,
 * incl. bias_hh; equal to dgx except for gru). h: the hidden states. */
void nn_rec_param_grads(nn_layer *l, const nn_rec *r, const engine_ops *e, const float *dgx,
                        const float *dgh, const float *h, int B, int need_dx, int accumulate);
