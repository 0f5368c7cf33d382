/*
 * tests/unit/test_model.c: model building, parameter layout and naming,
 * initialization, and the spec parser's error messages.
 */
#include "test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/model.h"

static const char *fashion = "# tutorial\n"
                             "input 1 28 28\n"
                             "conv 32 3 same relu\n"
                             "maxpool 2\n"
                             "conv 64 3 same relu\n"
                             "maxpool 2\n"
                             "flatten\n"
                             "dense 128 relu\n"
                             "dense 10\n"
                             "loss softmax_cross_entropy\n";

static nn_model *build(const char *spec, int batch)
{
    core_error err = {{0}};
    nn_model *m = NULL;
    if (nn_model_create(spec, "test.spec", batch, &m, &err) != 0)
        fail_msg("create failed: %s", err.msg);
    return m;
}

static void test_fashion_param_count(void **state)
{
    nn_model *m = build(fashion, 4);
    assert_int_equal(nn_model_param_count(m), 320 + 18496 + 401536 + 1290);
    assert_int_equal(nn_model_num_classes(m), 10);
    assert_int_equal(nn_model_input_size(m), 784);
    int dims[NN_MAX_DIMS];
    assert_int_equal(nn_model_input_dims(m, dims), 3);
    assert_int_equal(dims[0], 1);
    assert_int_equal(dims[1], 28);
    assert_int_equal(dims[2], 28);
    nn_model_free(m);
}

static void test_tensor_layout(void **state)
{
    nn_model *m = build(fashion, 2);
    /* last layer first, weight then bias, PyTorch names and dims */
    static const struct {
        const char *name;
        int ndim, d[4];
    } want[] = {
        {"dense2.weight", 2, {10, 128}},     {"dense2.bias", 1, {10}},
        {"dense1.weight", 2, {128, 3136}},   {"dense1.bias", 1, {128}},
        {"conv2.weight", 4, {64, 32, 3, 3}}, {"conv2.bias", 1, {64}},
        {"conv1.weight", 4, {32, 1, 3, 3}},  {"conv1.bias", 1, {32}},
    };
    assert_int_equal(nn_model_tensor_count(m), 8);
    size_t off = 0;
    for (int i = 0; i < 8; i++) {
        const nn_tensor *t = nn_model_tensor(m, i);
        assert_string_equal(t->name, want[i].name);
        assert_int_equal(t->ndim, want[i].ndim);
        size_t count = 1;
        for (int d = 0; d < t->ndim; d++) {
            assert_int_equal(t->dims[d], want[i].d[d]);
            count *= (size_t)t->dims[d];
        }
        assert_int_equal(t->count, count);
        assert_int_equal(t->offset, off);
        off += count;
    }
    assert_int_equal(off, nn_model_param_count(m));
    nn_model_free(m);
}

typedef struct ready_log {
    size_t calls[64];
    int n;
} ready_log;

static void on_ready(void *ctx, size_t done)
{
    ready_log *log = ctx;
    if (log->n < 64)
        log->calls[log->n++] = done;
}

/* The tutorial CNN at batch 3 with seed 7, and one forward of x (filled
 * here) and y. */
static nn_model *fashion_forward(float x[3 * 784], int32_t y[3], nn_stats *st)
{
    nn_model *m = build(fashion, 3);
    nn_model_init_params(m, 7);
    test_fill_uniform(x, 3 * 784, 1, 0.0f, 1.0f);
    y[0] = 1, y[1] = 5, y[2] = 9;
    nn_model_forward(m, x, y, 3, 1, st);
    return m;
}

