/*
 * tests/mpi/test_comm.c: the communication engine under mpiexec (np = 1..5,
 * and np = 5 with RINGTRAIN_TEST_NODE_SIZE=2 so that hier runs its leaders'
 * ring across three "nodes").
 *
 * Every backend against a reference sum (integer-valued floats, so every
 * summation order is exact) for lengths 0, 1, odd, prime, not divisible by
 * the world or the segment; the bucket scheduler with buckets smaller than
 * one tensor and larger than the whole buffer, overlapped and not (bitwise
 * identical); bitwise agreement of every rank with random floats; the
 * consistency and length checks; the flags exchange and the non-finite
 * policy with a NaN injected on one rank; node-shared buffers (hier without
 * staging) the same way; the sharded optimizer step's slices and gathers,
 * within a node and across every rank (ZeRO-1: slices, the parameter
 * all-gather, the state's gather to rank 0 and scatter from it, range by
 * range).
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
#define NKINDS 3

static int group_setup(void **state)
{
    return test_world_init(&world, &rank, &size);
}

static int group_teardown(void **state)
{
    dist_world_finalize(world);
    return 0;
}

static float *alloc_floats(size_t n)
{
    core_error err;
    float *p = core_alloc((n ? n : 1) * sizeof(float), "test", &err);
    assert_non_null(p);
    return p;
}

static float value(size_t i, int r)
{
    return (float)((int)((i * 2654435761u + (size_t)r * 97) % 201) - 100);
}

static void fill(float *x, size_t n, int r)
{
    for (size_t i = 0; i < n; i++)
        x[i] = value(i, r);
}

/* The reference: the sum over ranks, computed locally. */
static void reference(float *want, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float s = 0.0f;
        for (int r = 0; r < size; r++)
            s += value(i, r);
        want[i] = s;
    }
}

/* Every rank agrees before failing, so no rank is left in a collective. */
static void expect_all(int ok, const char *fmt, const char *a, size_t n)
{
    int first = dist_first_failed(world, !ok);
    if (first >= 0)
        fail_msg("%s (n=%zu): wrong on rank %d%s", a, n, first, fmt);
}

static size_t lengths[] = {0, 1, 2, 3, 5, 7, 13, 31, 97, 1009, 4099, 65537, 262147, 1000003};
#define NLENGTHS (sizeof lengths / sizeof lengths[0])

static void test_backends_equal_reference(void **state)
{
    core_error err;
    size_t segs[] = {dist_world_ring_segment(world), 20}; /* 5 floats: ragged segments */
    size_t old = segs[0];
    assert_int_equal(dist_world_reserve(world, 1000003, &err), 0);
    float *a = alloc_floats(1000003), *want = alloc_floats(1000003);
    for (int s = 0; s < 2; s++) {
        assert_int_equal(dist_world_set_ring_segment(world, segs[s], &err), 0);
        for (int k = 0; k < NKINDS; k++)
            for (size_t li = 0; li < NLENGTHS; li++) {
                size_t n = lengths[li];
                if (s == 1 && n > 65537)
                    continue; /* tiny segments: keep the run short */
                fill(a, n, rank);
                reference(want, n);
                if (dist_allreduce_sum(world, kinds[k], a, n, &err) != 0)
                    fail_msg("%s n=%zu: %s", dist_allreduce_kind_name(kinds[k]), n, err.msg);
                expect_all(n == 0 || memcmp(a, want, n * sizeof(float)) == 0, "",
                           dist_allreduce_kind_name(kinds[k]), n);
            }
    }
    assert_int_equal(dist_world_set_ring_segment(world, old, &err), 0);
    core_free(want);
    core_free(a);
}

static void test_backends_bitwise_identical_on_every_rank(void **state)
{
    core_error err;
    size_t n = 300007;
    assert_int_equal(dist_world_reserve(world, n, &err), 0);
    float *a = alloc_floats(n), *ref = alloc_floats(n);
    for (int k = 0; k < NKINDS; k++) {
        if (kinds[k] == DIST_ALLREDUCE_MPI)
            continue; /* MPI does not promise it */
        test_fill_uniform(a, n, 99 + (uint64_t)rank, -2.0f, 2.0f);
        assert_int_equal(dist_allreduce_sum(world, kinds[k], a, n, &err), 0);
        memcpy(ref, a, n * sizeof(float));
        assert_int_equal(dist_broadcast(world, ref, n * sizeof(float), 0, &err), 0);
        expect_all(memcmp(a, ref, n * sizeof(float)) == 0, " (differs from rank 0)",
                   dist_allreduce_kind_name(kinds[k]), n);
    }
    core_free(ref);
    core_free(a);
}

