/*
 * tests/unit/test_seq_device.c: the sequence models on a device-memory
 * engine, without a GPU. A "guarded" engine is the CPU engine with
 * device_memory = 1 whose buffers are mmap'ed PROT_NONE except while one of
 * its own ops runs: any host read or write of engine memory by the model or a
 * layer (what would crash on the CUDA engine) faults here. Every sequence
 * spec of models/ and a small model of every sequence kind run training
 * forwards and backwards on it, and match the plain CPU engine (which also
 * checks the layers' device-only paths, e.g. the recurrent dW_hh in two
 * GEMMs).
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include "test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "engine/engine.h"
#include "nn/model.h"

#define MAX_REGIONS 1024

static const engine_ops *cpu;
static struct {
    void *p;
    size_t n;
} region[MAX_REGIONS];
static int nregion, depth;

static void protect(int open)
{
    for (int i = 0; i < nregion; i++)
        if (region[i].p &&
            mprotect(region[i].p, region[i].n, open ? PROT_READ | PROT_WRITE : PROT_NONE) != 0)
            fail_msg("mprotect failed");
}

static void enter(void)
{
    if (depth++ == 0)
        protect(1);
}

static void leave(void)
{
    if (--depth == 0)
        protect(0);
}

static void *g_alloc(size_t bytes, const char *what, core_error *err)
{
    size_t n = (bytes + 4095) / 4096 * 4096 + 4096;
    void *p = mmap(NULL, n, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED || nregion == MAX_REGIONS) {
        core_error_set(err, "guarded engine: cannot map %zu bytes for %s", bytes, what);
        return NULL;
    }
    region[nregion].p = p;
    region[nregion++].n = n;
    return p;
}

static void g_free(void *p)
{
    for (int i = 0; i < nregion; i++)
        if (p && region[i].p == p) {
            munmap(p, region[i].n);
            region[i].p = NULL;
        }
}

/* Each op opens the engine's memory, runs the CPU op and closes it again. */
#define WRAP(name, params, args)                                                                   \
    static void g_##name params                                                                    \
    {                                                                                              \
        enter();                                                                                   \
        cpu->name args;                                                                            \
        leave();                                                                                   \
    }

WRAP(zero, (float *x, size_t n), (x, n))
WRAP(copy, (float *d, const float *s, size_t n), (d, s, n))
WRAP(gemm,
     (int ta, int tb, int M, int N, int K, float al, const float *A, int lda, const float *B,
      int ldb, float be, float *Cm, int ldc),
     (ta, tb, M, N, K, al, A, lda, B, ldb, be, Cm, ldc))
WRAP(bias_act_forward, (float *y, const float *b, int o, int c, int i, engine_act a),
     (y, b, o, c, i, a))
WRAP(bias_fill, (float *y, const float *b, int o, int c, int i), (y, b, o, c, i))
WRAP(act_forward, (float *y, const float *x, size_t n, engine_act a), (y, x, n, a))
WRAP(act_backward, (float *dx, const float *dy, const float *y, size_t n, engine_act a),
     (dx, dy, y, n, a))
WRAP(bias_backward, (float *db, const float *dy, int o, int c, int i, int acc),
     (db, dy, o, c, i, acc))
WRAP(cn_to_nc, (float *d, const float *s, int c, int n, size_t S), (d, s, c, n, S))
WRAP(nc_to_cn, (float *d, const float *s, int c, int n, size_t S), (d, s, c, n, S))
WRAP(softmax_xent_backward, (float *d, const float *p, const int32_t *l, int b, int c),
     (d, p, l, b, c))
WRAP(upload, (void *d, const void *s, size_t n), (d, s, n))
WRAP(download, (void *d, const void *s, size_t n), (d, s, n))
WRAP(scale, (float *x, size_t n, float a), (x, n, a))
WRAP(mul, (float *y, const float *a, const float *b, size_t n), (y, a, b, n))
WRAP(embed_forward, (float *y, const float *ids, const float *t, size_t n, int V, int D),
     (y, ids, t, n, V, D))
