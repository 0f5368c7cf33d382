/*
 * nn/attention.c: `attention H [causal] [dropout P]`, multi-head
 * self-attention over a (T, D) sequence, D divisible by H:
 * y = proj(concat_h softmax(Q_h K_h^T / sqrt(D/H) [+ causal mask]) V_h)
 * with q | k | v = x qkv.weight^T + qkv.bias. Tensors (PyTorch layout):
 * attentionN.qkv.weight (3D, D), .qkv.bias, .proj.weight (D, D), .proj.bias.
 * `dropout P` drops attention probabilities while training. No residual:
 * `block transformer` adds the pre-norm residual structure around it.
 */
#include <stdio.h>
#include <string.h>

#include "nn/seq.h"

typedef struct attn_layer {
    nn_attn a;
    nn_attn_buf buf;
    int placed;
    int max_batch;
} attn_layer;

/* Shared by attention and block: "causal" and "dropout P" among argv[from..). */
static int parse_attn_opts(nn_attn *a, int argc, char **argv, int from, const nn_parse_ctx *ctx)
{
    for (int i = from; i < argc; i++) {
        if (strcmp(argv[i], "causal") == 0)
            a->causal = 1;
        else if (strcmp(argv[i], "dropout") == 0 && i + 1 < argc) {
            if (nn_parse_prob(ctx, "dropout probability", argv[++i], &a->dropout))
                return -1;
        } else
            return nn_parse_error(ctx, "unknown attention option '%s' (expected causal, dropout P)",
                                  argv[i]);
    }
    return 0;
}

static int attn_parse(nn_layer *l, int argc, char **argv, const nn_parse_ctx *ctx)
{
    attn_layer *c = l->priv;
    if (nn_seq_input(l, ctx, &c->a.T, &c->a.D))
        return -1;
    if (argc < 1)
        return nn_parse_error(ctx, "attention: missing number of heads (attention H [causal] "
                                   "[dropout P])");
    if (nn_parse_posint(ctx, "heads", argv[0], &c->a.H) ||
        parse_attn_opts(&c->a, argc, argv, 1, ctx))
        return -1;
    if (c->a.D % c->a.H)
        return nn_parse_error(ctx, "attention: width %d is not divisible by %d heads", c->a.D,
                              c->a.H);
    c->max_batch = ctx->max_batch;
    nn_attn_add_tensors(l, &c->a, "");
    l->work_floats = nn_attn_work_floats(&c->a, ctx->max_batch);
    l->scratch_floats = nn_attn_scratch_floats(&c->a, ctx->max_batch);
    return 0;
}

static void attn_init(nn_layer *l, core_rng *r, int relu_next)
{
    attn_layer *c = l->priv;
    nn_attn_init(&c->a, l->param, r);
}

static void attn_forward(nn_layer *l, const engine_ops *e, int batch)
{
    attn_layer *c = l->priv;
    if (!c->placed) {
        nn_attn_place(&c->a, c->max_batch, l->work, &c->buf);
        c->placed = 1;
    }
    nn_attn_forward(&c->a, e, &c->buf, l->param, l->y, l->x, batch, l->training, l->rng);
}

static void attn_backward(nn_layer *l, const engine_ops *e, int batch, int need_dx, int accumulate)
{
    attn_layer *c = l->priv;
    nn_attn_backward(&c->a, e, &c->buf, l->param, l->grad, need_dx ? l->dx : NULL, l->dy, l->x,
                     l->scratch, batch, accumulate);
}

static void attn_describe(const nn_layer *l, char *buf, size_t len)
{
    const attn_layer *c = l->priv;
    snprintf(buf, len, "%d heads%s", c->a.H, c->a.causal ? " causal" : "");
    if (c->a.dropout > 0.0f) {
        size_t n = strlen(buf);
        snprintf(buf + n, len - n, " dropout %g", (double)c->a.dropout);
    }
}

const nn_layer_kind nn_kind_attention = {
    .name = "attention",
    .priv_size = sizeof(attn_layer),
    .parse = attn_parse,
    .init = attn_init,
    .forward = attn_forward,
    .backward = attn_backward,
    .describe = attn_describe,
};

int nn_attn_parse_opts(nn_attn *a, int argc, char **argv, int from, const nn_parse_ctx *ctx)
{
    return parse_attn_opts(a, argc, argv, from, ctx);
}
