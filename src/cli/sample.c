/*
 * cli/sample.c: `ringtrain sample`, generation from a language-model
 * checkpoint (docs/SEQUENCE_MODELS.md).
 *
 * The model is rebuilt from the spec stored in the checkpoint, for batch 1,
 * and its parameters loaded. The vocabulary is read from a token file: by
 * default the training file named in the checkpoint's configuration. Each
 * new token runs one forward over the last T tokens (fewer at the start:
 * the model is causal, so the positions past the text do not matter) and
 * draws from softmax(logits / temperature), restricted to the top k.
 * `--device cuda` runs the forwards on the GPU engine (docs/GPU.md); the
 * parameters are uploaded once and each step downloads its probabilities.
 */
#include "cli/sample.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "core/mem.h"
#include "core/rng.h"
#include "data/tokens.h"
#include "engine/engine.h"
#include "nn/model.h"
#include "train/checkpoint.h"

typedef struct sample_args {
    const char *checkpoint, *vocab, *prompt, *device;
    int length, top_k;
    float temperature;
    uint64_t seed;
    int help;
} sample_args;

typedef struct sampler {
    nn_model *m;
    data_tokenizer tok;
    int T, V;
    int32_t *ids;
    size_t n, cap;
    float *x, *q;
    char *spec, *config;
} sampler;

/* "train=PATH" of a checkpoint's configuration text, into buf. */
static int config_train_path(const char *config, char *buf, size_t len)
{
    const char *p = strstr(config, "train=");
    while (p && p != config && p[-1] != '\n')
        p = strstr(p + 1, "train=");
    if (!p)
        return -1;
    p += 6;
    size_t n = strcspn(p, "\n");
    if (n == 0 || n >= len)
        return -1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return 0;
}

static const engine_ops *sample_engine(const char *device, core_error *err)
{
    if (strcmp(device, "cpu") == 0)
        return engine_cpu();
    if (strcmp(device, "cuda") == 0)
        return engine_cuda(0, 0, err);
    core_error_set(err, "--device: expected 'cpu' or 'cuda', got '%s'", device);
    return NULL;
}

static int setup(sampler *s, const sample_args *a, core_error *err)
{
    char path[1024], vocab[1024];
    const engine_ops *e = sample_engine(a->device, err);
    if (!e || train_checkpoint_resolve(a->checkpoint, path, sizeof path, err) != 0 ||
        train_checkpoint_read_text(path, &s->spec, &s->config, err) != 0 ||
        nn_model_create_on(s->spec, path, 1, e, &s->m, err) != 0)
        return -1;
    int dims[NN_MAX_DIMS];
    if (nn_model_input_dims(s->m, dims) != 1 || nn_model_labels_per_sample(s->m) != dims[0])
        return core_error_set(err,
                              "%s: not a language model (it needs 'input T' and a loss at "
                              "every position)",
                              path);
    s->T = dims[0];
    s->V = nn_model_num_classes(s->m);
    nn_model_init_params(s->m, 1);
    if (train_checkpoint_read(path, s->m, NULL, NULL, err) != 0)
        return -1;
    nn_model_params_push(s->m); /* the host view to the GPU; nothing on the CPU */
    if (a->vocab)
        snprintf(vocab, sizeof vocab, "%s", a->vocab);
    else if (config_train_path(s->config, vocab, sizeof vocab) != 0)
        return core_error_set(err, "%s: no training file in its configuration; give --vocab FILE",
                              path);
    if (data_tokenizer_read(vocab, &s->tok, err) != 0)
        return core_error_prefix(err, "vocabulary (--vocab)");
    if (s->tok.vocab != s->V)
        return core_error_set(err,
                              "%s has %d tokens but the model predicts %d; give the token "
                              "file the model was trained on with --vocab",
                              vocab, s->tok.vocab, s->V);
    size_t plen = strlen(a->prompt);
    s->cap = plen + (size_t)a->length + 1;
    s->ids = core_alloc(s->cap * sizeof *s->ids, "token buffer", err);
    s->x = s->ids ? core_alloc((size_t)s->T * sizeof *s->x, "model input", err) : NULL;
    s->q = s->x ? core_alloc((size_t)s->V * sizeof *s->q, "distribution", err) : NULL;
    if (!s->q)
        return -1;
    long n = data_tokenizer_encode(&s->tok, (const uint8_t *)a->prompt, plen, s->ids, err);
    if (n < 0)
        return core_error_prefix(err, "--prompt");
    s->n = (size_t)n;
    if (s->n == 0) { /* no prompt: start after a newline, else token 0 */
        int32_t nl = s->tok.byte_id['\n'];
        s->ids[s->n++] = nl >= 0 ? nl : 0;
    }
    return 0;
}

