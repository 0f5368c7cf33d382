/*
 * tests/unit/test_data_order.c: the epoch order as a pure function, the
 * remainder of an epoch continued at another world size, and the loader's
 * list epochs.
 *  - data_order_epoch equals what a loader serves, in memory and streaming,
 *    and data_batch.idx names the rows served;
 *  - for many (n, old world, batch, steps, new world, new batch): what the old
 *    run consumed plus the remainder is every sample exactly once, and the
 *    split parts are disjoint, contiguous and sized steps * local batch;
 *    the same after a second change of world size in the same epoch;
 *  - real loaders: 2 ranks consume k batches, 3 ranks serve their parts of
 *    the remainder with data_loader_begin_list: every sample once;
 *  - a list epoch in windows (streaming cap), then a normal epoch again.
 *
 * Sample i of the test file is (i, i + 0.5, -i) with label i % 10.
 */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "data/data.h"
#include "test_support.h"

#define N  1000
#define SS 3

static const char *write_file(const char *tag, size_t chunk0)
{
    return test_write_ramp_h5(tag, "order.h5", N, SS, chunk0);
}

static data_loader_config rank_config(size_t n, int rank, int world, int batch, size_t cap)
{
    data_loader_config c;
    memset(&c, 0, sizeof c);
    data_shard_range(n, rank, world, &c.shard_start, &c.shard_count);
    c.batch = data_local_batch(batch, world, rank);
    c.shuffle = 1;
    c.drop_last = 1;
    c.seed = 77;
    c.rank = rank;
    c.mem_cap_bytes = cap;
    return c;
}

/* Takes up to max batches from a begun epoch; checks rows against idx and
 * appends the ids to ids. Returns the number of samples taken. */
static size_t take(data_loader *l, long max, size_t *ids)
{
    core_error err = {{0}};
    data_batch b;
    size_t got = 0;
    int rc = 1;
    for (long k = 0; k < max && (rc = data_loader_next(l, &b, &err)) == 1; k++) {
        for (int j = 0; j < b.n; j++) {
            size_t id = b.idx[j];
            assert_true(b.x[j * SS] == (float)id);
            assert_true(b.x[j * SS + 1] == (float)id + 0.5f);
            assert_int_equal(b.y[j], (int)(id % 10));
            ids[got++] = id;
        }
    }
    if (rc < 0)
        fail_msg("data_loader_next: %s", err.msg);
    return got;
}

static void check_order_matches_loader(data_dataset *d, data_loader_config c, int streaming)
{
    core_error err = {{0}};
    size_t *want = malloc(N * sizeof *want), *got = malloc(N * sizeof *got);
    data_loader *l = test_make_loader(d, &c);
    assert_int_equal(data_loader_streaming(l), streaming);
    for (long e = 0; e < 3; e++) {
        assert_int_equal(data_order_epoch(data_dataset_path(d), &c, SS, sizeof(float),
                                          data_dataset_chunk_samples(d), e, want, &err),
                         0);
        assert_int_equal(data_loader_begin_epoch(l, e, 0, &err), 0);
        size_t n = take(l, 1L << 30, got);
        assert_int_equal(n, data_loader_batches(l) * (size_t)c.batch);
        assert_memory_equal(want, got, n * sizeof *got);
    }
    data_loader_free(l);
    free(want);
    free(got);
}

static void test_order_matches_loader(void **state)
{
    data_dataset *d = test_open_dataset(write_file("order_mem", 0));
    check_order_matches_loader(d, rank_config(N, 1, 3, 30, 0), 0);
    check_order_matches_loader(d, rank_config(N, 0, 1, 7, 0), 0);
    data_dataset_close(d);
    d = test_open_dataset(write_file("order_stream", 64));
    check_order_matches_loader(d, rank_config(N, 1, 3, 24, 6144), 1);
    check_order_matches_loader(d, rank_config(N, 0, 2, 16, 9000), 1);
    check_order_matches_loader(d, rank_config(N, 2, 3, 8, 3500), 1);
    data_dataset_close(d);
}

/* Marks what segment 0 (the run that started the epoch) consumed. */
static void mark_origin(const data_epoch_key *k, const data_segment *s, char *seen)
{
    core_error err = {{0}};
    size_t *order = malloc((k->n + 1) * sizeof *order);
    for (int r = 0; r < s->world; r++) {
        data_loader_config c = rank_config(k->n, r, s->world, s->batch, k->mem_cap);
        c.seed = k->seed;
        assert_int_equal(data_order_epoch(k->path, &c, k->sample_floats, k->elem_bytes, k->chunk,
                                          k->epoch, order, &err),
                         0);
        for (size_t i = 0; i < (size_t)s->steps * (size_t)c.batch; i++) {
            assert_int_equal(seen[order[i]], 0);
            seen[order[i]] = 1;
        }
    }
    free(order);
}