static void test_on_ready_and_accumulate(void **state)
{
    float x[3 * 784];
    int32_t y[3];
    nn_stats st = {0};
    nn_model *m = fashion_forward(x, y, &st);
    assert_int_equal(st.count, 3);
    assert_true(st.loss_sum > 0.0);
    ready_log log = {{0}, 0};
    nn_model_backward(m, 0, on_ready, &log);
    assert_true(log.n >= 4);
    for (int i = 1; i < log.n; i++)
        assert_true(log.calls[i] >= log.calls[i - 1]);
    assert_int_equal(log.calls[log.n - 1], nn_model_param_count(m));
    /* the first report is exactly dense2's tensors: a bucket can go early */
    assert_int_equal(log.calls[0], 1290);

    size_t n = nn_model_param_count(m);
    float *g1 = malloc(n * sizeof *g1);
    memcpy(g1, nn_model_grads(m), n * sizeof *g1);
    nn_model_backward(m, 1, NULL, NULL);
    const float *g2 = nn_model_grads(m);
    for (size_t i = 0; i < n; i++)
        assert_true(fabsf(g2[i] - 2.0f * g1[i]) <= 1e-5f * (1.0f + fabsf(g1[i])));
    nn_model_backward(m, 0, NULL, NULL);
    assert_true(test_max_rel_diff(g1, nn_model_grads(m), n) < 1e-6);
    free(g1);
    nn_model_free(m);
}

/* nn_model_use_grads: the gradients move (values kept), backward then
 * writes only the new buffer, bit for bit what the model's own gave. */
static void test_use_grads(void **state)
{
    float x[3 * 784];
    int32_t y[3];
    nn_stats st = {0};
    nn_model *m = fashion_forward(x, y, &st);
    nn_model_backward(m, 0, NULL, NULL);
    size_t n = nn_model_param_count(m);
    float *own = malloc(n * sizeof *own), *ext = malloc(n * sizeof *ext);
    memcpy(own, nn_model_grads(m), n * sizeof *own);
    core_error err = {{0}};
    assert_int_equal(nn_model_use_grads(m, ext, &err), 0);
    assert_ptr_equal(nn_model_grads(m), ext);
    assert_memory_equal(ext, own, n * sizeof *own); /* moved with their values */
    memset(ext, 0, n * sizeof *ext);
    nn_model_forward(m, x, y, 3, 1, &st);
    nn_model_backward(m, 0, NULL, NULL);
    assert_memory_equal(ext, own, n * sizeof *own); /* every tensor writes ext */
    nn_model_free(m);                               /* leaves ext to its owner */
    free(ext);
    free(own);
}

static void test_seed_determinism(void **state)
{
    nn_model *a = build(fashion, 1), *b = build(fashion, 8), *c = build(fashion, 1);
    nn_model_init_params(a, 42);
    nn_model_init_params(b, 42);
    nn_model_init_params(c, 43);
    size_t n = nn_model_param_count(a);
    assert_memory_equal(nn_model_params(a), nn_model_params(b), n * sizeof(float));
    assert_memory_not_equal(nn_model_params(a), nn_model_params(c), n * sizeof(float));
    /* biases zero; He std for conv1 (relu, fan_in 9) ~ sqrt(2/9) = 0.471 */
    const nn_tensor *w = nn_model_tensor(a, 6), *bias = nn_model_tensor(a, 7);
    const float *p = nn_model_params(a);
    for (size_t i = 0; i < bias->count; i++)
        assert_true(p[bias->offset + i] == 0.0f);
    double ss = 0.0;
    for (size_t i = 0; i < w->count; i++)
        ss += (double)p[w->offset + i] * p[w->offset + i];
    double std = sqrt(ss / (double)w->count);
    assert_true(std > 0.35 && std < 0.6);
    /* dense2 (no relu): Glorot uniform, |w| <= sqrt(6 / (128 + 10)) */
    const nn_tensor *w2 = nn_model_tensor(a, 0);
    float lim = sqrtf(6.0f / 138.0f);
    for (size_t i = 0; i < w2->count; i++)
        assert_true(fabsf(p[w2->offset + i]) <= lim);
    nn_model_free(a);
    nn_model_free(b);
    nn_model_free(c);
}

static void test_probs_and_inference(void **state)
{
    nn_model *m = build(fashion, 5);
    nn_model_init_params(m, 3);
    float x[5 * 784];
    test_fill_uniform(x, 5 * 784, 2, 0.0f, 1.0f);
    nn_stats st = {0};
    nn_model_forward(m, x, NULL, 5, 0, &st);
    assert_int_equal(st.count, 0);
    const float *p = nn_model_probs(m);
    for (int b = 0; b < 5; b++) {
        double s = 0.0;
        for (int k = 0; k < 10; k++) {
            assert_true(p[b * 10 + k] >= 0.0f);
            s += p[b * 10 + k];
        }
        assert_true(fabs(s - 1.0) < 1e-5);
    }
    nn_model_free(m);
}

