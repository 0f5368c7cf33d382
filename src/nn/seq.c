/*
 * nn/seq.c: shared pieces of the sequence layers (see nn/seq.h): shape and
 * argument checks, initializers, the token-wise linear map and the
 * multi-head attention sub-layer.
 */
#include "nn/seq.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *nn_seq_missing_op(const nn_layer_kind *k, const engine_ops *e)
{
#define NEED(op)                                                                                   \
    do {                                                                                           \
        if (!e->op)                                                                                \
            return #op;                                                                            \
    } while (0)
    if (k == &nn_kind_embed) {
        NEED(embed_forward);
        NEED(embed_backward);
    } else if (k == &nn_kind_posenc) {
        NEED(add_broadcast);
    } else if (k == &nn_kind_layernorm) {
        NEED(layernorm_forward);
        NEED(layernorm_backward);
    } else if (k == &nn_kind_gelu) {
        NEED(gelu_forward);
        NEED(gelu_backward);
    } else if (k == &nn_kind_attention || k == &nn_kind_block) {
        NEED(attn_forward);
        NEED(attn_backward);
        NEED(dropout_mask_rng);
        NEED(layernorm_forward);
        NEED(layernorm_backward);
        NEED(gelu_forward);
        NEED(gelu_backward);
        NEED(add);
    } else if (k == &nn_kind_lstm) {
        NEED(lstm_cell_forward);
        NEED(lstm_cell_backward);
        NEED(add);
    } else if (k == &nn_kind_gru) {
        NEED(gru_cell_forward);
        NEED(gru_cell_backward);
        NEED(add);
    } else if (k == &nn_kind_rnn) {
        NEED(add);
    }
    return NULL;
#undef NEED
}

int nn_seq_input(const nn_layer *l, const nn_parse_ctx *ctx, int *T, int *C)
{
    char sh[64];
    if (l->in.ndim != 2 || l->in.chan_major)
        return nn_parse_error(ctx,
                              "%s needs a sequence input (T, C) but gets %s; start with "
                              "'input T' and 'embed V D'",
                              l->kind->name, nn_shape_str(&l->in, sh, sizeof sh));
    *T = l->in.d[0];
    *C = l->in.d[1];
    return 0;
}

int nn_parse_prob(const nn_parse_ctx *ctx, const char *what, const char *tok, float *out)
{
    if (!tok)
        return nn_parse_error(ctx, "missing %s", what);
    char *end = NULL;
    errno = 0;
    double v = strtod(tok, &end);
    if (errno || end == tok || *end || !(v >= 0.0 && v < 1.0))
        return nn_parse_error(ctx, "expected %s in [0, 1), got '%s'", what, tok);
    *out = (float)v;
    return 0;
}

void nn_init_normal(float *w, size_t n, float std, core_rng *r)
{
    for (size_t i = 0; i < n; i++)
        w[i] = std * core_rng_normal(r);
}

void nn_init_const(float *w, size_t n, float v)
{
    for (size_t i = 0; i < n; i++)
        w[i] = v;
}

void nn_linear_forward(const engine_ops *e, float *y, const float *x, const float *w,
                       const float *b, int rows, int in, int out)
{
    /* the bias first, the product added onto it: one pass over y fewer
     * than a GEMM into zeros and a bias pass */
    if (b)
        e->bias_fill(y, b, rows, out, 1);
    e->gemm(0, 1, rows, out, in, 1.0f, x, in, w, in, b ? 1.0f : 0.0f, y, out);
}

void nn_linear_backward(const engine_ops *e, float *dx, float *dw, float *db, const float *dy,
                        const float *x, const float *w, int rows, int in, int out, int accumulate)
{
    if (db)
        e->bias_backward(db, dy, rows, out, 1, accumulate);
    e->gemm(1, 0, out, in, rows, 1.0f, dy, out, x, in, accumulate ? 1.0f : 0.0f, dw, in);
    if (dx)
        e->gemm(0, 0, rows, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in);
}

/* ---- multi-head attention ---- */

void nn_attn_add_tensors(nn_layer *l, const nn_attn *a, const char *prefix)
{
    char role[NN_NAME_MAX];
    int wq[2] = {3 * a->D, a->D}, bq = 3 * a->D, wp[2] = {a->D, a->D};
    snprintf(role, sizeof role, "%sqkv.weight", prefix);
    nn_layer_add_tensor(l, role, 2, wq);
    snprintf(role, sizeof role, "%sqkv.bias", prefix);
    nn_layer_add_tensor(l, role, 1, &bq);
    snprintf(role, sizeof role, "%sproj.weight", prefix);
    nn_layer_add_tensor(l, role, 2, wp);
    snprintf(role, sizeof role, "%sproj.bias", prefix);
    nn_layer_add_tensor(l, role, 1, &a->D);
}