/* seen (marks of what was consumed) plus r is [0, n) exactly once. */
static void check_union(const char *seen, const size_t *r, size_t m, size_t n)
{
    char *all = malloc(n);
    memcpy(all, seen, n);
    size_t consumed = 0;
    for (size_t i = 0; i < n; i++)
        consumed += (size_t)seen[i];
    assert_int_equal(consumed + m, n);
    for (size_t i = 0; i < m; i++) {
        assert_true(r[i] < n);
        assert_int_equal(all[r[i]], 0);
        all[r[i]] = 1;
    }
    free(all);
}

/* The parts of the split are contiguous, in rank order, sized steps * local
 * batch, and data_remainder_part returns exactly them. */
static void check_split(const data_epoch_key *k, const data_segment *segs, int nseg,
                        const size_t *r, size_t m, int world, int batch)
{
    core_error err = {{0}};
    size_t expect_from = 0;
    for (int rank = 0; rank < world; rank++) {
        size_t from, len, rem, plen;
        long steps, psteps;
        data_remainder_split(m, batch, world, rank, &from, &len, &steps);
        assert_int_equal(steps, (long)(m / (size_t)batch));
        assert_int_equal(from, expect_from);
        assert_int_equal(len, (size_t)steps * (size_t)data_local_batch(batch, world, rank));
        expect_from += len;
        size_t *part;
        assert_int_equal(data_remainder_part(k, segs, nseg, world, batch, rank, &part, &plen,
                                             &psteps, &rem, &err),
                         0);
        assert_int_equal(rem, m);
        assert_int_equal(plen, len);
        assert_int_equal(psteps, steps);
        if (len)
            assert_memory_equal(part, r + from, len * sizeof *part);
        core_free(part);
    }
    assert_true(m - expect_from < (size_t)batch);
}

static void test_remainder_covers_epoch(void **state)
{
    core_error err = {{0}};
    const size_t ns[] = {960, 1000, 97};
    const int worlds[] = {1, 2, 3, 4, 5};
    const int batches[] = {5, 12, 48};
    const size_t caps[] = {0, 6000}; /* in memory; streaming in small blocks */
    int cases = 0;
    for (size_t in = 0; in < 3; in++)
        for (size_t ic = 0; ic < 2; ic++)
            for (int iw = 0; iw < 5; iw++)
                for (int ib = 0; ib < 3; ib++) {
                    size_t n = ns[in];
                    int wo = worlds[iw], bo = batches[ib];
                    if (bo < wo || n / (size_t)wo < (size_t)bo)
                        continue;
                    data_epoch_key k = {"test", n,       5 + (uint64_t)cases, 2, SS, sizeof(float),
                                        64,     caps[ic]};
                    long full = 1L << 30; /* steps per epoch: the minimum over ranks */
                    for (int r = 0; r < wo; r++) {
                        data_loader_config c0 = rank_config(n, r, wo, bo, caps[ic]);
                        long nb = (long)(c0.shard_count / (size_t)c0.batch);
                        full = nb < full ? nb : full;
                    }
                    long ks[] = {0, 1, full / 2, full};
                    for (int ik = 0; ik < 4; ik++) {
                        data_segment s0 = {wo, bo, ks[ik]};
                        char *seen = calloc(n, 1);
                        mark_origin(&k, &s0, seen);
                        size_t *r, m;
                        assert_int_equal(data_remainder_build(&k, &s0, 1, &r, &m, &err), 0);
                        check_union(seen, r, m, n);
                        int wn = worlds[(iw + 1 + ik) % 5], bn = batches[(ib + ik) % 3];
                        if (bn < wn)
                            bn = wn;
                        check_split(&k, &s0, 1, r, m, wn, bn);
                        /* a second change in the same epoch: wn ranks take j
                         * steps of their parts, then the rest goes on */
                        size_t from, len;
                        long steps;
                        data_remainder_split(m, bn, wn, 0, &from, &len, &steps);
                        data_segment segs[2] = {s0, {wn, bn, steps / 2}};
                        for (int rank = 0; rank < wn; rank++) {
                            data_remainder_split(m, bn, wn, rank, &from, &len, &steps);
                            size_t used =
                                (size_t)(steps / 2) * (size_t)data_local_batch(bn, wn, rank);
                            for (size_t i = 0; i < used; i++)
                                seen[r[from + i]] = 1;
                        }
                        size_t *r2, m2;
                        assert_int_equal(data_remainder_build(&k, segs, 2, &r2, &m2, &err), 0);
                        check_union(seen, r2, m2, n);
                        check_split(&k, segs, 2, r2, m2, wo, bo);
                        core_free(r);
                        core_free(r2);
                        free(seen);
                        cases++;
                    }
                }
    print_message("remainder checked in %d cases\n", cases);
    assert_true(cases > 100);

    /* more steps than a shard holds: an error, not a read past the end */
    data_epoch_key k = {"test", 100, 1, 0, SS, sizeof(float), 0, 0};
    data_segment bad = {2, 10, 11};
    size_t *r, m;
    assert_int_equal(data_remainder_build(&k, &bad, 1, &r, &m, &err), -1);
    assert_non_null(strstr(err.msg, "does not match"));
    data_segment two[2] = {{2, 10, 1}, {3, 12, 8}}; /* 90 left: 7 steps of 12 */
    assert_int_equal(data_remainder_build(&k, two, 2, &r, &m, &err), -1);
    print_message("%s\n", err.msg);
    assert_non_null(strstr(err.msg, "held only 7 steps"));
}

