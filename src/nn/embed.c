/*
 * nn/embed.c: `embed V D`, token embedding (torch.nn.Embedding).
 *
 * Input: `input T`, T token ids per sample stored as floats. Output (T, D):
 * row ids[t] of weight (V, D). Token ids have no gradient: when the model
 * asks for the input gradient, it is zero.
 */
#include <stdio.h>
#include <string.h>

#include "nn/seq.h"

typedef struct embed_cfg {
    int V, D;
} embed_cfg;

static int embed_parse(nn_layer *l, int argc, char **argv, const nn_parse_ctx *ctx)
{
    embed_cfg *c = l->priv;
    char sh[64];
    if (l->in.ndim != 1 || l->in.chan_major)
        return nn_parse_error(ctx, "embed needs token ids ('input T') but gets %s",
                              nn_shape_str(&l->in, sh, sizeof sh));
    if (argc != 2)
        return nn_parse_error(ctx, "embed takes the vocabulary size and the width: embed V D");
    if (nn_parse_posint(ctx, "vocabulary size", argv[0], &c->V) ||
        nn_parse_posint(ctx, "embedding width", argv[1], &c->D))
        return -1;
    l->out.ndim = 2;
    l->out.d[0] = l->in.d[0];
    l->out.d[1] = c->D;
    int wd[2] = {c->V, c->D};
    nn_layer_add_tensor(l, "weight", 2, wd);
    return 0;
}

static void embed_init(nn_layer *l, core_rng *r, int relu_next)
{
    nn_init_normal(l->param[0], l->tensor[0].count, 0.02f, r);
}

static void embed_forward(nn_layer *l, const engine_ops *e, int batch)
{
    embed_cfg *c = l->priv;
    e->embed_forward(l->y, l->x, l->param[0], (size_t)batch * l->in.d[0], c->V, c->D);
}

static void embed_backward(nn_layer *l, const engine_ops *e, int batch, int need_dx, int accumulate)
{
    embed_cfg *c = l->priv;
    if (!accumulate)
        e->zero(l->grad[0], l->tensor[0].count);
    e->embed_backward(l->grad[0], l->dy, l->x, (size_t)batch * l->in.d[0], c->V, c->D);
    if (need_dx)
        e->zero(l->dx, (size_t)batch * l->in.d[0]);
}

static void embed_describe(const nn_layer *l, char *buf, size_t len)
{
    const embed_cfg *c = l->priv;
    snprintf(buf, len, "%d tokens x %d", c->V, c->D);
}

const nn_layer_kind nn_kind_embed = {
    .name = "embed",
    .priv_size = sizeof(embed_cfg),
    .parse = embed_parse,
    .init = embed_init,
    .forward = embed_forward,
    .backward = embed_backward,
    .describe = embed_describe,
};
