/*
 * tests/unit/test_data_loader.c: the loader thread. Every sample of the
 * shard once per epoch, shuffles as a function of (seed, rank, epoch), exact
 * resume with skip_batches, the streaming path under a small memory cap, and
 * read errors surfacing from data_loader_next.
 *
 * Sample i of the test file is (i, i + 0.5, -i) with label i % 10, so a batch
 * row names its sample.
 */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/data.h"
#include "test_support.h"

#define N  1000
#define SS 3

static const char *write_file(const char *tag, size_t chunk0)
{
    return test_write_ramp_h5(tag, "loader.h5", N, SS, chunk0);
}

static data_loader_config base_config(int rank, int world, int batch)
{
    data_loader_config c;
    memset(&c, 0, sizeof c);
    data_shard_range(N, rank, world, &c.shard_start, &c.shard_count);
    c.batch = batch;
    c.shuffle = 1;
    c.drop_last = 0;
    c.seed = 1234;
    c.rank = rank;
    return c;
}

/* Runs one epoch from skip, writing sample ids to ids (returns how many);
 * checks each row is a consistent sample and the batch sizes. */
static size_t run_epoch(data_loader *l, const data_loader_config *c, long epoch, long skip,
                        int *ids)
{
    core_error err = {{0}};
    assert_int_equal(data_loader_begin_epoch(l, epoch, skip, &err), 0);
    data_batch b;
    size_t got = 0, batches = 0;
    int rc;
    while ((rc = data_loader_next(l, &b, &err)) == 1) {
        batches++;
        assert_true(b.n > 0 && b.n <= c->batch);
        if (b.n < c->batch)
            assert_int_equal(batches + (size_t)skip, data_loader_batches(l));
        for (int j = 0; j < b.n; j++) {
            int id = (int)b.x[j * SS];
            assert_true(b.x[j * SS + 1] == (float)id + 0.5f);
            assert_true(b.x[j * SS + 2] == (float)-id);
            assert_int_equal(b.y[j], id % 10);
            ids[got++] = id;
        }
    }
    if (rc != 0)
        fail_msg("data_loader_next: %s", err.msg);
    assert_int_equal(batches + (size_t)skip, data_loader_batches(l));
    assert_int_equal(data_loader_next(l, &b, &err), 0); /* stays at the end */
    return got;
}

static void check_cover(const int *ids, size_t n, const data_loader_config *c)
{
    assert_int_equal(n, c->shard_count);
    char *seen = calloc(N, 1);
    for (size_t i = 0; i < n; i++) {
        assert_true((size_t)ids[i] >= c->shard_start &&
                    (size_t)ids[i] < c->shard_start + c->shard_count);
        assert_int_equal(seen[ids[i]], 0);
        seen[ids[i]] = 1;
    }
    free(seen);
}

/* Coverage, order per (seed, epoch), and exact resume, for one config. */
static void check_loader(data_dataset *d, data_loader_config c, int expect_streaming)
{
    int *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b), *t = malloc(N * sizeof *t);
    data_loader *l = test_make_loader(d, &c);
    assert_int_equal(data_loader_streaming(l), expect_streaming);
    if (c.mem_cap_bytes)
        assert_true(data_loader_mem_bytes(l) <= c.mem_cap_bytes);

    /* An abandoned epoch does not disturb the next one. */
    core_error err = {{0}};
    data_batch bt;
    assert_int_equal(data_loader_begin_epoch(l, 0, 0, &err), 0);
    assert_int_equal(data_loader_next(l, &bt, &err), 1);
    assert_int_equal(data_loader_next(l, &bt, &err), 1);

    size_t na = run_epoch(l, &c, 0, 0, a);
    check_cover(a, na, &c);
    size_t nb = run_epoch(l, &c, 1, 0, b);
    check_cover(b, nb, &c);
    assert_true(memcmp(a, b, na * sizeof *a) != 0); /* epochs differ */

    /* Same (seed, epoch), fresh loader: identical order. */
    data_loader *l2 = test_make_loader(d, &c);
    size_t n2 = run_epoch(l2, &c, 0, 0, t);
    assert_int_equal(n2, na);
    assert_memory_equal(a, t, na * sizeof *a);
    data_loader_free(l2);

    /* skip_batches gives exactly the tail. */
    long nbat = (long)data_loader_batches(l);
    long skips[] = {1, 2, 5, nbat - 1, nbat};
    for (size_t s = 0; s < sizeof skips / sizeof skips[0]; s++) {
        size_t off = (size_t)skips[s] * (size_t)c.batch;
        size_t nt = run_epoch(l, &c, 0, skips[s], t);
        assert_int_equal(nt, na - (off < na ? off : na));
        if (nt)
            assert_memory_equal(a + off, t, nt * sizeof *a);
    }
    assert_int_equal(data_loader_begin_epoch(l, 0, nbat + 1, &err), -1);
    data_loader_free(l);

    /* Another seed: another order. */
    c.seed++;
    l = test_make_loader(d, &c);
    size_t ns = run_epoch(l, &c, 0, 0, t);
    check_cover(t, ns, &c);
    assert_true(memcmp(a, t, na * sizeof *a) != 0);
    data_loader_free(l);
    free(a);
    free(b);
    free(t);
}

