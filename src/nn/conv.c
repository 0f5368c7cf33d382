/*
 * nn/conv.c: 2-D convolution, `conv F K [stride S] [same|valid] [act]`.
 *
 * The batch is unrolled by im2col into a (C*K*K) x (N*OH*OW) column matrix
 * and multiplied by the (F, C*K*K) weight, in groups of images whose columns
 * fit in L2 (about 1 MiB: 5 images for the tutorial's second conv, 32 for its
 * first), so sgemm reads the columns from cache right after im2col wrote them.
 * Per-sample GEMMs would have N = OH*OW (196 for the tutorial's second conv),
 * too narrow for OpenBLAS; a group of a few images measured as fast as one
 * GEMM over the whole batch (N = 12544) and saves the trip through memory.
 * The output comes out channel-major (F, N, OH, OW), which pooling and
 * activations do not care about and `flatten` undoes once.
 *
 * Backward rebuilds each group's columns from x for the weight gradient (in
 * L2, cheaper than keeping a batch-sized copy from forward and reading it
 * back from memory; the layer holds one group's columns, not the batch's),
 * and the group's column gradient W^T * dY goes to the scratch region shared
 * by all layers and straight into col2im. Backward may be repeated, and the
 * first layer, which needs no dx, skips that half.
 */
#include <stdio.h>
#include <string.h>

#include "nn/layer.h"

/* Images per GEMM: enough that a group's column matrix is about this many
 * floats (1 MiB, one Zen 4 L2), so it is still in cache when sgemm reads it. */
#define CONV_GROUP_FLOATS (256 * 1024)

typedef struct conv_cfg {
    int filters, k, stride, same;
    int group; /* images per im2col + GEMM */
    engine_act act;
    engine_conv_geom g;
} conv_cfg;

static int conv_parse(nn_layer *l, int argc, char **argv, const nn_parse_ctx *ctx)
{
    conv_cfg *c = l->priv;
    char sh[64];
    if (l->in.ndim != 3)
        return nn_parse_error(ctx, "conv needs a (C,H,W) input but gets %s",
                              nn_shape_str(&l->in, sh, sizeof sh));
    if (argc < 1)
        return nn_parse_error(ctx, "conv: missing number of filters (conv F K ...)");
    if (nn_parse_posint(ctx, "filters", argv[0], &c->filters))
        return -1;
    if (argc < 2)
        return nn_parse_error(ctx, "conv: missing kernel size (conv F K ...)");
    if (nn_parse_posint(ctx, "kernel size", argv[1], &c->k))
        return -1;
    c->stride = 1;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "stride") == 0) {
            if (nn_parse_posint(ctx, "stride", i + 1 < argc ? argv[i + 1] : NULL, &c->stride))
                return -1;
            i++;
        } else if (strcmp(argv[i], "same") == 0) {
            c->same = 1;
        } else if (strcmp(argv[i], "valid") == 0) {
            c->same = 0;
        } else if (!nn_parse_act(argv[i], &c->act)) {
            return nn_parse_error(ctx,
                                  "unknown conv option '%s' (expected stride S, same, valid, "
                                  "relu, tanh, sigmoid)",
                                  argv[i]);
        }
    }
    engine_conv_geom *g = &c->g;
    g->C = l->in.d[0];
    g->H = l->in.d[1];
    g->W = l->in.d[2];
    g->K = c->k;
    g->stride = c->stride;
    if (c->same) {
        /* TensorFlow's rule: out = ceil(in / stride), padding split with the
         * extra pixel at the bottom/right; for stride 1 and odd K this is
         * PyTorch's padding=(K-1)/2. */
        g->OH = (g->H + c->stride - 1) / c->stride;
        g->OW = (g->W + c->stride - 1) / c->stride;
        int ph = (g->OH - 1) * c->stride + c->k - g->H;
        int pw = (g->OW - 1) * c->stride + c->k - g->W;
        g->pad_h = ph > 0 ? ph / 2 : 0;
        g->pad_w = pw > 0 ? pw / 2 : 0;
    } else {
        if (c->k > g->H || c->k > g->W)
            return nn_parse_error(ctx,
                                  "conv kernel %d is larger than its input %s with valid "
                                  "padding; use 'same' or a smaller kernel",
                                  c->k, nn_shape_str(&l->in, sh, sizeof sh));
        g->OH = (g->H - c->k) / c->stride + 1;
        g->OW = (g->W - c->k) / c->stride + 1;
    }
    l->out.ndim = 3;
    l->out.d[0] = c->filters;
    l->out.d[1] = g->OH;
    l->out.d[2] = g->OW;
    l->out.chan_major = 1;
    int wd[4] = {c->filters, g->C, c->k, c->k};
    nn_layer_add_tensor(l, "weight", 4, wd);
    nn_layer_add_tensor(l, "bias", 1, &c->filters);
    if ((double)ctx->max_batch * g->OH * g->OW > 2147483647.0 ||
        (double)g->C * c->k * c->k > 2147483647.0)
        return nn_parse_error(ctx, "conv is too large for one GEMM at batch %d (%d x %d x %d)",
                              ctx->max_batch, c->filters, g->OH, g->OW);
    size_t per_image = (size_t)g->C * c->k * c->k * g->OH * g->OW;
    size_t groups = (nn_size_mul(per_image, (size_t)ctx->max_batch) + CONV_GROUP_FLOATS - 1) /
                    CONV_GROUP_FLOATS;
    if (groups < 1)
        groups = 1;
    if (groups > (size_t)ctx->max_batch)
        groups = (size_t)ctx->max_batch;
    c->group = (int)(((size_t)ctx->max_batch + groups - 1) / groups);
    l->work_floats = nn_size_mul(per_image, (size_t)c->group);
    l->scratch_floats = l->work_floats;
    return 0;
}