WRAP(embed_backward, (float *dt, const float *dy, const float *ids, size_t n, int V, int D),
     (dt, dy, ids, n, V, D))
WRAP(add, (float *y, const float *a, const float *b, size_t n), (y, a, b, n))
WRAP(add_broadcast, (float *y, const float *x, const float *p, int o, size_t n), (y, x, p, o, n))
WRAP(dropout_mask_rng, (float *m, size_t n, float p, core_rng *r), (m, n, p, r))
WRAP(layernorm_forward,
     (float *y, float *m, float *r, const float *x, const float *w, const float *b, int rows,
      int c),
     (y, m, r, x, w, b, rows, c))
WRAP(layernorm_backward,
     (float *dx, float *dw, float *db, const float *dy, const float *x, const float *m,
      const float *r, const float *w, int rows, int c, int acc),
     (dx, dw, db, dy, x, m, r, w, rows, c, acc))
WRAP(gelu_forward, (float *y, const float *x, size_t n), (y, x, n))
WRAP(gelu_backward, (float *dx, const float *dy, const float *x, size_t n), (dx, dy, x, n))
WRAP(attn_forward,
     (float *o, float *P, float *Pd, const float *m, const float *q, int B, int T, int H, int D,
      int c),
     (o, P, Pd, m, q, B, T, H, D, c))
WRAP(attn_backward,
     (float *dq, const float *d, const float *P, const float *Pd, const float *m, const float *q,
      float *s, int B, int T, int H, int D, int c),
     (dq, d, P, Pd, m, q, s, B, T, H, D, c))
WRAP(lstm_cell_forward,
     (float *g, const float *cp, float *c, float *h, int B, int H, size_t lg, size_t lh),
     (g, cp, c, h, B, H, lg, lh))
WRAP(lstm_cell_backward,
     (float *dg, float *dc, const float *dh, const float *g, const float *cp, const float *c, int B,
      int H, size_t lg, size_t lh),
     (dg, dc, dh, g, cp, c, B, H, lg, lh))
WRAP(gru_cell_forward,
     (float *gx, const float *gh, const float *hp, float *h, int B, int H, size_t lg, size_t lh),
     (gx, gh, hp, h, B, H, lg, lh))
WRAP(gru_cell_backward,
     (float *dgx, float *dgh, float *dhp, const float *dh, const float *gx, const float *gh,
      const float *hp, int B, int H, size_t lg, size_t lh),
     (dgx, dgh, dhp, dh, gx, gh, hp, B, H, lg, lh))

static double g_softmax_xent_forward(float *p, const float *z, const int32_t *l, int b, int c,
                                     long *k)
{
    enter();
    double r = cpu->softmax_xent_forward(p, z, l, b, c, k);
    leave();
    return r;
}

/* The ops these models use are guarded; a model calling any other op would
 * reach it unguarded and fault on its first access. */
static const engine_ops *guarded(void)
{
    static engine_ops t;
    cpu = engine_cpu();
    t = *cpu;
    t.name = "guarded";
    t.device_memory = 1;
    t.alloc = g_alloc;
    t.free = g_free;
#define SET(op) t.op = g_##op
    SET(zero), SET(copy), SET(gemm), SET(bias_act_forward), SET(bias_fill), SET(act_forward);
    SET(act_backward), SET(bias_backward), SET(cn_to_nc), SET(nc_to_cn);
    SET(softmax_xent_forward), SET(softmax_xent_backward), SET(upload), SET(download);
    SET(scale), SET(mul), SET(embed_forward), SET(embed_backward), SET(add), SET(add_broadcast);
    SET(dropout_mask_rng), SET(layernorm_forward), SET(layernorm_backward), SET(gelu_forward);
    SET(gelu_backward), SET(attn_forward), SET(attn_backward), SET(lstm_cell_forward);
    SET(lstm_cell_backward), SET(gru_cell_forward), SET(gru_cell_backward);
#undef SET
    return &t;
}

