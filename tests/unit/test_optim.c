/*
 * tests/unit/test_optim.c: SGD and Adam against a double-precision reference
 * written here from the formulas (torch.optim.SGD / torch.optim.Adam), over
 * several steps with a changing learning rate, plus the small API around them.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "test_support.h"

#include "optim/optim.h"

#define N     1037 /* not a multiple of any vector width: exercises loop tails */
#define STEPS 12
#define TOL   2e-6

static const float lrs[] = {0.1f, 0.05f, 0.01f, 0.003f};

typedef struct ref_state {
    double p[N], m[N], v[N];
    long t;
} ref_state;

static float lr_at(int step)
{
    return lrs[step % (int)(sizeof lrs / sizeof lrs[0])];
}

static void ref_sgd(ref_state *s, const float *g, double lr, const optim_config *c)
{
    double mu = c->momentum, wd = c->weight_decay;
    for (int i = 0; i < N; i++) {
        double d = g[i] + wd * s->p[i];
        if (mu == 0.0) {
            s->p[i] -= lr * d;
            continue;
        }
        s->m[i] = mu * s->m[i] + d;
        double u = c->nesterov ? d + mu * s->m[i] : s->m[i];
        s->p[i] -= lr * u;
    }
}

/* The textbook form: m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t),
 * p -= lr m_hat / (sqrt(v_hat) + eps). */
static void ref_adam(ref_state *s, const float *g, double lr, const optim_config *c)
{
    double b1 = c->beta1, b2 = c->beta2, eps = c->eps, wd = c->weight_decay;
    s->t++;
    for (int i = 0; i < N; i++) {
        double d = g[i] + wd * s->p[i];
        s->m[i] = b1 * s->m[i] + (1.0 - b1) * d;
        s->v[i] = b2 * s->v[i] + (1.0 - b2) * d * d;
        double mh = s->m[i] / (1.0 - pow(b1, (double)s->t));
        double vh = s->v[i] / (1.0 - pow(b2, (double)s->t));
        s->p[i] -= lr * mh / (sqrt(vh) + eps);
    }
}

static double max_diff_d(const float *a, const double *b)
{
    double worst = 0.0;
    for (int i = 0; i < N; i++) {
        double d = fabs((double)a[i] - b[i]) / fmax(1.0, fabs(b[i]));
        if (d > worst)
            worst = d;
    }
    return worst;
}

/* Runs STEPS steps of the optimizer and of the reference on the same
 * gradients and compares parameters and state after every step. */
static void check_against_reference(const optim_config *cfg)
{
    core_error err = {{0}};
    optim o;
    assert_int_equal(optim_create(&o, cfg, N, &err), 0);
    float *p = malloc(N * sizeof *p);
    float *g = malloc(N * sizeof *g);
    ref_state *r = calloc(1, sizeof *r);
    assert_non_null(p);
    assert_non_null(g);
    assert_non_null(r);
    test_fill_uniform(p, N, 1, -1.0f, 1.0f);
    for (int i = 0; i < N; i++)
        r->p[i] = p[i];

    for (int s = 0; s < STEPS; s++) {
        test_fill_uniform(g, N, 100 + (uint64_t)s, -2.0f, 2.0f);
        float lr = lr_at(s);
        optim_step(&o, p, g, lr);
        if (cfg->kind == OPTIM_ADAM)
            ref_adam(r, g, lr, cfg);
        else
            ref_sgd(r, g, lr, cfg);
        double dp = max_diff_d(p, r->p);
        if (dp > TOL)
            fail_msg("%s step %d: params differ from reference by %g", optim_kind_name(cfg->kind),
                     s + 1, dp);
        if (cfg->kind == OPTIM_ADAM || cfg->momentum != 0.0f)
            assert_true(max_diff_d(o.m, r->m) <= TOL);
        if (cfg->kind == OPTIM_ADAM)
            assert_true(max_diff_d(o.v, r->v) <= TOL);
    }
    assert_int_equal(o.step, STEPS);
    free(r);
    free(g);
    free(p);
    optim_destroy(&o);
}

static void test_sgd_plain(void **state)
{
    optim_config c = optim_config_default(OPTIM_SGD);
    c.momentum = 0.0f;
    check_against_reference(&c);
}

static void test_sgd_plain_weight_decay(void **state)
{
    optim_config c = optim_config_default(OPTIM_SGD);
    c.momentum = 0.0f;
    c.weight_decay = 0.05f;
    check_against_reference(&c);
}

static void test_sgd_momentum(void **state)
{
    optim_config c = optim_config_default(OPTIM_SGD);
    c.momentum = 0.9f;
    check_against_reference(&c);
}

