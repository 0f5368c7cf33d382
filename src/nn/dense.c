/*
 * nn/dense.c: fully connected layer, `dense N [relu|tanh|sigmoid]`.
 *
 * y (B x out) = x (B x in) * W^T + b with W stored (out, in) as in
 * torch.nn.Linear; the activation is fused into the bias pass.
 */
#include <stdio.h>
#include <string.h>

#include "nn/layer.h"

typedef struct dense_cfg {
    int in, out;
    engine_act act;
} dense_cfg;

static int dense_parse(nn_layer *l, int argc, char **argv, const nn_parse_ctx *ctx)
{
    dense_cfg *c = l->priv;
    char sh[64];
    if (l->in.ndim != 1 || l->in.chan_major)
        return nn_parse_error(ctx, "dense needs a flat input but gets %s; add 'flatten' before it",
                              nn_shape_str(&l->in, sh, sizeof sh));
    if (argc < 1)
        return nn_parse_error(ctx, "dense: missing number of units (dense N [relu|tanh|sigmoid])");
    if (nn_parse_posint(ctx, "units", argv[0], &c->out))
        return -1;
    for (int i = 1; i < argc; i++)
        if (!nn_parse_act(argv[i], &c->act))
            return nn_parse_error(ctx, "unknown dense option '%s' (expected relu, tanh, sigmoid)",
                                  argv[i]);
    c->in = l->in.d[0];
    l->out.ndim = 1;
    l->out.d[0] = c->out;
    int wd[2] = {c->out, c->in};
    nn_layer_add_tensor(l, "weight", 2, wd);
    nn_layer_add_tensor(l, "bias", 1, &c->out);
    return 0;
}

static void dense_init(nn_layer *l, core_rng *r, int relu_next)
{
    dense_cfg *c = l->priv;
    nn_init_weights(l->param[0], l->tensor[0].count, c->in, c->out,
                    relu_next || c->act == ENGINE_ACT_RELU, r);
    memset(l->param[1], 0, l->tensor[1].count * sizeof(float));
}

static void dense_forward(nn_layer *l, const engine_ops *e, int batch)
{
    dense_cfg *c = l->priv;
    e->gemm(0, 1, batch, c->out, c->in, 1.0f, l->x, c->in, l->param[0], c->in, 0.0f, l->y, c->out);
    e->bias_act_forward(l->y, l->param[1], batch, c->out, 1, c->act);
}

static void dense_backward(nn_layer *l, const engine_ops *e, int batch, int need_dx, int accumulate)
{
    dense_cfg *c = l->priv;
    if (c->act != ENGINE_ACT_NONE)
        e->act_backward(l->dy, l->dy, l->y, (size_t)batch * c->out, c->act);
    e->bias_backward(l->grad[1], l->dy, batch, c->out, 1, accumulate);
    e->gemm(1, 0, c->out, c->in, batch, 1.0f, l->dy, c->out, l->x, c->in, accumulate ? 1.0f : 0.0f,
            l->grad[0], c->in);
    if (need_dx)
        e->gemm(0, 0, batch, c->in, c->out, 1.0f, l->dy, c->out, l->param[0], c->in, 0.0f, l->dx,
                c->in);
}

static void dense_describe(const nn_layer *l, char *buf, size_t len)
{
    const dense_cfg *c = l->priv;
    snprintf(buf, len, "%d->%d%s%s", c->in, c->out, c->act ? " " : "",
             c->act ? nn_act_name(c->act) : "");
}

static engine_act dense_fused_act(const nn_layer *l)
{
    return ((const dense_cfg *)l->priv)->act;
}

const nn_layer_kind nn_kind_dense = {
    .name = "dense",
    .priv_size = sizeof(dense_cfg),
    .parse = dense_parse,
    .init = dense_init,
    .forward = dense_forward,
    .backward = dense_backward,
    .describe = dense_describe,
    .fused_act = dense_fused_act,
};