/* Backward as nn does it: the buffer filled front to back, tensor by
 * tensor, reporting progress after each. Returns the result in grads. */
static void run_step(dist_buckets *b, float *grads, size_t n, const size_t *tensor_ends, int nt,
                     long step, int r)
{
    core_error err;
    memset(grads, 0, n * sizeof(float));
    dist_buckets_begin(b, step);
    size_t at = 0;
    for (int t = 0; t < nt; t++) {
        for (; at < tensor_ends[t]; at++)
            grads[at] = value(at, r);
        dist_buckets_on_ready(b, at);
    }
    if (dist_buckets_wait(b, &err) != 0)
        fail_msg("step %ld: %s", step, err.msg);
}

/* g in a node-shared buffer when shared (hier's zero-copy path); g_sync stays
 * private, so for hier the bitwise check below also compares the zero-copy
 * path with the staging one. */
static void bucket_case_in(dist_allreduce_kind kind, size_t n, size_t first, size_t rest,
                           int shared)
{
    core_error err;
    /* Tensors of uneven sizes: 7, 1, 1000, then the rest. */
    size_t ends[4] = {7, 8, 1008, n};
    int nt = 0;
    for (int t = 0; t < 4; t++)
        if (ends[t] < n || t == 3)
            ends[nt++] = ends[t] < n ? ends[t] : n;
    float *g = shared ? dist_shared_alloc(world, n, &err) : alloc_floats(n);
    assert_non_null(g);
    float *g_sync = alloc_floats(n), *want = alloc_floats(n);
    reference(want, n);
    for (int overlap = 0; overlap < 2; overlap++) {
        dist_bucket_config cfg = {kind, first, rest, 60.0, overlap, 1, NULL, 0};
        dist_buckets *b = NULL;
        if (dist_buckets_create(world, g, n, &cfg, &b, &err) != 0)
            fail_msg("create: %s", err.msg);
        for (long step = 1; step <= 3; step++) {
            run_step(b, g, n, ends, nt, step, rank);
            expect_all(n == 0 || memcmp(g, want, n * sizeof(float)) == 0, " (bucket sum)",
                       dist_allreduce_kind_name(kind), n);
            assert_false(dist_buckets_nonfinite(b));
        }
        dist_buckets_free(b);
        if (!overlap)
            memcpy(g_sync, g, n * sizeof(float));
    }
    /* Random floats: overlapped and synchronous runs give the same bits. */
    float *res[2] = {g_sync, g};
    for (int overlap = 0; overlap < 2; overlap++) {
        dist_bucket_config cfg = {kind, first, rest, 60.0, overlap, 0, NULL, 0};
        dist_buckets *b = NULL;
        float *x = res[overlap];
        assert_int_equal(dist_buckets_create(world, x, n, &cfg, &b, &err), 0);
        test_fill_uniform(x, n, 5 + (uint64_t)rank, -1.0f, 1.0f);
        dist_buckets_begin(b, 1);
        dist_buckets_ready(b, n / 2); /* wait hands over the rest itself */
        assert_int_equal(dist_buckets_wait(b, &err), 0);
        dist_buckets_free(b);
    }
    expect_all(n == 0 || memcmp(g, g_sync, n * sizeof(float)) == 0, " (overlap != sync)",
               dist_allreduce_kind_name(kind), n);
    core_free(want);
    core_free(g_sync);
    if (shared)
        dist_shared_free(world, g);
    else
        core_free(g);
}

static void bucket_case(dist_allreduce_kind kind, size_t n, size_t first, size_t rest)
{
    bucket_case_in(kind, n, first, rest, 0);
}