/* Draws the next token from q (probabilities, V of them). */
static int32_t draw(sampler *s, const float *p, const sample_args *a, core_rng *r)
{
    int V = s->V;
    double inv_t = 1.0 / (double)a->temperature;
    float kth = -1.0f;
    if (a->top_k > 0 && a->top_k < V) { /* the k-th largest probability */
        memcpy(s->q, p, (size_t)V * sizeof *s->q);
        for (int i = 0; i < a->top_k; i++) {
            int best = i;
            for (int j = i + 1; j < V; j++)
                if (s->q[j] > s->q[best])
                    best = j;
            float t = s->q[i];
            s->q[i] = s->q[best];
            s->q[best] = t;
        }
        kth = s->q[a->top_k - 1];
    }
    double sum = 0.0;
    for (int i = 0; i < V; i++) {
        /* p^(1/t) is softmax(logits / t) up to normalization */
        s->q[i] = p[i] >= kth && p[i] > 0.0f ? (float)exp(inv_t * log((double)p[i])) : 0.0f;
        sum += s->q[i];
    }
    double u = (double)core_rng_uniform(r) * sum, acc = 0.0;
    int32_t last = 0;
    for (int i = 0; i < V; i++) {
        if (s->q[i] <= 0.0f)
            continue;
        acc += s->q[i];
        last = i;
        if (u < acc)
            return i;
    }
    return last;
}

static void emit(const sampler *s, const int32_t *ids, size_t n)
{
    uint8_t buf[256];
    for (size_t i = 0; i < n; i++) {
        size_t len = data_tokenizer_decode(&s->tok, ids + i, 1, buf, sizeof buf);
        fwrite(buf, 1, len < sizeof buf ? len : sizeof buf, stdout);
    }
    fflush(stdout);
}

static int generate(sampler *s, const sample_args *a, core_error *err)
{
    core_rng r = core_rng_make(a->seed, 0x73616d70ULL);
    emit(s, s->ids, s->n);
    for (int k = 0; k < a->length; k++) {
        size_t from = s->n > (size_t)s->T ? s->n - (size_t)s->T : 0, len = s->n - from;
        for (size_t t = 0; t < (size_t)s->T; t++)
            s->x[t] = t < len ? (float)s->ids[from + t] : 0.0f;
        nn_model_forward(s->m, s->x, NULL, 1, 0, NULL);
        const float *p = nn_model_probs(s->m) + (len - 1) * (size_t)s->V;
        if (nn_model_engine(s->m)->status(err) != 0)
            return -1;
        s->ids[s->n] = draw(s, p, a, &r);
        emit(s, s->ids + s->n, 1);
        s->n++;
    }
    printf("\n");
    return 0;
}

static void sampler_free(sampler *s)
{
    nn_model_free(s->m);
    data_tokenizer_free(&s->tok);
    core_free(s->ids);
    core_free(s->x);
    core_free(s->q);
    core_free(s->spec);
    core_free(s->config);
}

int cli_sample(dist_world *w, int argc, char **argv)
{
    sample_args a = {NULL, NULL, "", "cpu", 400, 0, 0.8f, 1, 0};
    cli_flag flags[] = {
        {"--checkpoint", "DIR|FILE", CLI_STRING, &a.checkpoint,
         "language-model checkpoint (the latest in DIR)", 1, 0},
        {"--vocab", "FILE", CLI_STRING, &a.vocab,
         "token file with the vocabulary (default: the checkpoint's training file)", 0, 0},
        {"--prompt", "TEXT", CLI_STRING, &a.prompt, "text to continue", 0, 0},
        {"--length", "N", CLI_POS_INT, &a.length, "tokens to generate", 0, 0},
        {"--temperature", "X", CLI_POS_FLOAT, &a.temperature,
         "softmax temperature (lower: more conservative)", 0, 0},
        {"--top-k", "K", CLI_NONNEG_INT, &a.top_k, "draw from the K likeliest tokens (0: all)", 0,
         0},
        {"--seed", "N", CLI_U64, &a.seed, "seed of the draws", 0, 0},
        {"--device", "cpu|cuda", CLI_STRING, &a.device,
         "compute engine: cpu, or cuda (the GPU; docs/GPU.md)", 0, 0},
        {"--help", NULL, CLI_FLAG, &a.help, "show this help", 0, 0},
        {NULL, NULL, 0, NULL, NULL, 0, 0},
    };
    if (dist_rank(w) != 0)
        return 0;
    core_error err = {{0}};
    int parsed =
        cli_args_command(flags, argc, argv, 2, "sample --checkpoint DIR|FILE [flags]", 1, &err);
    if (parsed != 0)
        return parsed > 0 ? 0 : cli_usage_error("sample", 1, &err);
    sampler s;
    memset(&s, 0, sizeof s);
    int rc = setup(&s, &a, &err) == 0 ? generate(&s, &a, &err) : -1;
    sampler_free(&s);
    return rc == 0 ? 0 : cli_run_error(1, &err);
}
