/*
 * nn/conv.c: 2-D convolution, `conv F K [stride S] [same|valid] [act]`.
 *
 * The layer says what: the geometry, the parameters, the activation, and
 * where the activation is left to a following maxpool (fold_relu_next). The
 * engine decides how (engine_ops.conv_*): the CPU engine unrolls groups of
 * images into L2-sized column matrices for sgemm (engine/cpu/engine_cpu_conv.c),
 * the CUDA engine runs cuDNN over the whole batch. The engine also says the
 * output's layout (channel-major on the CPU, which flatten undoes once) and
 * how much work and scratch memory the layer must hold.
 */
#include <stdio.h>
#include <string.h>

#include "nn/layer.h"

typedef struct conv_cfg {
    int filters, k, stride, same;
    engine_act act;
    engine_conv_geom g;
    const char *method; /* the engine's, for the summary; NULL: not said */
} conv_cfg;

static void conv_set_strides(conv_cfg *c, const nn_layer *l, int batch)
{
    size_t plane = (size_t)c->g.H * c->g.W;
    c->g.c_stride = l->in.chan_major ? (size_t)batch * plane : plane;
    c->g.n_stride = l->in.chan_major ? plane : (size_t)c->g.C * plane;
}

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
    l->out.chan_major = ctx->engine->conv_out_chan_major;
    int wd[4] = {c->filters, g->C, c->k, c->k};
    nn_layer_add_tensor(l, "weight", 4, wd);
    nn_layer_add_tensor(l, "bias", 1, &c->filters);
    if ((double)ctx->max_batch * g->OH * g->OW > 2147483647.0 ||
        (double)g->C * c->k * c->k > 2147483647.0)
        return nn_parse_error(ctx, "conv is too large for one GEMM at batch %d (%d x %d x %d)",
                              ctx->max_batch, c->filters, g->OH, g->OW);
    conv_set_strides(c, l, ctx->max_batch); /* the input's layout, for the engine's plan */
    ctx->engine->conv_plan(g, c->filters, ctx->max_batch, &l->work_floats, &l->scratch_floats);
    c->method = ctx->engine->conv_method ? ctx->engine->conv_method(g, c->filters) : NULL;
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

static void conv_forward(nn_layer *l, const engine_ops *e, int batch)
{
    conv_cfg *c = l->priv;
    conv_set_strides(c, l, batch);
    /* with a maxpool next, the relu is applied to the pooled output instead
     * (fold_relu_next), and y keeps the values before the relu */
    engine_act act = l->fold_relu_next ? ENGINE_ACT_NONE : c->act;
    e->conv_forward(l->y, l->x, l->param[0], l->param[1], batch, c->filters, &c->g, act, l->work,
                    l->scratch);
}

static void conv_backward(nn_layer *l, const engine_ops *e, int batch, int need_dx, int accumulate)
{
    conv_cfg *c = l->priv;
    conv_set_strides(c, l, batch);
    size_t n = (size_t)c->filters * batch * c->g.OH * c->g.OW;
    if (c->act != ENGINE_ACT_NONE && !l->fold_relu_next)
        e->act_backward(l->dy, l->dy, l->y, n, c->act);
    e->conv_backward(need_dx ? l->dx : NULL, l->grad[0], l->grad[1], l->dy, l->x, l->param[0],
                     batch, c->filters, &c->g, accumulate, l->work, l->scratch);
}

static void conv_describe(const nn_layer *l, char *buf, size_t len)
{
    const conv_cfg *c = l->priv;
    snprintf(buf, len, "%dx%dx%d stride %d %s%s%s%s%s", c->filters, c->k, c->k, c->stride,
             c->same ? "same" : "valid", c->act ? " " : "", c->act ? nn_act_name(c->act) : "",
             c->method ? ", " : "", c->method ? c->method : "");
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
