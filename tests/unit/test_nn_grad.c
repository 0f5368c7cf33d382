/*
 * tests/unit/test_nn_grad.c: finite-difference gradient checks of every
 * layer kind and of the loss, for parameters AND inputs, plus a whole model.
 *
 * Each check builds a tiny model whose loss is the summed softmax cross
 * entropy (computed in double by the engine), perturbs one value by +-eps,
 * and compares the central difference with backward's gradient. Tiny shapes
 * let every element be checked. Inputs for max pooling are distinct values
 * spaced wider than 2*eps, so no perturbation changes an argmax.
 */
#include "test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "nn/model.h"

#define EPS 2e-3f

static double loss_at(nn_model *m, const float *x, const int32_t *y, int batch)
{
    nn_stats st = {0};
    nn_model_forward(m, x, y, batch, 1, &st);
    return st.loss_sum;
}

static int close_enough(double num, double ana, double atol, double rtol)
{
    return fabs(num - ana) <= atol + rtol * fmax(fabs(num), fabs(ana));
}

/* distinct: inputs are a shuffled ramp (no ties within a pooling window). */
static void gradcheck(const char *spec, int batch, int distinct, double atol, double rtol)
{
    core_error err = {{0}};
    nn_model *m = NULL;
    if (nn_model_create(spec, "grad.spec", batch, &m, &err) != 0)
        fail_msg("%s", err.msg);
    nn_model_init_params(m, 11);
    nn_model_set_input_grad(m, 1);
    size_t nx = nn_model_input_size(m) * (size_t)batch;
    size_t np = nn_model_param_count(m);
    float *x = malloc(nx * sizeof *x);
    float *dx = malloc(nx * sizeof *dx);
    float *dp = malloc((np + 1) * sizeof *dp);
    int32_t *y = malloc((size_t)batch * sizeof *y);
    core_rng r = core_rng_make(5, 1);
    if (distinct) {
        uint32_t *perm = malloc(nx * sizeof *perm);
        for (size_t i = 0; i < nx; i++)
            perm[i] = (uint32_t)i;
        core_rng_shuffle_u32(&r, perm, nx);
        for (size_t i = 0; i < nx; i++)
            x[i] = -1.0f + (2.0f * (float)perm[i] + 1.0f) / (float)nx; /* never 0 */
        free(perm);
        assert_true(2.0f / (float)nx > 4.0f * EPS);
    } else {
        test_fill_uniform(x, nx, 3, -1.0f, 1.0f);
    }
    int classes = nn_model_num_classes(m);
    for (int b = 0; b < batch; b++)
        y[b] = (int32_t)core_rng_below(&r, (uint64_t)classes);

    loss_at(m, x, y, batch);
    nn_model_backward(m, 0, NULL, NULL);
    memcpy(dp, nn_model_grads(m), np * sizeof *dp);
    memcpy(dx, nn_model_input_grad(m), nx * sizeof *dx);

    int bad = 0;
    float *p = nn_model_params(m);
    for (size_t i = 0; i < np; i++) {
        float keep = p[i];
        p[i] = keep + EPS;
        double lp = loss_at(m, x, y, batch);
        p[i] = keep - EPS;
        double lm = loss_at(m, x, y, batch);
        p[i] = keep;
        double num = (lp - lm) / (2.0 * EPS);
        if (!close_enough(num, dp[i], atol, rtol) && bad++ < 5)
            print_error("%s\nparam %zu: numeric %.6f analytic %.6f\n", spec, i, num, dp[i]);
    }
    for (size_t i = 0; i < nx; i++) {
        float keep = x[i];
        x[i] = keep + EPS;
        double lp = loss_at(m, x, y, batch);
        x[i] = keep - EPS;
        double lm = loss_at(m, x, y, batch);
        x[i] = keep;
        double num = (lp - lm) / (2.0 * EPS);
        if (!close_enough(num, dx[i], atol, rtol) && bad++ < 5)
            print_error("%s\ninput %zu: numeric %.6f analytic %.6f\n", spec, i, num, dx[i]);
    }
    free(x);
    free(dx);
    free(dp);
    free(y);
    nn_model_free(m);
    assert_int_equal(bad, 0);
}

