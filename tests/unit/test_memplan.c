/*
 * tests/unit/test_memplan.c: the memory plan against what models really
 * allocate, --recompute blocks (the same gradients, bit for bit, and less
 * activation memory), and the trainer's plan (optimizer share, refusal
 * message, sizes).
 */
#include "test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "engine/engine.h"
#include "nn/model.h"
#include "train/eval.h"
#include "train/memplan.h"

/* ---- an engine that counts what the model asks it for, by role ---- */

enum { ROLES = 8 };
static const char *const role_names[ROLES] = {
    "parameters",       "gradients",     "activations", "activation gradients",
    "layer work space", "layer indices", "labels",      "(other)"};
static double counted[ROLES];

static void *counting_alloc(size_t bytes, const char *what, core_error *err)
{
    int r = ROLES - 1;
    for (int i = 0; i < ROLES - 1; i++)
        if (strcmp(what, role_names[i]) == 0)
            r = i;
    counted[r] += (double)bytes;
    return engine_cpu()->alloc(bytes, what, err);
}

static engine_ops counting_engine(void)
{
    engine_ops e = *engine_cpu();
    e.alloc = counting_alloc;
    memset(counted, 0, sizeof counted);
    return e;
}

static const char *const CNN = "input 1 12 12\n"
                               "conv 4 3 same relu\n"
                               "maxpool 2\n"
                               "flatten\n"
                               "dense 16 relu\n"
                               "dropout 0.25\n"
                               "dense 5\n"
                               "loss softmax_cross_entropy\n";

/* 3 blocks, width 16, 2 heads, MLP 40, context 12, vocabulary 23 */
static const char *const GPT = "input 12\n"
                               "embed 23 16\n"
                               "posenc learned\n"
                               "block transformer 2 mlp 40 causal\n"
                               "block transformer 2 mlp 40 causal\n"
                               "block transformer 2 mlp 40 causal\n"
                               "layernorm\n"
                               "linear 23\n"
                               "loss softmax_cross_entropy\n";

static const char *const GPT_DROP = "input 12\n"
                                    "embed 23 16\n"
                                    "posenc learned\n"
                                    "block transformer 2 mlp 40 causal dropout 0.2\n"
                                    "block transformer 2 mlp 40 causal dropout 0.2\n"
                                    "layernorm\n"
                                    "linear 23\n"
                                    "loss softmax_cross_entropy\n";

/* The plan of a parsed model equals, role by role, the bytes the engine is
 * asked for when the model allocates. */
static void check_plan_matches(const char *spec, int batch, nn_recompute rc, nn_model_mem *out)
{
    core_error err = {{0}};
    engine_ops e = counting_engine();
    nn_model_opts o = {batch, &e, 0.0, rc};
    nn_model *m = NULL;
    assert_int_equal(nn_model_parse(spec, "x.spec", &o, &m, &err), 0);
    nn_model_mem plan;
    nn_model_memory(m, &plan);
    for (int i = 0; i < ROLES; i++)
        assert_true(counted[i] == 0.0); /* parsing allocates no buffer */
    assert_int_equal(nn_model_alloc(m, &err), 0);
    nn_model_mem after;
    nn_model_memory(m, &after);
    assert_memory_equal(&plan, &after, sizeof plan);

    double total = 0.0;
    for (int i = 0; i < ROLES; i++)
        total += counted[i];
    assert_true(counted[ROLES - 1] == 0.0);
    assert_true(plan.params == counted[0]);
    assert_true(plan.grads == counted[1]);
    assert_true(plan.params + plan.grads + plan.activations + plan.workspace == total);
    /* the parameters are the tensors' sizes */
    double tensors = 0.0;
    for (int i = 0; i < nn_model_tensor_count(m); i++)
        tensors += 4.0 * (double)nn_model_tensor(m, i)->count;
    assert_true(plan.params == tensors);
    /* the activation outputs of every layer at least */
    assert_true(plan.activations >= counted[2]);
    nn_model_free(m);
    *out = plan;
}

