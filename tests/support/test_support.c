/*
 * tests/support/test_support.c: helpers shared by the cmocka tests.
 */
#include "test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "core/rng.h"
#include "data/data.h"
#include "dist/dist.h"

const char *test_tmpdir(const char *tag)
{
    static char path[512];
    const char *base = getenv("RT_TEST_TMP");
    if (!base || !*base)
        base = "/tmp";
    mkdir(base, 0755);
    snprintf(path, sizeof path, "%s/%s.%ld", base, tag, (long)getpid());
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fail_msg("cannot clear %s", path);
    if (mkdir(path, 0755) != 0)
        fail_msg("cannot create %s", path);
    return path;
}

void test_fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi)
{
    core_rng r = core_rng_make(seed, 77);
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * core_rng_uniform(&r);
}

double test_max_rel_diff(const float *a, const float *b, size_t n)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        double s = fmax(1.0, fmax(fabs((double)a[i]), fabs((double)b[i])));
        if (d / s > worst)
            worst = d / s;
    }
    return worst;
}

const char *test_write_h5(const char *tag, const char *file, hid_t file_type, hid_t mem_type,
                          const void *x, const int32_t *y, int n, int ss, size_t chunk0)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", test_tmpdir(tag), file);
    data_hdf5_quiet();
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t xd[2] = {(hsize_t)n, (hsize_t)ss}, yd[1] = {(hsize_t)n};
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (chunk0) {
        hsize_t ch[2] = {chunk0, (hsize_t)ss};
        H5Pset_chunk(dcpl, 2, ch);
        H5Pset_deflate(dcpl, 4);
    }
    hid_t sp = H5Screate_simple(2, xd, NULL);
    hid_t d = H5Dcreate2(f, "images", file_type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    assert_true(H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
    H5Dclose(d);
    H5Sclose(sp);
    sp = H5Screate_simple(1, yd, NULL);
    d = H5Dcreate2(f, "labels", H5T_STD_U8LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, y) >= 0);
    H5Dclose(d);
    H5Sclose(sp);
    H5Pclose(dcpl);
    H5Fclose(f);
    return path;
}

const char *test_write_ramp_h5(const char *tag, const char *file, int n, int ss, size_t chunk0)
{
    float *x = malloc((size_t)n * (size_t)ss * sizeof *x);
    int32_t *y = malloc((size_t)n * sizeof *y);
    assert_non_null(x);
    assert_non_null(y);
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < ss; k++)
            x[i * ss + k] = k == 0 ? (float)i : k == 1 ? (float)i + 0.5f : (float)-i;
        y[i] = i % 10;
    }
    const char *path =
        test_write_h5(tag, file, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, x, y, n, ss, chunk0);
    free(x);
    free(y);
    return path;
}

int test_world_init(dist_world **w, int *rank, int *size)
{
    core_error err;
    if (dist_world_init(NULL, NULL, w, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    *rank = dist_rank(*w);
    *size = dist_size(*w);
    return 0;
}

data_dataset *test_open_dataset(const char *path)
{
    core_error err = {{0}};
    data_dataset *d;
    if (data_dataset_open(path, NULL, NULL, 10, &d, &err))
        fail_msg("%s", err.msg);
    return d;
}

data_loader *test_make_loader(data_dataset *d, const data_loader_config *c)
{
    core_error err = {{0}};
    data_loader *l;
    if (data_loader_create(d, c, &l, &err))
        fail_msg("data_loader_create: %s", err.msg);
    return l;
}
