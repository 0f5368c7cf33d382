/*
 * tests/unit/test_metrics.c: evaluation counters (top-1, top-5 with ties,
 * confusion matrix, per-class accuracy) against hand-counted examples, and
 * the metrics file: every line is a JSON object (checked by a small strict
 * parser here) with the documented fields.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_support.h"

#include "train/eval.h"
#include "train/metrics.h"

static void test_counters(void **state)
{
    core_error err = {{0}};
    train_eval e;
    assert_int_equal(train_eval_create(&e, 6, &err), 0);
    train_eval_reset(&e);
    const float p[3 * 6] = {
        0.5f,  0.1f,  0.1f,  0.1f,  0.1f,  0.1f,  /* label 0: top-1 */
        0.3f,  0.2f,  0.15f, 0.15f, 0.1f,  0.1f,  /* label 4: rank 4 (0.1 tie not above) -> top-5 */
        0.01f, 0.05f, 0.1f,  0.2f,  0.29f, 0.35f, /* label 0: rank 5 -> not top-5 */
    };
    const int32_t y[3] = {0, 4, 0};
    train_eval_add(&e, p, y, 3, 1.5);
    assert_float_equal(e.count, 3, 0);
    assert_float_equal(e.top1, 1, 0);
    assert_float_equal(e.top5, 2, 0);
    assert_float_equal(train_eval_loss(&e), 0.5, 1e-12);
    assert_float_equal(e.confusion[0 * 6 + 0], 1, 0);
    assert_float_equal(e.confusion[0 * 6 + 5], 1, 0);
    assert_float_equal(e.confusion[4 * 6 + 0], 1, 0);
    assert_float_equal(train_eval_class_accuracy(&e, 0), 0.5, 0);
    assert_float_equal(train_eval_class_accuracy(&e, 4), 0.0, 0);
    assert_true(isnan(train_eval_class_accuracy(&e, 1)));
    train_eval_free(&e);
}

/* A row of NaN outputs (a diverged model) is a miss for top-1 and top-5, in
 * no column of the confusion matrix, and counts against its class. */
static void test_nan_outputs(void **state)
{
    (void)state;
    core_error err = {{0}};
    train_eval e;
    assert_int_equal(train_eval_create(&e, 3, &err), 0);
    train_eval_reset(&e);
    const float p[2 * 3] = {NAN, NAN, NAN, 0.2f, 0.7f, 0.1f};
    const int32_t y[2] = {0, 1};
    assert_int_equal(train_eval_label_rank(p, 3, 0), 3);
    assert_int_equal(train_eval_label_rank(p, 3, 2), 3);
    train_eval_add(&e, p, y, 2, NAN);
    assert_float_equal(e.top1, 1, 0);
    assert_float_equal(e.top5, 1, 0);
    for (int c = 0; c < 3; c++)
        assert_float_equal(e.confusion[0 * 3 + c], 0, 0);
    assert_float_equal(e.confusion[1 * 3 + 1], 1, 0);
    assert_float_equal(train_eval_class_accuracy(&e, 0), 0.0, 0);
    assert_float_equal(train_eval_class_accuracy(&e, 1), 1.0, 0);
    train_eval_reset(&e);
    assert_true(isnan(train_eval_class_accuracy(&e, 0)));
    train_eval_free(&e);
}

/* ---- a strict JSON value checker (objects, arrays, strings, numbers, literals) ---- */

