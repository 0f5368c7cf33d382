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
    /* (classes), or (T, classes) for a sequence: one label per position */
    if ((l->in.ndim != 1 && l->in.ndim != 2) || l->in.chan_major)
        return nn_parse_error(ctx,
                              "softmax_cross_entropy needs flat class scores but gets %s; add "
                              "'flatten' and a 'dense N' layer before it",
                              nn_shape_str(&l->in, sh, sizeof sh));
    if (l->in.d[l->in.ndim - 1] < 2)
        return nn_parse_error(ctx, "softmax_cross_entropy needs at least 2 classes, got %d",
                              l->in.d[l->in.ndim - 1]);
    l->out = l->in;
    return 0;
}

/* Rows of class scores: the batch, or batch * T for a sequence. */
static int loss_rows(const nn_layer *l, int batch)
{
    return l->in.ndim == 2 ? batch * l->in.d[0] : batch;
}

static int loss_classes(const nn_layer *l)
{
    return l->in.d[l->in.ndim - 1];
}

static void loss_forward(nn_layer *l, const engine_ops *e, int batch)
{
    l->correct = 0;
    l->loss_sum = e->softmax_xent_forward(l->y, l->x, l->labels, loss_rows(l, batch),
                                          loss_classes(l), &l->correct);
}

static void loss_backward(nn_layer *l, const engine_ops *e, int batch, int need_dx, int accumulate)
{
    if (need_dx)
        e->softmax_xent_backward(l->dx, l->y, l->labels, loss_rows(l, batch), loss_classes(l));
}

static void loss_describe(const nn_layer *l, char *buf, size_t len)
{
    snprintf(buf, len, "softmax_cross_entropy, %d classes%s", loss_classes(l),
             l->in.ndim == 2 ? " per position" : "");
}

const nn_layer_kind nn_kind_loss = {
    .name = "loss",
    .parse = loss_parse,
    .forward = loss_forward,
    .backward = loss_backward,
    .describe = loss_describe,
};
