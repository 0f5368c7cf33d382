/*
 * nn/rnn.c: `rnn H [tanh|relu] [all|last]`, an Elman RNN over a (T, C)
 * sequence from a zero state, as torch.nn.RNN(C, H, nonlinearity,
 * batch_first=True): h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh).
 * The pre-activations are built in the state buffer; the recurrence runs on a
 * time-major copy (T, B, H) in scratch, so each step is one GEMM and one
 * activation over all samples (one engine op per step, not one per sample).
 */
#include <stdio.h>

#include "nn/seq.h"

typedef struct rnn_cfg {
    nn_rec r;
} rnn_cfg;

static int rnn_parse(nn_layer *l, int argc, char **argv, const nn_parse_ctx *ctx)
{
    nn_rec *r = &((rnn_cfg *)l->priv)->r;
    if (nn_rec_parse(l, r, 1, argc, argv, ctx))
        return -1;
    size_t bt = (size_t)ctx->max_batch * r->T, H = (size_t)r->H;
    l->work_floats = r->last ? bt * H : 0;
    l->scratch_floats =
        3 * bt * H + 2 * (size_t)ctx->max_batch * H + nn_rec_dy_steps_floats(r, ctx->max_batch);
    return 0;
}

static void rnn_init(nn_layer *l, core_rng *rng, int relu_next)
{
    nn_rec_init(l, &((rnn_cfg *)l->priv)->r, rng);
}

static void rnn_forward(nn_layer *l, const engine_ops *e, int B)
{
    const nn_rec *r = &((rnn_cfg *)l->priv)->r;
    size_t T = (size_t)r->T, H = (size_t)r->H;
    int rows = B * r->T;
    size_t step = (size_t)B * H;
    float *h = nn_rec_states(l, r, l->work), *hT = l->scratch;
    e->gemm(0, 1, rows, r->H, r->C, 1.0f, l->x, r->C, l->param[NN_REC_WIH], r->C, 0.0f, h, r->H);
    e->bias_act_forward(h, l->param[NN_REC_BIH], rows, r->H, 1, ENGINE_ACT_NONE);
    e->bias_act_forward(h, l->param[NN_REC_BHH], rows, r->H, 1, ENGINE_ACT_NONE);
    e->nc_to_cn(hT, h, r->T, B, H);
    for (size_t t = 0; t < T; t++) {
        float *cur = hT + t * step;
        if (t > 0)
            e->gemm(0, 1, B, r->H, r->H, 1.0f, cur - step, r->H, l->param[NN_REC_WHH], r->H, 1.0f,
                    cur, r->H);
        e->act_forward(cur, cur, step, r->act);
    }
    e->cn_to_nc(h, hT, r->T, B, H);
    nn_rec_output(l, r, e, h, B);
}

static void rnn_backward(nn_layer *l, const engine_ops *e, int B, int need_dx, int accumulate)
{
    const nn_rec *r = &((rnn_cfg *)l->priv)->r;
    size_t T = (size_t)r->T, H = (size_t)r->H, bt = (size_t)r->max_batch * T;
    size_t step = (size_t)B * H;
    float *h = nn_rec_states(l, r, l->work);
    /* scratch: dg (B, T, H) for the parameter gradients, then time-major dg
     * and states, dh, R, the time-major output gradient */
    float *dg = l->scratch, *dgT = dg + bt * H, *hT = dgT + bt * H, *dh = hT + bt * H;
    float *R = dh + step;
    const float *dys = nn_rec_dy_steps(l, r, e, R + step, B);
    e->nc_to_cn(hT, h, r->T, B, H);
    e->zero(R, step);
    for (size_t t = T; t-- > 0;) {
        nn_rec_step_grad(l, r, e, dh, R, dys, (int)t, B);
        e->act_backward(dgT + t * step, dh, hT + t * step, step, r->act);
        if (t > 0)
            e->gemm(0, 0, B, r->H, r->H, 1.0f, dgT + t * step, r->H, l->param[NN_REC_WHH], r->H,
                    0.0f, R, r->H);
    }
    e->cn_to_nc(dg, dgT, r->T, B, H);
    nn_rec_param_grads(l, r, e, dg, dg, h, B, need_dx, accumulate);
}

static void rnn_describe(const nn_layer *l, char *buf, size_t len)
{
    const nn_rec *r = &((const rnn_cfg *)l->priv)->r;
    nn_rec_describe(r, r->act == ENGINE_ACT_RELU ? " relu" : " tanh", buf, len);
}

const nn_layer_kind nn_kind_rnn = {
    .name = "rnn",
    .priv_size = sizeof(rnn_cfg),
    .parse = rnn_parse,
    .init = rnn_init,
    .forward = rnn_forward,
    .backward = rnn_backward,
    .describe = rnn_describe,
};
