/*
 * tests/unit/test_regularize.c: each regularizer and schedule against a hand
 * computation of its formula: coupled L2 (SGD weight decay), decoupled weight
 * decay (AdamW), L1, clipping by global norm, and the learning-rate
 * schedules (constant, step, cosine with warm-up), including a resumed run
 * continuing the schedule.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "test_support.h"

#include "core/sum.h"
#include "optim/optim.h"
#include "optim/schedule.h"

static void test_l2_coupled_sgd(void **state)
{
    /* p' = p - lr (g + wd p): p=2, g=0.5, lr=0.1, wd=0.01 -> 2 - 0.1*(0.52) = 1.948 */
    core_error err = {{0}};
    optim_config c = optim_config_default(OPTIM_SGD);
    c.momentum = 0.0f;
    c.weight_decay = 0.01f;
    optim o;
    assert_int_equal(optim_create(&o, &c, 2, &err), 0);
    float p[2] = {2.0f, -1.0f}, g[2] = {0.5f, 0.0f};
    optim_step(&o, p, g, 0.1f);
    assert_float_equal(p[0], 1.948f, 1e-6);
    assert_float_equal(p[1], -1.0f + 0.1f * 0.01f, 1e-7);
    optim_destroy(&o);
}

static void test_adamw_decoupled(void **state)
{
    /* AdamW step 1: p' = p (1 - lr wd) - lr g / (|g| + eps) (m_hat = g, v_hat = g^2).
     * p=1, g=0.2, lr=0.01, wd=0.1: 1*0.999 - 0.01*0.2/(0.2+1e-8) = 0.989 */
    core_error err = {{0}};
    optim_config c = optim_config_default(OPTIM_ADAM);
    c.weight_decay = 0.1f;
    c.decoupled = 1;
    optim o;
    assert_int_equal(optim_create(&o, &c, 3, &err), 0);
    float p[3] = {1.0f, -3.0f, 0.5f}, g[3] = {0.2f, 0.0f, -1.0f};
    optim_step(&o, p, g, 0.01f);
    assert_float_equal(p[0], 0.989f, 1e-6);
    assert_float_equal(p[1], -3.0f * 0.999f, 1e-6); /* decay only: zero gradient */
    assert_float_equal(p[2], 0.5f * 0.999f + 0.01f, 1e-6);
    /* The decay does not enter the moments (as coupled L2 would). */
    assert_float_equal(o.m[1], 0.0f, 0.0);
    assert_float_equal(o.v[1], 0.0f, 0.0);
    optim_destroy(&o);

    /* Coupled Adam with the same wd DOES feed wd p into the moments. */
    c.decoupled = 0;
    assert_int_equal(optim_create(&o, &c, 3, &err), 0);
    float q[3] = {1.0f, -3.0f, 0.5f};
    optim_step(&o, q, g, 0.01f);
    assert_float_equal(o.m[1], 0.1f * (0.1f * -3.0f), 1e-7);
    optim_destroy(&o);
}

static void test_l1(void **state)
{
    float p[4] = {2.0f, -0.5f, 0.0f, 1e-30f};
    float g[4] = {1.0f, 1.0f, 1.0f, 0.0f};
    optim_add_l1(g, p, 4, 0.25f);
    assert_float_equal(g[0], 1.25f, 0.0);
    assert_float_equal(g[1], 0.75f, 0.0);
    assert_float_equal(g[2], 1.0f, 0.0); /* sign(0) = 0 */
    assert_float_equal(g[3], 0.25f, 0.0);
}

static void test_clip_global_norm(void **state)
{
    /* norm of (3, 4, 0, 12) = 13; max 6.5 -> factor 6.5 / (13 + 1e-6) */
    float g[4] = {3.0f, 4.0f, 0.0f, 12.0f};
    double norm = optim_clip_grad_norm(g, 4, 6.5f);
    assert_float_equal(norm, 13.0, 1e-9);
    float f = (float)(6.5 / (13.0 + 1e-6));
    assert_float_equal(g[0], 3.0f * f, 0.0);
    assert_float_equal(g[3], 12.0f * f, 0.0);
    /* Under the limit: untouched. */
    float h[2] = {0.3f, 0.4f};
    assert_float_equal(optim_clip_grad_norm(h, 2, 1.0f), 0.5, 1e-7);
    assert_float_equal(h[0], 0.3f, 0.0);
    assert_float_equal(h[1], 0.4f, 0.0);
}

/* The trainer's one-pass division and norm: the same bits as scaling and
 * then core_sum_squares, for lengths around the 8 lanes and a long one; the
 * sum agrees with a plain double loop to rounding; clipping with the known
 * norm equals optim_clip_grad_norm. */
