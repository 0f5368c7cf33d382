/*
 * tests/support/test_support.h: helpers shared by the cmocka tests.
 */
#ifndef TEST_SUPPORT_H
#define TEST_SUPPORT_H

#include <stddef.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <cmocka.h>
#include <hdf5.h>

#include "data/data.h"

/* A fresh empty directory under $RT_TEST_TMP (or /tmp) for this test; the
 * returned pointer is static storage valid until the next call. */
const char *test_tmpdir(const char *tag);
/* Fills x[0..n) with uniform values in [lo, hi) from a fixed seed. */
void test_fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi);
/* Max |a-b| / max(1, |a|, |b|) over n elements. */
double test_max_rel_diff(const float *a, const float *b, size_t n);

/* Writes <tmpdir(tag)>/<file>: "images" (n, ss) of file_type from x (of
 * mem_type) and "labels" (n,) uint8 from y; chunked by chunk0 samples and
 * gzip-compressed when chunk0 > 0. Returns the path (static). */
const char *test_write_h5(const char *tag, const char *file, hid_t file_type, hid_t mem_type,
                          const void *x, const int32_t *y, int n, int ss, size_t chunk0);

/* Writes <tmpdir(tag)>/<file>: "images" (n, ss) float32 with sample i =
 * (i, i + 0.5, -i, ...) and "labels" (n,) uint8 = i % 10; chunked by chunk0
 * samples and gzip-compressed when chunk0 > 0. Returns the path (static). */
const char *test_write_ramp_h5(const char *tag, const char *file, int n, int ss, size_t chunk0);

/* Opens path (datasets "images"/"labels", 10 classes) or fails the test. */
data_dataset *test_open_dataset(const char *path);
/* data_loader_create or fails the test. */
data_loader *test_make_loader(data_dataset *d, const data_loader_config *c);

/* MPI tests' group setup: the world, this rank and the world size. */
typedef struct dist_world dist_world;
int test_world_init(dist_world **w, int *rank, int *size);

#endif