static void expect_error(const char *spec, int batch, const char *want)
{
    core_error err = {{0}};
    nn_model *m = NULL;
    int rc = nn_model_create(spec, "models/x.spec", batch, &m, &err);
    if (rc == 0) {
        nn_model_free(m);
        fail_msg("spec accepted, expected error containing '%s':\n%s", want, spec);
    }
    assert_null(m);
    if (!strstr(err.msg, want))
        fail_msg("error '%s' does not contain '%s'", err.msg, want);
}

static void test_parse_errors(void **state)
{
    expect_error("input 1 28 28\nconv2d 3 3\n", 1,
                 "models/x.spec:2: unknown layer 'conv2d' (expected input, conv, maxpool, "
                 "avgpool, flatten, dense, relu, tanh, sigmoid, loss, dropout, embed");
    expect_error("input 1 8 8\nconv x3 3\n", 1,
                 "models/x.spec:2: expected a positive integer for filters, got 'x3'");
    expect_error("input 1 8 8\nconv 0 3\n", 1,
                 "models/x.spec:2: expected a positive integer for filters, got '0'");
    expect_error("input 1 8 8\nconv 4\n", 1, "models/x.spec:2: conv: missing kernel size");
    expect_error("input 1 8 8\nconv\n", 1, "models/x.spec:2: conv: missing number of filters");
    expect_error("input 1 8 8\nconv 4 3 stride\n", 1, "models/x.spec:2: missing stride");
    expect_error("input 1 8 8\nconv 4 3 padded\n", 1,
                 "models/x.spec:2: unknown conv option 'padded'");
    expect_error("input 1 8 8\nmaxpool 2 strid 2\n", 1,
                 "models/x.spec:2: unknown maxpool option 'strid'");
    expect_error("input 1 8 8\nflatten\ndense 10 softmax\n", 1,
                 "models/x.spec:3: unknown dense option 'softmax'");
    expect_error("# c\n\ninput 1 8 8\nconv 4 3\ndense 10\nloss softmax_cross_entropy\n", 1,
                 "models/x.spec:5: dense needs a flat input but gets (4,6,6); add 'flatten'");
    expect_error("input 1 8 8\nconv 4 3\nmaxpool 7\n", 1,
                 "models/x.spec:3: maxpool window 7 is larger than its input (4,6,6)");
    expect_error("input 1 4 4\navgpool 5\n", 1,
                 "models/x.spec:2: avgpool window 5 is larger than its input (1,4,4)");
    expect_error("input 1 4 4\nconv 2 5\n", 1,
                 "models/x.spec:2: conv kernel 5 is larger than its input (1,4,4) with valid");
    expect_error("conv 4 3\nflatten\n", 1,
                 "models/x.spec:1: the model must start with 'input C H W', got 'conv'");
    expect_error("# nothing\n\n", 1, "models/x.spec:3: no 'input C H W' line");
    expect_error("input 1 4 4\nflatten\ndense 3\n", 1, "models/x.spec:4: the model has no 'loss'");
    expect_error("input 1 4 4\nflatten\nloss softmax_cross_entropy\nrelu\n", 1,
                 "models/x.spec:4: 'relu' after the loss");
    expect_error("input 1 4 4\nflatten\nloss mse\n", 1, "models/x.spec:3: unknown loss 'mse'");
    expect_error("input 1 4 4\nflatten\nloss\n", 1, "models/x.spec:3: loss: missing loss type");
    expect_error("input 1 4 4\nconv 2 3\nloss softmax_cross_entropy\n", 1,
                 "models/x.spec:3: softmax_cross_entropy needs flat class scores");
    expect_error("input 1 x 4\n", 1, "models/x.spec:1: expected a positive integer for height");
    expect_error("input 1 4 4\ninput 1 4 4\n", 1, "models/x.spec:2: second 'input' line");
    expect_error("input 1 4 4\nflatten 3\n", 1, "models/x.spec:2: flatten takes no arguments");
    expect_error("input 1 4 4\nflatten\nrelu 2\n", 1, "models/x.spec:3: relu takes no arguments");
    expect_error("input 1 1 1\nflatten\ndense 1000000\ndense 1000000\nloss softmax_cross_entropy\n",
                 1, "models/x.spec: model needs 7.3 TiB");
    /* the limit is an option (the trainer's --max-memory); here 16 GiB */
    nn_model_opts o = {4096, NULL, 16.0 * 1024 * 1024 * 1024, NN_RECOMPUTE_NONE};
    core_error err = {{0}};
    nn_model *m = NULL;
    assert_int_equal(nn_model_create_opts("input 3 224 224\nconv 64 3 same relu\nflatten\n"
                                          "dense 10\nloss softmax_cross_entropy\n",
                                          "models/x.spec", &o, &m, &err),
                     -1);
    assert_null(m);
    assert_non_null(strstr(err.msg, "more than the 16.0 GiB limit"));
}