/* A Transformer block's kept floats at batch B (seq.c, block.c):
 * q/k/v + context (4 BT D), probabilities (B H T T), ln1, x1, ln2 (3 BT D),
 * 4 BT statistics, h and gelu(h) (2 BT M), rounded up to the 64 floats on
 * whose boundaries the model places every layer's work. */
static double block_work_bytes(double B, double T, double D, double H, double M)
{
    double bt = B * T;
    double floats = bt * 4 * D + B * H * T * T + bt * (3 * D + 4) + 2 * bt * M;
    return 4.0 * 64.0 * ceil(floats / 64.0);
}

static void test_plan_is_what_models_allocate(void **state)
{
    nn_model_mem cnn, plain, recomputed;
    check_plan_matches(CNN, 7, NN_RECOMPUTE_NONE, &cnn);
    assert_true(cnn.recompute_saves == 0.0); /* no block */
    check_plan_matches(GPT, 5, NN_RECOMPUTE_NONE, &plain);
    check_plan_matches(GPT, 5, NN_RECOMPUTE_BLOCKS, &recomputed);
    check_plan_matches(GPT_DROP, 3, NN_RECOMPUTE_BLOCKS, &recomputed);
    check_plan_matches(GPT, 5, NN_RECOMPUTE_BLOCKS, &recomputed);
    /* recomputing keeps one block's work instead of three: the plan said so */
    double one = block_work_bytes(5, 12, 16, 2, 40);
    assert_true(plain.activations - recomputed.activations == 2.0 * one);
    assert_true(plain.recompute_saves == 2.0 * one);
    assert_true(recomputed.recompute_saves == 0.0);
    assert_true(plain.params == recomputed.params && plain.workspace == recomputed.workspace);
    (void)state;
}

/* ---- --recompute blocks: the same gradients, bit for bit ---- */

typedef struct run {
    nn_model *m;
    core_rng rng;
    nn_stats stats;
} run;

static void make_run(run *r, const char *spec, int batch, nn_recompute rc)
{
    core_error err = {{0}};
    nn_model_opts o = {batch, NULL, 0.0, rc};
    assert_int_equal(nn_model_create_opts(spec, "x.spec", &o, &r->m, &err), 0);
    nn_model_init_params(r->m, 11);
    r->rng = core_rng_make(3, 9);
    nn_model_set_rng(r->m, &r->rng);
    nn_model_set_input_grad(r->m, 1);
    memset(&r->stats, 0, sizeof r->stats);
}

/* Two micro-batches accumulated, then a second step: every gradient, the
 * input gradient, the loss and the RNG's position must be identical. */
static void compare_recompute(const char *spec, int batch)
{
    enum { T = 12, V = 23 };
    run a, b;
    make_run(&a, spec, batch, NN_RECOMPUTE_NONE);
    make_run(&b, spec, batch, NN_RECOMPUTE_BLOCKS);
    size_t n = nn_model_param_count(a.m);
    assert_int_equal(n, nn_model_param_count(b.m));
    float *x = malloc((size_t)batch * T * sizeof *x);
    int32_t *y = malloc((size_t)batch * T * sizeof *y);
    core_rng data = core_rng_make(5, 5);
    for (int step = 0; step < 2; step++) {
        for (int micro = 0; micro < 2; micro++) {
            for (int i = 0; i < batch * T; i++) {
                x[i] = (float)core_rng_below(&data, V);
                y[i] = (int32_t)core_rng_below(&data, V);
            }
            nn_model_forward(a.m, x, y, batch, 1, &a.stats);
            nn_model_forward(b.m, x, y, batch, 1, &b.stats);
            nn_model_backward(a.m, micro > 0, NULL, NULL);
            nn_model_backward(b.m, micro > 0, NULL, NULL);
            assert_memory_equal(nn_model_input_grad(a.m), nn_model_input_grad(b.m),
                                (size_t)batch * T * sizeof(float));
        }
        assert_memory_equal(nn_model_grads(a.m), nn_model_grads(b.m), n * sizeof(float));
        assert_true(a.stats.loss_sum == b.stats.loss_sum);
        assert_memory_equal(&a.rng, &b.rng, sizeof a.rng);
        /* a step so that the second one starts from other parameters */
        float *pa = nn_model_params(a.m), *pb = nn_model_params(b.m);
        const float *g = nn_model_grads(a.m);
        for (size_t i = 0; i < n; i++) {
            pa[i] -= 0.05f * g[i];
            pb[i] -= 0.05f * g[i];
        }
    }
    /* the gradients are not trivially zero */
    double norm = 0.0;
    for (size_t i = 0; i < n; i++)
        norm += (double)nn_model_grads(a.m)[i] * nn_model_grads(a.m)[i];
    assert_true(norm > 1e-6);
    free(x);
    free(y);
    nn_model_free(a.m);
    nn_model_free(b.m);
}

