/*
 * nn/activation.c: standalone `relu`, `tanh` and `sigmoid` layers (the same
 * functions can also be fused into conv and dense). Backward uses only the
 * output y, so nothing else is kept.
 */
#include <stdio.h>

#include "nn/layer.h"

static engine_act act_of(const nn_layer *l)
{
    engine_act a = ENGINE_ACT_NONE;
    nn_parse_act(l->kind->name, &a);
    return a;
}

static int act_parse(nn_layer *l, int argc, char **argv, const nn_parse_ctx *ctx)
{
    if (argc > 0)
        return nn_parse_error(ctx, "%s takes no arguments, got '%s'", l->kind->name, argv[0]);
    l->out = l->in;
    return 0;
}

static void act_layer_forward(nn_layer *l, const engine_ops *e, int batch)
{
    e->act_forward(l->y, l->x, (size_t)batch * nn_shape_size(&l->in), act_of(l));
}

static void act_layer_backward(nn_layer *l, const engine_ops *e, int batch, int need_dx,
                               int accumulate)
{
    if (need_dx)
        e->act_backward(l->dx, l->dy, l->y, (size_t)batch * nn_shape_size(&l->in), act_of(l));
}

static void act_describe(const nn_layer *l, char *buf, size_t len)
{
    snprintf(buf, len, "%s", "");
}

#define ACT_KIND(NAME)                                                                             \
    const nn_layer_kind nn_kind_##NAME = {                                                         \
        .name = #NAME,                                                                             \
        .parse = act_parse,                                                                        \
        .forward = act_layer_forward,                                                              \
        .backward = act_layer_backward,                                                            \
        .describe = act_describe,                                                                  \
        .fused_act = act_of,                                                                       \
    };

ACT_KIND(relu)
ACT_KIND(tanh)
ACT_KIND(sigmoid)