static void test_sgd_momentum_weight_decay(void **state)
{
    optim_config c = optim_config_default(OPTIM_SGD);
    c.momentum = 0.8f;
    c.weight_decay = 1e-2f;
    check_against_reference(&c);
}

static void test_sgd_nesterov(void **state)
{
    optim_config c = optim_config_default(OPTIM_SGD);
    c.momentum = 0.9f;
    c.nesterov = 1;
    check_against_reference(&c);
}

static void test_sgd_nesterov_weight_decay(void **state)
{
    optim_config c = optim_config_default(OPTIM_SGD);
    c.momentum = 0.7f;
    c.nesterov = 1;
    c.weight_decay = 5e-3f;
    check_against_reference(&c);
}

static void test_adam_defaults(void **state)
{
    optim_config c = optim_config_default(OPTIM_ADAM);
    check_against_reference(&c);
}

static void test_adam_weight_decay_and_betas(void **state)
{
    optim_config c = optim_config_default(OPTIM_ADAM);
    c.beta1 = 0.8f;
    c.beta2 = 0.99f;
    c.eps = 1e-6f;
    c.weight_decay = 1e-2f;
    check_against_reference(&c);
}

/* With bias correction the first Adam step moves every parameter by lr in the
 * direction opposite its gradient (|m_hat| / sqrt(v_hat) == 1). */
static void test_adam_first_step_is_lr_sign(void **state)
{
    core_error err = {{0}};
    optim_config c = optim_config_default(OPTIM_ADAM);
    c.eps = 1e-12f;
    optim o;
    assert_int_equal(optim_create(&o, &c, 8, &err), 0);
    float p[8] = {0}, g[8] = {1, -2, 3e-3f, -4e2f, 5, -6, 7e-2f, -8};
    optim_step(&o, p, g, 0.01f);
    for (int i = 0; i < 8; i++)
        assert_float_equal(p[i], g[i] > 0 ? -0.01f : 0.01f, 1e-7);
    optim_destroy(&o);
}

/* The sharded step: ranks that each update one slice (optim_step_slice),
 * with the slices then put together, give bit for bit what one whole step
 * gives, for every optimizer, over several steps. Slice bounds are odd, so
 * vector loops start and end mid-vector; an empty slice only advances the
 * step count. Elements outside a slice are left as they were. ranged: each
 * part holds the state of its slice only (optim_create_range, the state
 * sharded across ranks) and is asked to step [0, N), which it clips. */
static void check_slices(const optim_config *cfg, int ranged)
{
    core_error err = {{0}};
    const size_t cut[] = {0, 333, 334, 334, 701, N};
    enum { NS = 5 };
    optim whole, part[NS];
    assert_int_equal(optim_create(&whole, cfg, N, &err), 0);
    float *pw = malloc(N * sizeof *pw), *g = malloc(N * sizeof *g);
    float *pp[NS];
    assert_non_null(pw);
    assert_non_null(g);
    test_fill_uniform(pw, N, 3, -1.0f, 1.0f);
    for (int k = 0; k < NS; k++) {
        if (ranged)
            assert_int_equal(optim_create_range(&part[k], cfg, N, cut[k], cut[k + 1], &err), 0);
        else
            assert_int_equal(optim_create(&part[k], cfg, N, &err), 0);
        assert_int_equal(optim_state_whole(&part[k]), !ranged);
        pp[k] = malloc(N * sizeof(float));
        assert_non_null(pp[k]);
        memcpy(pp[k], pw, N * sizeof(float));
    }
    for (int s = 0; s < STEPS; s++) {
        test_fill_uniform(g, N, 200 + (uint64_t)s, -2.0f, 2.0f);
        optim_step(&whole, pw, g, lr_at(s));
        for (int k = 0; k < NS; k++) {
            float last = pp[k][N - 1];
            optim_step_slice(&part[k], pp[k], g, lr_at(s), ranged ? 0 : cut[k],
                             ranged ? N : cut[k + 1]);
            if (cut[k + 1] < N) /* outside the slice: untouched */
                assert_memory_equal(&pp[k][N - 1], &last, sizeof last);
            assert_int_equal(part[k].step, whole.step);
        }
        /* what the all-gather does: every slice from its owner */
        for (int k = 0; k < NS; k++)
            for (int j = 0; j < NS; j++)
                if (j != k)
                    memcpy(pp[k] + cut[j], pp[j] + cut[j], (cut[j + 1] - cut[j]) * sizeof(float));
        for (int k = 0; k < NS; k++)
            assert_memory_equal(pp[k], pw, N * sizeof(float));
    }
    for (int k = 0; k < NS; k++) {
        size_t a = cut[k], len = cut[k + 1] - cut[k], own = ranged ? 0 : a;
        assert_memory_equal(part[k].m + own, whole.m + a, len * sizeof(float));
        if (whole.v)
            assert_memory_equal(part[k].v + own, whole.v + a, len * sizeof(float));
        optim_destroy(&part[k]);
        free(pp[k]);
    }
    optim_destroy(&whole);
    free(g);
    free(pw);
}