#define TOL 2e-3, 1e-2

static void test_loss(void **state)
{
    gradcheck("input 5\nloss softmax_cross_entropy\n", 3, 0, TOL);
}

static void test_dense_activations(void **state)
{
    gradcheck("input 7\ndense 5 relu\ndense 4 tanh\ndense 6 sigmoid\ndense 3\n"
              "loss softmax_cross_entropy\n",
              3, 0, TOL);
}

static void test_standalone_activations(void **state)
{
    gradcheck("input 6\nrelu\nloss softmax_cross_entropy\n", 2, 1, TOL);
    gradcheck("input 6\ntanh\nloss softmax_cross_entropy\n", 2, 0, TOL);
    gradcheck("input 6\nsigmoid\nloss softmax_cross_entropy\n", 2, 0, TOL);
    gradcheck("input 2 3 3\nconv 2 2\nrelu\ntanh\nsigmoid\nflatten\nloss softmax_cross_entropy\n",
              2, 0, TOL);
}

static void test_conv_valid(void **state)
{
    gradcheck("input 2 5 5\nconv 3 3\nflatten\nloss softmax_cross_entropy\n", 2, 0, TOL);
    gradcheck("input 2 5 5\nconv 3 3 relu\nflatten\nloss softmax_cross_entropy\n", 2, 1, TOL);
}

static void test_conv_stride2(void **state)
{
    /* even and odd sizes: 'same' pads (0,1) for 6 and (1,1) for 7 */
    gradcheck("input 2 6 6\nconv 3 3 stride 2 same tanh\nflatten\nloss softmax_cross_entropy\n", 2,
              0, TOL);
    gradcheck("input 1 7 7\nconv 2 3 stride 2 same\nflatten\nloss softmax_cross_entropy\n", 2, 0,
              TOL);
    gradcheck("input 2 7 6\nconv 2 3 stride 2 valid sigmoid\nflatten\nloss softmax_cross_entropy\n",
              2, 0, TOL);
}

static void test_conv_same_and_chained(void **state)
{
    /* the second conv reads the channel-major output of the first */
    gradcheck("input 2 5 5\nconv 3 3 same tanh\nconv 2 3 stride 2 same sigmoid\nconv 2 1\n"
              "flatten\nloss softmax_cross_entropy\n",
              2, 0, TOL);
}

static void test_maxpool(void **state)
{
    gradcheck("input 2 4 4\nmaxpool 2\nflatten\nloss softmax_cross_entropy\n", 2, 1, TOL);
    gradcheck("input 1 7 7\nmaxpool 3 stride 2\nflatten\nloss softmax_cross_entropy\n", 1, 1, TOL);
}

static void test_avgpool(void **state)
{
    gradcheck("input 2 4 4\navgpool 2\nflatten\nloss softmax_cross_entropy\n", 2, 0, TOL);
    gradcheck("input 1 7 7\navgpool 3 stride 2\nflatten\nloss softmax_cross_entropy\n", 2, 0, TOL);
    gradcheck("input 1 6 6\nconv 2 3 same tanh\navgpool 2\nflatten\nloss softmax_cross_entropy\n",
              2, 0, TOL);
}

static void test_whole_model(void **state)
{
    /* conv+relu feeding maxpool (relu' folded into the pool's backward), with
     * pooled rows of 9 outputs: the blocked pooling path and its last row */
    gradcheck("input 1 10 18\nconv 2 3 same relu\nmaxpool 2\nflatten\ndense 3\n"
              "loss softmax_cross_entropy\n",
              1, 1, TOL);
    gradcheck("input 2 6 6\nconv 3 3 same relu\nmaxpool 2\nflatten\ndense 5 tanh\ndense 4\n"
              "loss softmax_cross_entropy\n",
              2, 0, TOL);
}