static void test_buckets(void **state)
{
    for (int k = 0; k < NKINDS; k++) {
        bucket_case(kinds[k], 0, 16, 64);
        bucket_case(kinds[k], 1, 16, 64);
        bucket_case(kinds[k], 4099, 12, 20);           /* buckets smaller than one tensor */
        bucket_case(kinds[k], 4099, 1 << 20, 1 << 22); /* one bucket larger than the buffer */
        bucket_case(kinds[k], 100003, 4096, 65536);    /* several, last one ragged */
    }
}

/* Buffers from dist_shared_alloc: every backend (hier without staging) on
 * slices at two offsets against the reference; hier's zero-copy and staging
 * paths give the same bits, on every rank; buckets over a shared buffer;
 * different sizes across ranks fail on every rank. */
static void test_shared_buffers(void **state)
{
    core_error err;
    size_t nmax = 1000003, offs[] = {0, 17};
    assert_int_equal(dist_world_reserve(world, nmax, &err), 0);
    float *s = dist_shared_alloc(world, nmax + 17, &err);
    assert_non_null(s);
    assert_true(dist_shared_contains(world, s + 17, nmax));
    assert_false(dist_shared_contains(world, s + 18, nmax));
    float *want = alloc_floats(nmax), *priv = alloc_floats(nmax);
    for (int k = 0; k < NKINDS; k++)
        for (int o = 0; o < 2; o++)
            for (size_t li = 0; li < NLENGTHS; li++) {
                size_t n = lengths[li];
                float *a = s + offs[o];
                fill(a, n, rank);
                reference(want, n);
                if (dist_allreduce_sum(world, kinds[k], a, n, &err) != 0)
                    fail_msg("%s (shared, offset %zu) n=%zu: %s",
                             dist_allreduce_kind_name(kinds[k]), offs[o], n, err.msg);
                expect_all(n == 0 || memcmp(a, want, n * sizeof(float)) == 0, " (shared buffer)",
                           dist_allreduce_kind_name(kinds[k]), n);
            }
    /* Random floats: zero-copy == staging, bit for bit, on every rank. */
    size_t n = 300007;
    test_fill_uniform(s + 17, n, 7 + (uint64_t)rank, -2.0f, 2.0f);
    memcpy(priv, s + 17, n * sizeof(float));
    assert_int_equal(dist_allreduce_sum(world, DIST_ALLREDUCE_HIER, s + 17, n, &err), 0);
    assert_int_equal(dist_allreduce_sum(world, DIST_ALLREDUCE_HIER, priv, n, &err), 0);
    expect_all(memcmp(priv, s + 17, n * sizeof(float)) == 0, " (zero-copy != staging)", "hier", n);
    memcpy(want, priv, n * sizeof(float));
    assert_int_equal(dist_broadcast(world, want, n * sizeof(float), 0, &err), 0);
    expect_all(memcmp(priv, want, n * sizeof(float)) == 0, " (differs from rank 0)", "hier", n);
    core_free(priv);
    core_free(want);
    dist_shared_free(world, s);

    bucket_case_in(DIST_ALLREDUCE_HIER, 100003, 4096, 65536, 1);
    bucket_case_in(DIST_ALLREDUCE_HIER, 4099, 12, 20, 1);
    bucket_case_in(DIST_ALLREDUCE_RING, 4099, 12, 20, 1);

    if (size > 1) {
        float *bad = dist_shared_alloc(world, rank == size - 1 ? 10 : 11, &err);
        assert_null(bad);
        assert_non_null(strstr(err.msg, "differ"));
    }
}

/* Buckets of 10 then 25 floats over 100, ending on the layer ends `layers`
 * (NULL: plain slices): the bucket ends must be `want`. */
static void check_layout(const size_t *layers, int nlayers, const size_t *want, int nwant)
{
    core_error err;
    float g[100];
    dist_bucket_config cfg = {DIST_ALLREDUCE_RING, 40, 100, 0, 0, 0, layers, nlayers};
    dist_buckets *b = NULL;
    assert_int_equal(dist_buckets_create(world, g, 100, &cfg, &b, &err), 0);
    assert_int_equal(dist_buckets_count(b), nwant);
    for (int i = 0; i < nwant; i++) {
        size_t lo, hi;
        dist_buckets_bounds(b, i, &lo, &hi);
        assert_true(lo == (i ? want[i - 1] : 0) && hi == want[i]);
    }
    dist_buckets_free(b);
}

