/*
 * tests/mpi/test_comm_watchdog.c: a few bucket-scheduled steps.
 *
 * Under ctest (np = 1..4) it checks that watched steps complete normally.
 * tests/e2e/comm_watchdog.sh runs it again with the test-only stall hook
 * (RINGTRAIN_TEST_STALL_RANK / _STEP) and a short timeout, and expects the
 * job to end within the timeout plus a margin, non-zero, with a watchdog
 * line naming the stalled rank. Knobs (environment, test-only):
 * RT_TEST_COMM_TIMEOUT (seconds, default 60), RT_TEST_ALLREDUCE (ring, mpi or
 * hier; default ring), RT_TEST_OVERLAP (1 or 0; default 1), RT_TEST_STEPS
 * (default 5), RT_TEST_STALL_FLAGS=1 (the stall hook's rank sleeps before
 * the step's flag agreement instead of inside a bucket).
 */
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/mem.h"
#include "dist/dist.h"

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v && *v ? v : fallback;
}

static void test_watched_steps(void **state)
{
    core_error err;
    dist_world *w = NULL;
    if (dist_world_init(NULL, NULL, &w, &err) != 0)
        fail_msg("%s", err.msg);
    dist_allreduce_kind kind;
    assert_int_equal(dist_allreduce_kind_parse(env_or("RT_TEST_ALLREDUCE", "ring"), &kind, &err),
                     0);
    assert_int_equal(
        dist_world_set_comm_timeout(w, atof(env_or("RT_TEST_COMM_TIMEOUT", "60")), &err), 0);
    size_t n = 300000;
    float *g = core_alloc(n * sizeof(float), "grads", &err);
    assert_non_null(g);
    int stall_flags = atoi(env_or("RT_TEST_STALL_FLAGS", "0"));
    int stall_rank = atoi(env_or("RINGTRAIN_TEST_STALL_RANK", "-1"));
    long stall_step = atol(env_or("RINGTRAIN_TEST_STALL_STEP", "-1"));
    if (stall_flags) /* the buckets' own hook must not fire as well */
        unsetenv("RINGTRAIN_TEST_STALL_RANK");
    dist_bucket_config cfg = {kind, 64 << 10, 256 << 10, 0, atoi(env_or("RT_TEST_OVERLAP", "1")),
                              1,    NULL,     0};
    dist_buckets *b = NULL;
    if (dist_buckets_create(w, g, n, &cfg, &b, &err) != 0)
        fail_msg("%s", err.msg);
    long steps = atol(env_or("RT_TEST_STEPS", "5"));

    for (long step = 1; step <= steps; step++) {
        for (size_t i = 0; i < n; i++)
            g[i] = 1.0f;
        dist_buckets_begin(b, step);
        for (size_t done = 0; done < n; done += 50000)
            dist_buckets_ready(b, done);
        if (dist_buckets_wait(b, &err) != 0)
            fail_msg("step %ld: %s", step, err.msg);
        for (size_t i = 0; i < n; i++)
            if (g[i] != (float)dist_size(w))
                fail_msg("step %ld: g[%zu] = %g", step, i, (double)g[i]);
        if (stall_flags && dist_rank(w) == stall_rank && step == stall_step) {
            fprintf(stderr, "TEST HOOK: stalling rank %d before the flag agreement of step %ld\n",
                    stall_rank, step);
            fflush(stderr);
            sleep(3600);
        }
        int first;
        assert_int_equal(dist_any_nonfinite(w, step, 0, &first, &err), 0);
        assert_int_equal(first, -1);
    }
    dist_buckets_free(b);
    core_free(g);
    dist_world_finalize(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_watched_steps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
