/*
 * nn/gelu.c: `gelu`, the elementwise GELU (tanh approximation, as
 * torch.nn.GELU(approximate='tanh')). Backward needs the input, which is
 * the previous layer's output and stays valid until the next forward.
 */
#include <stdio.h>

#include "nn/seq.h"

static int gelu_parse(nn_layer *l, int argc, char **argv, const nn_parse_ctx *ctx)
{
    if (argc > 0)
        return nn_parse_error(ctx, "gelu takes no arguments, got '%s'", argv[0]);
    return 0;
}

static void gelu_forward(nn_layer *l, const engine_ops *e, int batch)
{
    e->gelu_forward(l->y, l->x, (size_t)batch * nn_shape_size(&l->in));
}

static void gelu_backward(nn_layer *l, const engine_ops *e, int batch, int need_dx, int accumulate)
{
    if (need_dx)
        e->gelu_backward(l->dx, l->dy, l->x, (size_t)batch * nn_shape_size(&l->in));
}

static void gelu_describe(const nn_layer *l, char *buf, size_t len)
{
    snprintf(buf, len, "tanh approximation");
}

const nn_layer_kind nn_kind_gelu = {
    .name = "gelu",
    .parse = gelu_parse,
    .forward = gelu_forward,
    .backward = gelu_backward,
    .describe = gelu_describe,
};
