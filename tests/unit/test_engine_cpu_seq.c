/*
 * tests/unit/test_engine_cpu_seq.c: the CPU engine's vectorized row ops
 * against their plain references: the softmax cross entropy row (lane sums,
 * the vectorized exp) against engine_math.h's engine_softmax_row (libm expf,
 * exp and log in double), and the token-wise bias add and fill (runs of
 * channels) against naive loops, at thread counts that split the rows
 * mid-row.
 */
#include "test_support.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/par.h"
#include "engine/cpu/engine_cpu_seq.h"
#include "engine/engine.h"
#include "engine/engine_math.h"

/* Largest |a - b| / |b| over n probabilities (all > 0). */
static double max_rel(const float *a, const float *b, int n)
{
    double worst = 0.0;
    for (int i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)a[i] - (double)b[i]) / (double)b[i]);
    return worst;
}

/* One row of `classes` logits: uniform in [-8, 8], the maximum `top` put at
 * index `at` and again at `tie` (when tie >= 0). */
static void row_case(int classes, int at, int tie, uint64_t seed)
{
    float *z = malloc((size_t)classes * sizeof *z);
    float *p = malloc((size_t)classes * sizeof *p);
    float *q = malloc((size_t)classes * sizeof *q);
    test_fill_uniform(z, (size_t)classes, seed, -8.0f, 8.0f);
    z[at] = 9.5f;
    if (tie >= 0)
        z[tie] = 9.5f;
    for (int y = -1; y < classes; y += classes / 3 + 1) {
        double ref = -1.0, got = -1.0;
        int ra = engine_softmax_row(p, z, classes, y, &ref);
        int ga = engine_cpu_softmax_row(q, z, classes, y, &got);
        assert_int_equal(ga, ra);
        assert_int_equal(ga, tie >= 0 && tie < at ? tie : at);
        assert_true(max_rel(q, p, classes) < 1e-6);
        if (y < 0)
            assert_true(got == -1.0); /* no class: the loss is left alone */
        else
            assert_true(fabs(got - ref) < 1e-6 * (1.0 + fabs(ref)));
    }
    free(z);
    free(p);
    free(q);
}

static void test_softmax_row(void **state)
{
    /* lengths below, at and past the lane count; the maximum and a tie in
     * the lanes, in the tail, and in the first element */
    row_case(2, 1, -1, 1);
    row_case(15, 14, 3, 2);
    row_case(16, 0, 15, 3);
    row_case(37, 35, -1, 4);
    row_case(37, 20, 4, 5);
    row_case(1000, 999, 998, 6);
    row_case(8192, 5000, 17, 7);
    row_case(8192, 8191, -1, 8);
}

static void test_softmax_row_extremes(void **state)
{
    enum { C = 40 };
    float z[C], p[C];
    double loss = 0.0;
    /* logits 100 apart: the small ones underflow to (about) nothing */
    for (int k = 0; k < C; k++)
        z[k] = k == 7 ? 50.0f : -50.0f;
    assert_int_equal(engine_cpu_softmax_row(p, z, C, 7, &loss), 7);
    assert_true(fabs(p[7] - 1.0f) < 1e-6f && p[0] < 1e-30f && loss >= 0.0 && loss < 1e-6);
    assert_int_equal(engine_cpu_softmax_row(p, z, C, 0, &loss), 7);
    assert_true(fabs(loss - 100.0) < 1e-4);
    /* a NaN logit makes the loss NaN (the caller counts no hit) */
    z[30] = NAN;
    engine_cpu_softmax_row(p, z, C, 0, &loss);
    assert_true(isnan(loss));
}

/* y += bias, and y = bias, per row of `channels` of a (rows, channels) output */
static void test_token_bias(void **state)
{
    const int rows = 97, ch = 1000; /* parts of 16 K floats end mid-row */
    size_t n = (size_t)rows * ch;
    float *y = malloc(n * sizeof *y), *ref = malloc(n * sizeof *ref), *b = malloc(ch * sizeof *b);
    test_fill_uniform(b, (size_t)ch, 2, -1.0f, 1.0f);
    for (int threads = 1; threads <= 3; threads++) {
        core_par_set_threads(threads);
        test_fill_uniform(y, n, 3, -1.0f, 1.0f);
        memcpy(ref, y, n * sizeof *y);
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < ch; c++)
                ref[(size_t)r * ch + c] += b[c];
        engine_cpu()->bias_act_forward(y, b, rows, ch, 1, ENGINE_ACT_NONE);
        assert_memory_equal(y, ref, n * sizeof *y);
        /* bias_fill: the bias alone in every row (a linear layer's start) */
        for (int r = 0; r < rows; r++)
            memcpy(ref + (size_t)r * ch, b, ch * sizeof *b);
        engine_cpu()->bias_fill(y, b, rows, ch, 1);
        assert_memory_equal(y, ref, n * sizeof *y);
    }
    core_par_set_threads(1);
    free(y);
    free(ref);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_softmax_row),
        cmocka_unit_test(test_softmax_row_extremes),
        cmocka_unit_test(test_token_bias),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
