/*
 * tests/mpi/test_stage.c: the bucket scheduler with host staging
 * (dist_buckets_set_stage), the path of --device cuda with ring, hier and
 * mpi, on a fake "device" that is host memory (the CUDA staging itself,
 * dist/cuda.c, runs in tests/gpu/run_ranks).
 *
 * The fake copies at once and then poisons the device slice it copied
 * (NaN), as if device memory could not be read by the host: only a sum of
 * the host copy, written back by `up`, gives the right answer. Checked for
 * every backend, overlapped and not: each bucket is copied down when backward
 * reports it (before dist_buckets_wait when overlapped), in order, summed
 * after its copy has landed (down_done is polled, answering "not yet" twice
 * first), copied up once, and the compute stream is joined once per step,
 * after every copy up; the result is the exact sum. A failing copy ends the
 * step with the fake's message on every rank, and the stage is destroyed
 * with the scheduler.
 */
#include "test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "dist/dist.h"

static dist_world *world;
static int rank, size;

static const dist_allreduce_kind kinds[] = {DIST_ALLREDUCE_RING, DIST_ALLREDUCE_MPI,
                                            DIST_ALLREDUCE_HIER};

typedef struct fake {
    float *host;
    int nb;
    int downs, joins, destroyed;
    int down_calls[64], up_calls[64], polls[64];
    int early;    /* copies down queued before dist_buckets_wait */
    int bad_down; /* order violations seen on the compute thread */
    int bad_comm; /* ... and on the comm thread */
    int fail_at;  /* down_done of this bucket fails (-1: never) */
    int in_wait;  /* the test is inside dist_buckets_wait */
} fake;

static int f_setup(void *ctx, int nb, size_t n, float **host, core_error *err)
{
    fake *f = ctx;
    if (nb > 64)
        return core_error_set(err, "fake: too many buckets (%d)", nb);
    f->nb = nb;
    f->host = calloc(n ? n : 1, sizeof(float));
    *host = f->host;
    return f->host ? 0 : core_error_set(err, "fake: out of memory");
}

static void f_down(void *ctx, int i, float *host, const float *dev, size_t n)
{
    fake *f = ctx;
    if (i != f->downs)
        f->bad_down++;
    memcpy(host, dev, n * sizeof(float));
    for (size_t k = 0; k < n; k++)
        ((float *)dev)[k] = NAN; /* the host cannot use device memory */
    f->down_calls[i]++;
    f->downs++;
    f->early += !f->in_wait;
}

static int f_down_done(void *ctx, int i, core_error *err)
{
    fake *f = ctx;
    if (f->down_calls[i] != 1)
        f->bad_comm++;
    if (i == f->fail_at)
        return core_error_set(err, "fake copy failed on bucket %d", i);
    return f->polls[i]++ < 2 ? 1 : 0;
}

static int f_up(void *ctx, int i, float *dev, const float *host, size_t n, core_error *err)
{
    fake *f = ctx;
    if (f->down_calls[i] != 1 || f->polls[i] < 3)
        f->bad_comm++;
    memcpy(dev, host, n * sizeof(float));
    f->up_calls[i]++;
    return 0;
}

static int f_join(void *ctx, core_error *err)
{
    fake *f = ctx;
    for (int i = 0; i < f->nb; i++)
        if (f->up_calls[i] != 1)
            f->bad_down++;
    f->joins++;
    return 0;
}

static void f_destroy(void *ctx)
{
    fake *f = ctx;
    free(f->host);
    f->host = NULL;
    f->destroyed = 1;
}

static dist_stage fake_stage(fake *f)
{
    return (dist_stage){f, f_setup, f_down, f_down_done, f_up, f_join, f_destroy};
}

static float value(size_t i, int r)
{
    return (float)((int)((i * 2654435761u + (size_t)r * 97) % 201) - 100);
}

static int group_setup(void **state)
{
    return test_world_init(&world, &rank, &size);
}

static int group_teardown(void **state)
{
    dist_world_finalize(world);
    return 0;
}

/* Every rank must pass: a failure on one rank is reported on all. */
static void expect_all(int ok, const char *what, dist_allreduce_kind kind, size_t n, int overlap)
{
    int32_t bad = !ok;
    core_error err;
    assert_int_equal(dist_max_i32(world, &bad, 1, &err), 0);
    if (bad)
        fail_msg("%s: %s, n=%zu, overlap %d (rank %d: %s)", what, dist_allreduce_kind_name(kind), n,
                 overlap, rank, ok ? "ok" : "failed here");
}