static const char *ws(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

static const char *value(const char *s);

static const char *string(const char *s)
{
    if (*s++ != '"')
        return NULL;
    while (*s && *s != '"') {
        if (*s == '\\')
            s++;
        if ((unsigned char)*s < 0x20)
            return NULL;
        s++;
    }
    return *s == '"' ? s + 1 : NULL;
}

static const char *number(const char *s)
{
    const char *start = s;
    if (*s == '-')
        s++;
    if (!isdigit((unsigned char)*s))
        return NULL;
    while (isdigit((unsigned char)*s))
        s++;
    if (*s == '.') {
        s++;
        if (!isdigit((unsigned char)*s))
            return NULL;
        while (isdigit((unsigned char)*s))
            s++;
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            s++;
        if (!isdigit((unsigned char)*s))
            return NULL;
        while (isdigit((unsigned char)*s))
            s++;
    }
    return s > start ? s : NULL;
}

static const char *seq(const char *s, char close, int keyed)
{
    s = ws(s + 1);
    if (*s == close)
        return s + 1;
    for (;;) {
        if (keyed) {
            s = string(ws(s));
            if (!s || *(s = ws(s)) != ':')
                return NULL;
            s++;
        }
        s = value(ws(s));
        if (!s)
            return NULL;
        s = ws(s);
        if (*s == close)
            return s + 1;
        if (*s++ != ',')
            return NULL;
    }
}

static const char *value(const char *s)
{
    s = ws(s);
    if (*s == '{')
        return seq(s, '}', 1);
    if (*s == '[')
        return seq(s, ']', 0);
    if (*s == '"')
        return string(s);
    if (!strncmp(s, "null", 4) || !strncmp(s, "true", 4))
        return s + 4;
    if (!strncmp(s, "false", 5))
        return s + 5;
    return number(s);
}

static int is_json_object(const char *line)
{
    if (*ws(line) != '{')
        return 0;
    const char *end = value(line);
    return end && (*ws(end) == '\n' || *ws(end) == '\0');
}

/* A resumed run rewinds the file to its checkpoint's step: later records
 * (train and eval) go, earlier ones and the step itself stay. */
static void test_rewind(void **state)
{
    (void)state;
    core_error err = {{0}};
    char path[600];
    snprintf(path, sizeof path, "%s/rewind.jsonl", test_tmpdir("metrics"));
    train_metrics mt;
    assert_int_equal(train_metrics_open(&mt, path, 0, &err), 0);
    train_step_record r = {4, 0.25, 1e-3, 2.0, 0.5, 0.75, 100.0, 1.0};
    for (long s = 4; s <= 16; s += 4) {
        r.step = s;
        train_metrics_step(&mt, &r);
    }
    train_eval e;
    assert_int_equal(train_eval_create(&e, 3, &err), 0);
    train_eval_reset(&e);
    train_metrics_eval(&mt, "test", 16, 1.0, &e, NULL);
    train_metrics_close(&mt);
    long dropped = -1;
    assert_int_equal(train_metrics_rewind(path, 8, &dropped, &err), 0);
    assert_int_equal(dropped, 3);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f))
        assert_non_null(strstr(line, ++n == 1 ? "\"step\":4," : "\"step\":8,"));
    fclose(f);
    assert_int_equal(n, 2);
    assert_int_equal(train_metrics_rewind(path, 8, &dropped, &err), 0);
    assert_int_equal(dropped, 0);
    char missing[700];
    snprintf(missing, sizeof missing, "%s.none", path);
    assert_int_equal(train_metrics_rewind(missing, 8, &dropped, &err), 0);
    train_eval_free(&e);
}

static void test_jsonl_file(void **state)
{
    core_error err = {{0}};
    char path[600];
    snprintf(path, sizeof path, "%s/sub/metrics.jsonl", test_tmpdir("metrics"));
    train_metrics mt;
    assert_int_equal(train_metrics_open(&mt, path, 0, &err), 0);
    train_step_record r = {10, 0.5, 1e-3, 2.25, 0.25, 0.75, 1234.5, NAN};
    train_metrics_step(&mt, &r);
    train_eval e;
    assert_int_equal(train_eval_create(&e, 3, &err), 0);
    train_eval_reset(&e);
    const float p[2 * 3] = {0.7f, 0.2f, 0.1f, 0.2f, 0.3f, 0.5f};
    const int32_t y[2] = {0, 1};
    train_eval_add(&e, p, y, 2, 1.0);
    train_metrics_eval(&mt, "val", 10, 0.5, &e, "\"restored_best\":true");
    train_metrics_close(&mt);
    /* append keeps the old lines */
    assert_int_equal(train_metrics_open(&mt, path, 1, &err), 0);
    train_metrics_step(&mt, &r);
    train_metrics_close(&mt);

    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        n++;
        if (!is_json_object(line))
            fail_msg("line %d is not a JSON object: %s", n, line);
        const char *train_keys[] = {"\"type\":\"train\"", "\"time\":",     "\"step\":10",
                                    "\"epoch\":0.5",      "\"lr\":",       "\"loss\":2.25",
                                    "\"top1\":0.25",      "\"top5\":0.75", "\"images_per_s\":",
                                    "\"grad_norm\":null"};
        const char *eval_keys[] = {"\"type\":\"eval\"",
                                   "\"split\":\"val\"",
                                   "\"count\":2",
                                   "\"loss\":0.5",
                                   "\"top1\":0.5",
                                   "\"top5\":1",
                                   "\"per_class\":[1,0,null]",
                                   "\"confusion\":[[1,0,0],[0,0,1],[0,0,0]]",
                                   "\"restored_best\":true"};
        int is_eval = strstr(line, "\"type\":\"eval\"") != NULL;
        const char **keys = is_eval ? eval_keys : train_keys;
        int nk = is_eval ? 9 : 10;
        for (int k = 0; k < nk; k++)
            if (!strstr(line, keys[k]))
                fail_msg("line %d lacks %s: %s", n, keys[k], line);
    }
    fclose(f);
    assert_int_equal(n, 3);
    assert_false(is_json_object("{\"a\":1,}"));
    assert_false(is_json_object("{\"a\":nan}"));
    train_eval_free(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters),
        cmocka_unit_test(test_nan_outputs),
        cmocka_unit_test(test_rewind),
        cmocka_unit_test(test_jsonl_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
