/*
 * nn/block.c: `block transformer H [mlp M] [causal] [dropout P]`, a pre-norm
 * Transformer block over a (T, D) sequence (GPT-2's layout):
 *
 *   x1 = x  + drop(attn(ln1(x)))            attention with H heads
 *   y  = x1 + drop(mlp(ln2(x1)))            mlp = proj(gelu(fc(.))), fc: D -> M
 *
 * The residual connections live inside the block, so the model stays a
 * plain chain of layers. M defaults to 4D; `dropout P` applies to the
 * attention probabilities and to both residual branches while training.
 * With --recompute blocks (nn_parse_ctx.recompute) the block keeps none of
 * its activations: its work lives in the model's recompute region, shared
 * by all blocks, and the model re-runs its forward right before backward.
 * Tensors, in this order (PyTorch names and layouts):
 *   blockN.ln1.weight (D)  blockN.ln1.bias (D)
 *   blockN.attn.qkv.weight (3D, D)  .attn.qkv.bias (3D)  .attn.proj.weight (D, D)  .attn.proj.bias
 *   blockN.ln2.weight (D)  blockN.ln2.bias (D)
 *   blockN.mlp.fc.weight (M, D)  .mlp.fc.bias (M)  .mlp.proj.weight (D, M)  .mlp.proj.bias (D)
 */
#include <stdio.h>
#include <string.h>

#include "nn/seq.h"

int nn_attn_parse_opts(nn_attn *a, int argc, char **argv, int from, const nn_parse_ctx *ctx);

enum { LN1_W, LN1_B, QKV_W, QKV_B, APROJ_W, APROJ_B, LN2_W, LN2_B, FC_W, FC_B, MPROJ_W, MPROJ_B };

typedef struct block_cfg {
    nn_attn a;
    int T, D, M, max_batch;
    int placed, masked;
    nn_attn_buf ab;
    /* per-layer work: activations backward needs */
    float *ln1, *mean1, *rstd1, *x1, *ln2, *mean2, *rstd2, *h, *g, *mask_a, *mask_m;
} block_cfg;

static int block_parse(nn_layer *l, int argc, char **argv, const nn_parse_ctx *ctx)
{
    block_cfg *c = l->priv;
    if (argc < 1 || strcmp(argv[0], "transformer") != 0)
        return nn_parse_error(ctx, "block: expected 'block transformer H [mlp M] [causal] "
                                   "[dropout P]'");
    if (nn_seq_input(l, ctx, &c->T, &c->D))
        return -1;
    if (argc < 2)
        return nn_parse_error(ctx, "block transformer: missing number of heads");
    if (nn_parse_posint(ctx, "heads", argv[1], &c->a.H))
        return -1;
    c->M = 4 * c->D;
    int from = 2;
    if (argc > 3 && strcmp(argv[2], "mlp") == 0) {
        if (nn_parse_posint(ctx, "mlp width", argv[3], &c->M))
            return -1;
        from = 4;
    }
    if (nn_attn_parse_opts(&c->a, argc, argv, from, ctx))
        return -1;
    if (c->D % c->a.H)
        return nn_parse_error(ctx, "block transformer: width %d is not divisible by %d heads", c->D,
                              c->a.H);
    c->a.T = c->T;
    c->a.D = c->D;
    c->max_batch = ctx->max_batch;

    int D = c->D, wfc[2] = {c->M, D}, wmp[2] = {D, c->M};
    nn_layer_add_tensor(l, "ln1.weight", 1, &D);
    nn_layer_add_tensor(l, "ln1.bias", 1, &D);
    nn_attn_add_tensors(l, &c->a, "attn.");
    nn_layer_add_tensor(l, "ln2.weight", 1, &D);
    nn_layer_add_tensor(l, "ln2.bias", 1, &D);
    nn_layer_add_tensor(l, "mlp.fc.weight", 2, wfc);
    nn_layer_add_tensor(l, "mlp.fc.bias", 1, &c->M);
    nn_layer_add_tensor(l, "mlp.proj.weight", 2, wmp);
    nn_layer_add_tensor(l, "mlp.proj.bias", 1, &D);

    size_t bt = (size_t)ctx->max_batch * c->T;
    size_t drop = c->a.dropout > 0.0f ? 2 * bt * D : 0;
    l->work_floats = nn_attn_work_floats(&c->a, ctx->max_batch) + bt * (3 * (size_t)D + 4) +
                     2 * bt * (size_t)c->M + drop;
    l->can_recompute = 1;
    if (ctx->recompute == NN_RECOMPUTE_BLOCKS) {
        /* keep nothing: backward re-runs forward into the model's shared region */
        l->recompute = 1;
        l->recompute_floats = l->work_floats;
        l->work_floats = 0;
    }
    size_t attn_scratch = nn_attn_scratch_floats(&c->a, ctx->max_batch);
    size_t mlp_scratch = bt * ((size_t)c->M + D);
    attn_scratch += bt * D; /* dln1 before it */
    l->scratch_floats = bt * D + (attn_scratch > mlp_scratch ? attn_scratch : mlp_scratch);
    return 0;
}

