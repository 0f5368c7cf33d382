/*
 * nn/layernorm.c: `layernorm`, torch.nn.LayerNorm over the last axis (eps
 * 1e-5) with weight and bias (C). Keeps each row's mean and 1/std for
 * backward in its work space.
 */
#include <stdio.h>

#include "nn/seq.h"

static int ln_parse(nn_layer *l, int argc, char **argv, const nn_parse_ctx *ctx)
{
    char sh[64];
    if (argc > 0)
        return nn_parse_error(ctx, "layernorm takes no arguments, got '%s'", argv[0]);
    if (l->in.chan_major || l->in.ndim < 1)
        return nn_parse_error(ctx, "layernorm needs a sample-major input, gets %s",
                              nn_shape_str(&l->in, sh, sizeof sh));
    int C = l->in.d[l->in.ndim - 1];
    nn_layer_add_tensor(l, "weight", 1, &C);
    nn_layer_add_tensor(l, "bias", 1, &C);
    l->work_floats = 2 * nn_size_mul((size_t)ctx->max_batch, nn_shape_size(&l->in) / (size_t)C);
    return 0;
}

static int ln_width(const nn_layer *l)
{
    return l->in.d[l->in.ndim - 1];
}

static int ln_rows(const nn_layer *l, int batch)
{
    return (int)((size_t)batch * nn_shape_size(&l->in) / (size_t)ln_width(l));
}

static void ln_init(nn_layer *l, core_rng *r, int relu_next)
{
    nn_init_const(l->param[0], l->tensor[0].count, 1.0f);
    nn_init_const(l->param[1], l->tensor[1].count, 0.0f);
}

static void ln_forward(nn_layer *l, const engine_ops *e, int batch)
{
    int rows = ln_rows(l, batch);
    e->layernorm_forward(l->y, l->work, l->work + rows, l->x, l->param[0], l->param[1], rows,
                         ln_width(l));
}

static void ln_backward(nn_layer *l, const engine_ops *e, int batch, int need_dx, int accumulate)
{
    int rows = ln_rows(l, batch);
    if (need_dx)
        e->zero(l->dx, (size_t)rows * ln_width(l));
    e->layernorm_backward(need_dx ? l->dx : NULL, l->grad[0], l->grad[1], l->dy, l->x, l->work,
                          l->work + rows, l->param[0], rows, ln_width(l), accumulate);
}

static void ln_describe(const nn_layer *l, char *buf, size_t len)
{
    snprintf(buf, len, "over %d", ln_width(l));
}

const nn_layer_kind nn_kind_layernorm = {
    .name = "layernorm",
    .parse = ln_parse,
    .init = ln_init,
    .forward = ln_forward,
    .backward = ln_backward,
    .describe = ln_describe,
};