static void conv_init(nn_layer *l, core_rng *r, int relu_next)
{
    conv_cfg *c = l->priv;
    int kk = c->k * c->k;
    nn_init_weights(l->param[0], l->tensor[0].count, c->g.C * kk, c->filters * kk,
                    relu_next || c->act == ENGINE_ACT_RELU, r);
    memset(l->param[1], 0, l->tensor[1].count * sizeof(float));
}

static void conv_set_strides(conv_cfg *c, const nn_layer *l, int batch)
{
    size_t plane = (size_t)c->g.H * c->g.W;
    c->g.c_stride = l->in.chan_major ? (size_t)batch * plane : plane;
    c->g.n_stride = l->in.chan_major ? plane : (size_t)c->g.C * plane;
}

static void conv_forward(nn_layer *l, const engine_ops *e, int batch)
{
    conv_cfg *c = l->priv;
    conv_set_strides(c, l, batch);
    int ckk = c->g.C * c->k * c->k, plane = c->g.OH * c->g.OW;
    int n = batch * plane;
    /* Group by group: the group's columns are still in cache when the GEMM
     * packs them. */
    e->bias_fill(l->y, l->param[1], 1, c->filters, n);
    for (int i0 = 0; i0 < batch; i0 += c->group) {
        int nb = batch - i0 < c->group ? batch - i0 : c->group, ng = nb * plane;
        float *cols = l->work;
        e->im2col(l->x + (size_t)i0 * c->g.n_stride, nb, &c->g, cols);
        e->gemm(0, 0, c->filters, ng, ckk, 1.0f, l->param[0], ckk, cols, ng, 1.0f,
                l->y + (size_t)i0 * plane, n);
    }
    /* with a maxpool next, the relu is applied to the pooled output instead
     * (fold_relu_next), and y keeps the values before the relu */
    if (c->act != ENGINE_ACT_NONE && !l->fold_relu_next)
        e->act_forward(l->y, l->y, (size_t)c->filters * n, c->act);
}

static void conv_backward(nn_layer *l, const engine_ops *e, int batch, int need_dx, int accumulate)
{
    conv_cfg *c = l->priv;
    conv_set_strides(c, l, batch);
    int ckk = c->g.C * c->k * c->k, plane = c->g.OH * c->g.OW;
    int n = batch * plane;
    if (c->act != ENGINE_ACT_NONE && !l->fold_relu_next)
        e->act_backward(l->dy, l->dy, l->y, (size_t)c->filters * n, c->act);
    e->bias_backward(l->grad[1], l->dy, 1, c->filters, n, accumulate);
    if (need_dx)
        e->zero(l->dx, (size_t)batch * nn_shape_size(&l->in));
    for (int i0 = 0; i0 < batch; i0 += c->group) {
        int nb = batch - i0 < c->group ? batch - i0 : c->group, ng = nb * plane;
        /* the columns again, rather than kept from forward: rebuilt from x
         * in L2, they cost less than reading a batch-sized copy back from
         * memory, and the layer keeps one group's columns instead of all */
        float *cols = l->work;
        e->im2col(l->x + (size_t)i0 * c->g.n_stride, nb, &c->g, cols);
        const float *dy = l->dy + (size_t)i0 * plane;
        float beta = accumulate || i0 > 0 ? 1.0f : 0.0f;
        e->gemm(0, 1, c->filters, ckk, ng, 1.0f, dy, n, cols, ng, beta, l->grad[0], ckk);
        if (!need_dx)
            continue;
        /* the group's column gradient lives in the shared scratch, in cache
         * for col2im */
        e->gemm(1, 0, ckk, ng, c->filters, 1.0f, l->param[0], ckk, dy, n, 0.0f, l->scratch, ng);
        e->col2im(l->scratch, nb, &c->g, l->dx + (size_t)i0 * c->g.n_stride);
    }
}

static void conv_describe(const nn_layer *l, char *buf, size_t len)
{
    const conv_cfg *c = l->priv;
    snprintf(buf, len, "%dx%dx%d stride %d %s%s%s", c->filters, c->k, c->k, c->stride,
             c->same ? "same" : "valid", c->act ? " " : "", c->act ? nn_act_name(c->act) : "");
}

static engine_act conv_fused_act(const nn_layer *l)
{
    return ((const conv_cfg *)l->priv)->act;
}

const nn_layer_kind nn_kind_conv = {
    .name = "conv",
    .priv_size = sizeof(conv_cfg),
    .parse = conv_parse,
    .init = conv_init,
    .forward = conv_forward,
    .backward = conv_backward,
    .describe = conv_describe,
    .fused_act = conv_fused_act,
};
