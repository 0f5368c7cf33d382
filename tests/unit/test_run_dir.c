/*
 * tests/unit/test_run_dir.c: the checkpoint directory's lock. flock(2)
 * locks belong to an open file description, so two opens in one process
 * contend like two jobs: the second is refused with the holder named, and
 * takes the lock once the first lets go. Taking it clears stale temporary
 * files; --overwrite's clear removes checkpoints and nothing else.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_support.h"

#include "train/run_dir.h"

static void touch(const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("x\n", f);
    fclose(f);
}

static int exists(const char *dir, const char *name)
{
    char path[1024];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

static void test_one_holder(void **state)
{
    (void)state;
    core_error err = {{0}};
    char dir[700];
    snprintf(dir, sizeof dir, "%s/ck/sub", test_tmpdir("run_dir"));
    train_run_dir a, b;
    assert_int_equal(train_run_dir_lock(&a, dir, &err), 0); /* creates the directories */
    assert_true(a.fd >= 0);
    assert_int_not_equal(train_run_dir_lock(&b, dir, &err), 0);
    assert_int_equal(b.fd, -1);
    char want[1024];
    snprintf(want, sizeof want, "%s: checkpoint directory in use by another job (pid %ld on host ",
             dir, (long)getpid());
    if (strncmp(err.msg, want, strlen(want)) != 0)
        fail_msg("message: %s", err.msg);
    assert_non_null(strstr(err.msg, "holds ringtrain.lock); wait for it to end or use another "
                                    "--checkpoint-dir"));
    train_run_dir_unlock(&a);
    assert_int_equal(a.fd, -1);
    assert_int_equal(train_run_dir_lock(&b, dir, &err), 0);
    train_run_dir_unlock(&b);
}

static void test_clean_and_clear(void **state)
{
    (void)state;
    core_error err = {{0}};
    char dir[700], best[760];
    snprintf(dir, sizeof dir, "%s/clear", test_tmpdir("run_dir"));
    snprintf(best, sizeof best, "%s/best", dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(mkdir(best, 0755), 0);
    const char *files[] = {"ckpt-000000004.h5",
                           "ckpt-000000008.h5.tmp.77",
                           "ckpt-000000008.h5.tmp",
                           "latest",
                           "latest.tmp.77",
                           "metrics.jsonl",
                           "notes.txt"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        touch(dir, files[i]);
    touch(best, "ckpt-000000002.h5");
    train_run_dir rd;
    assert_int_equal(train_run_dir_lock(&rd, dir, &err), 0);
    /* the lock clears what killed writers left, nothing else */
    assert_false(exists(dir, "ckpt-000000008.h5.tmp.77"));
    assert_false(exists(dir, "ckpt-000000008.h5.tmp"));
    assert_false(exists(dir, "latest.tmp.77"));
    assert_true(exists(dir, "ckpt-000000004.h5"));
    assert_true(exists(dir, "latest"));
    assert_int_equal(train_run_dir_clear(dir, &err), 0);
    assert_false(exists(dir, "ckpt-000000004.h5"));
    assert_false(exists(dir, "latest"));
    assert_false(exists(best, "ckpt-000000002.h5"));
    assert_true(exists(dir, "metrics.jsonl"));
    assert_true(exists(dir, "notes.txt"));
    assert_true(exists(dir, TRAIN_RUN_DIR_LOCK));
    train_run_dir_unlock(&rd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_holder),
        cmocka_unit_test(test_clean_and_clear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
