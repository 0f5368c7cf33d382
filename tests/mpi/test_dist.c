/*
 * tests/mpi/test_dist.c: the dist module under mpiexec (np = 1..4).
 *
 * The ring all-reduce is checked against MPI_Allreduce on MPI_COMM_WORLD
 * (bitwise with integer-valued floats, within a tolerance with random ones),
 * for lengths around the world size, the segment size and a large odd length,
 * with the default segment and with a tiny one that forces many segments per
 * chunk. Every rank's result must be bitwise identical to rank 0's.
 */
#include "test_support.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "dist/dist.h"

static dist_world *world;
static int rank, size;

static int group_setup(void **state)
{
    return test_world_init(&world, &rank, &size);
}

static int group_teardown(void **state)
{
    dist_world_finalize(world);
    return 0;
}

/* Lengths that hit the edge cases of chunking and segmenting; returns the count. */
static size_t test_lengths(size_t *out, size_t seg_floats)
{
    size_t k = 0;
    out[k++] = 0;
    out[k++] = 1;
    out[k++] = 7;
    out[k++] = (size_t)size - 1;
    out[k++] = (size_t)size + 1;
    out[k++] = 3 * seg_floats * (size_t)size + 5; /* divisible by neither */
    out[k++] = 1000003;
    return k;
}

static void fill_integers(float *x, size_t n, int r)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((int)((i * 2654435761u + (size_t)r * 97) % 201) - 100);
}

static float *alloc_floats(size_t n)
{
    core_error err;
    float *p = core_alloc((n ? n : 1) * sizeof(float), "test", &err);
    assert_non_null(p);
    return p;
}

static size_t ceil_div(size_t a, size_t b)
{
    return a / b + (a % b != 0);
}

/* Ring on one copy, MPI_Allreduce on another: bitwise equal (integers) or within tol. */
static void ring_vs_mpi(size_t n, int integers, double tol)
{
    float *a = alloc_floats(n), *b = alloc_floats(n);
    float *scratch = alloc_floats(ceil_div(n, (size_t)size));
    if (integers)
        fill_integers(a, n, rank);
    else
        test_fill_uniform(a, n, 1000 + (uint64_t)rank, -1.0f, 1.0f);
    memcpy(b, a, n * sizeof(float));
    core_error err;
    int rc = dist_ring_allreduce(world, a, n, scratch, &err);
    if (rc != 0)
        fail_msg("n=%zu: %s", n, err.msg);
    assert_int_equal(MPI_Allreduce(MPI_IN_PLACE, b, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
                     MPI_SUCCESS);
    double d = integers ? (n && memcmp(a, b, n * sizeof(float)) != 0) : test_max_rel_diff(a, b, n);
    /* Agree before failing, so that no rank is left waiting in a collective. */
    int first = dist_first_failed(world, integers ? d != 0.0 : d > tol);
    if (first >= 0)
        fail_msg("ring differs from MPI_Allreduce at n=%zu on rank %d (%s)", n, first,
                 integers ? "bitwise" : "beyond tolerance");
    core_free(scratch);
    core_free(b);
    core_free(a);
}

static void with_segment(size_t bytes, int integers)
{
    core_error err;
    size_t old = dist_world_ring_segment(world);
    assert_int_equal(dist_world_set_ring_segment(world, bytes, &err), 0);
    size_t lens[16];
    size_t k = test_lengths(lens, bytes / sizeof(float));
    for (size_t i = 0; i < k; i++)
        ring_vs_mpi(lens[i], integers, 1e-5);
    assert_int_equal(dist_world_set_ring_segment(world, old, &err), 0);
}

static void test_ring_integers_default_segment(void **state)
{
    with_segment(dist_world_ring_segment(world), 1);
}

static void test_ring_integers_tiny_segment(void **state)
{
    with_segment(64, 1); /* 16 floats: many segments, window slots reused */
}

static void test_ring_random_within_tolerance(void **state)
{
    with_segment(dist_world_ring_segment(world), 0);
    with_segment(4096, 0);
}

/* Rank 0's result broadcast to all, compared bitwise with each rank's own. */
static void test_ring_bitwise_identical_on_every_rank(void **state)
{
    core_error err;
    size_t lens[] = {1, 13, 100003, 1000003};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t n = lens[li];
        float *a = alloc_floats(n), *ref = alloc_floats(n);
        float *scratch = alloc_floats(ceil_div(n, (size_t)size));
        test_fill_uniform(a, n, 7 + (uint64_t)rank, -3.0f, 3.0f);
        assert_int_equal(dist_ring_allreduce(world, a, n, scratch, &err), 0);
        memcpy(ref, a, n * sizeof(float));
        assert_int_equal(dist_broadcast(world, ref, n * sizeof(float), 0, &err), 0);
        int differs = memcmp(a, ref, n * sizeof(float)) != 0;
        int first = dist_first_failed(world, differs);
        if (first >= 0)
            fail_msg("n=%zu: rank %d's ring result differs from rank 0's", n, first);
        core_free(scratch);
        core_free(ref);
        core_free(a);
    }
}

