/*
 * nn/dropout.c: `dropout P`, inverted dropout (torch.nn.Dropout).
 *
 * In a training forward each value is kept with probability 1-P and scaled
 * by 1/(1-P), or set to zero; in evaluation the layer is the identity. The
 * mask is a pure function of the forward's seed (nn_model_set_seed: the
 * trainer derives it from the run seed, the rank and the step) and of the
 * layer's name, drawn from the counter-based RNG in element order: a run is
 * reproducible, and a test can rebuild any mask from the seed alone. The mask
 * is kept (as the scale factor of every value) for backward. The mask and
 * the products are engine ops, so the layer runs on any engine.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/layer.h"

typedef struct dropout_cfg {
    float p;
} dropout_cfg;

static int dropout_parse(nn_layer *l, int argc, char **argv, const nn_parse_ctx *ctx)
{
    dropout_cfg *c = l->priv;
    if (argc != 1)
        return nn_parse_error(ctx, "dropout takes one probability (dropout P, 0 <= P < 1)");
    char *end = NULL;
    errno = 0;
    float p = strtof(argv[0], &end);
    if (errno || end == argv[0] || *end || !(p >= 0.0f && p < 1.0f))
        return nn_parse_error(ctx, "dropout probability must be in [0, 1), got '%s'", argv[0]);
    c->p = p;
    l->out = l->in;
    l->work_floats = nn_size_mul(nn_shape_size(&l->in), (size_t)ctx->max_batch);
    return 0;
}

/* FNV-1a of the layer name: each dropout layer draws from its own stream. */
uint64_t nn_dropout_stream(const char *layer_name)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const char *s = layer_name; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
    return h;
}

static void dropout_forward(nn_layer *l, const engine_ops *e, int batch)
{
    const dropout_cfg *c = l->priv;
    size_t n = (size_t)batch * nn_shape_size(&l->in);
    if (!l->training || c->p == 0.0f) {
        e->copy(l->y, l->x, n);
        return;
    }
    e->dropout_mask(l->work, n, c->p, l->seed, nn_dropout_stream(l->name));
    e->mul(l->y, l->x, l->work, n);
}

static void dropout_backward(nn_layer *l, const engine_ops *e, int batch, int need_dx,
                             int accumulate)
{
    const dropout_cfg *c = l->priv;
    if (!need_dx)
        return;
    size_t n = (size_t)batch * nn_shape_size(&l->in);
    if (!l->training || c->p == 0.0f) {
        e->copy(l->dx, l->dy, n);
        return;
    }
    e->mul(l->dx, l->dy, l->work, n);
}

static void dropout_describe(const nn_layer *l, char *buf, size_t len)
{
    snprintf(buf, len, "p=%g", (double)((const dropout_cfg *)l->priv)->p);
}

const nn_layer_kind nn_kind_dropout = {
    .name = "dropout",
    .priv_size = sizeof(dropout_cfg),
    .parse = dropout_parse,
    .forward = dropout_forward,
    .backward = dropout_backward,
    .describe = dropout_describe,
};
