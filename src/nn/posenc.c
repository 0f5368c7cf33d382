/*
 * nn/posenc.c: `posenc learned|sinusoidal`, position encodings added to a
 * (T, D) sequence: y[t] = x[t] + P[t].
 *
 * learned: P is the tensor weight (T, D), as a torch.nn.Embedding over
 * positions. sinusoidal: the fixed table of "Attention Is All You Need",
 * P[t][2i] = sin(t / 10000^(2i/D)), P[t][2i+1] = cos(same), computed once
 * into the layer's work space on the first forward; no parameters.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn/seq.h"

typedef struct posenc_cfg {
    int T, D, learned, table_ready;
} posenc_cfg;

static int posenc_parse(nn_layer *l, int argc, char **argv, const nn_parse_ctx *ctx)
{
    posenc_cfg *c = l->priv;
    if (nn_seq_input(l, ctx, &c->T, &c->D))
        return -1;
    if (argc != 1 || (strcmp(argv[0], "learned") && strcmp(argv[0], "sinusoidal")))
        return nn_parse_error(ctx, "posenc takes one of learned, sinusoidal");
    c->learned = strcmp(argv[0], "learned") == 0;
    int wd[2] = {c->T, c->D};
    if (c->learned)
        nn_layer_add_tensor(l, "weight", 2, wd);
    else
        l->work_floats = (size_t)c->T * c->D;
    return 0;
}

static void posenc_init(nn_layer *l, core_rng *r, int relu_next)
{
    posenc_cfg *c = l->priv;
    if (c->learned)
        nn_init_normal(l->param[0], l->tensor[0].count, 0.02f, r);
}

/* The fixed table, computed on the host and uploaded once into the layer's
 * work (device memory on a GPU engine), a piece of a row at a time. */
static void fill_table(posenc_cfg *c, const engine_ops *e, float *dst)
{
    float buf[256];
    for (int t = 0; t < c->T; t++)
        for (int i0 = 0; i0 < c->D; i0 += 256) {
            int n = c->D - i0 < 256 ? c->D - i0 : 256;
            for (int k = 0; k < n; k++) {
                int i = i0 + k, even = i - i % 2;
                double f = (double)t / pow(10000.0, (double)even / (double)c->D);
                buf[k] = (float)(i % 2 ? cos(f) : sin(f));
            }
            e->upload(dst + (size_t)t * c->D + i0, buf, (size_t)n * sizeof *buf);
        }
    c->table_ready = 1;
}

static void posenc_forward(nn_layer *l, const engine_ops *e, int batch)
{
    posenc_cfg *c = l->priv;
    if (!c->learned && !c->table_ready)
        fill_table(c, e, l->work);
    const float *p = c->learned ? l->param[0] : l->work;
    e->add_broadcast(l->y, l->x, p, batch, (size_t)c->T * c->D);
}

static void posenc_backward(nn_layer *l, const engine_ops *e, int batch, int need_dx,
                            int accumulate)
{
    posenc_cfg *c = l->priv;
    size_t n = (size_t)c->T * c->D;
    if (c->learned)
        e->bias_backward(l->grad[0], l->dy, batch, (int)n, 1, accumulate);
    if (need_dx)
        e->copy(l->dx, l->dy, (size_t)batch * n);
}

static void posenc_describe(const nn_layer *l, char *buf, size_t len)
{
    const posenc_cfg *c = l->priv;
    snprintf(buf, len, "%s", c->learned ? "learned" : "sinusoidal");
}

const nn_layer_kind nn_kind_posenc = {
    .name = "posenc",
    .priv_size = sizeof(posenc_cfg),
    .parse = posenc_parse,
    .init = posenc_init,
    .forward = posenc_forward,
    .backward = posenc_backward,
    .describe = posenc_describe,
};
