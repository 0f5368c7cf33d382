/*
 * nn/linear.c: `linear N [relu|tanh|sigmoid]`, a token-wise dense layer:
 * torch.nn.Linear applied to the last axis, so (T, C) -> (T, N) with the
 * same weight (N, C) and bias (N) at every position (a flat (C) input works
 * too). The language-model head is `linear V` before the loss.
 */
#include <stdio.h>
#include <string.h>

#include "nn/seq.h"

typedef struct linear_cfg {
    int in, out;
    engine_act act;
} linear_cfg;

static int linear_parse(nn_layer *l, int argc, char **argv, const nn_parse_ctx *ctx)
{
    linear_cfg *c = l->priv;
    char sh[64];
    if (l->in.chan_major || l->in.ndim < 1 || l->in.ndim > 2)
        return nn_parse_error(ctx, "linear needs a (T, C) or (C) input but gets %s",
                              nn_shape_str(&l->in, sh, sizeof sh));
    if (argc < 1)
        return nn_parse_error(ctx,
                              "linear: missing number of units (linear N [relu|tanh|sigmoid])");
    if (nn_parse_posint(ctx, "units", argv[0], &c->out))
        return -1;
    for (int i = 1; i < argc; i++)
        if (!nn_parse_act(argv[i], &c->act))
            return nn_parse_error(ctx, "unknown linear option '%s' (expected relu, tanh, sigmoid)",
                                  argv[i]);
    c->in = l->in.d[l->in.ndim - 1];
    l->out.d[l->out.ndim - 1] = c->out;
    int wd[2] = {c->out, c->in};
    nn_layer_add_tensor(l, "weight", 2, wd);
    nn_layer_add_tensor(l, "bias", 1, &c->out);
    return 0;
}

static int linear_rows(const nn_layer *l, int batch)
{
    return l->in.ndim == 2 ? batch * l->in.d[0] : batch;
}

static void linear_init(nn_layer *l, core_rng *r, int relu_next)
{
    linear_cfg *c = l->priv;
    nn_init_weights(l->param[0], l->tensor[0].count, c->in, c->out,
                    relu_next || c->act == ENGINE_ACT_RELU, r);
    nn_init_const(l->param[1], l->tensor[1].count, 0.0f);
}

static void linear_forward(nn_layer *l, const engine_ops *e, int batch)
{
    linear_cfg *c = l->priv;
    int rows = linear_rows(l, batch);
    nn_linear_forward(e, l->y, l->x, l->param[0], l->param[1], rows, c->in, c->out);
    if (c->act != ENGINE_ACT_NONE)
        e->act_forward(l->y, l->y, (size_t)rows * c->out, c->act);
}

static void linear_backward(nn_layer *l, const engine_ops *e, int batch, int need_dx,
                            int accumulate)
{
    linear_cfg *c = l->priv;
    int rows = linear_rows(l, batch);
    if (c->act != ENGINE_ACT_NONE)
        e->act_backward(l->dy, l->dy, l->y, (size_t)rows * c->out, c->act);
    nn_linear_backward(e, need_dx ? l->dx : NULL, l->grad[0], l->grad[1], l->dy, l->x, l->param[0],
                       rows, c->in, c->out, accumulate);
}

static void linear_describe(const nn_layer *l, char *buf, size_t len)
{
    const linear_cfg *c = l->priv;
    snprintf(buf, len, "%d->%d per position%s%s", c->in, c->out, c->act ? " " : "",
             c->act ? nn_act_name(c->act) : "");
}

static engine_act linear_fused_act(const nn_layer *l)
{
    return ((const linear_cfg *)l->priv)->act;
}

const nn_layer_kind nn_kind_linear = {
    .name = "linear",
    .priv_size = sizeof(linear_cfg),
    .parse = linear_parse,
    .init = linear_init,
    .forward = linear_forward,
    .backward = linear_backward,
    .describe = linear_describe,
    .fused_act = linear_fused_act,
};