static void test_bucket_layout(void **state)
{
    size_t plain[] = {10, 35, 60, 85, 100}; /* 10 floats, then 25, 25, 25, 15 */
    check_layout(NULL, 0, plain, 5);

    /* Layer ends at 3, 16, 30, 90 and 100: 0 -> 16 (none in (5, 10], 16
     * within 20), 16 -> 30 (in (28.5, 41]), 30 -> 55 (none in (42.5, 55], 90
     * beyond 80), 55 -> 90 (35 <= 50), 90 -> 100. */
    size_t ends[] = {3, 16, 30, 90, 100}, want[] = {16, 30, 55, 90, 100};
    check_layout(ends, 5, want, 5);

    /* Layers of 13: every bucket is one layer until the rest fits in one
     * bucket, so there are more buckets (7) than plain slices (5). */
    size_t every13[] = {13, 26, 39, 52, 65, 78, 91, 100}, ends13[] = {13, 26, 39, 52, 65, 78, 100};
    check_layout(every13, 8, ends13, 7);

    /* Layer ends at 30, 56, 68, 100: 0 -> 10 (nothing within 20), 10 -> 30,
     * 30 -> 56 (none in (42.5, 55], 56 within 80), then 56 -> 100 (none in
     * (68.5, 81], 100 within 106), the last bucket: cut at its last layer
     * boundary, 68, because both parts (12 and 32) are at least the first
     * bucket's 10, so that 56..68 goes out while backward computes the rest.
     * (In every13 the tail 78..100 stays whole: 100 - 91 = 9 < 10.) */
    size_t tail[] = {30, 56, 68, 100}, tail_want[] = {10, 30, 56, 68, 100};
    check_layout(tail, 4, tail_want, 5);
}

static void test_check_same(void **state)
{
    core_error err;
    const char *spec = "input 1 28 28\ndense 10\nloss softmax_cross_entropy\n";
    assert_int_equal(dist_check_same(world, "model spec", spec, strlen(spec), &err), 0);
    assert_int_equal(dist_check_same_i64(world, "global batch", 64, &err), 0);
    if (size < 2)
        return;
    const char *other = rank == size - 1 ? "input 1 28 28\ndense 12\n" : spec;
    assert_int_equal(dist_check_same(world, "model spec", other, strlen(other), &err), -1);
    char want[128];
    snprintf(want, sizeof want, "rank %d differs from rank 0 in model spec", size - 1);
    if (!strstr(err.msg, want))
        fail_msg("message '%s' lacks '%s'", err.msg, want);
    assert_int_equal(dist_check_same_i64(world, "global batch", rank == 1 ? 32 : 64, &err), -1);
    assert_non_null(strstr(err.msg, "rank 1 differs from rank 0 in global batch"));
    assert_non_null(strstr(err.msg, "rank 1 has 32, rank 0 has 64"));
    /* A different parameter count fails bucket creation on every rank. */
    float g[64];
    dist_bucket_config cfg = {DIST_ALLREDUCE_RING, 16, 64, 0, 1, 0, NULL, 0};
    dist_buckets *b = NULL;
    assert_int_equal(dist_buckets_create(world, g, rank == 0 ? 64 : 63, &cfg, &b, &err), -1);
    assert_null(b);
    assert_non_null(strstr(err.msg, "parameter count"));
}

static void test_length_mismatch(void **state)
{
    core_error err;
    if (size < 2)
        return;
    float buf[16] = {0};
    for (int k = 0; k < NKINDS; k++) {
        assert_int_equal(dist_allreduce_sum(world, kinds[k], buf, rank == size - 1 ? 15 : 16, &err),
                         -1);
        char want[96];
        snprintf(want, sizeof want, "rank %d passes 15 floats, rank 0 passes 16", size - 1);
        if (!strstr(err.msg, want))
            fail_msg("'%s' lacks '%s'", err.msg, want);
    }
}

