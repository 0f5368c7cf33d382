/*
 * tests/unit/test_dropout.c: the dropout layer is the identity in evaluation,
 * its training mask is a pure function of the seed (rebuilt here from the
 * RNG stream alone), scales kept values by 1/(1-p), and backward multiplies
 * by the same mask.
 */
#include <math.h>
#include <string.h>

#include "test_support.h"

#include "core/rng.h"
#include "nn/layer.h"
#include "nn/model.h"

#define D     200
#define BATCH 3

static const char *spec = "input 200\ndropout 0.3\nloss softmax_cross_entropy\n";

static nn_model *make(void)
{
    core_error err = {{0}};
    nn_model *m = NULL;
    if (nn_model_create(spec, "test", BATCH, &m, &err) != 0)
        fail_msg("%s", err.msg);
    return m;
}

/* The probabilities of a softmax are monotone in its inputs; the test reads
 * the dropout output directly from the layer instead. */
static const float *dropout_out(nn_model *m)
{
    return nn_model_layer(m, 0)->y;
}

static void test_eval_identity(void **state)
{
    nn_model *m = make();
    float x[BATCH * D];
    test_fill_uniform(x, BATCH * D, 3, -1.0f, 1.0f);
    nn_model_set_seed(m, 42);
    nn_model_forward(m, x, NULL, BATCH, 0, NULL);
    assert_memory_equal(dropout_out(m), x, sizeof x);
    nn_model_free(m);
}

static void test_mask_from_seed(void **state)
{
    nn_model *m = make();
    float x[BATCH * D], first[BATCH * D];
    test_fill_uniform(x, BATCH * D, 4, 0.5f, 1.5f); /* no zeros: a zero output means dropped */
    nn_model_set_seed(m, 1234);
    nn_model_forward(m, x, NULL, BATCH, 1, NULL);
    memcpy(first, dropout_out(m), sizeof first);

    /* Rebuild the mask from the documented stream. */
    core_rng r = core_rng_make(1234, nn_dropout_stream("dropout1"));
    int dropped = 0;
    for (int i = 0; i < BATCH * D; i++) {
        int keep = core_rng_uniform(&r) >= 0.3f;
        float want = keep ? x[i] * (1.0f / 0.7f) : 0.0f;
        assert_float_equal(first[i], want, 0.0);
        dropped += !keep;
    }
    assert_true(dropped > BATCH * D * 0.2 && dropped < BATCH * D * 0.4);

    /* Same seed: same mask; another seed: another mask. */
    nn_model_forward(m, x, NULL, BATCH, 1, NULL);
    assert_memory_equal(dropout_out(m), first, sizeof first);
    nn_model_set_seed(m, 1235);
    nn_model_forward(m, x, NULL, BATCH, 1, NULL);
    assert_true(memcmp(dropout_out(m), first, sizeof first) != 0);
    nn_model_free(m);
}

static void test_backward_uses_mask(void **state)
{
    core_error err = {{0}};
    nn_model *m = NULL;
    assert_int_equal(
        nn_model_create("input 200\ndropout 0.5\ndense 4\nloss softmax_cross_entropy\n", "test",
                        BATCH, &m, &err),
        0);
    nn_model_init_params(m, 1);
    nn_model_set_input_grad(m, 1);
    float x[BATCH * D];
    int32_t y[BATCH] = {0, 1, 2};
    test_fill_uniform(x, BATCH * D, 5, 0.5f, 1.5f);
    nn_model_set_seed(m, 9);
    nn_model_forward(m, x, y, BATCH, 1, NULL);
    nn_model_backward(m, 0, NULL, NULL);
    const float *dx = nn_model_input_grad(m);
    const float *out = nn_model_layer(m, 0)->y;
    for (int i = 0; i < BATCH * D; i++)
        if (out[i] == 0.0f)
            assert_float_equal(dx[i], 0.0f, 0.0); /* dropped: no gradient */
    nn_model_free(m);
}

static void test_parse_errors(void **state)
{
    core_error err = {{0}};
    nn_model *m = NULL;
    assert_int_equal(nn_model_create("input 4\ndropout 1.0\ndense 2\nloss softmax_cross_entropy\n",
                                     "bad.spec", 1, &m, &err),
                     -1);
    assert_non_null(strstr(err.msg, "bad.spec:2"));
    assert_int_equal(nn_model_create("input 4\ndropout\ndense 2\nloss softmax_cross_entropy\n",
                                     "bad.spec", 1, &m, &err),
                     -1);
    assert_non_null(strstr(err.msg, "bad.spec:2"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eval_identity),
        cmocka_unit_test(test_mask_from_seed),
        cmocka_unit_test(test_backward_uses_mask),
        cmocka_unit_test(test_parse_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