static void test_in_memory(void **state)
{
    data_dataset *d = test_open_dataset(write_file("mem", 0));
    check_loader(d, base_config(1, 3, 32), 0);
    check_loader(d, base_config(0, 1, 7), 0);
    data_dataset_close(d);
}

static void test_streaming(void **state)
{
    data_dataset *d = test_open_dataset(write_file("stream", 64));
    data_loader_config c = base_config(1, 3, 8);
    c.mem_cap_bytes = 4096; /* the 333-sample shard needs ~6.7 KiB */
    check_loader(d, c, 1);
    c = base_config(0, 1, 16);
    c.mem_cap_bytes = 8192;
    check_loader(d, c, 1);
    /* blocks of two 64-sample chunks, aligned to chunks, shard starting mid-chunk */
    c = base_config(0, 1, 8);
    c.shard_start = 100;
    c.shard_count = 900;
    c.mem_cap_bytes = 12000;
    check_loader(d, c, 1);
    data_dataset_close(d);
}

/* uint8 pixel k of sample i in the file test_uint8_kept_as_bytes writes */
static unsigned char u8_pixel(size_t i, size_t k)
{
    return (unsigned char)((i * 7 + k * 13) % 256);
}

/* A uint8 file is held as bytes (a quarter of float32) in memory and in
 * streaming windows, and every served row is the stored row / 255. */
static void test_uint8_kept_as_bytes(void **state)
{
    const size_t n = N, ss = 64;
    unsigned char *x = malloc(n * ss);
    int32_t *y = malloc(n * sizeof *y);
    for (size_t i = 0; i < n; i++) {
        y[i] = (int32_t)(i % 10);
        for (size_t k = 0; k < ss; k++)
            x[i * ss + k] = u8_pixel(i, k);
    }
    const char *path = test_write_h5("u8loader", "u8.h5", H5T_STD_U8LE, H5T_NATIVE_UCHAR, x, y,
                                     (int)n, (int)ss, 50);
    data_dataset *d = test_open_dataset(path);
    assert_int_equal(data_dataset_elem_bytes(d), 1);
    size_t caps[] = {0, 16384};
    for (int m = 0; m < 2; m++) {
        data_loader_config c = base_config(1, 2, 16);
        c.mem_cap_bytes = caps[m];
        data_loader *l = test_make_loader(d, &c);
        assert_int_equal(data_loader_streaming(l), m);
        if (m == 0) /* the shard as bytes, not as floats */
            assert_true(data_loader_mem_bytes(l) < c.shard_count * ss * sizeof(float) / 2);
        core_error err = {{0}};
        assert_int_equal(data_loader_begin_epoch(l, 0, 0, &err), 0);
        data_batch b;
        size_t served = 0;
        while (data_loader_next(l, &b, &err) == 1)
            for (int j = 0; j < b.n; j++, served++) {
                size_t i = b.idx[j];
                assert_int_equal(b.y[j], (int32_t)(i % 10));
                for (size_t k = 0; k < ss; k++)
                    assert_true(b.x[(size_t)j * ss + k] == (float)u8_pixel(i, k) / 255.0f);
            }
        assert_int_equal(served, c.shard_count);
        data_loader_free(l);
    }
    data_dataset_close(d);
    free(x);
    free(y);
}

