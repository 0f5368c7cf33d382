/*
 * tests/unit/test_nn_seq.c: finite-difference gradient checks of every
 * sequence layer kind (embed, posenc, layernorm, gelu, linear, attention with
 * and without the causal mask and dropout, the transformer block, rnn, lstm
 * and gru over several steps, the per-position loss), for parameters AND
 * inputs; causality of the causal models; a tiny model memorizing a tiny
 * corpus.
 *
 * The loss is the summed per-token softmax cross entropy (in double). Dropout
 * is checked by replaying the same RNG state before every forward, so each
 * finite difference sees the same masks.
 */
#include "test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "engine/engine.h"
#include "nn/model.h"
#include "optim/optim.h"

#define EPS 2e-3f

typedef struct gc {
    nn_model *m;
    core_rng drop, replay;
} gc;

static double loss_at(gc *g, const float *x, const int32_t *y, int batch)
{
    nn_stats st = {0};
    g->replay = g->drop;
    nn_model_forward(g->m, x, y, batch, 1, &st);
    return st.loss_sum;
}

static int close_enough(double num, double ana, double atol, double rtol)
{
    return fabs(num - ana) <= atol + rtol * fmax(fabs(num), fabs(ana));
}

/* tokens > 0: the input is token ids in [0, tokens) (no input gradient). */
static void gradcheck(const char *spec, int batch, int tokens, double atol, double rtol)
{
    core_error err = {{0}};
    gc g = {0};
    if (nn_model_create(spec, "seq.spec", batch, &g.m, &err) != 0)
        fail_msg("%s", err.msg);
    nn_model *m = g.m;
    nn_model_init_params(m, 11);
    nn_model_set_input_grad(m, 1);
    g.drop = core_rng_make(99, 7);
    nn_model_set_rng(m, &g.replay);
    /* push parameters away from their init so layer norms and biases matter */
    size_t np = nn_model_param_count(m);
    float *p = nn_model_params(m);
    core_rng r = core_rng_make(5, 1);
    for (size_t i = 0; i < np; i++)
        p[i] += 0.3f * (2.0f * core_rng_uniform(&r) - 1.0f);

    size_t nx = nn_model_input_size(m) * (size_t)batch;
    int lps = nn_model_labels_per_sample(m), classes = nn_model_num_classes(m);
    size_t ny = (size_t)batch * lps;
    float *x = malloc(nx * sizeof *x), *dx = malloc(nx * sizeof *dx);
    float *dp = malloc((np + 1) * sizeof *dp);
    int32_t *y = malloc(ny * sizeof *y);
    if (tokens)
        for (size_t i = 0; i < nx; i++)
            x[i] = (float)core_rng_below(&r, (uint64_t)tokens);
    else
        test_fill_uniform(x, nx, 3, -1.0f, 1.0f);
    for (size_t i = 0; i < ny; i++)
        y[i] = (int32_t)core_rng_below(&r, (uint64_t)classes);

    loss_at(&g, x, y, batch);
    nn_model_backward(m, 0, NULL, NULL);
    memcpy(dp, nn_model_grads(m), np * sizeof *dp);
    memcpy(dx, nn_model_input_grad(m), nx * sizeof *dx);

    int bad = 0;
    for (size_t i = 0; i < np; i++) {
        float keep = p[i];
        p[i] = keep + EPS;
        double lp = loss_at(&g, x, y, batch);
        p[i] = keep - EPS;
        double lm = loss_at(&g, x, y, batch);
        p[i] = keep;
        double num = (lp - lm) / (2.0 * EPS);
        if (!close_enough(num, dp[i], atol, rtol) && bad++ < 5)
            print_error("%s\nparam %s %zu: numeric %.6f analytic %.6f\n", spec, "", i, num, dp[i]);
    }
    for (size_t i = 0; i < nx && !tokens; i++) {
        float keep = x[i];
        x[i] = keep + EPS;
        double lp = loss_at(&g, x, y, batch);
        x[i] = keep - EPS;
        double lm = loss_at(&g, x, y, batch);
        x[i] = keep;
        double num = (lp - lm) / (2.0 * EPS);
        if (!close_enough(num, dx[i], atol, rtol) && bad++ < 5)
            print_error("%s\ninput %zu: numeric %.6f analytic %.6f\n", spec, i, num, dx[i]);
    }
    for (size_t i = 0; i < nx && tokens; i++)
        if (dx[i] != 0.0f && bad++ < 5)
            print_error("%s\ntoken input %zu has gradient %g\n", spec, i, dx[i]);
    free(x);
    free(dx);
    free(dp);
    free(y);
    nn_model_free(m);
    assert_int_equal(bad, 0);
}