static void test_sliced_step_equals_whole(void **state)
{
    for (int ranged = 0; ranged < 2; ranged++) {
        optim_config c = optim_config_default(OPTIM_SGD);
        c.momentum = 0.0f;
        check_slices(&c, ranged);
        c = optim_config_default(OPTIM_SGD);
        c.weight_decay = 0.01f;
        check_slices(&c, ranged);
        c.nesterov = 1;
        check_slices(&c, ranged);
        c = optim_config_default(OPTIM_ADAM);
        check_slices(&c, ranged);
        c.weight_decay = 0.05f;
        check_slices(&c, ranged);
        c.decoupled = 1;
        check_slices(&c, ranged);
    }
}

/* A state range must lie inside the parameters; its size is what the
 * memory plan counts. */
static void test_state_range(void **state)
{
    core_error err = {{0}};
    optim o;
    optim_config c = optim_config_default(OPTIM_ADAM);
    assert_int_equal(optim_create_range(&o, &c, 10, 4, 11, &err), -1);
    assert_non_null(strstr(err.msg, "[4, 11)"));
    assert_int_equal(optim_create_range(&o, &c, 10, 5, 4, &err), -1);
    assert_int_equal(optim_create_range(&o, &c, 10, 10, 10, &err), 0);
    assert_int_equal(optim_state_whole(&o), 0);
    optim_destroy(&o);
    assert_int_equal(optim_state_bytes(OPTIM_ADAM, 1000), 8000);
    assert_int_equal(optim_state_bytes(OPTIM_SGD, 1000), 4000);
}

static void test_defaults(void **state)
{
    optim_config s = optim_config_default(OPTIM_SGD);
    assert_int_equal(s.kind, OPTIM_SGD);
    assert_float_equal(s.lr, 0.01f, 0);
    assert_float_equal(s.momentum, 0.9f, 0);
    assert_int_equal(s.nesterov, 0);
    assert_float_equal(s.weight_decay, 0.0f, 0);
    optim_config a = optim_config_default(OPTIM_ADAM);
    assert_int_equal(a.kind, OPTIM_ADAM);
    assert_float_equal(a.lr, 1e-3f, 0);
    assert_float_equal(a.beta1, 0.9f, 0);
    assert_float_equal(a.beta2, 0.999f, 0);
    assert_float_equal(a.eps, 1e-8f, 0);
    assert_float_equal(a.weight_decay, 0.0f, 0);
}

static void test_kind_parse_and_state_count(void **state)
{
    core_error err = {{0}};
    optim_kind k;
    assert_int_equal(optim_kind_parse("sgd", &k, &err), 0);
    assert_int_equal(k, OPTIM_SGD);
    assert_int_equal(optim_kind_parse("adam", &k, &err), 0);
    assert_int_equal(k, OPTIM_ADAM);
    assert_int_equal(optim_kind_parse("rmsprop", &k, &err), -1);
    assert_non_null(strstr(err.msg, "rmsprop"));
    assert_string_equal(optim_kind_name(OPTIM_SGD), "sgd");
    assert_string_equal(optim_kind_name(OPTIM_ADAM), "adam");

    optim o;
    optim_config c = optim_config_default(OPTIM_SGD);
    assert_int_equal(optim_create(&o, &c, 100, &err), 0);
    assert_int_equal(optim_state_count(&o), 1);
    assert_non_null(o.m);
    assert_null(o.v);
    assert_int_equal(o.step, 0);
    optim_destroy(&o);
    c = optim_config_default(OPTIM_ADAM);
    assert_int_equal(optim_create(&o, &c, 100, &err), 0);
    assert_int_equal(optim_state_count(&o), 2);
    assert_non_null(o.v);
    for (int i = 0; i < 100; i++)
        assert_true(o.m[i] == 0.0f && o.v[i] == 0.0f);
    optim_destroy(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd_plain),
        cmocka_unit_test(test_sgd_plain_weight_decay),
        cmocka_unit_test(test_sgd_momentum),
        cmocka_unit_test(test_sgd_momentum_weight_decay),
        cmocka_unit_test(test_sgd_nesterov),
        cmocka_unit_test(test_sgd_nesterov_weight_decay),
        cmocka_unit_test(test_adam_defaults),
        cmocka_unit_test(test_adam_weight_decay_and_betas),
        cmocka_unit_test(test_adam_first_step_is_lr_sign),
        cmocka_unit_test(test_sliced_step_equals_whole),
        cmocka_unit_test(test_state_range),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_kind_parse_and_state_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