/* Two training steps' forward and backward (the second accumulating) and an
 * evaluation forward of a smaller batch, on the guarded and the CPU engine:
 * the same losses, probabilities and gradients. */
static void run(const char *spec, int B)
{
    const engine_ops *g = guarded();
    nn_model *mg = NULL, *mc = NULL;
    core_error err = {{0}};
    if (nn_model_create_on(spec, "guarded.spec", B, g, &mg, &err) != 0 ||
        nn_model_create(spec, "cpu.spec", B, &mc, &err) != 0)
        fail_msg("%s", err.msg);
    nn_model_init_params(mg, 3);
    nn_model_init_params(mc, 3);
    int dims[NN_MAX_DIMS];
    nn_model_input_dims(mc, dims);
    int T = dims[0], V = nn_model_num_classes(mc), lps = nn_model_labels_per_sample(mc);
    float *x = malloc((size_t)B * T * sizeof *x);
    int32_t *y = malloc((size_t)B * lps * sizeof *y);
    for (int i = 0; i < B * T; i++)
        x[i] = (float)((i * 7 + 3) % 100);
    for (int i = 0; i < B * lps; i++)
        y[i] = (i * 5 + 1) % V;
    size_t n = nn_model_param_count(mc), np = (size_t)B * lps * V;
    float *grads = malloc(n * sizeof *grads);
    for (int step = 0; step < 2; step++) {
        nn_stats sg = {0}, sc = {0};
        nn_model_forward(mg, x, y, B, 1, &sg);
        nn_model_forward(mc, x, y, B, 1, &sc);
        assert_true(fabs(sg.loss_sum - sc.loss_sum) <= 1e-5 * fabs(sc.loss_sum));
        assert_true(test_max_rel_diff(nn_model_probs(mg), nn_model_probs(mc), np) <= 1e-6);
        nn_model_backward(mg, step, NULL, NULL);
        nn_model_backward(mc, step, NULL, NULL);
        g->download(grads, nn_model_grads(mg), n * sizeof *grads);
        double d = test_max_rel_diff(grads, nn_model_grads(mc), n);
        if (!(d <= 1e-5))
            fail_msg("step %d: gradients differ by %g", step, d);
    }
    nn_model_forward(mg, x, NULL, B - 1, 0, NULL);
    nn_model_params_pull(mg);
    assert_true(test_max_rel_diff(nn_model_params(mg), nn_model_params(mc), n) == 0.0);
    nn_model_free(mg);
    nn_model_free(mc);
    free(x), free(y), free(grads);
}

static void test_models_specs(void **state)
{
    /* models/char_transformer.spec, char_lstm.spec, fortune_classifier.spec */
    run("input 128\nembed 114 128\nposenc learned\nblock transformer 4 causal\n"
        "block transformer 4 causal\nlayernorm\nlinear 114\nloss softmax_cross_entropy\n",
        2);
    run("input 128\nembed 114 128\nlstm 256\nlstm 256\nlinear 114\nloss softmax_cross_entropy\n",
        2);
    run("input 128\nembed 108 64\nlstm 128 last\ndense 4\nloss softmax_cross_entropy\n", 3);
}

static void test_every_kind(void **state)
{
    run("input 19\nembed 100 16\nposenc sinusoidal\nattention 2 causal dropout 0.1\nlayernorm\n"
        "gelu\nblock transformer 2 mlp 24 dropout 0.1\nlstm 24\ngru 20\nrnn 12\nrnn 12 relu last\n"
        "dense 4\nloss softmax_cross_entropy\n",
        4);
    run("input 19\nembed 100 16\ngru 24 last\nlinear 5\nloss softmax_cross_entropy\n", 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_models_specs),
        cmocka_unit_test(test_every_kind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