#define TOL 3e-3, 1e-2

static void test_seq_loss_linear_gelu_layernorm(void **state)
{
    gradcheck("input 4 5\nloss softmax_cross_entropy\n", 2, 0, TOL);
    gradcheck("input 4 5\nlinear 6 tanh\nlinear 3\nloss softmax_cross_entropy\n", 2, 0, TOL);
    gradcheck("input 3 6\ngelu\nloss softmax_cross_entropy\n", 2, 0, TOL);
    gradcheck("input 3 6\nlayernorm\nloss softmax_cross_entropy\n", 2, 0, TOL);
    gradcheck("input 7\nlayernorm\nlinear 3 relu\nlinear 4\nloss softmax_cross_entropy\n", 3, 0,
              TOL);
}

static void test_embed_posenc(void **state)
{
    gradcheck("input 5\nembed 7 4\nlinear 7\nloss softmax_cross_entropy\n", 3, 7, TOL);
    gradcheck("input 5\nembed 7 4\nposenc learned\nlinear 7\nloss softmax_cross_entropy\n", 3, 7,
              TOL);
    gradcheck("input 5\nembed 7 4\nposenc sinusoidal\nlayernorm\nlinear 7\n"
              "loss softmax_cross_entropy\n",
              3, 7, TOL);
    gradcheck("input 4 6\nposenc learned\nlinear 3\nloss softmax_cross_entropy\n", 2, 0, TOL);
}

static void test_attention(void **state)
{
    gradcheck("input 5 8\nattention 2\nloss softmax_cross_entropy\n", 2, 0, TOL);
    gradcheck("input 5 8\nattention 2 causal\nloss softmax_cross_entropy\n", 2, 0, TOL);
    gradcheck("input 6 6\nattention 3 causal\nlinear 4\nloss softmax_cross_entropy\n", 2, 0, TOL);
    gradcheck("input 5 8\nattention 2 causal dropout 0.3\nloss softmax_cross_entropy\n", 2, 0, TOL);
}

static void test_attention_long(void **state)
{
    /* more positions than one 32-row block of the causal attention kernel */
    gradcheck("input 37 4\nattention 2 causal\nloss softmax_cross_entropy\n", 1, 0, TOL);
    gradcheck("input 37 4\nattention 1\nloss softmax_cross_entropy\n", 1, 0, TOL);
}

static void test_block(void **state)
{
    gradcheck("input 5 8\nblock transformer 2 mlp 12\nloss softmax_cross_entropy\n", 2, 0, TOL);
    gradcheck("input 5 8\nblock transformer 2 mlp 12 causal\nloss softmax_cross_entropy\n", 2, 0,
              TOL);
    gradcheck("input 5 8\nblock transformer 2 mlp 12 causal dropout 0.2\n"
              "loss softmax_cross_entropy\n",
              2, 0, TOL);
    gradcheck(
        "input 6\nembed 9 8\nposenc learned\nblock transformer 2 causal\n"
        "block transformer 4 mlp 16 causal\nlayernorm\nlinear 9\nloss softmax_cross_entropy\n",
        2, 9, TOL);
}

static void test_recurrent(void **state)
{
    gradcheck("input 5 3\nrnn 4\nloss softmax_cross_entropy\n", 2, 0, TOL);
    gradcheck("input 5 3\nrnn 4 relu last\nlinear 3\nloss softmax_cross_entropy\n", 2, 0, TOL);
    gradcheck("input 5 3\nlstm 4\nloss softmax_cross_entropy\n", 2, 0, TOL);
    gradcheck("input 6 3\nlstm 4 last\nlinear 3\nloss softmax_cross_entropy\n", 2, 0, TOL);
    gradcheck("input 5 3\ngru 4\nloss softmax_cross_entropy\n", 2, 0, TOL);
    gradcheck("input 6 3\ngru 4 last\nlinear 3\nloss softmax_cross_entropy\n", 2, 0, TOL);
    gradcheck("input 4\nembed 6 3\nlstm 5\nlstm 4\nlinear 6\nloss softmax_cross_entropy\n", 2, 6,
              TOL);
}