static void place(block_cfg *c, float *w)
{
    size_t bt = (size_t)c->max_batch * c->T, D = (size_t)c->D, M = (size_t)c->M;
    w += nn_attn_place(&c->a, c->max_batch, w, &c->ab);
    c->ln1 = w;
    c->x1 = c->ln1 + bt * D;
    c->ln2 = c->x1 + bt * D;
    c->mean1 = c->ln2 + bt * D;
    c->rstd1 = c->mean1 + bt;
    c->mean2 = c->rstd1 + bt;
    c->rstd2 = c->mean2 + bt;
    c->h = c->rstd2 + bt;
    c->g = c->h + bt * M;
    c->mask_a = c->mask_m = NULL;
    if (c->a.dropout > 0.0f) {
        c->mask_a = c->g + bt * M;
        c->mask_m = c->mask_a + bt * D;
    }
    c->placed = 1;
}

static void block_init(nn_layer *l, core_rng *r, int relu_next)
{
    block_cfg *c = l->priv;
    size_t D = (size_t)c->D, M = (size_t)c->M;
    nn_init_const(l->param[LN1_W], D, 1.0f);
    nn_init_const(l->param[LN1_B], D, 0.0f);
    nn_attn_init(&c->a, &l->param[QKV_W], r);
    nn_init_const(l->param[LN2_W], D, 1.0f);
    nn_init_const(l->param[LN2_B], D, 0.0f);
    nn_init_normal(l->param[FC_W], M * D, 0.02f, r);
    nn_init_const(l->param[FC_B], M, 0.0f);
    nn_init_normal(l->param[MPROJ_W], D * M, 0.02f, r);
    nn_init_const(l->param[MPROJ_B], D, 0.0f);
}

static void block_forward(nn_layer *l, const engine_ops *e, int batch)
{
    block_cfg *c = l->priv;
    if (!c->placed)
        place(c, l->work);
    float *const *p = l->param;
    int rows = batch * c->T, D = c->D;
    size_t n = (size_t)rows * D;
    c->masked = l->training && c->a.dropout > 0.0f;

    e->layernorm_forward(c->ln1, c->mean1, c->rstd1, l->x, p[LN1_W], p[LN1_B], rows, D);
    nn_attn_forward(&c->a, e, &c->ab, &p[QKV_W], c->x1, c->ln1, batch, l->training, l->rng);
    if (c->masked) {
        e->dropout_mask_rng(c->mask_a, n, c->a.dropout, l->rng);
        e->mul(c->x1, c->x1, c->mask_a, n);
    }
    e->add(c->x1, c->x1, l->x, n);

    e->layernorm_forward(c->ln2, c->mean2, c->rstd2, c->x1, p[LN2_W], p[LN2_B], rows, D);
    nn_linear_forward(e, c->h, c->ln2, p[FC_W], p[FC_B], rows, D, c->M);
    e->gelu_forward(c->g, c->h, (size_t)rows * c->M);
    nn_linear_forward(e, l->y, c->g, p[MPROJ_W], p[MPROJ_B], rows, c->M, D);
    if (c->masked) {
        e->dropout_mask_rng(c->mask_m, n, c->a.dropout, l->rng);
        e->mul(l->y, l->y, c->mask_m, n);
    }
    e->add(l->y, l->y, c->x1, n);
}

static void block_backward(nn_layer *l, const engine_ops *e, int batch, int need_dx, int accumulate)
{
    block_cfg *c = l->priv;
    float *const *p = l->param, *const *g = l->grad;
    int rows = batch * c->T, D = c->D;
    size_t n = (size_t)rows * D;
    /* scratch: dx1 (residual stream gradient), then the branch's own space */
    float *dx1 = l->scratch, *s = dx1 + n;
    float *dg = s, *dln = s + (size_t)rows * c->M;

    e->copy(dx1, l->dy, n);
    if (c->masked)
        e->mul(l->dy, l->dy, c->mask_m, n);
    nn_linear_backward(e, dg, g[MPROJ_W], g[MPROJ_B], l->dy, c->g, p[MPROJ_W], rows, c->M, D,
                       accumulate);
    e->gelu_backward(dg, dg, c->h, (size_t)rows * c->M);
    nn_linear_backward(e, dln, g[FC_W], g[FC_B], dg, c->ln2, p[FC_W], rows, D, c->M, accumulate);
    e->layernorm_backward(dx1, g[LN2_W], g[LN2_B], dln, c->x1, c->mean2, c->rstd2, p[LN2_W], rows,
                          D, accumulate);

    /* attention branch: its output gradient goes to l->dy (free now) */
    float *da = l->dy;
    if (c->masked)
        e->mul(da, dx1, c->mask_a, n);
    else
        e->copy(da, dx1, n);
    float *dln1 = s; /* the mlp branch's space is free again */
    nn_attn_backward(&c->a, e, &c->ab, &p[QKV_W], &g[QKV_W], dln1, da, c->ln1, dln1 + n, batch,
                     accumulate);
    if (need_dx)
        e->copy(l->dx, dx1, n);
    e->layernorm_backward(need_dx ? l->dx : NULL, g[LN1_W], g[LN1_B], dln1, l->x, c->mean1,
                          c->rstd1, p[LN1_W], rows, D, accumulate);
}

static void block_describe(const nn_layer *l, char *buf, size_t len)
{
    const block_cfg *c = l->priv;
    snprintf(buf, len, "transformer %d heads mlp %d%s", c->a.H, c->M, c->a.causal ? " causal" : "");
    if (c->a.dropout > 0.0f) {
        size_t k = strlen(buf);
        snprintf(buf + k, len - k, " dropout %g", (double)c->a.dropout);
    }
}

const nn_layer_kind nn_kind_block = {
    .name = "block",
    .priv_size = sizeof(block_cfg),
    .parse = block_parse,
    .init = block_init,
    .forward = block_forward,
    .backward = block_backward,
    .describe = block_describe,
};
