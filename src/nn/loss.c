/*
 * nn/loss.c: `loss softmax_cross_entropy`, the last layer. Its output is the
 * class probabilities; forward sums the per-sample losses (the trainer
 * divides by the global batch) and backward writes probs - onehot, the
 * gradient of that sum.
 */
#include <stdio.h>
#include <string.h>

#include "nn/layer.h"

static int loss_parse(nn_layer *l, int argc, char **argv, const nn_parse_ctx *ctx)
{
    char sh[64];
    if (argc < 1)
        return nn_parse_error(ctx, "loss: missing loss type (expected softmax_cross_entropy)");
    if (strcmp(argv[0], "softmax_cross_entropy") != 0)
        return nn_parse_error(ctx, "unknown loss '%s' (expected softmax_cross_entropy)", argv[0]);
    if (argc > 1)
        return nn_parse_error(ctx, "loss: unexpected argument '%s'", argv[1]);
    if (l->in.ndim != 1 || l->in.chan_major)
        return nn_parse_error(ctx,
                              "softmax_cross_entropy needs flat class scores but gets %s; add "
                              "'flatten' and a 'dense N' layer before it",
                              nn_shape_str(&l->in, sh, sizeof sh));
    if (l->in.d[0] < 2)
        return nn_parse_error(ctx, "softmax_cross_entropy needs at least 2 classes, got %d",
                              l->in.d[0]);
    l->out = l->in;
    return 0;
}

static void loss_forward(nn_layer *l, const engine_ops *e, int batch)
{
    l->correct = 0;
    l->loss_sum = e->softmax_xent_forward(l->y, l->x, l->labels, batch, l->in.d[0], &l->correct);
}

static void loss_backward(nn_layer *l, const engine_ops *e, int batch, int need_dx, int accumulate)
{
    if (need_dx)
        e->softmax_xent_backward(l->dx, l->y, l->labels, batch, l->in.d[0]);
}

static void loss_describe(const nn_layer *l, char *buf, size_t len)
{
    snprintf(buf, len, "softmax_cross_entropy, %d classes", l->in.d[0]);
}

const nn_layer_kind nn_kind_loss = {
    .name = "loss",
    .parse = loss_parse,
    .forward = loss_forward,
    .backward = loss_backward,
    .describe = loss_describe,
};
