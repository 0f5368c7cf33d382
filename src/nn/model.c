/*
 * nn/model.c: builds a model from a spec (see nn/model.h, docs/MODEL_SPEC.md)
 * and runs forward and backward over its layers.
 *
 * Memory is decided once: nn_model_parse reads the spec, every layer's
 * parse declares its tensors and buffers, and the bytes for max_batch are
 * known (nn_model_memory, the model's part of the trainer's memory plan)
 * BEFORE anything large is allocated; nn_model_alloc checks them against a
 * limit and then makes one allocation per role and points into it:
 * parameters, gradients, activations (one output per layer), two ping-pong
 * gradient buffers (layer i reads dy from delta[i & 1] and writes dx into
 * the other), per-layer work floats and ints, one scratch region and one
 * recompute region shared by all layers.
 */
#include "nn/model.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "nn/layer.h"
#include "nn/seq.h"

/* The default limit on a model's buffers is the machine's memory
 * (nn_model_opts.limit_bytes sets another: the trainer's --max-memory);
 * tests/fuzz/fuzz_spec.c compiles this file with a small NN_MODEL_LIMIT_BYTES. */
#define NN_SAMPLE_MAX 2147483647.0

struct nn_model {
    const engine_ops *e;
    char *spec;
    char source[256];
    int max_batch;
    nn_shape input;
    int nlayers;
    nn_layer *layers;

    double limit;           /* bytes; 0: the default (default_limit) */
    nn_recompute recompute; /* layers that re-run their forward in backward */
    size_t nparams;
    float *params, *grads;
    int grads_external;  /* nn_model_use_grads: the caller owns grads */
    int params_external; /* nn_model_use_params: the caller owns params */
    int ntensors;
    nn_tensor *tensors;

    float *act, *delta[2], *work;
    int32_t *iwork, *labels;
    int input_grad;
    int last_batch;
    int have_labels;
    uint64_t seed; /* of the next forward (dropout masks) */
    float *qinput; /* the input on the int8 grid, when layer 0 quantizes its input */

    /* Engines with device memory only (e->device_memory): the host view of
     * the parameters (nn_model_params), the model input copied in, and the
     * probabilities copied out for nn_model_probs. */
    float *host_params, *xin, *probs_host;

    /* sequence models: labels per sample (T for a loss over a (T, V)
     * sequence, else 1) and the RNG dropout draws from */
    int lps;
    core_rng own_rng, *rng;
};

/* ---- parsing ---- */