static size_t probs_floats(const nn_attn *a, int max_batch)
{
    return nn_size_mul(nn_size_mul((size_t)max_batch * a->H, (size_t)a->T), (size_t)a->T);
}

size_t nn_attn_work_floats(const nn_attn *a, int max_batch)
{
    size_t bt = (size_t)max_batch * a->T;
    size_t p = probs_floats(a, max_batch);
    return bt * 4 * a->D + p * (a->dropout > 0.0f ? 3 : 1);
}

size_t nn_attn_scratch_floats(const nn_attn *a, int max_batch)
{
    /* dS of every (sample, head): the CUDA engine's batched backward needs
     * all of it (the CPU engine's blocked loop uses T * T) */
    size_t bt = (size_t)max_batch * a->T;
    return bt * 4 * a->D + probs_floats(a, max_batch);
}

size_t nn_attn_place(const nn_attn *a, int max_batch, float *work, nn_attn_buf *buf)
{
    size_t bt = (size_t)max_batch * a->T, p = probs_floats(a, max_batch);
    memset(buf, 0, sizeof *buf);
    buf->qkv = work;
    buf->ctx = buf->qkv + bt * 3 * a->D;
    buf->P = buf->ctx + bt * a->D;
    if (a->dropout > 0.0f) {
        buf->Pd = buf->P + p;
        buf->mask = buf->Pd + p;
    }
    return nn_attn_work_floats(a, max_batch);
}

void nn_attn_init(const nn_attn *a, float *const *p, core_rng *r)
{
    size_t D = (size_t)a->D;
    nn_init_normal(p[0], 3 * D * D, 0.02f, r);
    nn_init_const(p[1], 3 * D, 0.0f);
    nn_init_normal(p[2], D * D, 0.02f, r);
    nn_init_const(p[3], D, 0.0f);
}

void nn_attn_forward(const nn_attn *a, const engine_ops *e, nn_attn_buf *buf, float *const *p,
                     float *y, const float *x, int B, int training, core_rng *rng)
{
    int rows = B * a->T, D = a->D;
    nn_linear_forward(e, buf->qkv, x, p[0], p[1], rows, D, 3 * D);
    buf->masked = training && a->dropout > 0.0f;
    if (buf->masked)
        e->dropout_mask_rng(buf->mask, probs_floats(a, B), a->dropout, rng);
    e->attn_forward(buf->ctx, buf->P, buf->Pd, buf->masked ? buf->mask : NULL, buf->qkv, B, a->T,
                    a->H, D, a->causal);
    nn_linear_forward(e, y, buf->ctx, p[2], p[3], rows, D, D);
}

void nn_attn_backward(const nn_attn *a, const engine_ops *e, const nn_attn_buf *buf,
                      float *const *p, float *const *g, float *dx, const float *dy, const float *x,
                      float *scratch, int B, int accumulate)
{
    int rows = B * a->T, D = a->D;
    float *dctx = scratch, *dqkv = dctx + (size_t)rows * D, *tt = dqkv + (size_t)rows * 3 * D;
    nn_linear_backward(e, dctx, g[2], g[3], dy, buf->ctx, p[2], rows, D, D, accumulate);
    e->attn_backward(dqkv, dctx, buf->P, buf->Pd, buf->masked ? buf->mask : NULL, buf->qkv, tt, B,
                     a->T, a->H, D, a->causal);
    nn_linear_backward(e, dx, g[0], g[1], dqkv, x, p[0], rows, D, 3 * D, accumulate);
}

/* ---- recurrent layers ---- */

int nn_rec_parse(nn_layer *l, nn_rec *r, int G, int argc, char **argv, const nn_parse_ctx *ctx)
{
    if (nn_seq_input(l, ctx, &r->T, &r->C))
        return -1;
    if (argc < 1)
        return nn_parse_error(ctx, "%s: missing hidden size (%s H [all|last])", l->kind->name,
                              l->kind->name);
    if (nn_parse_posint(ctx, "hidden size", argv[0], &r->H))
        return -1;
    r->G = G;
    r->act = ENGINE_ACT_TANH;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "all") == 0)
            r->last = 0;
        else if (strcmp(argv[i], "last") == 0)
            r->last = 1;
        else if (G == 1 && strcmp(argv[i], "relu") == 0)
            r->act = ENGINE_ACT_RELU;
        else if (G == 1 && strcmp(argv[i], "tanh") == 0)
            r->act = ENGINE_ACT_TANH;
        else
            return nn_parse_error(ctx, "unknown %s option '%s' (expected all, last%s)",
                                  l->kind->name, argv[i], G == 1 ? ", tanh, relu" : "");
    }
    r->max_batch = ctx->max_batch;
    if (r->last) {
        l->out.ndim = 1;
        l->out.d[0] = r->H;
    } else {
        l->out.d[1] = r->H;
    }
    int gh = G * r->H, wih[2] = {gh, r->C}, whh[2] = {gh, r->H};
    nn_layer_add_tensor(l, "weight_ih_l0", 2, wih);
    nn_layer_add_tensor(l, "weight_hh_l0", 2, whh);
    nn_layer_add_tensor(l, "bias_ih_l0", 1, &gh);
    nn_layer_add_tensor(l, "bias_hh_l0", 1, &gh);
    return 0;
}