/* Causality: changing token t+1 leaves the outputs at positions <= t unchanged. */
static void check_causal(const char *spec, int expect_causal)
{
    enum { T = 40, V = 11, B = 2 };
    core_error err = {{0}};
    nn_model *m = NULL;
    if (nn_model_create(spec, "causal.spec", B, &m, &err) != 0)
        fail_msg("%s", err.msg);
    nn_model_init_params(m, 3);
    float x[B * T];
    core_rng r = core_rng_make(1, 2);
    for (int i = 0; i < B * T; i++)
        x[i] = (float)core_rng_below(&r, V);
    size_t per = (size_t)T * V;
    float *ref = malloc(B * per * sizeof *ref);
    nn_model_forward(m, x, NULL, B, 0, NULL);
    memcpy(ref, nn_model_probs(m), B * per * sizeof *ref);
    int leaks = 0;
    for (int t = 0; t + 1 < T; t += 3) {
        float keep = x[T + t + 1];
        x[T + t + 1] = (float)(((int)keep + 1 + t) % V);
        if (x[T + t + 1] == keep)
            x[T + t + 1] = (float)(((int)keep + 1) % V);
        nn_model_forward(m, x, NULL, B, 0, NULL);
        const float *p = nn_model_probs(m);
        for (size_t i = 0; i < per; i++) /* sample 0 is untouched */
            leaks += p[i] != ref[i];
        for (size_t i = 0; i < (size_t)(t + 1) * V; i++)
            leaks += p[per + i] != ref[per + i];
        x[T + t + 1] = keep;
    }
    if (expect_causal)
        assert_int_equal(leaks, 0);
    else
        assert_true(leaks > 0);
    free(ref);
    nn_model_free(m);
}

static void test_causality(void **state)
{
    check_causal("input 40\nembed 11 16\nposenc learned\nblock transformer 2 causal\n"
                 "block transformer 4 causal\nlayernorm\nlinear 11\nloss softmax_cross_entropy\n",
                 1);
    check_causal(
        "input 40\nembed 11 8\nattention 2 causal\nlinear 11\nloss softmax_cross_entropy\n", 1);
    check_causal("input 40\nembed 11 8\nlstm 8\ngru 8\nrnn 8\nlinear 11\n"
                 "loss softmax_cross_entropy\n",
                 1);
    check_causal("input 40\nembed 11 8\nattention 2\nlinear 11\nloss softmax_cross_entropy\n", 0);
}

/* A tiny char model memorizes a tiny corpus: random windows of a cyclic text in
 * which every character has one successor, so the loss can reach 0 at every
 * position of a window (a window's first characters have no other context). */
static void memorize(const char *spec, int steps, float lr, double want)
{
    enum { T = 12, B = 8 };
    static const char text[] = "uncopyrightable JMQSVWXZ.\n"; /* no character repeats */
    int n = (int)strlen(text);
    core_error err = {{0}};
    nn_model *m = NULL;
    if (nn_model_create(spec, "mem.spec", B, &m, &err) != 0)
        fail_msg("%s", err.msg);
    nn_model_init_params(m, 1);
    optim_config oc = optim_config_default(OPTIM_ADAM);
    oc.lr = lr;
    optim o;
    assert_int_equal(optim_create(&o, &oc, nn_model_param_count(m), &err), 0);
    float x[B * T];
    int32_t y[B * T];
    double loss = 0.0;
    core_rng r = core_rng_make(4, 4);
    for (int s = 0; s < steps; s++) {
        for (int b = 0; b < B; b++) {
            int at = (int)core_rng_below(&r, (uint64_t)n);
            for (int t = 0; t < T; t++) {
                x[b * T + t] = (float)(unsigned char)text[(at + t) % n];
                y[b * T + t] = (unsigned char)text[(at + t + 1) % n];
            }
        }
        nn_stats st = {0};
        nn_model_forward(m, x, y, B, 1, &st);
        nn_model_backward(m, 0, NULL, NULL);
        float *g = nn_model_grads(m);
        for (size_t i = 0; i < nn_model_param_count(m); i++)
            g[i] /= (float)st.count;
        optim_step(&o, nn_model_params(m), g, oc.lr);
        if (s >= steps - 20)
            loss += st.loss_sum / (double)st.count / 20.0;
    }
    print_message("%s-> mean loss of the last 20 steps %.4f after %d steps\n", spec, loss, steps);
    assert_true(loss < want);
    optim_destroy(&o);
    nn_model_free(m);
}

static void test_memorize(void **state)
{
    memorize("input 12\nembed 128 32\nposenc learned\nblock transformer 4 causal\n"
             "layernorm\nlinear 128\nloss softmax_cross_entropy\n",
             300, 3e-3f, 0.02);
    memorize("input 12\nembed 128 32\nlstm 64\nlinear 128\nloss softmax_cross_entropy\n", 300,
             5e-3f, 0.02);
}