static void test_recompute_same_gradients(void **state)
{
    compare_recompute(GPT, 4);
    compare_recompute(GPT_DROP, 3); /* dropout: the masks are replayed */
    (void)state;
}

/* ---- the trainer's plan ---- */

static void test_trainer_plan(void **state)
{
    core_error err = {{0}};
    nn_model_opts o = {5, NULL, 0.0, NN_RECOMPUTE_NONE};
    nn_model *m = NULL;
    assert_int_equal(nn_model_parse(GPT, "models/g.spec", &o, &m, &err), 0);
    size_t n = nn_model_param_count(m);
    optim_config adam = optim_config_default(OPTIM_ADAM), sgd = optim_config_default(OPTIM_SGD);
    /* two moments for Adam, one buffer for SGD; a shard keeps its share */
    assert_true(train_memplan_optim_bytes(&adam, n, 1.0) == 8.0 * (double)n);
    assert_true(train_memplan_optim_bytes(&sgd, n, 1.0) == 4.0 * (double)n);
    assert_true(train_memplan_optim_bytes(&adam, n, 0.25) == 2.0 * (double)n);

    train_memplan p, q;
    train_memplan_make(&p, m, &adam, 1.0, 5, 1000.0, 2000.0, 500.0, 3000.0, 0);
    nn_model_mem mm;
    nn_model_memory(m, &mm);
    assert_true(p.total ==
                mm.params + mm.grads + mm.activations + mm.workspace + 8.0 * (double)n + 6500.0);
    assert_true(p.bytes[TRAIN_MEM_WORK] == mm.workspace + 500.0);
    train_memplan_make(&q, m, &adam, 0.5, 5, 1000.0, 2000.0, 500.0, 3000.0, 1);
    assert_true(q.bytes[TRAIN_MEM_OPTIM] == 4.0 * (double)n);
    assert_true(q.bytes[TRAIN_MEM_CKPT] == 12.0 * (double)n); /* rank 0's file image */

    /* within the limit: fine; above it: one line naming the biggest part */
    assert_int_equal(train_memplan_check(&p, p.total, "models/g.spec", NULL, &err), 0);
    assert_int_equal(train_memplan_check(&p, 0.0, "models/g.spec", NULL, &err), 0);
    assert_int_equal(train_memplan_check(&p, 1000.0, "models/g.spec", NULL, &err), -1);
    assert_null(strchr(err.msg, '\n'));
    assert_non_null(strstr(err.msg, "models/g.spec: the memory plan needs"));
    assert_non_null(strstr(err.msg, "more than --max-memory 1000 B"));
    int big = train_memplan_biggest(&p);
    assert_non_null(strstr(err.msg, train_memplan_part_name(big)));
    assert_int_equal(big, TRAIN_MEM_ACT);
    assert_non_null(strstr(err.msg, "at micro-batch 5"));
    assert_non_null(strstr(err.msg, "--batch-size"));
    assert_non_null(strstr(err.msg, "--recompute blocks (saves"));
    /* optimizer state the biggest part: the flag that shards it */
    p.bytes[TRAIN_MEM_OPTIM] = 1e12;
    p.total += 1e12;
    assert_int_equal(train_memplan_check(&p, 1000.0, "models/g.spec", "the machine's", &err), -1);
    assert_non_null(strstr(err.msg, "the biggest part is optimizer state"));
    assert_non_null(strstr(err.msg, "--shard-optimizer"));
    assert_non_null(strstr(err.msg, "(the default: the machine's)"));
    nn_model_free(m);
    (void)state;
}