void nn_rec_init(nn_layer *l, const nn_rec *r, core_rng *rng)
{
    /* torch's default: every tensor U(-1/sqrt(H), 1/sqrt(H)) */
    float k = 1.0f / sqrtf((float)r->H);
    for (int t = 0; t < 4; t++)
        for (size_t i = 0; i < l->tensor[t].count; i++)
            l->param[t][i] = k * (2.0f * core_rng_uniform(rng) - 1.0f);
}

void nn_rec_describe(const nn_rec *r, const char *extra, char *buf, size_t len)
{
    snprintf(buf, len, "%d->%d %s%s", r->C, r->H, r->last ? "last" : "all", extra);
}

float *nn_rec_states(nn_layer *l, const nn_rec *r, float *work)
{
    return r->last ? work : l->y;
}

void nn_rec_output(nn_layer *l, const nn_rec *r, const engine_ops *e, const float *h, int B)
{
    if (!r->last)
        return;
    size_t H = (size_t)r->H, T = (size_t)r->T;
    if (e->device_memory) {
        /* two ops instead of one copy per sample: the states to (T, B, H)
         * in scratch (free at the end of forward), then the last block */
        e->nc_to_cn(l->scratch, h, r->T, B, H);
        e->copy(l->y, l->scratch + (T - 1) * B * H, (size_t)B * H);
        return;
    }
    for (int b = 0; b < B; b++)
        e->copy(l->y + (size_t)b * H, h + ((size_t)b * T + T - 1) * H, H);
}

size_t nn_rec_dy_steps_floats(const nn_rec *r, int max_batch)
{
    return r->last ? 0 : (size_t)max_batch * r->T * r->H;
}

const float *nn_rec_dy_steps(const nn_layer *l, const nn_rec *r, const engine_ops *e, float *buf,
                             int B)
{
    if (r->last)
        return NULL;
    e->nc_to_cn(buf, l->dy, r->T, B, (size_t)r->H);
    return buf;
}

void nn_rec_step_grad(const nn_layer *l, const nn_rec *r, const engine_ops *e, float *dh,
                      const float *R, const float *dy_steps, int t, int B)
{
    size_t n = (size_t)B * r->H;
    if (r->last)
        e->copy(dh, t == r->T - 1 ? l->dy : R, n);
    else
        e->add(dh, R, dy_steps + (size_t)t * n, n);
}

void nn_rec_param_grads(nn_layer *l, const nn_rec *r, const engine_ops *e, const float *dgx,
                        const float *dgh, const float *h, int B, int need_dx, int accumulate)
{
    int T = r->T, H = r->H, GH = r->G * r->H, rows = B * T;
    float beta = accumulate ? 1.0f : 0.0f;
    e->gemm(1, 0, GH, r->C, rows, 1.0f, dgx, GH, l->x, r->C, beta, l->grad[NN_REC_WIH], r->C);
    e->bias_backward(l->grad[NN_REC_BIH], dgx, rows, GH, 1, accumulate);
    e->bias_backward(l->grad[NN_REC_BHH], dgh, rows, GH, 1, accumulate);
    /* dW_hh = sum over samples and t >= 1 of dgh_t^T h_{t-1} */
    if (!accumulate)
        e->zero(l->grad[NN_REC_WHH], (size_t)GH * H);
    if (T > 1 && e->device_memory) {
        /* On a GPU, two GEMMs instead of one per sample: every pair of
         * consecutive rows of the flat (B*T) buffers, minus the B-1 pairs
         * that run from one sample's last step into the next sample. */
        e->gemm(1, 0, GH, H, rows - 1, 1.0f, dgh + GH, GH, h, H, 1.0f, l->grad[NN_REC_WHH], H);
        if (B > 1)
            e->gemm(1, 0, GH, H, B - 1, -1.0f, dgh + (size_t)T * GH, T * GH,
                    h + (size_t)(T - 1) * H, T * H, 1.0f, l->grad[NN_REC_WHH], H);
    } else if (T > 1)
        for (int b = 0; b < B; b++)
            e->gemm(1, 0, GH, H, T - 1, 1.0f, dgh + ((size_t)b * T + 1) * GH, GH,
                    h + (size_t)b * T * H, H, 1.0f, l->grad[NN_REC_WHH], H);
    if (need_dx)
        e->gemm(0, 0, rows, r->C, GH, 1.0f, dgx, GH, l->param[NN_REC_WIH], r->C, 0.0f, l->dx, r->C);
}