static void stage_case(dist_allreduce_kind kind, size_t n, size_t first, size_t rest, int overlap)
{
    core_error err;
    float *dev = core_alloc((n ? n : 1) * sizeof(float), "test", &err);
    float *want = core_alloc((n ? n : 1) * sizeof(float), "test", &err);
    assert_non_null(dev);
    assert_non_null(want);
    for (size_t i = 0; i < n; i++) {
        want[i] = 0.0f;
        for (int r = 0; r < size; r++)
            want[i] += value(i, r);
    }
    dist_bucket_config cfg = {kind, first, rest, 60.0, overlap, 0, NULL, 0};
    dist_buckets *b = NULL;
    assert_int_equal(dist_buckets_create(world, dev, n, &cfg, &b, &err), 0);
    fake f = {.fail_at = -1};
    if (dist_buckets_set_stage(b, fake_stage(&f), &err) != 0)
        fail_msg("set_stage: %s", err.msg);
    for (long step = 1; step <= 2; step++) {
        memset(f.down_calls, 0, sizeof f.down_calls);
        memset(f.up_calls, 0, sizeof f.up_calls);
        memset(f.polls, 0, sizeof f.polls);
        f.downs = f.early = 0;
        for (size_t i = 0; i < n; i++)
            dev[i] = value(i, rank);
        dist_buckets_begin(b, step);
        size_t b0, e0;
        dist_buckets_bounds(b, 0, &b0, &e0);
        dist_buckets_ready(b, e0); /* backward has queued bucket 0 */
        f.in_wait = 1;
        int rc = dist_buckets_wait(b, &err);
        f.in_wait = 0;
        expect_all(rc == 0, "wait", kind, n, overlap);
        expect_all(n == 0 || memcmp(dev, want, n * sizeof(float)) == 0, "staged sum", kind, n,
                   overlap);
        expect_all(f.downs == f.nb && f.joins == (int)step && f.bad_down == 0 && f.bad_comm == 0,
                   "bookkeeping", kind, n, overlap);
        /* overlapped: bucket 0 went down when reported, not in the wait */
        expect_all(f.early == (overlap ? 1 : 0), "copy down queued at ready", kind, n, overlap);
    }
    dist_buckets_free(b);
    assert_true(f.destroyed);
    core_free(want);
    core_free(dev);
}

static void test_staged_sum(void **state)
{
    for (int k = 0; k < 3; k++)
        for (int overlap = 0; overlap < 2; overlap++) {
            stage_case(kinds[k], 0, 16, 64, overlap);
            stage_case(kinds[k], 1, 16, 64, overlap);
            stage_case(kinds[k], 4099, 40, 400, overlap);       /* many buckets */
            stage_case(kinds[k], 100003, 4096, 65536, overlap); /* last one ragged */
        }
}

static void test_copy_failure(void **state)
{
    core_error err;
    size_t n = 1000;
    float *dev = core_alloc(n * sizeof(float), "test", &err);
    assert_non_null(dev);
    for (int overlap = 0; overlap < 2; overlap++) {
        dist_bucket_config cfg = {DIST_ALLREDUCE_RING, 1600, 1600, 60.0, overlap, 0, NULL, 0};
        dist_buckets *b = NULL;
        assert_int_equal(dist_buckets_create(world, dev, n, &cfg, &b, &err), 0);
        fake f = {.fail_at = 1};
        assert_int_equal(dist_buckets_set_stage(b, fake_stage(&f), &err), 0);
        for (size_t i = 0; i < n; i++)
            dev[i] = 1.0f;
        dist_buckets_begin(b, 1);
        int rc = dist_buckets_wait(b, &err);
        expect_all(rc == -1 && strstr(err.msg, "fake copy failed on bucket 1") &&
                       strstr(err.msg, "bucket 1 of 3"),
                   "copy failure reported", DIST_ALLREDUCE_RING, n, overlap);
        expect_all(f.joins == 0 && f.up_calls[0] == 1 && f.up_calls[1] == 0,
                   "no join after a failure", DIST_ALLREDUCE_RING, n, overlap);
        dist_buckets_free(b);
        assert_true(f.destroyed);
    }
    core_free(dev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_staged_sum),
        cmocka_unit_test(test_copy_failure),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