static int split_words(char *line, char **words, int max)
{
    char *hash = strchr(line, '#');
    if (hash)
        *hash = '\0';
    int n = 0;
    char *p = line;
    while (*p) {
        while (*p && isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        if (n == max)
            return -1;
        words[n++] = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        if (*p)
            *p++ = '\0';
    }
    return n;
}

static int parse_input(nn_model *m, int argc, char **argv, const nn_parse_ctx *ctx)
{
    static const char *what[3] = {"channels", "height", "width"};
    static const char *seq_what[2] = {"length", "features"}; /* input T C: a sequence */
    if (argc < 1)
        return nn_parse_error(ctx, "input: missing sizes (input C H W)");
    if (argc > NN_MAX_DIMS - 1)
        return nn_parse_error(ctx, "input takes C H W, T C or one size N, got %d numbers", argc);
    m->input.ndim = argc;
    double total = 1.0;
    for (int i = 0; i < argc; i++) {
        const char *name = argc == 1 ? "size" : argc == 2 ? seq_what[i] : what[i];
        if (nn_parse_posint(ctx, name, argv[i], &m->input.d[i]))
            return -1;
        total *= m->input.d[i];
    }
    if (total > NN_SAMPLE_MAX)
        return nn_parse_error(ctx, "input has %.0f values per sample, too many", total);
    return 0;
}

static nn_layer *add_layer(nn_model *m, const nn_layer_kind *kind, int line, core_error *err)
{
    nn_layer *grown = realloc(m->layers, (size_t)(m->nlayers + 1) * sizeof *grown);
    if (!grown) {
        core_error_set(err, "%s: out of memory parsing the model", m->source);
        return NULL;
    }
    m->layers = grown;
    nn_layer *l = &m->layers[m->nlayers];
    memset(l, 0, sizeof *l);
    l->kind = kind;
    l->line = line;
    l->in = m->nlayers ? m->layers[m->nlayers - 1].out : m->input;
    l->out = l->in;
    int same_kind = 1;
    for (int i = 0; i < m->nlayers; i++)
        same_kind += m->layers[i].kind == kind;
    snprintf(l->name, sizeof l->name, "%s%d", kind->name, same_kind);
    if (kind->priv_size) {
        l->priv = calloc(1, kind->priv_size);
        if (!l->priv) {
            core_error_set(err, "%s: out of memory parsing the model", m->source);
            return NULL;
        }
    }
    m->nlayers++;
    return l;
}

static int parse_line(nn_model *m, char **words, int nw, const nn_parse_ctx *ctx, int *input_line)
{
    if (strcmp(words[0], "input") == 0) {
        if (*input_line)
            return nn_parse_error(ctx, "second 'input' line (the first is line %d)", *input_line);
        *input_line = ctx->line;
        return parse_input(m, nw - 1, words + 1, ctx);
    }
    const nn_layer_kind *kind = nn_layer_kind_find(words[0]);
    if (!kind)
        return nn_parse_error(ctx, "unknown layer '%s' (expected %s)", words[0],
                              nn_layer_kind_list());
    if (!*input_line)
        return nn_parse_error(ctx, "the model must start with 'input C H W', got '%s'", words[0]);
    if (m->nlayers && m->layers[m->nlayers - 1].kind == &nn_kind_loss)
        return nn_parse_error(ctx, "'%s' after the loss; 'loss' must be the last layer", words[0]);
    nn_layer *l = add_layer(m, kind, ctx->line, ctx->err);
    if (!l)
        return -1;
    if (kind->parse(l, nw - 1, words + 1, ctx))
        return -1;
    double out = 1.0;
    for (int i = 0; i < l->out.ndim; i++)
        out *= l->out.d[i];
    if (out > NN_SAMPLE_MAX)
        return nn_parse_error(ctx, "%s output has %.0f values per sample, too many", l->name, out);
    return 0;
}

/* Editors on Windows start UTF-8 files with a byte-order mark; it is not
 * part of the first word. */
static size_t bom_len(const char *text)
{
    const unsigned char *u = (const unsigned char *)text;
    return u[0] == 0xEF && u[1] == 0xBB && u[2] == 0xBF ? 3 : 0;
}

/* The next line of *p that holds words, as the parser splits it, joined by
 * single spaces into out; its line number goes to *line. 0 at the end. */
static int next_words(const char **p, int *line, char *out, size_t len)
{
    while (**p) {
        const char *nl = strchr(*p, '\n');
        size_t n = nl ? (size_t)(nl - *p) : strlen(*p);
        char buf[1024];
        if (n >= sizeof buf)
            n = sizeof buf - 1;
        memcpy(buf, *p, n);
        buf[n] = '\0';
        *p = nl ? nl + 1 : *p + strlen(*p);
        (*line)++;
        char *words[NN_MAX_ARGS + 1];
        int nw = split_words(buf, words, NN_MAX_ARGS + 1);
        if (nw == 0)
            continue;
        size_t off = 0;
        out[0] = '\0';
        for (int i = 0; i < (nw < 0 ? 0 : nw) && off < len; i++)
            off += (size_t)snprintf(out + off, len - off, "%s%s", i ? " " : "", words[i]);
        return 1;
    }
    return 0;
}

int nn_spec_diff(const char *a, const char *b, char *line_a, char *line_b, size_t len)
{
    const char *pa = a + bom_len(a), *pb = b + bom_len(b);
    int na = 0, nb = 0;
    for (;;) {
        int ha = next_words(&pa, &na, line_a, len), hb = next_words(&pb, &nb, line_b, len);
        if (!ha && !hb)
            return 0;
        if (!ha)
            snprintf(line_a, len, "(end of spec)");
        if (!hb)
            snprintf(line_b, len, "(end of spec)");
        if (!ha || !hb || strcmp(line_a, line_b) != 0)
            return hb ? nb : nb + 1;
    }
}

static int parse_spec(nn_model *m, const char *text, core_error *err)
{
    char *copy = strdup(text);
    if (!copy)
        return core_error_set(err, "%s: out of memory parsing the model", m->source);
    nn_parse_ctx ctx = {m->source, 0, m->max_batch, err, m->e, m->recompute};
    int input_line = 0, rc = 0;
    char *save = NULL;
    char *p = copy + bom_len(copy);
    while (p && rc == 0) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        ctx.line++;
        char *words[NN_MAX_ARGS + 1];
        int nw = split_words(p, words, NN_MAX_ARGS + 1);
        if (nw < 0)
            rc = nn_parse_error(&ctx, "too many words (at most %d)", NN_MAX_ARGS + 1);
        else if (nw > 0)
            rc = parse_line(m, words, nw, &ctx, &input_line);
        p = nl ? nl + 1 : NULL;
    }
    (void)save;
    free(copy);
    if (rc)
        return rc;
    if (!input_line)
        return nn_parse_error(&ctx, "no 'input C H W' line; the model must start with one");
    if (!m->nlayers || m->layers[m->nlayers - 1].kind != &nn_kind_loss)
        return nn_parse_error(&ctx, "the model has no 'loss' line; end it with 'loss "
                                    "softmax_cross_entropy'");
    return 0;
}