static void test_parse_errors(void **state)
{
    static const struct {
        const char *spec, *want;
    } cases[] = {
        {"input 4 8\nattention 3\nloss softmax_cross_entropy\n", "not divisible by 3 heads"},
        {"input 8\nattention 2\nloss softmax_cross_entropy\n", "needs a sequence input"},
        {"input 4 8\nblock mlp 3\nloss softmax_cross_entropy\n", "block transformer H"},
        {"input 4 8\nattention 2 dropout 1.5\nloss softmax_cross_entropy\n", "in [0, 1)"},
        {"input 4 8\nposenc rotary\nloss softmax_cross_entropy\n", "learned, sinusoidal"},
        {"input 4 8\nlstm 4 sideways\nloss softmax_cross_entropy\n", "unknown lstm option"},
        {"input 4 8\nembed 5 3\nloss softmax_cross_entropy\n", "needs token ids"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        core_error err = {{0}};
        nn_model *m = NULL;
        assert_int_equal(nn_model_create(cases[i].spec, "bad.spec", 2, &m, &err), -1);
        if (!strstr(err.msg, cases[i].want))
            fail_msg("spec %zu: '%s' lacks '%s'", i, err.msg, cases[i].want);
    }
}

/* An engine without one of a layer's ops (a backend still being written)
 * stops the model's creation with a line naming the layer and the op. */
static void test_engine_lacks_op(void **state)
{
    static const char *spec = "input 6\nembed 10 8\nposenc learned\nblock transformer 2 causal\n"
                              "lstm 8\nlinear 10\nloss softmax_cross_entropy\n";
    engine_ops e = *engine_cpu();
    e.name = "half-written";
    e.attn_backward = NULL;
    core_error err = {{0}};
    nn_model *m = NULL;
    assert_int_equal(nn_model_create_on(spec, "lack.spec", 2, &e, &m, &err), -1);
    assert_non_null(strstr(err.msg, "lack.spec:4: layer block1 (block) needs the engine op "
                                    "attn_backward, which the half-written engine"));
    e.attn_backward = engine_cpu()->attn_backward;
    e.lstm_cell_forward = NULL;
    assert_int_equal(nn_model_create_on(spec, "lack.spec", 2, &e, &m, &err), -1);
    assert_non_null(strstr(err.msg, "layer lstm1 (lstm) needs the engine op lstm_cell_forward"));
    e.lstm_cell_forward = engine_cpu()->lstm_cell_forward;
    assert_int_equal(nn_model_create_on(spec, "lack.spec", 2, &e, &m, &err), 0);
    nn_model_free(m);
}

static void test_names_and_layout(void **state)
{
    core_error err = {{0}};
    nn_model *m = NULL;
    assert_int_equal(nn_model_create("input 8\nembed 10 16\nposenc learned\n"
                                     "block transformer 4 causal\nlayernorm\nlinear 10\n"
                                     "loss softmax_cross_entropy\n",
                                     "names.spec", 2, &m, &err),
                     0);
    assert_int_equal(nn_model_labels_per_sample(m), 8);
    assert_int_equal(nn_model_num_classes(m), 10);
    /* the last layer's tensors come first */
    assert_string_equal(nn_model_tensor(m, 0)->name, "linear1.weight");
    const char *want[] = {
        "block1.ln1.weight",    "block1.ln1.bias",         "block1.attn.qkv.weight",
        "block1.attn.qkv.bias", "block1.attn.proj.weight", "block1.attn.proj.bias",
        "block1.ln2.weight",    "block1.ln2.bias",         "block1.mlp.fc.weight",
        "block1.mlp.fc.bias",   "block1.mlp.proj.weight",  "block1.mlp.proj.bias"};
    for (int i = 0; i < 12; i++)
        assert_string_equal(nn_model_tensor(m, 4 + i)->name, want[i]);
    assert_string_equal(nn_model_tensor(m, 16)->name, "posenc1.weight");
    assert_string_equal(nn_model_tensor(m, 17)->name, "embed1.weight");
    assert_int_equal(nn_model_tensor(m, 12)->dims[0], 64); /* mlp.fc.weight (4D, D) */
    nn_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seq_loss_linear_gelu_layernorm),
        cmocka_unit_test(test_embed_posenc),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_attention_long),
        cmocka_unit_test(test_block),
        cmocka_unit_test(test_recurrent),
        cmocka_unit_test(test_causality),
        cmocka_unit_test(test_memorize),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_engine_lacks_op),
        cmocka_unit_test(test_names_and_layout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
