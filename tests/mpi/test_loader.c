/*
 * tests/mpi/test_loader.c: the loaders of all ranks together, as the trainer
 * sets them up (data_shard_range, the local batch, per-rank shuffles): in
 * every epoch each sample of the file is served at most once across the
 * ranks, every rank serves exactly its batches (drop_last), every served
 * sample carries its own values and label, and the shuffles differ between
 * epochs. Held in memory and streamed in blocks (a small memory cap), at
 * 1-4 ranks and at 8 and 16 (ctest mpi.loader.np8, np16).
 */
#include "test_support.h"

#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"

static dist_world *world;
static int rank, size;

static int group_setup(void **state)
{
    (void)state;
    return test_world_init(&world, &rank, &size);
}

static int group_teardown(void **state)
{
    (void)state;
    dist_world_finalize(world);
    return 0;
}

/* Rank 0 writes the file; every rank gets its path. */
static void shared_file(int n, int ss, size_t chunk, char *path, size_t len)
{
    core_error err;
    memset(path, 0, len);
    if (rank == 0)
        snprintf(path, len, "%s", test_write_ramp_h5("mpi_loader", "ramp.h5", n, ss, chunk));
    assert_int_equal(dist_broadcast(world, path, len, 0, &err), 0);
}

/* stream: a memory cap of a third of the shard, so that it is streamed. */
static void check_epochs(const char *path, int n, int ss, int global_batch, int stream)
{
    core_error err = {{0}};
    data_dataset *d = test_open_dataset(path);
    data_loader_config c = {0};
    data_shard_range((size_t)n, rank, size, &c.shard_start, &c.shard_count);
    c.batch = global_batch / size + (rank < global_batch % size ? 1 : 0);
    c.shuffle = 1;
    c.drop_last = 1;
    c.seed = 9;
    c.rank = rank;
    c.mem_cap_bytes = stream ? c.shard_count * (size_t)ss * sizeof(float) / 3 : 0;
    data_loader *l = test_make_loader(d, &c);
    assert_int_equal(data_loader_streaming(l), stream);
    double *seen = calloc((size_t)n, sizeof *seen);
    size_t *first = calloc(c.shard_count, sizeof *first);
    assert_non_null(seen);
    for (long epoch = 0; epoch < 2; epoch++) {
        memset(seen, 0, (size_t)n * sizeof *seen);
        assert_int_equal(data_loader_begin_epoch(l, epoch, 0, &err), 0);
        data_batch b;
        size_t batches = 0, k = 0;
        int order_same = 1;
        while (data_loader_next(l, &b, &err) == 1) {
            assert_int_equal(b.n, c.batch);
            for (int i = 0; i < b.n; i++) {
                size_t s = b.idx[i];
                assert_true(s >= c.shard_start && s < c.shard_start + c.shard_count);
                assert_true(b.x[(size_t)i * ss] == (float)s);
                assert_true(b.x[(size_t)i * ss + 1] == (float)s + 0.5f);
                assert_int_equal(b.y[i], (int32_t)(s % 10));
                seen[s] += 1.0;
                if (epoch == 0)
                    first[k] = s;
                else
                    order_same &= first[k] == s;
                k++;
            }
            batches++;
        }
        assert_int_equal(batches, data_loader_batches(l));
        assert_int_equal(batches, c.shard_count / (size_t)c.batch);
        if (epoch == 1 && k > 1)
            assert_false(order_same);
        assert_int_equal(dist_sum_f64(world, seen, (size_t)n, &err), 0);
        double total = 0.0;
        for (int s = 0; s < n; s++) {
            if (seen[s] > 1.0)
                fail_msg("epoch %ld: sample %d served %g times across %d ranks", epoch, s, seen[s],
                         size);
            total += seen[s];
        }
        double want = (double)(k);
        assert_int_equal(dist_sum_f64(world, &want, 1, &err), 0);
        assert_true(total == want);
    }
    free(seen);
    free(first);
    data_loader_free(l);
    data_dataset_close(d);
}

static void test_in_memory(void **state)
{
    (void)state;
    char path[1024];
    shared_file(1000, 16, 0, path, sizeof path);
    check_epochs(path, 1000, 16, 48, 0);
}

static void test_streamed(void **state)
{
    (void)state;
    char path[1024];
    shared_file(3001, 256, 32, path, sizeof path);
    check_epochs(path, 3001, 256, 64, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_memory),
        cmocka_unit_test(test_streamed),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