static void test_allreduce_sum_both_kinds(void **state)
{
    core_error err;
    size_t n = 50021;
    assert_int_equal(dist_world_reserve(world, n, &err), 0);
    float *a = alloc_floats(n), *want = alloc_floats(n);
    dist_allreduce_kind kinds[] = {DIST_ALLREDUCE_RING, DIST_ALLREDUCE_MPI, DIST_ALLREDUCE_HIER};
    float *tmp = alloc_floats(n);
    for (int k = 0; k < 3; k++) {
        for (size_t len = 0; len <= n; len += n / 3 + 1) {
            memset(want, 0, n * sizeof(float));
            for (int r = 0; r < size; r++) {
                fill_integers(tmp, len, r);
                for (size_t i = 0; i < len; i++)
                    want[i] += tmp[i];
            }
            fill_integers(a, len, rank);
            if (dist_allreduce_sum(world, kinds[k], a, len, &err) != 0)
                fail_msg("%s, n=%zu: %s", dist_allreduce_kind_name(kinds[k]), len, err.msg);
            int wrong = len && memcmp(a, want, len * sizeof(float)) != 0;
            int first = dist_first_failed(world, wrong);
            if (first >= 0)
                fail_msg("%s, n=%zu: wrong sum on rank %d", dist_allreduce_kind_name(kinds[k]), len,
                         first);
        }
    }
    core_free(tmp);
    core_free(want);
    core_free(a);
}

static void test_allreduce_ring_beyond_reserve_fails(void **state)
{
    core_error err;
    assert_int_equal(dist_world_reserve(world, 100, &err), 0);
    float buf[64] = {0};
    /* Reserves only grow; ask for more than any reserve in this file. The
     * check comes before any traffic, so big is never touched. */
    static float big[1];
    assert_int_equal(dist_allreduce_sum(world, DIST_ALLREDUCE_RING, big, (size_t)1 << 40, &err),
                     -1);
    assert_non_null(strstr(err.msg, "dist_world_reserve"));
    assert_int_equal(dist_allreduce_sum(world, DIST_ALLREDUCE_RING, buf, 64, &err), 0);
}

static void test_kind_parse(void **state)
{
    core_error err;
    dist_allreduce_kind k = DIST_ALLREDUCE_MPI;
    assert_int_equal(dist_allreduce_kind_parse("ring", &k, &err), 0);
    assert_int_equal(k, DIST_ALLREDUCE_RING);
    assert_int_equal(dist_allreduce_kind_parse("mpi", &k, &err), 0);
    assert_int_equal(k, DIST_ALLREDUCE_MPI);
    assert_string_equal(dist_allreduce_kind_name(DIST_ALLREDUCE_RING), "ring");
    assert_string_equal(dist_allreduce_kind_name(DIST_ALLREDUCE_MPI), "mpi");
#ifdef RINGTRAIN_HAVE_NCCL
    assert_int_equal(dist_allreduce_kind_parse("nccl", &k, &err), 0);
    assert_int_equal(k, DIST_ALLREDUCE_NCCL);
#else
    assert_int_equal(dist_allreduce_kind_parse("nccl", &k, &err), -1);
    assert_non_null(strstr(err.msg, "built without NCCL"));
#endif
    assert_int_equal(dist_allreduce_kind_parse("nvlink", &k, &err), -1);
    assert_string_equal(err.msg, "dist: unknown all-reduce backend 'nvlink'; expected 'ring', "
                                 "'mpi', 'hier' or 'nccl'");
    assert_int_equal(dist_allreduce_kind_parse("Ring", &k, &err), -1);
    assert_int_equal(dist_allreduce_kind_parse("", &k, &err), -1);
    assert_int_equal(dist_allreduce_kind_parse(NULL, &k, &err), -1);
    assert_non_null(strstr(err.msg, "(none)"));
}