/* Convolutions with 8+ channels and filters run by Winograd's F(2x2, 3x3)
 * on the CPU engine: its gradients (the adjoint of its transforms) against
 * finite differences, with tanh and sigmoid, odd and valid output sizes, a
 * conv reading the channel-major output of another, and pooling after one
 * (the fused relu is checked against direct loops in test_engine_cpu). */
static void test_conv_winograd(void **state)
{
    gradcheck("input 8 5 6\nconv 8 3 same tanh\nconv 9 3 sigmoid\nflatten\n"
              "loss softmax_cross_entropy\n",
              2, 0, TOL);
    gradcheck("input 8 4 3\nconv 8 3 same tanh\nmaxpool 2\nflatten\ndense 3\n"
              "loss softmax_cross_entropy\n",
              2, 1, TOL);
}

/* A conv big enough to run in several image groups (see nn/conv.c), at a
 * batch that leaves a partial last group, against the same model run one
 * sample at a time (one group each) with accumulated gradients: outputs,
 * parameter gradients and input gradients must agree. */
static void test_conv_groups(void **state)
{
    const char *spec = "input 8 24 24\nconv 4 5 same relu\nmaxpool 2\nconv 3 3 same tanh\n"
                       "flatten\ndense 5\nloss softmax_cross_entropy\n";
    enum { MAXB = 7, B = 5 };
    core_error err = {{0}};
    nn_model *big = NULL, *one = NULL;
    assert_int_equal(nn_model_create(spec, "g.spec", MAXB, &big, &err), 0);
    assert_int_equal(nn_model_create(spec, "g.spec", 1, &one, &err), 0);
    nn_model_init_params(big, 3);
    nn_model_init_params(one, 3);
    nn_model_set_input_grad(big, 1);
    nn_model_set_input_grad(one, 1);
    size_t in = nn_model_input_size(big), np = nn_model_param_count(big);
    int classes = nn_model_num_classes(big);
    float *x = malloc(B * in * sizeof *x), *dx = malloc(B * in * sizeof *dx);
    float *probs = malloc((size_t)B * classes * sizeof *probs);
    int32_t y[B] = {0, 3, 1, 4, 2};
    test_fill_uniform(x, B * in, 12, -1.0f, 1.0f);
    nn_model_forward(big, x, y, B, 1, NULL);
    nn_model_backward(big, 0, NULL, NULL);
    memcpy(dx, nn_model_input_grad(big), B * in * sizeof *dx);
    memcpy(probs, nn_model_probs(big), (size_t)B * classes * sizeof *probs);
    for (int b = 0; b < B; b++) {
        nn_model_forward(one, x + b * in, y + b, 1, 1, NULL);
        nn_model_backward(one, b > 0, NULL, NULL);
        assert_true(test_max_rel_diff(probs + (size_t)b * classes, nn_model_probs(one),
                                      (size_t)classes) < 1e-4);
        assert_true(test_max_rel_diff(dx + b * in, nn_model_input_grad(one), in) < 1e-3);
    }
    assert_true(test_max_rel_diff(nn_model_grads(big), nn_model_grads(one), np) < 1e-3);
    free(x), free(dx), free(probs);
    nn_model_free(big);
    nn_model_free(one);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss),
        cmocka_unit_test(test_dense_activations),
        cmocka_unit_test(test_standalone_activations),
        cmocka_unit_test(test_conv_valid),
        cmocka_unit_test(test_conv_stride2),
        cmocka_unit_test(test_conv_same_and_chained),
        cmocka_unit_test(test_maxpool),
        cmocka_unit_test(test_avgpool),
        cmocka_unit_test(test_whole_model),
        cmocka_unit_test(test_conv_groups),
        cmocka_unit_test(test_conv_winograd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