static void test_flags(void **state)
{
    core_error err;
    int local[3] = {rank == size - 1, 0, rank >= size / 2};
    int first[3];
    assert_int_equal(dist_agree_flags(world, 7, local, first, 3, &err), 0);
    assert_int_equal(first[0], size - 1);
    assert_int_equal(first[1], -1);
    assert_int_equal(first[2], size / 2);
    assert_int_equal(dist_agree_flags(world, 7, local, first, DIST_MAX_FLAGS + 1, &err), -1);
}

/* One training step's tail as the trainer runs it: buckets, flags, policy,
 * optimizer only when the step is taken. bad[r] is what rank r poisons its
 * gradient with at position at (0: nothing). Returns the decision; *first is
 * the rank the agreement names. */
static int nonfinite_step(dist_buckets *b, float *g, size_t n, float *params, long step,
                          const float *bad, size_t at, dist_nonfinite_policy policy, int *first,
                          core_error *err)
{
    fill(g, n, rank);
    if (bad[rank] != 0.0f)
        g[at] = bad[rank];
    dist_buckets_begin(b, step);
    dist_buckets_ready(b, n);
    assert_int_equal(dist_buckets_wait(b, err), 0);
    assert_int_equal(dist_buckets_nonfinite(b), bad[rank] != 0.0f);
    assert_int_equal(dist_any_nonfinite(world, step, dist_buckets_nonfinite(b), first, err), 0);
    int decision = dist_nonfinite_decide(policy, step, *first, err);
    if (decision == 0)
        for (size_t i = 0; i < n; i++)
            params[i] -= 0.01f * g[i];
    return decision;
}

/* The policy over private buffers (ring: a scan before the sum) and shared
 * ones (hier: the check made during the sum, by whichever rank claims the
 * block). n spans several of hier's claimed blocks; the poison lands in
 * the middle, in the first and in the last element; +Inf and -Inf on two
 * ranks sum to NaN and must still name both. */
static void test_nonfinite_policy(void **state)
{
    core_error err;
    size_t n = 70001;
    float *p = alloc_floats(n), *p_before = alloc_floats(n), *priv = alloc_floats(n);
    float *shared = dist_shared_alloc(world, n, &err);
    assert_non_null(shared);
    enum { MAX_RANKS = 256 }; /* one value per rank */
    assert_true(size <= MAX_RANKS);
    float none[MAX_RANKS] = {0}, nan_last[MAX_RANKS] = {0}, two_inf[MAX_RANKS] = {0};
    nan_last[size - 1] = NAN;
    two_inf[0] = INFINITY;
    two_inf[size - 1] = -INFINITY;
    const size_t spots[3] = {n / 2 + 3, 0, n - 1};
    for (int path = 0; path < 2; path++) {
        float *g = path ? shared : priv;
        dist_allreduce_kind kind = path ? DIST_ALLREDUCE_HIER : DIST_ALLREDUCE_RING;
        for (int overlap = 0; overlap < 2; overlap++) {
            dist_bucket_config cfg = {kind, 4096, 262144, 60.0, overlap, 1, NULL, 0};
            dist_buckets *b = NULL;
            assert_int_equal(dist_buckets_create(world, g, n, &cfg, &b, &err), 0);
            memset(p, 0, n * sizeof(float));
            int first;
            long step = 1;
            assert_int_equal(
                nonfinite_step(b, g, n, p, step++, none, 0, DIST_NONFINITE_SKIP, &first, &err), 0);
            assert_int_equal(first, -1);
            for (int k = 0; k < 3; k++) {
                /* skip: every rank skips, parameters untouched. */
                memcpy(p_before, p, n * sizeof(float));
                const float *bad = k == 1 ? two_inf : nan_last;
                assert_int_equal(nonfinite_step(b, g, n, p, step++, bad, spots[k],
                                                DIST_NONFINITE_SKIP, &first, &err),
                                 1);
                assert_int_equal(first, k == 1 ? 0 : size - 1);
                assert_memory_equal(p, p_before, n * sizeof(float));
                assert_int_equal(
                    nonfinite_step(b, g, n, p, step++, none, 0, DIST_NONFINITE_SKIP, &first, &err),
                    0);
                assert_false(dist_has_nonfinite(p, n));
            }
            /* stop: every rank stops with the rank and step in the message. */
            memcpy(p_before, p, n * sizeof(float));
            assert_int_equal(nonfinite_step(b, g, n, p, 9, nan_last, spots[0], DIST_NONFINITE_STOP,
                                            &first, &err),
                             -1);
            char want[96];
            snprintf(want, sizeof want, "on rank %d at step 9", size - 1);
            if (!strstr(err.msg, want))
                fail_msg("'%s' lacks '%s'", err.msg, want);
            assert_memory_equal(p, p_before, n * sizeof(float));
            dist_buckets_free(b);
        }
    }
    float inf[3] = {1.0f, INFINITY, 0.0f};
    assert_true(dist_has_nonfinite(inf, 3));
    assert_false(dist_has_nonfinite(inf, 1));
    dist_nonfinite_policy pol;
    assert_int_equal(dist_nonfinite_policy_parse("stop", &pol, &err), 0);
    assert_int_equal(pol, DIST_NONFINITE_STOP);
    assert_int_equal(dist_nonfinite_policy_parse("ignore", &pol, &err), -1);
    dist_shared_free(world, shared);
    core_free(priv);
    core_free(p_before);
    core_free(p);
}