/* A language model's vocabulary gets no confusion matrix (8192 classes
 * would be 512 MiB per rank); the counters still reduce. */
static void test_eval_without_confusion(void **state)
{
    core_error err = {{0}};
    train_eval e;
    assert_true(train_eval_bytes(10) == 8.0 * 114.0); /* matrix, 4 counters, NaN rows */
    assert_true(train_eval_bytes(8192) == 0.0);
    assert_int_equal(train_eval_create(&e, 8192, &err), 0);
    assert_null(e.confusion);
    train_eval_reset(&e);
    float *probs = calloc(2 * 8192, sizeof *probs);
    int32_t labels[2] = {3, 8000};
    probs[3] = 1.0f;
    probs[8192 + 7] = 1.0f;
    train_eval_add(&e, probs, labels, 2, 1.5);
    assert_true(e.count == 2.0 && e.top1 == 1.0 && e.loss_sum == 1.5);
    assert_true(isnan(train_eval_class_accuracy(&e, 3)));
    free(probs);
    train_eval_free(&e);
    (void)state;
}

static void test_sizes(void **state)
{
    core_error err = {{0}};
    double b = 0.0;
    assert_int_equal(train_memplan_parse_size("8G", &b, &err), 0);
    assert_true(b == 8.0 * 1073741824.0);
    assert_int_equal(train_memplan_parse_size("1.5GiB", &b, &err), 0);
    assert_true(b == 1.5 * 1073741824.0);
    assert_int_equal(train_memplan_parse_size("512m", &b, &err), 0);
    assert_true(b == 512.0 * 1048576.0);
    assert_int_equal(train_memplan_parse_size("4096", &b, &err), 0);
    assert_true(b == 4096.0);
    assert_int_equal(train_memplan_parse_size("lots", &b, &err), -1);
    assert_non_null(strstr(err.msg, "--max-memory expects a size"));
    assert_int_equal(train_memplan_parse_size("3X", &b, &err), -1);
    assert_non_null(strstr(err.msg, "unknown unit 'X'"));
    char why[160];
    setenv("SLURM_MEM_PER_NODE", "4096", 1);
    assert_true(train_memplan_default_limit(4, why, sizeof why) == 1024.0 * 1048576.0);
    assert_non_null(strstr(why, "Slurm"));
    setenv("SLURM_MEM_PER_CPU", "1000", 1);
    setenv("SLURM_CPUS_PER_TASK", "2", 1);
    assert_true(train_memplan_default_limit(4, why, sizeof why) == 2000.0 * 1048576.0);
    unsetenv("SLURM_MEM_PER_NODE");
    unsetenv("SLURM_MEM_PER_CPU");
    unsetenv("SLURM_CPUS_PER_TASK");
    assert_true(train_memplan_default_limit(2, why, sizeof why) > 0.0);
    assert_true(train_memplan_resident() > 0.0);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_is_what_models_allocate),
        cmocka_unit_test(test_recompute_same_gradients),
        cmocka_unit_test(test_trainer_plan),
        cmocka_unit_test(test_eval_without_confusion),
        cmocka_unit_test(test_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