static void test_first_failed(void **state)
{
    assert_int_equal(dist_first_failed(world, 0), -1);
    assert_int_equal(dist_first_failed(world, 1), 0);
    assert_int_equal(dist_first_failed(world, rank == size - 1), size - 1);
    assert_int_equal(dist_first_failed(world, rank == size / 2), size / 2);
    assert_int_equal(dist_first_failed(world, rank >= 1), size > 1 ? 1 : -1);
    assert_int_equal(dist_first_failed(world, rank % 2 == 1 && rank >= 2), size > 3 ? 3 : -1);
}

static void test_broadcast(void **state)
{
    core_error err;
    for (int root = 0; root < size; root++) {
        unsigned char buf[1000];
        for (size_t i = 0; i < sizeof buf; i++)
            buf[i] = (unsigned char)(rank == root ? (i * 31 + (size_t)root) & 0xff : 0);
        assert_int_equal(dist_broadcast(world, buf, sizeof buf, root, &err), 0);
        for (size_t i = 0; i < sizeof buf; i++)
            assert_int_equal(buf[i], (i * 31 + (size_t)root) & 0xff);
        assert_int_equal(dist_broadcast(world, buf, 0, root, &err), 0);
    }
    char c = 0;
    assert_int_equal(dist_broadcast(world, &c, 1, size, &err), -1);
    assert_non_null(strstr(err.msg, "root"));
}

static void test_sum_f64_and_max_i32(void **state)
{
    core_error err;
    double v[3] = {1.0, (double)rank, 0.5 * rank};
    assert_int_equal(dist_sum_f64(world, v, 3, &err), 0);
    assert_true(v[0] == (double)size);
    assert_true(v[1] == size * (size - 1) / 2.0);
    assert_true(v[2] == 0.25 * size * (size - 1));
    int32_t m[3] = {rank, -rank, rank == 0 ? 1000 : 7};
    assert_int_equal(dist_max_i32(world, m, 3, &err), 0);
    assert_int_equal(m[0], size - 1);
    assert_int_equal(m[1], 0);
    assert_int_equal(m[2], 1000);
    assert_int_equal(dist_sum_f64(world, v, 0, &err), 0);
    assert_int_equal(dist_barrier(world, &err), 0);
}

static void test_world_shape(void **state)
{
    int n;
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    assert_int_equal(size, n);
    assert_true(rank >= 0 && rank < size);
    assert_true(dist_local_size(world) >= 1 && dist_local_size(world) <= size);
    assert_true(dist_local_rank(world) >= 0 && dist_local_rank(world) < dist_local_size(world));
    /* Open MPI 4.1 provides MPI_THREAD_MULTIPLE; anything less must have failed init. */
    int provided;
    MPI_Query_thread(&provided);
    assert_true(provided >= MPI_THREAD_SERIALIZED);
    assert_int_equal(dist_thread_multiple(world), provided == MPI_THREAD_MULTIPLE);
    core_error err;
    assert_int_equal(dist_world_set_ring_segment(world, 0, &err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_world_shape),
        cmocka_unit_test(test_ring_integers_default_segment),
        cmocka_unit_test(test_ring_integers_tiny_segment),
        cmocka_unit_test(test_ring_random_within_tolerance),
        cmocka_unit_test(test_ring_bitwise_identical_on_every_rank),
        cmocka_unit_test(test_allreduce_sum_both_kinds),
        cmocka_unit_test(test_allreduce_ring_beyond_reserve_fails),
        cmocka_unit_test(test_kind_parse),
        cmocka_unit_test(test_first_failed),
        cmocka_unit_test(test_broadcast),
        cmocka_unit_test(test_sum_f64_and_max_i32),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
