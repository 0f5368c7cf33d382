/*
 * nn/layers.c: the table of layer kinds and the helpers they share (shape
 * text, argument parsing, weight initialization). Adding a layer kind: write
 * nn/<kind>.c with a `const nn_layer_kind`, declare it in layer.h, and add
 * one line to kinds[] below.
 */
#include "nn/layer.h"
#include "nn/seq.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

/* clang-format off */
static const nn_layer_kind *const kinds[] = {
    &nn_kind_conv, &nn_kind_maxpool, &nn_kind_avgpool, &nn_kind_flatten, &nn_kind_dense,
    &nn_kind_relu, &nn_kind_tanh,    &nn_kind_sigmoid, &nn_kind_loss,    &nn_kind_dropout,
    NN_SEQ_KINDS /* sequence models: nn/seq.h */
};
/* clang-format on */

const nn_layer_kind *nn_layer_kind_find(const char *name)
{
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(kinds[i]->name, name) == 0)
            return kinds[i];
    return NULL;
}

const char *nn_layer_kind_list(void)
{
    static char list[512];
    if (list[0])
        return list;
    size_t n = (size_t)snprintf(list, sizeof list, "input");
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0] && n < sizeof list; i++)
        n += (size_t)snprintf(list + n, sizeof list - n, ", %s", kinds[i]->name);
    return list;
}

size_t nn_shape_size(const nn_shape *s)
{
    size_t n = 1;
    for (int i = 0; i < s->ndim; i++)
        n *= (size_t)s->d[i];
    return n;
}

const char *nn_shape_str(const nn_shape *s, char *buf, size_t len)
{
    size_t n = (size_t)snprintf(buf, len, "(");
    for (int i = 0; i < s->ndim && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, i ? ",%d" : "%d", s->d[i]);
    if (n < len)
        snprintf(buf + n, len - n, ")");
    return buf;
}

size_t nn_size_mul(size_t a, size_t b)
{
    if (a != 0 && b > SIZE_MAX / a)
        return SIZE_MAX;
    return a * b;
}

void nn_layer_add_tensor(nn_layer *l, const char *role, int ndim, const int *dims)
{
    nn_tensor *t = &l->tensor[l->ntensors++];
    memset(t, 0, sizeof *t);
    /* layer names are short ("conv12"); the precision bound keeps it provably in range */
    snprintf(t->name, sizeof t->name, "%.40s.%.16s", l->name, role);
    t->ndim = ndim;
    t->count = 1;
    for (int i = 0; i < ndim; i++) {
        t->dims[i] = dims[i];
        t->count = nn_size_mul(t->count, (size_t)dims[i]);
    }
}

int nn_parse_error(const nn_parse_ctx *ctx, const char *fmt, ...)
{
    char what[CORE_ERROR_MAX / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return core_error_set(ctx->err, "%s:%d: %s", ctx->source, ctx->line, what);
}

/* Large enough for any real layer, small enough that products of a few of
 * them do not overflow size_t before the size check sees them. */
#define NN_INT_MAX (1 << 24)

int nn_parse_posint(const nn_parse_ctx *ctx, const char *what, const char *tok, int *out)
{
    if (!tok)
        return nn_parse_error(ctx, "missing %s", what);
    char *end = NULL;
    errno = 0;
    long v = strtol(tok, &end, 10);
    if (errno || end == tok || *end || v <= 0)
        return nn_parse_error(ctx, "expected a positive integer for %s, got '%s'", what, tok);
    if (v > NN_INT_MAX)
        return nn_parse_error(ctx, "%s %ld is too large (at most %d)", what, v, NN_INT_MAX);
    *out = (int)v;
    return 0;
}

int nn_parse_act(const char *tok, engine_act *act)
{
    static const struct {
        const char *name;
        engine_act act;
    } acts[] = {
        {"relu", ENGINE_ACT_RELU}, {"tanh", ENGINE_ACT_TANH}, {"sigmoid", ENGINE_ACT_SIGMOID}};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
        if (strcmp(tok, acts[i].name) == 0) {
            *act = acts[i].act;
            return 1;
        }
    return 0;
}

const char *nn_act_name(engine_act act)
{
    switch (act) {
    case ENGINE_ACT_RELU:
        return "relu";
    case ENGINE_ACT_TANH:
        return "tanh";
    case ENGINE_ACT_SIGMOID:
        return "sigmoid";
    default:
        return "none";
    }
}

void nn_init_weights(float *w, size_t n, int fan_in, int fan_out, int relu, core_rng *r)
{
    if (relu) {
        /* Kaiming normal, fan_in mode, gain sqrt(2) */
        float std = sqrtf(2.0f / (float)fan_in);
        for (size_t i = 0; i < n; i++)
            w[i] = std * core_rng_normal(r);
        return;
    }
    float limit = sqrtf(6.0f / (float)(fan_in + fan_out));
    for (size_t i = 0; i < n; i++)
        w[i] = limit * (2.0f * core_rng_uniform(r) - 1.0f);
}
