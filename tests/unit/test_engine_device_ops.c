/*
 * tests/unit/test_engine_device_ops.c: the engine ops added for device
 * memory (engine.h), on the CPU engine, against the code they stand for:
 * the optimizer updates bitwise against optim_step (the GPU step path,
 * train/device.c, drives them with the same bias corrections), the dropout
 * mask against core_rng, sumsq and nonfinite against plain loops. And the
 * CUDA engine's failure without a GPU: NULL and one clear line, never a crash
 * (CI has no GPU; tests/gpu/run covers the GPU itself).
 */
#include "test_support.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "engine/engine.h"
#include "optim/optim.h"

#define N 1000

/* Three steps of optim_step against three engine updates with the same rule. */
static void check_optim(optim_config cfg)
{
    const engine_ops *e = engine_cpu();
    float p1[N], p2[N], g[N], m2[N] = {0}, v2[N] = {0};
    test_fill_uniform(p1, N, 1, -1.0f, 1.0f);
    memcpy(p2, p1, sizeof p1);
    optim o;
    core_error err;
    assert_int_equal(optim_create(&o, &cfg, N, &err), 0);
    for (int step = 1; step <= 3; step++) {
        test_fill_uniform(g, N, 10 + (uint64_t)step, -1.0f, 1.0f);
        float lr = cfg.lr;
        optim_step(&o, p1, g, lr);
        if (cfg.kind == OPTIM_ADAM) {
            double bc1 = 1.0 - pow((double)cfg.beta1, step);
            double bc2 = 1.0 - pow((double)cfg.beta2, step);
            float decay = cfg.decoupled ? 1.0f - lr * cfg.weight_decay : 1.0f;
            e->adam_update(p2, g, m2, v2, N, decay, (float)((double)lr / bc1), (float)sqrt(bc2),
                           cfg.beta1, cfg.beta2, cfg.eps, cfg.decoupled ? 0.0f : cfg.weight_decay);
        } else {
            e->sgd_update(p2, g, m2, N, lr, cfg.momentum, cfg.weight_decay, cfg.nesterov);
        }
    }
    assert_memory_equal(p1, p2, sizeof p1);
    assert_memory_equal(o.m, m2, sizeof m2);
    if (o.v)
        assert_memory_equal(o.v, v2, sizeof v2);
    optim_destroy(&o);
}

static void test_optim_updates_match_optim_step(void **state)
{
    optim_config c = optim_config_default(OPTIM_ADAM);
    check_optim(c);
    c.weight_decay = 0.01f;
    check_optim(c);
    c.decoupled = 1;
    check_optim(c);
    c = optim_config_default(OPTIM_SGD);
    check_optim(c);
    c.weight_decay = 1e-3f;
    c.nesterov = 1;
    check_optim(c);
    c.momentum = 0.0f;
    c.nesterov = 0;
    check_optim(c);
}

static void test_dropout_mask_is_core_rng(void **state)
{
    float mask[N];
    engine_cpu()->dropout_mask(mask, N, 0.25f, 42, 7);
    core_rng r = core_rng_make(42, 7);
    int zeros = 0;
    for (int i = 0; i < N; i++) {
        float want = core_rng_uniform(&r) >= 0.25f ? 1.0f / 0.75f : 0.0f;
        assert_true(mask[i] == want);
        zeros += mask[i] == 0.0f;
    }
    assert_in_range(zeros, 180, 320);
}

static void test_reductions_and_copies(void **state)
{
    const engine_ops *e = engine_cpu();
    float x[N], y[N];
    test_fill_uniform(x, N, 3, -2.0f, 2.0f);
    double ss = 0.0;
    for (int i = 0; i < N; i++)
        ss += (double)x[i] * x[i];
    /* lanes summed in another order than this loop: equal to rounding */
    assert_true(fabs(e->sumsq(x, N) - ss) <= 1e-12 * ss);
    assert_int_equal(e->nonfinite(x, N), 0);
    e->upload(y, x, sizeof x);
    e->scale(y, N, 0.5f);
    e->mul(y, y, x, N);
    for (int i = 0; i < N; i++)
        assert_true(y[i] == 0.5f * x[i] * x[i]);
    y[N - 1] = NAN;
    assert_int_equal(e->nonfinite(y, N), 1);
    y[N - 1] = INFINITY;
    assert_int_equal(e->nonfinite(y, N), 1);
    assert_int_equal(e->device_memory, 0);
    assert_null(e->stream());
}

static void test_cuda_engine_without_gpu(void **state)
{
    if (getenv("RINGTRAIN_TEST_HAVE_GPU"))
        skip();
    core_error err = {{0}};
    const engine_ops *e = engine_cuda(0, 0, &err);
    if (e) /* a GPU after all: tests/gpu/run is the test for it */
        skip();
#ifdef RINGTRAIN_HAVE_CUDA
    assert_non_null(strstr(err.msg, "no CUDA device"));
#else
    assert_non_null(strstr(err.msg, "ringtrain was built without CUDA"));
#endif
    assert_null(strchr(err.msg, '\n'));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_optim_updates_match_optim_step),
        cmocka_unit_test(test_dropout_mask_is_core_rng),
        cmocka_unit_test(test_reductions_and_copies),
        cmocka_unit_test(test_cuda_engine_without_gpu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