static void test_drop_last_and_small_shards(void **state)
{
    data_dataset *d = test_open_dataset(write_file("drop", 0));
    data_loader_config c = base_config(2, 3, 32); /* 333 samples */
    c.drop_last = 1;
    data_loader *l = test_make_loader(d, &c);
    assert_int_equal(data_loader_batches(l), 333 / 32);
    core_error err = {{0}};
    data_batch b;
    assert_int_equal(data_loader_next(l, &b, &err), -1); /* before begin_epoch */
    assert_int_equal(data_loader_begin_epoch(l, 3, 0, &err), 0);
    int n = 0;
    while (data_loader_next(l, &b, &err) == 1) {
        assert_int_equal(b.n, 32);
        n++;
    }
    assert_int_equal(n, 333 / 32);
    data_loader_free(l);

    /* n < ranks: an empty shard has no batches. */
    c = base_config(0, 1, 4);
    c.shard_start = 5;
    c.shard_count = 0;
    l = test_make_loader(d, &c);
    assert_int_equal(data_loader_batches(l), 0);
    assert_int_equal(data_loader_begin_epoch(l, 0, 0, &err), 0);
    assert_int_equal(data_loader_next(l, &b, &err), 0);
    data_loader_free(l);

    /* Unshuffled: the shard in file order. */
    c = base_config(1, 4, 10);
    c.shuffle = 0;
    c.mem_cap_bytes = 2560; /* batch buffers hold samples, labels and indices */
    l = test_make_loader(d, &c);
    assert_int_equal(data_loader_streaming(l), 1);
    int *ids = malloc(N * sizeof *ids);
    size_t got = run_epoch(l, &c, 0, 0, ids);
    for (size_t i = 0; i < got; i++)
        assert_int_equal(ids[i], (int)(c.shard_start + i));
    free(ids);
    data_loader_free(l);

    /* A cap too small for the batch buffers is an error, not a crash. */
    c.mem_cap_bytes = 100;
    assert_int_equal(data_loader_create(d, &c, &l, &err), -1);
    assert_non_null(strstr(err.msg, "memory cap"));
    data_dataset_close(d);
}

static void test_read_error_surfaces(void **state)
{
    const char *path = write_file("readerr", 16);
    char p[4096];
    snprintf(p, sizeof p, "%s", path);
    data_dataset *d = test_open_dataset(p);
    data_loader_config c = base_config(0, 1, 8);
    c.mem_cap_bytes = 4096; /* stream: reads happen in the loader thread */
    data_loader *l = test_make_loader(d, &c);
    assert_int_equal(data_loader_streaming(l), 1);

    /* Overwrite the file's data region with garbage after open. */
    FILE *fp = fopen(p, "r+b");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    char junk[512];
    memset(junk, 0x5a, sizeof junk);
    for (long off = 2048; off + (long)sizeof junk < size; off += (long)sizeof junk) {
        fseek(fp, off, SEEK_SET);
        fwrite(junk, 1, sizeof junk, fp);
    }
    fclose(fp);
    assert_int_equal(truncate(p, size / 2), 0);

    core_error err = {{0}};
    data_batch b;
    int rc = 0;
    for (int e = 0; e < 2; e++) {
        assert_int_equal(data_loader_begin_epoch(l, e, 0, &err), 0);
        while ((rc = data_loader_next(l, &b, &err)) == 1) {
        }
        assert_int_equal(rc, -1);
        if (e == 0)
            print_message("read error as reported: %s\n", err.msg);
        assert_non_null(strstr(err.msg, p));
        assert_non_null(strstr(err.msg, "samples"));
        assert_int_equal(data_loader_next(l, &b, &err), -1);
    }
    data_loader_free(l);
    data_dataset_close(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_memory),
        cmocka_unit_test(test_streaming),
        cmocka_unit_test(test_uint8_kept_as_bytes),
        cmocka_unit_test(test_drop_last_and_small_shards),
        cmocka_unit_test(test_read_error_surfaces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
