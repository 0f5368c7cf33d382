/*
 * nn/pool.c: `maxpool K [stride S]` and `avgpool K [stride S]`, no padding,
 * stride defaults to K, output floor((H - K) / S) + 1 as in PyTorch.
 *
 * A batch is a stack of independent H x W planes in either memory order, so
 * the kernels see (C * N) planes and never care whether the layout is
 * sample-major or channel-major. Maxpool keeps the argmax of each output for
 * backward.
 */
#include <stdio.h>
#include <string.h>

#include "nn/layer.h"

typedef struct pool_cfg {
    int k, stride;
} pool_cfg;

static int pool_parse(nn_layer *l, int argc, char **argv, const nn_parse_ctx *ctx)
{
    pool_cfg *c = l->priv;
    const char *kind = l->kind->name;
    char sh[64];
    if (l->in.ndim != 3)
        return nn_parse_error(ctx, "%s needs a (C,H,W) input but gets %s", kind,
                              nn_shape_str(&l->in, sh, sizeof sh));
    if (argc < 1)
        return nn_parse_error(ctx, "%s: missing window size (%s K [stride S])", kind, kind);
    if (nn_parse_posint(ctx, "window size", argv[0], &c->k))
        return -1;
    c->stride = c->k;
    for (int i = 1; i < argc; i += 2) {
        if (strcmp(argv[i], "stride") != 0)
            return nn_parse_error(ctx, "unknown %s option '%s' (expected stride S)", kind, argv[i]);
        if (nn_parse_posint(ctx, "stride", i + 1 < argc ? argv[i + 1] : NULL, &c->stride))
            return -1;
    }
    if (c->k > l->in.d[1] || c->k > l->in.d[2])
        return nn_parse_error(ctx, "%s window %d is larger than its input %s", kind, c->k,
                              nn_shape_str(&l->in, sh, sizeof sh));
    l->out = l->in;
    l->out.d[1] = (l->in.d[1] - c->k) / c->stride + 1;
    l->out.d[2] = (l->in.d[2] - c->k) / c->stride + 1;
    if (strcmp(kind, "maxpool") == 0)
        l->iwork_count = (size_t)ctx->max_batch * nn_shape_size(&l->out);
    return 0;
}

static void maxpool_forward(nn_layer *l, const engine_ops *e, int batch)
{
    pool_cfg *c = l->priv;
    e->maxpool_forward(l->y, l->iwork, l->x, l->in.d[0] * batch, l->in.d[1], l->in.d[2], c->k,
                       c->stride, l->out.d[1], l->out.d[2], l->fold_relu_prev);
}

static void maxpool_backward(nn_layer *l, const engine_ops *e, int batch, int need_dx,
                             int accumulate)
{
    pool_cfg *c = l->priv;
    if (need_dx)
        e->maxpool_backward(l->dx, l->dy, l->iwork, l->fold_relu_prev ? l->y : NULL,
                            l->in.d[0] * batch, l->in.d[1], l->in.d[2], c->k, c->stride,
                            l->out.d[1], l->out.d[2]);
}

static void avgpool_forward(nn_layer *l, const engine_ops *e, int batch)
{
    pool_cfg *c = l->priv;
    e->avgpool_forward(l->y, l->x, l->in.d[0] * batch, l->in.d[1], l->in.d[2], c->k, c->stride,
                       l->out.d[1], l->out.d[2]);
}

static void avgpool_backward(nn_layer *l, const engine_ops *e, int batch, int need_dx,
                             int accumulate)
{
    pool_cfg *c = l->priv;
    if (need_dx)
        e->avgpool_backward(l->dx, l->dy, l->in.d[0] * batch, l->in.d[1], l->in.d[2], c->k,
                            c->stride, l->out.d[1], l->out.d[2]);
}

static void pool_describe(const nn_layer *l, char *buf, size_t len)
{
    const pool_cfg *c = l->priv;
    snprintf(buf, len, "%dx%d stride %d", c->k, c->k, c->stride);
}

const nn_layer_kind nn_kind_maxpool = {
    .name = "maxpool",
    .priv_size = sizeof(pool_cfg),
    .parse = pool_parse,
    .forward = maxpool_forward,
    .backward = maxpool_backward,
    .describe = pool_describe,
};

const nn_layer_kind nn_kind_avgpool = {
    .name = "avgpool",
    .priv_size = sizeof(pool_cfg),
    .parse = pool_parse,
    .forward = avgpool_forward,
    .backward = avgpool_backward,
    .describe = pool_describe,
};
