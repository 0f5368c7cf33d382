/*
 * tests/unit/test_early_stop.c: early stopping on scripted metric sequences
 * stops at the right evaluation, honours min-delta and the direction of the
 * metric, and restores the parameters of the best evaluation.
 */
#include <math.h>
#include <string.h>

#include "test_support.h"

#include "train/early_stop.h"

/* Feeds values[i] with params = {i, -i}; returns the 1-based evaluation at
 * which stop was set (0 if never). */
static int run(train_early_stop *es, const double *values, int n)
{
    for (int i = 0; i < n; i++) {
        float p[2] = {(float)i, (float)-i};
        train_early_stop_observe(es, values[i], 100L * (i + 1), i + 1, p);
        if (es->stop)
            return i + 1;
    }
    return 0;
}

static void test_loss_patience_two(void **state)
{
    core_error err = {{0}};
    train_early_stop es;
    assert_int_equal(train_early_stop_init(&es, "val_loss", 2, 0.0, 2, 1, &err), 0);
    /* best at evaluation 3 (0.5); 4 and 5 do not improve -> stop at 5 */
    const double v[] = {0.9, 0.7, 0.5, 0.55, 0.51, 0.3};
    assert_int_equal(run(&es, v, 6), 5);
    assert_float_equal(es.best, 0.5, 0.0);
    assert_int_equal(es.best_epoch, 3);
    assert_int_equal(es.best_step, 300);
    float p[2] = {99, 99};
    assert_int_equal(train_early_stop_restore(&es, p), 0);
    assert_float_equal(p[0], 2.0f, 0.0); /* the params of evaluation 3 */
    assert_float_equal(p[1], -2.0f, 0.0);
    train_early_stop_free(&es);
}

static void test_min_delta_and_accuracy(void **state)
{
    core_error err = {{0}};
    train_early_stop es;
    assert_int_equal(train_early_stop_init(&es, "val_top1", 1, 0.01, 2, 1, &err), 0);
    /* 0.805 is not > 0.80 + 0.01: a bad evaluation -> stop at 3 with best 0.80 */
    const double v[] = {0.70, 0.80, 0.805, 0.9};
    assert_int_equal(run(&es, v, 4), 3);
    assert_float_equal(es.best, 0.80, 0.0);
    assert_int_equal(es.best_epoch, 2);
    train_early_stop_free(&es);
}

static void test_nan_and_no_patience(void **state)
{
    core_error err = {{0}};
    train_early_stop es;
    assert_int_equal(train_early_stop_init(&es, "val_loss", 0, 0.0, 2, 0, &err), 0);
    const double v[] = {NAN, 2.0, 3.0, 4.0, 5.0, 6.0};
    assert_int_equal(run(&es, v, 6), 0); /* patience 0 never stops */
    assert_float_equal(es.best, 2.0, 0.0);
    float p[2];
    assert_int_equal(train_early_stop_restore(&es, p), -1); /* no copy kept */
    train_early_stop_free(&es);
    assert_int_equal(train_early_stop_init(&es, "val_acc", 1, 0.0, 2, 0, &err), -1);
    assert_non_null(strstr(err.msg, "val_loss, val_top1 or val_top5"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_patience_two),
        cmocka_unit_test(test_min_delta_and_accuracy),
        cmocka_unit_test(test_nan_and_no_patience),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
