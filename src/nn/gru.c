/*
 * nn/gru.c: `gru H [all|last]`, a one-layer GRU over a (T, C) sequence from
 * a zero state, as torch.nn.GRU(C, H, batch_first=True):
 * r, z = sigmoid(x W_i{r,z}^T + b_i + h W_h{r,z}^T + b_h),
 * n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn)), h' = (1-z) n + z h.
 * The recurrent projection is kept per step (gh) because n needs it apart.
 */
#include <stdio.h>

#include "nn/seq.h"

typedef struct gru_cfg {
    nn_rec r;
} gru_cfg;

static int gru_parse(nn_layer *l, int argc, char **argv, const nn_parse_ctx *ctx)
{
    nn_rec *r = &((gru_cfg *)l->priv)->r;
    if (nn_rec_parse(l, r, 3, argc, argv, ctx))
        return -1;
    size_t bt = (size_t)ctx->max_batch * r->T, H = (size_t)r->H;
    l->work_floats = 2 * bt * 3 * H + (r->last ? bt * H : 0);
    l->scratch_floats =
        2 * bt * 3 * H + 3 * (size_t)ctx->max_batch * H + nn_rec_dy_steps_floats(r, ctx->max_batch);
    return 0;
}

static void gru_init(nn_layer *l, core_rng *rng, int relu_next)
{
    nn_rec_init(l, &((gru_cfg *)l->priv)->r, rng);
}

static void gru_forward(nn_layer *l, const engine_ops *e, int B)
{
    const nn_rec *r = &((gru_cfg *)l->priv)->r;
    size_t T = (size_t)r->T, H = (size_t)r->H, bt = (size_t)r->max_batch * T;
    int GH = 3 * r->H, rows = B * r->T;
    float *gx = l->work, *gh = gx + bt * GH, *h = nn_rec_states(l, r, gh + bt * GH);
    e->gemm(0, 1, rows, GH, r->C, 1.0f, l->x, r->C, l->param[NN_REC_WIH], r->C, 0.0f, gx, GH);
    e->bias_act_forward(gx, l->param[NN_REC_BIH], rows, GH, 1, ENGINE_ACT_NONE);
    /* every step's recurrent pre-activation starts at b_hh: one fill */
    e->bias_fill(gh, l->param[NN_REC_BHH], rows, GH, 1);
    for (size_t t = 0; t < T; t++) {
        if (t > 0)
            e->gemm(0, 1, B, GH, r->H, 1.0f, h + (t - 1) * H, (int)(T * H), l->param[NN_REC_WHH],
                    r->H, 1.0f, gh + t * GH, (int)(T * GH));
        e->gru_cell_forward(gx + t * GH, gh + t * GH, t ? h + (t - 1) * H : NULL, h + t * H, B,
                            r->H, T * GH, T * H);
    }
    nn_rec_output(l, r, e, h, B);
}

static void gru_backward(nn_layer *l, const engine_ops *e, int B, int need_dx, int accumulate)
{
    const nn_rec *r = &((gru_cfg *)l->priv)->r;
    size_t T = (size_t)r->T, H = (size_t)r->H, bt = (size_t)r->max_batch * T;
    int GH = 3 * r->H;
    float *gx = l->work, *gh = gx + bt * GH, *h = nn_rec_states(l, r, gh + bt * GH);
    float *dgx = l->scratch, *dgh = dgx + bt * GH, *dh = dgh + bt * GH;
    float *dhp = dh + (size_t)B * H, *R = dhp + (size_t)B * H;
    const float *dys = nn_rec_dy_steps(l, r, e, R + (size_t)B * H, B);
    e->zero(R, (size_t)B * H);
    for (size_t t = T; t-- > 0;) {
        nn_rec_step_grad(l, r, e, dh, R, dys, (int)t, B);
        e->gru_cell_backward(dgx + t * GH, dgh + t * GH, dhp, dh, gx + t * GH, gh + t * GH,
                             t ? h + (t - 1) * H : NULL, B, r->H, T * GH, T * H);
        if (t > 0) {
            e->copy(R, dhp, (size_t)B * H);
            e->gemm(0, 0, B, r->H, GH, 1.0f, dgh + t * GH, (int)(T * GH), l->param[NN_REC_WHH],
                    r->H, 1.0f, R, r->H);
        }
    }
    nn_rec_param_grads(l, r, e, dgx, dgh, h, B, need_dx, accumulate);
}

static void gru_describe(const nn_layer *l, char *buf, size_t len)
{
    nn_rec_describe(&((const gru_cfg *)l->priv)->r, "", buf, len);
}

const nn_layer_kind nn_kind_gru = {
    .name = "gru",
    .priv_size = sizeof(gru_cfg),
    .parse = gru_parse,
    .init = gru_init,
    .forward = gru_forward,
    .backward = gru_backward,
    .describe = gru_describe,
};