/* The sharded optimizer step's pieces: the slices of a node's ranks cover
 * [0, n) once, in whole cache lines; the all-gather over a shared buffer
 * makes every copy whole (twice in a row, so the call counters are used);
 * the state gather does the same for private memory; a private buffer is
 * refused by the all-gather with a message. */
static void test_shard(void **state)
{
    core_error err;
    const size_t sizes[] = {0, 1, 17, 1000, 65537};
    /* hier's nodes: by shared memory, or the test-only grouping */
    const char *k_env = getenv("RINGTRAIN_TEST_NODE_SIZE");
    int ns = k_env ? atoi(k_env) : 0;
    int first = ns > 0 ? rank / ns * ns : 0;
    int group = ns > 0 ? (size - first < ns ? size - first : ns) : dist_local_size(world);
    double nodes = ns > 0 ? (double)((size + ns - 1) / ns) : 0.0;
    if (ns <= 0) {
        nodes = dist_local_rank(world) == 0;
        assert_int_equal(dist_sum_f64(world, &nodes, 1, &err), 0);
    }
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k], a, b;
        dist_shard_slice(world, n, &a, &b);
        assert_true(a <= b && b <= n);
        assert_true(a == b || a % 16 == 0);
        double covered[2] = {(double)(b - a), (double)(b - a) * (double)(a + b)};
        assert_int_equal(dist_sum_f64(world, covered, 2, &err), 0);
        /* per node: lengths sum to n, and sum(len * (a + b)) = n^2 only when
         * the slices tile [0, n) without overlap */
        assert_true(covered[0] == nodes * (double)n);
        assert_true(covered[1] == nodes * (double)n * (double)n);
        float *s = dist_shared_alloc(world, n, &err);
        assert_non_null(s);
        float *priv = alloc_floats(n);
        for (int round = 0; round < 2; round++) {
            for (size_t i = 0; i < n; i++)
                s[i] = priv[i] = (float)-1 - (float)rank;
            for (size_t i = a; i < b; i++)
                s[i] = priv[i] = value(i, 1000 + round);
            assert_int_equal(dist_shared_allgather(world, s, n, &err), 0);
            assert_int_equal(dist_shard_gather(world, priv, n, &err), 0);
            for (size_t i = 0; i < n; i++)
                if (s[i] != value(i, 1000 + round) || priv[i] != value(i, 1000 + round))
                    fail_msg("rank %d n=%zu round %d: element %zu is %g / %g, want %g", rank, n,
                             round, i, (double)s[i], (double)priv[i],
                             (double)value(i, 1000 + round));
        }
        if (n > 0 && group > 1) {
            assert_int_equal(dist_shared_allgather(world, priv, n, &err), -1);
            assert_non_null(strstr(err.msg, "dist_shared_alloc"));
        }
        core_free(priv);
        dist_shared_free(world, s);
    }
}

/* ZeRO-1 across every rank: the world's slices tile [0, n) in rank order,
 * in whole lines, within one line of each other; the all-gather makes every
 * rank's copy whole (twice in a row); the state gathered to rank 0 in
 * ranges (of odd lengths, crossing slice bounds) is the whole buffer, and
 * scattered back from rank 0 in other ranges it lands in every owner's
 * slice. */