/* 2 ranks consume k batches, 3 ranks serve the remainder from lists:
 * every sample of the epoch exactly once. */
static void check_resize_with_loaders(data_dataset *d, size_t cap, long k)
{
    core_error err = {{0}};
    const int batch = 48;
    size_t *ids = malloc(2 * N * sizeof *ids), got = 0;
    data_segment s0 = {2, batch, k};
    for (int r = 0; r < 2; r++) {
        data_loader_config c = rank_config(960, r, 2, batch, cap);
        data_loader *l = test_make_loader(d, &c);
        assert_int_equal(data_loader_begin_epoch(l, 4, 0, &err), 0);
        got += take(l, k, ids + got);
        data_loader_free(l);
    }
    data_epoch_key key = {data_dataset_path(d),          960, 77, 4, SS, sizeof(float),
                          data_dataset_chunk_samples(d), cap};
    for (int r = 0; r < 3; r++) {
        data_loader_config c = rank_config(960, r, 3, batch, cap);
        data_loader *l = test_make_loader(d, &c);
        size_t *part, len, rem;
        long steps;
        assert_int_equal(
            data_remainder_part(&key, &s0, 1, 3, batch, r, &part, &len, &steps, &rem, &err), 0);
        assert_int_equal(rem, 960 - (size_t)k * batch);
        assert_int_equal(steps, 20 - k);
        assert_int_equal(data_loader_begin_list(l, part, len, &err), 0);
        size_t n = take(l, 1L << 30, ids + got);
        assert_int_equal(n, len);
        assert_memory_equal(ids + got, part, len * sizeof *part);
        got += n;
        core_free(part);
        data_loader_free(l);
    }
    assert_int_equal(got, 960);
    char *seen = calloc(960, 1);
    for (size_t i = 0; i < got; i++) {
        assert_true(ids[i] < 960);
        assert_int_equal(seen[ids[i]], 0);
        seen[ids[i]] = 1;
    }
    free(seen);
    free(ids);
}

static void test_resize_with_loaders(void **state)
{
    data_dataset *d = test_open_dataset(write_file("resize_mem", 0));
    check_resize_with_loaders(d, 0, 7);
    check_resize_with_loaders(d, 0, 1);
    data_dataset_close(d);
    d = test_open_dataset(write_file("resize_stream", 32));
    check_resize_with_loaders(d, 8000, 7);
    check_resize_with_loaders(d, 8000, 19);
    data_dataset_close(d);
}

/* A list epoch larger than the window (streaming), with repeats and a short
 * last batch; then normal epochs are unchanged (the shard is re-read when
 * held in memory). */
static void check_list_then_epoch(data_dataset *d, size_t cap, int streaming)
{
    core_error err = {{0}};
    data_loader_config c = rank_config(N, 1, 2, 10, cap);
    data_loader *l = test_make_loader(d, &c);
    assert_int_equal(data_loader_streaming(l), streaming);
    size_t *want = malloc(N * sizeof *want), *got = malloc(2 * N * sizeof *got);
    assert_int_equal(data_order_epoch(data_dataset_path(d), &c, SS, sizeof(float),
                                      data_dataset_chunk_samples(d), 3, want, &err),
                     0);
    size_t list[903];
    for (size_t i = 0; i < 903; i++)
        list[i] = (i * 389 + 11) % N; /* all over the file, outside the shard too */
    list[17] = list[16];
    list[18] = list[16] + 1;
    assert_int_equal(data_loader_begin_list(l, list, 903, &err), 0);
    size_t n = take(l, 1L << 30, got);
    assert_int_equal(n, 900); /* drop_last */
    assert_memory_equal(got, list, n * sizeof *got);
    assert_int_equal(data_loader_begin_epoch(l, 3, 0, &err), 0);
    n = take(l, 1L << 30, got);
    assert_int_equal(n, c.shard_count - c.shard_count % 10);
    assert_memory_equal(got, want, n * sizeof *got);

    size_t bad = N;
    assert_int_equal(data_loader_begin_list(l, &bad, 1, &err), -1);
    assert_non_null(strstr(err.msg, "outside"));
    data_loader_free(l);
    free(want);
    free(got);
}

static void test_list_epoch(void **state)
{
    data_dataset *d = test_open_dataset(write_file("list_mem", 0));
    check_list_then_epoch(d, 0, 0);
    data_dataset_close(d);
    d = test_open_dataset(write_file("list_stream", 16));
    check_list_then_epoch(d, 4000, 1);
    data_dataset_close(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_matches_loader),
        cmocka_unit_test(test_remainder_covers_epoch),
        cmocka_unit_test(test_resize_with_loaders),
        cmocka_unit_test(test_list_epoch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