/* ---- memory ---- */

typedef struct plan {
    double params, act, delta, work, scratch, iwork, recompute;
} plan;

/* Each layer's activations and work start on a 256-byte boundary: vector
 * loads on the CPU, and cuDNN's kernels, which want 16-byte aligned tensors. */
static size_t align_floats(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

static plan make_plan(const nn_model *m)
{
    plan p = {0};
    double b = m->max_batch;
    double widest = (double)nn_shape_size(&m->input);
    for (int i = 0; i < m->nlayers; i++) {
        const nn_layer *l = &m->layers[i];
        for (int t = 0; t < l->ntensors; t++)
            p.params += (double)l->tensor[t].count;
        double out = (double)nn_shape_size(&l->out);
        p.act += (double)align_floats(nn_shape_size(&l->out) * (size_t)m->max_batch);
        if (out > widest)
            widest = out;
        p.work += (double)align_floats(l->work_floats);
        if ((double)l->scratch_floats > p.scratch)
            p.scratch = (double)l->scratch_floats;
        if ((double)l->recompute_floats > p.recompute)
            p.recompute = (double)l->recompute_floats;
        p.iwork += (double)l->iwork_count;
    }
    p.delta = 2.0 * widest * b;
    p.scratch = (double)align_floats((size_t)p.scratch); /* the recompute region follows */
    p.recompute = (double)align_floats((size_t)p.recompute);
    /* one scratch region, then one recompute region, at the end of work,
     * each shared by all layers */
    p.work += p.scratch + p.recompute;
    return p;
}

void nn_model_memory(const nn_model *m, nn_model_mem *out)
{
    plan p = make_plan(m);
    double b = m->max_batch;
    memset(out, 0, sizeof *out);
    out->params = 4.0 * p.params;
    out->grads = 4.0 * p.params;
    /* what backward reads: every layer's output, its kept work and indices,
     * and the recompute region (one block's activations at a time) */
    out->activations = 4.0 * (p.act + p.work - p.scratch + p.iwork);
    out->workspace = 4.0 * (p.delta + p.scratch + b * m->lps);
    if (m->e->device_memory)
        out->workspace += 4.0 * (double)nn_shape_size(&m->input) * b; /* the input copied in */
    double kept = 0.0, largest = 0.0;
    for (int i = 0; i < m->nlayers; i++) {
        const nn_layer *l = &m->layers[i];
        if (!l->can_recompute || l->recompute)
            continue;
        double w = (double)align_floats(l->work_floats);
        kept += w;
        largest = w > largest ? w : largest;
    }
    out->recompute_saves = 4.0 * (kept - largest);
}

/* Device engines: the host view of the parameters, the input staging
 * buffer and the probabilities' host copy. */
static int alloc_host_side(nn_model *m, size_t np, core_error *err)
{
    const nn_layer *loss = &m->layers[m->nlayers - 1];
    size_t nin = nn_shape_size(&m->input) * (size_t)m->max_batch;
    size_t nprob = nn_shape_size(&loss->out) * (size_t)m->max_batch;
    m->host_params = core_alloc(np * sizeof(float), "parameters (host view)", err);
    m->xin = m->host_params ? m->e->alloc(nin * sizeof(float), "model input", err) : NULL;
    m->probs_host = m->xin ? core_alloc(nprob * sizeof(float), "probabilities (host)", err) : NULL;
    return m->probs_host ? 0 : -1;
}

/* Last layer first: backward completes the gradient buffer front to back.
 * Offsets only; the buffers come with nn_model_alloc. */
static int place_tensors(nn_model *m, core_error *err)
{
    m->tensors = calloc((size_t)m->ntensors + 1, sizeof *m->tensors);
    if (!m->tensors)
        return core_error_set(err, "%s: out of memory allocating the tensor table", m->source);
    size_t off = 0;
    int ti = 0;
    for (int i = m->nlayers - 1; i >= 0; i--) {
        nn_layer *l = &m->layers[i];
        for (int t = 0; t < l->ntensors; t++) {
            l->tensor[t].offset = off;
            m->tensors[ti++] = l->tensor[t];
            off += l->tensor[t].count;
        }
    }
    m->nparams = off;
    return 0;
}

static double default_limit(void)
{
#ifdef NN_MODEL_LIMIT_BYTES
    return NN_MODEL_LIMIT_BYTES;
#else
    return core_mem_physical();
#endif
}

int nn_model_alloc(nn_model *m, core_error *err)
{
    if (m->params)
        return 0;
    plan p = make_plan(m);
    double bytes =
        4.0 * (2.0 * p.params + p.act + p.delta + p.work + p.iwork + (double)m->max_batch * m->lps);
    double limit = m->limit > 0.0 ? m->limit : default_limit();
    char h[32], lim[32];
    if (limit > 0.0 && bytes > limit)
        return core_error_set(err,
                              "%s: model needs %s for parameters, gradients and activations at "
                              "batch %d (%.0f parameters), more than the %s limit; use a smaller "
                              "batch or smaller layers",
                              m->source, core_format_bytes(bytes, h, sizeof h), m->max_batch,
                              p.params, core_format_bytes(limit, lim, sizeof lim));
    const engine_ops *e = m->e;
    size_t np = (size_t)p.params, widest = (size_t)(p.delta / 2.0);
    m->params = e->alloc(np * sizeof(float), "parameters", err);
    m->grads = m->params ? e->alloc(np * sizeof(float), "gradients", err) : NULL;
    m->act = m->grads ? e->alloc((size_t)p.act * sizeof(float), "activations", err) : NULL;
    m->delta[0] = m->act ? e->alloc(widest * sizeof(float), "activation gradients", err) : NULL;
    m->delta[1] =
        m->delta[0] ? e->alloc(widest * sizeof(float), "activation gradients", err) : NULL;
    m->work =
        m->delta[1] ? e->alloc((size_t)p.work * sizeof(float), "layer work space", err) : NULL;
    m->iwork = m->work ? e->alloc((size_t)p.iwork * sizeof(int32_t), "layer indices", err) : NULL;
    m->labels =
        m->iwork ? e->alloc((size_t)m->max_batch * (size_t)m->lps * sizeof(int32_t), "labels", err)
                 : NULL;
    if (!m->labels || (e->device_memory && alloc_host_side(m, np, err) != 0))
        return core_error_prefix(err, "%s", m->source);
    size_t act = 0, work = 0, iwork = 0;
    float *scratch = m->work + (size_t)(p.work - p.scratch - p.recompute);
    float *recompute = scratch + (size_t)p.scratch;
    for (int i = 0; i < m->nlayers; i++) {
        nn_layer *l = &m->layers[i];
        for (int t = 0; t < l->ntensors; t++) {
            l->param[t] = m->params + l->tensor[t].offset;
            l->grad[t] = m->grads + l->tensor[t].offset;
        }
        l->x = i ? m->layers[i - 1].y : NULL;
        l->y = m->act + act;
        act += align_floats(nn_shape_size(&l->out) * (size_t)m->max_batch);
        l->work = l->recompute ? recompute : m->work + work;
        work += align_floats(l->work_floats);
        l->iwork = m->iwork + iwork;
        iwork += l->iwork_count;
        l->dy = m->delta[i & 1];
        l->dx = m->delta[(i + 1) & 1];
        l->scratch = scratch;
    }
    return 0;
}

/* conv ... relu followed by maxpool: the pool applies relu' in its backward. */
static void fold_relus(nn_model *m)
{
    for (int i = 0; i + 1 < m->nlayers; i++) {
        nn_layer *l = &m->layers[i], *next = &m->layers[i + 1];
        if (l->kind == &nn_kind_conv && l->kind->fused_act(l) == ENGINE_ACT_RELU &&
            next->kind == &nn_kind_maxpool) {
            l->fold_relu_next = 1;
            next->fold_relu_prev = 1;
        }
    }
}

/* A layer whose ops the engine lacks would crash in its first step: stop
 * at creation instead, naming the layer. */
static int check_engine_ops(const nn_model *m, core_error *err)
{
    for (int i = 0; i < m->nlayers; i++) {
        const nn_layer *l = &m->layers[i];
        const char *op = nn_seq_missing_op(l->kind, m->e);
        if (op)
            return core_error_set(err,
                                  "%s:%d: layer %s (%s) needs the engine op %s, which the %s "
                                  "engine does not have; run this model with --device cpu",
                                  m->source, l->line, l->name, l->kind->name, op, m->e->name);
    }
    return 0;
}

int nn_model_create(const char *spec_text, const char *source, int max_batch, nn_model **out,
                    core_error *err)
{
    return nn_model_create_on(spec_text, source, max_batch, engine_cpu(), out, err);
}

int nn_model_create_on(const char *spec_text, const char *source, int max_batch,
                       const engine_ops *engine, nn_model **out, core_error *err)
{
    nn_model_opts o = {max_batch, engine, 0.0, NN_RECOMPUTE_NONE};
    return nn_model_create_opts(spec_text, source, &o, out, err);
}

int nn_model_create_opts(const char *spec_text, const char *source, const nn_model_opts *o,
                         nn_model **out, core_error *err)
{
    if (nn_model_parse(spec_text, source, o, out, err) != 0)
        return -1;
    if (nn_model_alloc(*out, err) != 0) {
        nn_model_free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

int nn_model_parse(const char *spec_text, const char *source, const nn_model_opts *o,
                   nn_model **out, core_error *err)
{
    *out = NULL;
    if (!source)
        source = "<spec>";
    if (o->max_batch < 1)
        return core_error_set(err, "%s: max batch must be positive, got %d", source, o->max_batch);
    nn_model *m = calloc(1, sizeof *m);
    if (!m)
        return core_error_set(err, "%s: out of memory", source);
    m->e = o->engine ? o->engine : engine_cpu();
    m->max_batch = o->max_batch;
    m->limit = o->limit_bytes;
    m->recompute = o->recompute;
    snprintf(m->source, sizeof m->source, "%s", source);
    m->spec = strdup(spec_text ? spec_text : "");
    if (!m->spec) {
        nn_model_free(m);
        return core_error_set(err, "%s: out of memory", source);
    }
    if (parse_spec(m, m->spec, err) || check_engine_ops(m, err)) {
        nn_model_free(m);
        return -1;
    }
    for (int i = 0; i < m->nlayers; i++)
        m->ntensors += m->layers[i].ntensors;
    fold_relus(m);
    const nn_shape *scores = &m->layers[m->nlayers - 1].in;
    m->lps = scores->ndim == 2 ? scores->d[0] : 1;
    m->own_rng = core_rng_make(0, 0x64726f70ULL);
    m->rng = &m->own_rng;
    if (place_tensors(m, err)) {
        nn_model_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

void nn_model_free(nn_model *m)
{
    if (!m)
        return;
    const engine_ops *e = m->e;
    for (int i = 0; i < m->nlayers; i++)
        free(m->layers[i].priv);
    free(m->layers);
    free(m->tensors);
    if (!m->params_external)
        e->free(m->params);
    if (!m->grads_external)
        e->free(m->grads);
    e->free(m->act);
    e->free(m->delta[0]);
    e->free(m->delta[1]);
    e->free(m->work);
    e->free(m->iwork);
    e->free(m->labels);
    e->free(m->qinput);
    e->free(m->xin);
    core_free(m->host_params);
    core_free(m->probs_host);
    free(m->spec);
    free(m);
}

/* ---- parameters and queries ---- */

static int relu_follows(const nn_model *m, int i)
{
    if (i + 1 >= m->nlayers)
        return 0;
    const nn_layer *next = &m->layers[i + 1];
    return next->kind == &nn_kind_relu;
}

/* Points every layer's parameters into base (the engine buffer or the host view). */
static void point_params(nn_model *m, float *base)
{
    for (int i = 0; i < m->nlayers; i++) {
        nn_layer *l = &m->layers[i];
        for (int t = 0; t < l->ntensors; t++)
            l->param[t] = base + l->tensor[t].offset;
    }
}

void nn_model_init_params(nn_model *m, uint64_t seed)
{
    /* Initializers write host memory: on a device engine they fill the host
     * view, which is then copied to the device. */
    if (m->host_params)
        point_params(m, m->host_params);
    for (int i = 0; i < m->nlayers; i++) {
        nn_layer *l = &m->layers[i];
        if (!l->kind->init)
            continue;
        /* one stream per layer: a layer's values do not depend on the others */
        core_rng r = core_rng_make(seed, 0x6e6e0000u + (uint64_t)i);
        l->kind->init(l, &r, relu_follows(m, i));
    }
    m->own_rng = core_rng_make(seed, 0x64726f70ULL);
    if (m->host_params) {
        point_params(m, m->params);
        nn_model_params_push(m);
    }
}

const engine_ops *nn_model_engine(const nn_model *m)
{
    return m->e;
}

float *nn_model_engine_params(nn_model *m)
{
    return m->params;
}

void nn_model_params_pull(nn_model *m)
{
    if (m->host_params)
        m->e->download(m->host_params, m->params, m->nparams * sizeof(float));
}

void nn_model_params_push(nn_model *m)
{
    if (m->host_params)
        m->e->upload(m->params, m->host_params, m->nparams * sizeof(float));
}

size_t nn_model_param_count(const nn_model *m)
{
    return m->nparams;
}

float *nn_model_params(nn_model *m)
{
    return m->host_params ? m->host_params : m->params;
}

float *nn_model_grads(nn_model *m)
{
    return m->grads;
}

/* Moves the parameters (grads = 0) or the gradients (grads = 1) into the
 * caller's memory `to`, values and every layer's pointers along. */
static int relocate(nn_model *m, int grads, float *to, core_error *err)
{
    float **buf = grads ? &m->grads : &m->params;
    int *external = grads ? &m->grads_external : &m->params_external;
    if (m->e->device_memory)
        return core_error_set(err, "%s: %s in device memory cannot move to host memory", m->source,
                              grads ? "gradients" : "parameters");
    if (to == *buf)
        return 0;
    memcpy(to, *buf, m->nparams * sizeof(float));
    for (int i = 0; i < m->nlayers; i++) {
        nn_layer *l = &m->layers[i];
        for (int t = 0; t < l->ntensors; t++)
            *(grads ? &l->grad[t] : &l->param[t]) = to + l->tensor[t].offset;
    }
    if (!*external)
        m->e->free(*buf);
    *buf = to;
    *external = 1;
    return 0;
}

int nn_model_use_params(nn_model *m, float *p, core_error *err)
{
    return relocate(m, 0, p, err);
}

int nn_model_use_grads(nn_model *m, float *g, core_error *err)
{
    return relocate(m, 1, g, err);
}

int nn_model_tensor_count(const nn_model *m)
{
    return m->ntensors;
}

const nn_tensor *nn_model_tensor(const nn_model *m, int i)
{
    return i >= 0 && i < m->ntensors ? &m->tensors[i] : NULL;
}

size_t nn_model_input_size(const nn_model *m)
{
    return nn_shape_size(&m->input);
}

int nn_model_input_dims(const nn_model *m, int dims[NN_MAX_DIMS])
{
    for (int i = 0; i < m->input.ndim; i++)
        dims[i] = m->input.d[i];
    return m->input.ndim;
}

int nn_model_num_classes(const nn_model *m)
{
    const nn_shape *scores = &m->layers[m->nlayers - 1].in;
    return scores->d[scores->ndim - 1];
}

int nn_model_labels_per_sample(const nn_model *m)
{
    return m->lps;
}

void nn_model_set_rng(nn_model *m, core_rng *rng)
{
    m->rng = rng ? rng : &m->own_rng;
}

const char *nn_model_spec_text(const nn_model *m)
{
    return m->spec;
}

int nn_model_max_batch(const nn_model *m)
{
    return m->max_batch;
}

void nn_model_describe(const nn_model *m, void (*line)(const char *text))
{
    char buf[256], cfg[96], a[48], b[48];
    for (int i = 0; i < m->nlayers; i++) {
        const nn_layer *l = &m->layers[i];
        size_t np = 0;
        for (int t = 0; t < l->ntensors; t++)
            np += l->tensor[t].count;
        cfg[0] = '\0';
        if (l->kind->describe)
            l->kind->describe(l, cfg, sizeof cfg);
        snprintf(buf, sizeof buf, "%-9s %-8s %-28s %s->%s  %zu params", l->name, l->kind->name, cfg,
                 nn_shape_str(&l->in, a, sizeof a), nn_shape_str(&l->out, b, sizeof b), np);
        line(buf);
    }
    snprintf(buf, sizeof buf, "total     %zu params", m->nparams);
    line(buf);
}

int nn_model_layer_count(const nn_model *m)
{
    return m->nlayers;
}

nn_layer *nn_model_layer(nn_model *m, int i)
{
    return &m->layers[i];
}

void nn_model_set_input_grad(nn_model *m, int on)
{
    m->input_grad = on;
}

const float *nn_model_input_grad(const nn_model *m)
{
    return m->input_grad ? m->delta[1] : NULL;
}

/* ---- seeds and quantized inference ---- */

void nn_model_set_seed(nn_model *m, uint64_t seed)
{
    m->seed = seed;
}

static float round_to_grid(float v, float inv, float scale)
{
    float q = nearbyintf(v * inv);
    q = q > 127.0f ? 127.0f : (q < -127.0f ? -127.0f : q);
    return q * scale;
}

/* Rounds layer i's input to the symmetric int8 grid of its scale, in place
 * (the previous layer's output is not needed again in inference), or into
 * qinput for the model input, which belongs to the caller. */
static void quantize_input(nn_model *m, int i, int batch)
{
    nn_layer *l = &m->layers[i];
    size_t n = (size_t)batch * nn_shape_size(&l->in);
    float scale = l->in_qscale, inv = 1.0f / scale;
    float *dst = i ? m->layers[i - 1].y : m->qinput;
    const float *src = i ? m->layers[i - 1].y : l->x;
    for (size_t k = 0; k < n; k++)
        dst[k] = round_to_grid(src[k], inv, scale);
    l->x = dst;
}

int nn_model_set_input_qscale(nn_model *m, int layer, float scale, core_error *err)
{
    if (layer < 0 || layer >= m->nlayers)
        return core_error_set(err, "%s: no layer %d", m->source, layer);
    if (m->e->device_memory && scale > 0.0f)
        return core_error_set(err, "%s: quantized inference runs on the CPU engine only",
                              m->source);
    if (layer == 0 && scale > 0.0f && !m->qinput) {
        size_t n = nn_shape_size(&m->input) * (size_t)m->max_batch;
        m->qinput = m->e->alloc(n * sizeof(float), "quantized input", err);
        if (!m->qinput)
            return -1;
    }
    m->layers[layer].in_qscale = scale > 0.0f ? scale : 0.0f;
    return 0;
}

float nn_model_input_absmax(const nn_model *m, int layer, const float *x, int batch)
{
    const nn_layer *l = &m->layers[layer];
    const float *in = layer ? m->layers[layer - 1].y : x;
    size_t n = (size_t)batch * nn_shape_size(&l->in);
    float mx = 0.0f;
    for (size_t k = 0; k < n; k++) {
        float a = fabsf(in[k]);
        mx = a > mx ? a : mx;
    }
    return mx;
}

/* ---- forward and backward ---- */

void nn_model_forward(nn_model *m, const float *x, const int32_t *labels, int batch, int training,
                      nn_stats *stats)
{
    if (batch > m->max_batch)
        batch = m->max_batch; /* the caller sized the model; never write past it */
    m->last_batch = batch;
    m->have_labels = labels != NULL;
    if (labels)
        m->e->upload(m->labels, labels, (size_t)batch * (size_t)m->lps * sizeof *labels);
    if (m->xin) {
        m->e->upload(m->xin, x, (size_t)batch * nn_shape_size(&m->input) * sizeof *x);
        x = m->xin;
    }
    m->layers[0].x = x;
    nn_layer *loss = &m->layers[m->nlayers - 1];
    loss->labels = labels ? m->labels : NULL;
    for (int i = 0; i < m->nlayers; i++) {
        nn_layer *l = &m->layers[i];
        l->training = training;
        l->seed = m->seed;
        l->rng = m->rng;
        if (l->in_qscale > 0.0f)
            quantize_input(m, i, batch);
        if (l->recompute)
            l->rng_at_forward = *m->rng;
        l->kind->forward(l, m->e, batch);
    }
    if (stats && labels) {
        stats->loss_sum += loss->loss_sum;
        stats->correct += loss->correct;
        stats->count += (long)batch * m->lps;
    }
}

const float *nn_model_probs(const nn_model *m)
{
    const nn_layer *loss = &m->layers[m->nlayers - 1];
    if (!m->probs_host)
        return loss->y;
    m->e->download(m->probs_host, loss->y,
                   (size_t)m->last_batch * nn_shape_size(&loss->out) * sizeof(float));
    return m->probs_host;
}

int nn_model_ready_points(const nn_model *m, size_t *out, int max)
{
    size_t done = 0;
    int k = 0;
    for (int i = m->nlayers - 1; i >= 0; i--) {
        const nn_layer *l = &m->layers[i];
        for (int t = 0; t < l->ntensors; t++)
            done += l->tensor[t].count;
        if (l->ntensors && k < max)
            out[k] = done;
        k += l->ntensors > 0;
    }
    return k;
}

/* The layer's forward again, into the shared recompute region: the same
 * input (the previous layer's output, kept), the same RNG state (the same
 * dropout masks), so backward reads the bits the first forward wrote. */
static void recompute_forward(nn_model *m, nn_layer *l)
{
    core_rng replay = l->rng_at_forward;
    l->rng = &replay;
    l->kind->forward(l, m->e, m->last_batch);
    l->rng = m->rng;
}

void nn_model_backward(nn_model *m, int accumulate, nn_grad_ready_fn on_ready, void *ctx)
{
    size_t done = 0;
    for (int i = m->nlayers - 1; i >= 0; i--) {
        nn_layer *l = &m->layers[i];
        if (l->recompute)
            recompute_forward(m, l);
        l->kind->backward(l, m->e, m->last_batch, i > 0 || m->input_grad, accumulate);
        for (int t = 0; t < l->ntensors; t++)
            done += l->tensor[t].count;
        if (on_ready && l->ntensors)
            on_ready(ctx, done);
    }
    if (on_ready && m->nparams == 0)
        on_ready(ctx, 0);
}