static void test_valid_specs(void **state)
{
    nn_model *m = build("input 3 9 9\n"
                        "conv 4 3 stride 2 same tanh # 5x5\n"
                        "avgpool 2 stride 1  # 4x4\n"
                        "sigmoid\n"
                        "conv 2 2 valid\n"
                        "relu\n"
                        "flatten\n"
                        "dense 7 sigmoid\n"
                        "tanh\n"
                        "dense 3\n"
                        "loss softmax_cross_entropy\n",
                        2);
    assert_int_equal(nn_model_param_count(m), (4 * 27 + 4) + (2 * 16 + 2) + (7 * 18 + 7) + 24);
    assert_int_equal(nn_model_num_classes(m), 3);
    nn_model_free(m);
    m = build("input 10\nloss softmax_cross_entropy", 1);
    assert_int_equal(nn_model_param_count(m), 0);
    assert_int_equal(nn_model_num_classes(m), 10);
    nn_model_free(m);
}

static int describe_lines;
static void count_line(const char *text)
{
    (void)text;
    describe_lines++;
}

static void test_describe(void **state)
{
    nn_model *m = build(fashion, 1);
    describe_lines = 0;
    nn_model_describe(m, count_line);
    assert_int_equal(describe_lines, 9);
    assert_string_equal(nn_model_spec_text(m), fashion);
    nn_model_free(m);
}

/* A BOM is skipped by the parser; the spec comparison of resumes ignores
 * what the parser ignores and names the first line that differs. */
static void test_bom_and_spec_diff(void **state)
{
    (void)state;
    const char *a = "input 16\ndense 4 relu\nloss softmax_cross_entropy\n";
    nn_model *m = build("\xef\xbb\xbfinput 16\ndense 4 relu\nloss softmax_cross_entropy", 1);
    assert_int_equal(nn_model_param_count(m), 68);
    nn_model_free(m);
    char la[64], lb[64];
    assert_int_equal(nn_spec_diff(a,
                                  "\xef\xbb\xbf# same\n\ninput  16\n dense 4\trelu # x\n"
                                  "loss softmax_cross_entropy",
                                  la, lb, sizeof la),
                     0);
    assert_int_equal(
        nn_spec_diff(a, "# c\ninput 16\ndense 4 tanh\nloss softmax_cross_entropy", la, lb, 64), 3);
    assert_string_equal(la, "dense 4 relu");
    assert_string_equal(lb, "dense 4 tanh");
    assert_int_equal(nn_spec_diff(a, "input 16\ndense 4 relu\n", la, lb, 64), 3);
    assert_string_equal(la, "loss softmax_cross_entropy");
    assert_string_equal(lb, "(end of spec)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fashion_param_count),
        cmocka_unit_test(test_tensor_layout),
        cmocka_unit_test(test_on_ready_and_accumulate),
        cmocka_unit_test(test_use_grads),
        cmocka_unit_test(test_seed_determinism),
        cmocka_unit_test(test_probs_and_inference),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_valid_specs),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_bom_and_spec_diff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