static void test_zero(void **state)
{
    core_error err;
    const size_t sizes[] = {0, 1, 17, 1000, 65537};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k], a, b, prev = 0, longest = 0, shortest = n;
        for (int q = 0; q < size; q++) {
            dist_zero_slice(n, size, q, &a, &b);
            assert_true(a == prev && a <= b && b <= n);
            assert_true(a % 16 == 0 || a == n);
            prev = b;
            if (b < n) { /* slices short of the end: within one line of each other */
                longest = b - a > longest ? b - a : longest;
                shortest = b - a < shortest ? b - a : shortest;
            }
        }
        assert_true(prev == n);
        assert_true(longest <= shortest + 16 || longest == 0);
        dist_zero_slice(n, size, rank, &a, &b);
        float *buf = alloc_floats(n), *mine = alloc_floats(b - a);
        for (int round = 0; round < 2; round++) {
            for (size_t i = 0; i < n; i++)
                buf[i] = i >= a && i < b ? value(i, 2000 + round) : (float)-1 - (float)rank;
            assert_int_equal(dist_zero_allgather(world, buf, n, &err), 0);
            for (size_t i = 0; i < n; i++)
                if (buf[i] != value(i, 2000 + round))
                    fail_msg("rank %d n=%zu round %d: element %zu is %g after the all-gather", rank,
                             n, round, i, (double)buf[i]);
        }
        for (size_t i = a; i < b; i++)
            mine[i - a] = value(i, 3000);
        float *whole = alloc_floats(n);
        const size_t step = 7 + 5 * (size_t)size; /* ranges cross slice bounds */
        for (size_t lo = 0; lo < n; lo += step) {
            size_t hi = lo + step < n ? lo + step : n;
            assert_int_equal(dist_zero_gather(world, mine, n, lo, hi, whole + lo, &err), 0);
        }
        if (rank == 0)
            for (size_t i = 0; i < n; i++)
                if (whole[i] != value(i, 3000))
                    fail_msg("n=%zu: gathered element %zu is %g", n, i, (double)whole[i]);
        for (size_t i = 0; i < n; i++)
            whole[i] = rank == 0 ? value(i, 4000) : -1.0f;
        for (size_t i = 0; i < b - a; i++)
            mine[i] = -2.0f;
        for (size_t lo = 0; lo < n; lo += 2 * step + 1) {
            size_t hi = lo + 2 * step + 1 < n ? lo + 2 * step + 1 : n;
            assert_int_equal(dist_zero_scatter(world, mine, n, lo, hi, whole + lo, &err), 0);
        }
        for (size_t i = a; i < b; i++)
            if (mine[i - a] != value(i, 4000))
                fail_msg("rank %d n=%zu: scattered element %zu is %g", rank, n, i,
                         (double)mine[i - a]);
        core_free(whole);
        core_free(mine);
        core_free(buf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backends_equal_reference),
        cmocka_unit_test(test_backends_bitwise_identical_on_every_rank),
        cmocka_unit_test(test_buckets),
        cmocka_unit_test(test_shared_buffers),
        cmocka_unit_test(test_bucket_layout),
        cmocka_unit_test(test_check_same),
        cmocka_unit_test(test_length_mismatch),
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_nonfinite_policy),
        cmocka_unit_test(test_shard),
        cmocka_unit_test(test_zero),
    };
    /* 8 and 16 ranks on one node (ctest mpi.comm.np8, np16; oversubscribed
     * on a small machine): every backend, hier included, against the
     * reference and bit for bit on every rank, the per-step flags and the
     * sharded optimizer step's pieces. hier's zero-copy path at these counts
     * is trained through in tests/e2e/many_ranks.sh. */
    const struct CMUnitTest many[] = {
        cmocka_unit_test(test_backends_equal_reference),
        cmocka_unit_test(test_backends_bitwise_identical_on_every_rank),
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_shard),
    };
    if (getenv("RT_TEST_MANY_RANKS"))
        return cmocka_run_group_tests(many, group_setup, group_teardown);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
