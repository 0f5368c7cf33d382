/*
 * nn/flatten.c: `flatten`, (C,H,W) -> (C*H*W) in torch.flatten order.
 *
 * After a convolution the batch is channel-major (C, N, H, W); flatten is
 * where it turns back into sample-major rows for dense layers.
 */
#include <stdio.h>

#include "nn/layer.h"

static int flatten_parse(nn_layer *l, int argc, char **argv, const nn_parse_ctx *ctx)
{
    if (argc > 0)
        return nn_parse_error(ctx, "flatten takes no arguments, got '%s'", argv[0]);
    l->out.ndim = 1;
    l->out.d[0] = (int)nn_shape_size(&l->in);
    l->out.chan_major = 0;
    return 0;
}

static size_t inner_size(const nn_layer *l)
{
    return nn_shape_size(&l->in) / (size_t)l->in.d[0];
}

static void flatten_forward(nn_layer *l, const engine_ops *e, int batch)
{
    if (l->in.chan_major)
        e->cn_to_nc(l->y, l->x, l->in.d[0], batch, inner_size(l));
    else
        e->copy(l->y, l->x, (size_t)batch * nn_shape_size(&l->in));
}

static void flatten_backward(nn_layer *l, const engine_ops *e, int batch, int need_dx,
                             int accumulate)
{
    if (!need_dx)
        return;
    if (l->in.chan_major)
        e->nc_to_cn(l->dx, l->dy, l->in.d[0], batch, inner_size(l));
    else
        e->copy(l->dx, l->dy, (size_t)batch * nn_shape_size(&l->in));
}

static void flatten_describe(const nn_layer *l, char *buf, size_t len)
{
    snprintf(buf, len, "%s", l->in.chan_major ? "(C,N,H,W)->(N,C*H*W)" : "");
}

const nn_layer_kind nn_kind_flatten = {
    .name = "flatten",
    .parse = flatten_parse,
    .forward = flatten_forward,
    .backward = flatten_backward,
    .describe = flatten_describe,
};