static void test_scale_sum_squares(void **state)
{
    const size_t lens[] = {0, 1, 7, 8, 9, 17, 1037, 100003};
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        size_t n = lens[k];
        float *a = malloc((n ? n : 1) * sizeof *a), *b = malloc((n ? n : 1) * sizeof *b);
        assert_non_null(a);
        assert_non_null(b);
        test_fill_uniform(a, n, 40 + k, -3.0f, 3.0f);
        memcpy(b, a, n * sizeof *a);
        const float scale = 1.0f / 96.0f;
        double fused = core_scale_sum_squares(a, n, scale);
        double plain = 0.0;
        for (size_t i = 0; i < n; i++) {
            b[i] *= scale;
            plain += (double)b[i] * (double)b[i];
        }
        assert_memory_equal(a, b, n * sizeof *a);
        double two = core_sum_squares(b, n);
        assert_memory_equal(&fused, &two, sizeof fused);
        assert_true(fabs(fused - plain) <= 1e-12 * (plain > 1.0 ? plain : 1.0));
        /* clipping with that norm = optim_clip_grad_norm */
        optim_clip_to_norm(a, n, 0.01f, sqrt(fused));
        double norm_b = optim_clip_grad_norm(b, n, 0.01f);
        assert_memory_equal(&norm_b, &(double){sqrt(fused)}, sizeof norm_b);
        assert_memory_equal(a, b, n * sizeof *a);
        free(a);
        free(b);
    }
}

static void test_schedule_constant_warmup(void **state)
{
    optim_schedule s = {OPTIM_SCHED_CONSTANT, 0.1f, 4, 0, 0.0f, 0, 0.0f};
    core_error err = {{0}};
    assert_int_equal(optim_schedule_check(&s, &err), 0);
    assert_float_equal(optim_schedule_lr(&s, 0), 0.025f, 1e-8);
    assert_float_equal(optim_schedule_lr(&s, 1), 0.05f, 1e-8);
    assert_float_equal(optim_schedule_lr(&s, 3), 0.1f, 1e-8);
    assert_float_equal(optim_schedule_lr(&s, 1000), 0.1f, 1e-8);
}

static void test_schedule_step(void **state)
{
    optim_schedule s = {OPTIM_SCHED_STEP, 1.0f, 0, 10, 0.5f, 0, 0.0f};
    assert_float_equal(optim_schedule_lr(&s, 0), 1.0f, 0.0);
    assert_float_equal(optim_schedule_lr(&s, 9), 1.0f, 0.0);
    assert_float_equal(optim_schedule_lr(&s, 10), 0.5f, 0.0);
    assert_float_equal(optim_schedule_lr(&s, 25), 0.25f, 0.0);
    core_error err = {{0}};
    s.step_size = 0;
    assert_int_equal(optim_schedule_check(&s, &err), -1);
    assert_non_null(strstr(err.msg, "--lr-step-size"));
}

static void test_schedule_cosine(void **state)
{
    /* warm-up 10 then cosine from 0.1 to 0.01 over steps 10..110 */
    optim_schedule s = {OPTIM_SCHED_COSINE, 0.1f, 10, 0, 0.0f, 110, 0.01f};
    core_error err = {{0}};
    assert_int_equal(optim_schedule_check(&s, &err), 0);
    assert_float_equal(optim_schedule_lr(&s, 4), 0.05f, 1e-8);
    assert_float_equal(optim_schedule_lr(&s, 10), 0.1f, 1e-7);
    assert_float_equal(optim_schedule_lr(&s, 60), 0.055f, 1e-7); /* halfway: the mean */
    double want = 0.01 + 0.09 * 0.5 * (1.0 + cos(3.14159265358979323846 * 0.25));
    assert_float_equal(optim_schedule_lr(&s, 35), want, 1e-7);
    assert_float_equal(optim_schedule_lr(&s, 110), 0.01f, 1e-8);
    assert_float_equal(optim_schedule_lr(&s, 500), 0.01f, 1e-8);
    s.total = 10;
    assert_int_equal(optim_schedule_check(&s, &err), -1);
}

/* A run resumed at step k (its step count restored from a checkpoint) sees
 * the same rates as a run that was never interrupted: the rate depends only
 * on the step. Checked by driving an optimizer through both paths. */
static void test_schedule_resume_continues(void **state)
{
    optim_schedule s = {OPTIM_SCHED_COSINE, 0.05f, 3, 0, 0.0f, 20, 0.0f};
    core_error err = {{0}};
    optim_config c = optim_config_default(OPTIM_SGD);
    optim a, b;
    assert_int_equal(optim_create(&a, &c, 1, &err), 0);
    assert_int_equal(optim_create(&b, &c, 1, &err), 0);
    float pa = 1.0f, pb = 1.0f, g = 0.5f;
    for (int t = 0; t < 20; t++)
        optim_step(&a, &pa, &g, optim_schedule_lr(&s, a.step));
    for (int t = 0; t < 8; t++)
        optim_step(&b, &pb, &g, optim_schedule_lr(&s, b.step));
    /* "checkpoint": copy the state into a fresh optimizer */
    optim r;
    assert_int_equal(optim_create(&r, &c, 1, &err), 0);
    r.step = b.step;
    r.m[0] = b.m[0];
    for (int t = 8; t < 20; t++)
        optim_step(&r, &pb, &g, optim_schedule_lr(&s, r.step));
    assert_float_equal(pa, pb, 0.0);
    optim_destroy(&a);
    optim_destroy(&b);
    optim_destroy(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_l2_coupled_sgd),
        cmocka_unit_test(test_adamw_decoupled),
        cmocka_unit_test(test_l1),
        cmocka_unit_test(test_clip_global_norm),
        cmocka_unit_test(test_scale_sum_squares),
        cmocka_unit_test(test_schedule_constant_warmup),
        cmocka_unit_test(test_schedule_step),
        cmocka_unit_test(test_schedule_cosine),
        cmocka_unit_test(test_schedule_resume_continues),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
