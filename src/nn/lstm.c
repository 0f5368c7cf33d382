/*
 * nn/lstm.c: `lstm H [all|last]`, a one-layer LSTM over a (T, C) sequence
 * from a zero state, as torch.nn.LSTM(C, H, batch_first=True) (gates
 * i, f, g, o; tensors in nn/seq.h). The input projection of every step is
 * one sgemm; each step then adds h_{t-1} W_hh^T (one sgemm over the batch)
 * and applies the cell. Backward runs the steps in reverse, then computes
 * the weight and input gradients of all steps at once.
 */
#include <stdio.h>

#include "nn/seq.h"

typedef struct lstm_cfg {
    nn_rec r;
} lstm_cfg;

static int lstm_parse(nn_layer *l, int argc, char **argv, const nn_parse_ctx *ctx)
{
    nn_rec *r = &((lstm_cfg *)l->priv)->r;
    if (nn_rec_parse(l, r, 4, argc, argv, ctx))
        return -1;
    size_t bt = (size_t)ctx->max_batch * r->T, H = (size_t)r->H;
    l->work_floats = bt * 4 * H + bt * H + (r->last ? bt * H : 0);
    l->scratch_floats =
        bt * 4 * H + 3 * (size_t)ctx->max_batch * H + nn_rec_dy_steps_floats(r, ctx->max_batch);
    return 0;
}

static void lstm_init(nn_layer *l, core_rng *rng, int relu_next)
{
    nn_rec_init(l, &((lstm_cfg *)l->priv)->r, rng);
}

static void lstm_forward(nn_layer *l, const engine_ops *e, int B)
{
    const nn_rec *r = &((lstm_cfg *)l->priv)->r;
    size_t T = (size_t)r->T, H = (size_t)r->H, bt = (size_t)r->max_batch * T;
    int GH = 4 * r->H, rows = B * r->T;
    float *g = l->work, *c = g + bt * GH, *h = nn_rec_states(l, r, c + bt * H);
    e->gemm(0, 1, rows, GH, r->C, 1.0f, l->x, r->C, l->param[NN_REC_WIH], r->C, 0.0f, g, GH);
    e->bias_act_forward(g, l->param[NN_REC_BIH], rows, GH, 1, ENGINE_ACT_NONE);
    e->bias_act_forward(g, l->param[NN_REC_BHH], rows, GH, 1, ENGINE_ACT_NONE);
    for (size_t t = 0; t < T; t++) {
        if (t > 0)
            e->gemm(0, 1, B, GH, r->H, 1.0f, h + (t - 1) * H, (int)(T * H), l->param[NN_REC_WHH],
                    r->H, 1.0f, g + t * GH, (int)(T * GH));
        e->lstm_cell_forward(g + t * GH, t ? c + (t - 1) * H : NULL, c + t * H, h + t * H, B, r->H,
                             T * GH, T * H);
    }
    nn_rec_output(l, r, e, h, B);
}

static void lstm_backward(nn_layer *l, const engine_ops *e, int B, int need_dx, int accumulate)
{
    const nn_rec *r = &((lstm_cfg *)l->priv)->r;
    size_t T = (size_t)r->T, H = (size_t)r->H, bt = (size_t)r->max_batch * T;
    int GH = 4 * r->H;
    float *g = l->work, *c = g + bt * GH, *h = nn_rec_states(l, r, c + bt * H);
    float *dg = l->scratch, *dh = dg + bt * GH, *dc = dh + (size_t)B * H, *R = dc + (size_t)B * H;
    const float *dys = nn_rec_dy_steps(l, r, e, R + (size_t)B * H, B);
    e->zero(dc, (size_t)B * H);
    e->zero(R, (size_t)B * H);
    for (size_t t = T; t-- > 0;) {
        nn_rec_step_grad(l, r, e, dh, R, dys, (int)t, B);
        e->lstm_cell_backward(dg + t * GH, dc, dh, g + t * GH, t ? c + (t - 1) * H : NULL,
                              c + t * H, B, r->H, T * GH, T * H);
        if (t > 0)
            e->gemm(0, 0, B, r->H, GH, 1.0f, dg + t * GH, (int)(T * GH), l->param[NN_REC_WHH], r->H,
                    0.0f, R, r->H);
    }
    nn_rec_param_grads(l, r, e, dg, dg, h, B, need_dx, accumulate);
}

static void lstm_describe(const nn_layer *l, char *buf, size_t len)
{
    nn_rec_describe(&((const lstm_cfg *)l->priv)->r, "", buf, len);
}

const nn_layer_kind nn_kind_lstm = {
    .name = "lstm",
    .priv_size = sizeof(lstm_cfg),
    .parse = lstm_parse,
    .init = lstm_init,
    .forward = lstm_forward,
    .backward = lstm_backward,
    .describe = lstm_describe,
};
