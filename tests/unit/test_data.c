/*
 * tests/unit/test_data.c: the HDF5 dataset (schema checks, reads, error
 * messages) and the shard partition. Test files are written here with the
 * HDF5 C API.
 */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "test_support.h"

static char g_path[4096];

static const char *tmp_file(const char *tag, const char *name)
{
    snprintf(g_path, sizeof g_path, "%s/%s", test_tmpdir(tag), name);
    return g_path;
}

static hid_t h5_create(const char *path)
{
    data_hdf5_quiet();
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    return f;
}

/* Writes one dataset of file type ftype from memory of type mtype;
 * chunk0 > 0 makes it chunked (chunk0 samples) and gzip-compressed. */
static void h5_put(hid_t f, const char *name, hid_t ftype, hid_t mtype, int rank,
                   const hsize_t *dims, const void *data, hsize_t chunk0)
{
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (chunk0) {
        hsize_t ch[8];
        for (int i = 0; i < rank; i++)
            ch[i] = dims[i];
        ch[0] = chunk0;
        assert_true(H5Pset_chunk(dcpl, rank, ch) >= 0);
        assert_true(H5Pset_deflate(dcpl, 6) >= 0);
    }
    hid_t d = H5Dcreate2(f, name, ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    assert_true(d >= 0);
    if (data)
        assert_true(H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(space);
}

static void put_labels(hid_t f, size_t n, int classes)
{
    int32_t *y = malloc(n * sizeof *y);
    for (size_t i = 0; i < n; i++)
        y[i] = (int32_t)(i % (size_t)classes);
    hsize_t dims[1] = {n};
    h5_put(f, "labels", H5T_STD_U8LE, H5T_NATIVE_INT32, 1, dims, y, 0);
    free(y);
}

static void test_shard_partition(void **state)
{
    size_t ns[] = {0, 1, 2, 3, 5, 7, 10, 16, 100, 1001, 60000};
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++) {
        size_t n = ns[a];
        for (int world = 1; world <= 17; world++) {
            size_t next = 0, mn = (size_t)-1, mx = 0;
            for (int r = 0; r < world; r++) {
                size_t s, c;
                data_shard_range(n, r, world, &s, &c);
                assert_int_equal(s, next); /* contiguous, disjoint, in rank order */
                next = s + c;
                mn = c < mn ? c : mn;
                mx = c > mx ? c : mx;
                if ((size_t)r < n % (size_t)world)
                    assert_int_equal(c, n / (size_t)world + 1);
            }
            assert_int_equal(next, n); /* covers [0, n) exactly */
            assert_true(mx - mn <= 1);
        }
    }
}

static void test_read_uint8_scaled(void **state)
{
    const char *path = tmp_file("u8", "u8.h5");
    unsigned char x[7 * 2 * 3];
    for (size_t i = 0; i < sizeof x; i++)
        x[i] = (unsigned char)(i * 37 % 256);
    x[0] = 255;
    hid_t f = h5_create(path);
    hsize_t dims[3] = {7, 2, 3};
    h5_put(f, "images", H5T_STD_U8LE, H5T_NATIVE_UCHAR, 3, dims, x, 0);
    put_labels(f, 7, 3);
    H5Fclose(f);

    core_error err = {{0}};
    data_dataset *d;
    assert_int_equal(data_dataset_open(path, "images", "labels", 3, &d, &err), 0);
    assert_int_equal(data_dataset_count(d), 7);
    assert_int_equal(data_dataset_sample_size(d), 6);
    int sd[DATA_MAX_DIMS];
    assert_int_equal(data_dataset_sample_dims(d, sd), 2);
    assert_int_equal(sd[0], 2);
    assert_int_equal(sd[1], 3);
    float out[7 * 6];
    int32_t y[7];
    assert_int_equal(data_dataset_read(d, 0, 7, out, y, &err), 0);
    for (size_t i = 0; i < sizeof x; i++)
        assert_true(out[i] == (float)x[i] / 255.0f);
    assert_true(out[0] == 1.0f);
    assert_int_equal(data_dataset_read(d, 2, 3, out, y, &err), 0);
    for (size_t i = 0; i < 18; i++)
        assert_true(out[i] == (float)x[12 + i] / 255.0f);
    for (int i = 0; i < 3; i++)
        assert_int_equal(y[i], (2 + i) % 3);
    /* out of range request */
    assert_int_equal(data_dataset_read(d, 5, 3, out, y, &err), -1);
    assert_non_null(strstr(err.msg, "out of range"));
    data_dataset_close(d);
}

/* int16 / int32 / float32 / float64 sample arrays are converted to float
 * without scaling. */
static void check_typed(hid_t ftype, const char *tag)
{
    const char *path = tmp_file(tag, "typed.h5");
    double v[5 * 4];
    for (int i = 0; i < 20; i++)
        v[i] = (i - 9) * 3.0 + (H5Tget_class(ftype) == H5T_FLOAT ? 0.25 : 0.0);
    hid_t f = h5_create(path);
    hsize_t dims[2] = {5, 4};
    h5_put(f, "x", ftype, H5T_NATIVE_DOUBLE, 2, dims, v, 0);
    put_labels(f, 5, 2);
    H5Fclose(f);
    core_error err = {{0}};
    data_dataset *d;
    assert_int_equal(data_dataset_open(path, "x", "labels", 2, &d, &err), 0);
    float out[20];
    int32_t y[5];
    assert_int_equal(data_dataset_read(d, 0, 5, out, y, &err), 0);
    for (int i = 0; i < 20; i++)
        assert_true(out[i] == (float)v[i]);
    assert_int_equal(data_dataset_read(d, 1, 2, out, NULL, &err), 0);
    assert_true(out[0] == (float)v[4]);
    data_dataset_close(d);
}

static void test_read_types(void **state)
{
    check_typed(H5T_STD_I16LE, "i16");
    check_typed(H5T_STD_I32BE, "i32be");
    check_typed(H5T_IEEE_F32LE, "f32");
    check_typed(H5T_IEEE_F64LE, "f64");
}

static void test_read_chunked_gzip_and_n1_labels(void **state)
{
    const char *path = tmp_file("gz", "gz.h5");
    size_t n = 100, ss = 8;
    unsigned char *x = malloc(n * ss);
    int64_t *y = malloc(n * sizeof *y);
    for (size_t i = 0; i < n * ss; i++)
        x[i] = (unsigned char)((i * 13 + 5) % 251);
    for (size_t i = 0; i < n; i++)
        y[i] = (int64_t)(i % 7);
    hid_t f = h5_create(path);
    hsize_t xd[2] = {n, ss}, yd[2] = {n, 1};
    h5_put(f, "images", H5T_STD_U8LE, H5T_NATIVE_UCHAR, 2, xd, x, 16);
    h5_put(f, "labels", H5T_STD_I64LE, H5T_NATIVE_INT64, 2, yd, y, 16);
    H5Fclose(f);
    core_error err = {{0}};
    data_dataset *d;
    assert_int_equal(data_dataset_open(path, NULL, NULL, 7, &d, &err), 0);
    assert_int_equal(data_dataset_chunk_samples(d), 16);
    float out[30 * 8];
    int32_t yo[30];
    assert_int_equal(data_dataset_read(d, 37, 30, out, yo, &err), 0);
    for (size_t i = 0; i < 30 * ss; i++)
        assert_true(out[i] == (float)x[37 * ss + i] / 255.0f);
    for (size_t i = 0; i < 30; i++)
        assert_int_equal(yo[i], (int32_t)((37 + i) % 7));
    data_dataset_close(d);
    free(x);
    free(y);
}

/* Opens path and expects failure with every needle in the message. */
static void expect_open_error(const char *path, const char *x, const char *y, int classes,
                              const char *needle1, const char *needle2)
{
    core_error err = {{0}};
    data_dataset *d = (data_dataset *)1;
    assert_int_equal(data_dataset_open(path, x, y, classes, &d, &err), -1);
    assert_null(d);
    if (!strstr(err.msg, needle1) || (needle2 && !strstr(err.msg, needle2)))
        fail_msg("message '%s' lacks '%s' / '%s'", err.msg, needle1, needle2 ? needle2 : "");
    assert_non_null(strstr(err.msg, path));
    assert_null(strchr(err.msg, '\n'));
}

static void test_error_missing_and_not_hdf5(void **state)
{
    const char *dir = test_tmpdir("errfile");
    char path[4200];
    snprintf(path, sizeof path, "%s/nope.h5", dir);
    expect_open_error(path, NULL, NULL, 0, "cannot open: No such file or directory", NULL);
    snprintf(path, sizeof path, "%s/text.h5", dir);
    FILE *fp = fopen(path, "w");
    fputs("this is not HDF5\n", fp);
    fclose(fp);
    expect_open_error(path, NULL, NULL, 0, "not an HDF5 file", NULL);
}

static void write_basic(const char *path, size_t nx, size_t ny)
{
    float *x = calloc(nx * 4 + 1, sizeof *x);
    hid_t f = h5_create(path);
    hsize_t xd[2] = {nx, 4};
    h5_put(f, "images", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd, x, 0);
    put_labels(f, ny, 10);
    H5Fclose(f);
    free(x);
}

static void test_error_missing_dataset(void **state)
{
    const char *path = tmp_file("errds", "ds.h5");
    write_basic(path, 6, 6);
    expect_open_error(path, "images", "labelz", 10,
                      "dataset 'labelz' not found (available: images, labels); use --y-name", NULL);
    expect_open_error(path, "pixels", "labels", 10, "dataset 'pixels' not found", "--x-name");
    expect_open_error(path, "grp/pixels", "labels", 10, "dataset 'grp/pixels' not found", NULL);
}

static void test_error_counts_differ(void **state)
{
    const char *path = tmp_file("errcnt", "cnt.h5");
    write_basic(path, 6, 5);
    expect_open_error(path, NULL, NULL, 10, "has 6 samples but dataset 'labels' has 5 labels",
                      "'images'");
}

static void test_error_label_range(void **state)
{
    const char *path = tmp_file("errlab", "lab.h5");
    int32_t y[6] = {0, 1, 2, 3, 4, 5};
    float x[24] = {0};
    hsize_t xd[2] = {6, 4}, yd[1] = {6};
    hid_t f = h5_create(path);
    h5_put(f, "images", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd, x, 0);
    y[4] = 12;
    h5_put(f, "labels", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, yd, y, 0);
    y[4] = 4;
    y[2] = -1;
    h5_put(f, "neg", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, yd, y, 0);
    H5Fclose(f);
    expect_open_error(path, NULL, NULL, 10,
                      "dataset 'labels': label 12 at index 4 is out of range [0, 10)", NULL);
    expect_open_error(path, NULL, "neg", 10, "label -1 at index 2 is out of range [0, 10)", NULL);
    /* num_classes 0 skips the check at open */
    core_error err = {{0}};
    data_dataset *d;
    assert_int_equal(data_dataset_open(path, NULL, NULL, 0, &d, &err), 0);
    data_dataset_close(d);
}

static void test_error_label_shape_and_type(void **state)
{
    const char *path = tmp_file("errshape", "shape.h5");
    int32_t y[12] = {0};
    float x[24] = {0};
    hsize_t xd[2] = {6, 4}, yd2[2] = {6, 2}, yd1[1] = {6}, xd1[1] = {6};
    hid_t f = h5_create(path);
    h5_put(f, "images", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd, x, 0);
    h5_put(f, "flat", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, xd1, x, 0);
    h5_put(f, "labels", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, yd2, y, 0);
    h5_put(f, "flabels", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, yd1, x, 0);
    hid_t str = H5Tcopy(H5T_C_S1);
    H5Tset_size(str, 4);
    h5_put(f, "strings", str, str, 2, xd, NULL, 0);
    H5Tclose(str);
    H5Fclose(f);
    expect_open_error(path, NULL, NULL, 10,
                      "dataset 'labels' has shape (6, 2), expected (N,) or (N,1)", NULL);
    expect_open_error(path, NULL, "flabels", 10,
                      "dataset 'flabels' has dtype float32, expected an integer type", NULL);
    expect_open_error(path, "strings", "flabels", 10, "dataset 'strings' has unsupported dtype",
                      "string");
    expect_open_error(path, "flat", "flabels", 10, "dataset 'flat' has shape (6,)", NULL);
}

static void test_error_empty(void **state)
{
    const char *path = tmp_file("errempty", "empty.h5");
    hsize_t xd[2] = {0, 4}, yd[1] = {0};
    hid_t f = h5_create(path);
    h5_put(f, "images", H5T_STD_U8LE, H5T_NATIVE_UCHAR, 2, xd, NULL, 0);
    h5_put(f, "labels", H5T_STD_U8LE, H5T_NATIVE_UCHAR, 1, yd, NULL, 0);
    H5Fclose(f);
    expect_open_error(path, NULL, NULL, 10, "dataset 'images' is empty (shape (0, 4))", NULL);
}

static void test_error_nan_input(void **state)
{
    const char *path = tmp_file("errnan", "nan.h5");
    double x[5 * 3] = {0};
    x[2 * 3 + 1] = NAN;
    x[4 * 3 + 0] = INFINITY;
    hsize_t xd[2] = {5, 3};
    hid_t f = h5_create(path);
    h5_put(f, "images", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, xd, x, 0);
    put_labels(f, 5, 2);
    H5Fclose(f);
    core_error err = {{0}};
    data_dataset *d;
    assert_int_equal(data_dataset_open(path, NULL, NULL, 2, &d, &err), 0);
    float out[15];
    assert_int_equal(data_dataset_read(d, 0, 2, out, NULL, &err), 0);
    assert_int_equal(data_dataset_read(d, 0, 5, out, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "dataset 'images': sample 2 has NaN at element 1"));
    assert_non_null(strstr(err.msg, path));
    assert_int_equal(data_dataset_read(d, 3, 2, out, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "sample 4 has Inf"));
    data_dataset_close(d);

    /* float64 beyond the float32 range counts as Inf */
    x[2 * 3 + 1] = 0;
    x[4 * 3 + 0] = 0;
    x[1 * 3 + 2] = -1e300;
    f = h5_create(path);
    h5_put(f, "images", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, xd, x, 0);
    put_labels(f, 5, 2);
    H5Fclose(f);
    assert_int_equal(data_dataset_open(path, NULL, NULL, 2, &d, &err), 0);
    assert_int_equal(data_dataset_read(d, 0, 5, out, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "sample 1 has Inf"));
    data_dataset_close(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shard_partition),
        cmocka_unit_test(test_read_uint8_scaled),
        cmocka_unit_test(test_read_types),
        cmocka_unit_test(test_read_chunked_gzip_and_n1_labels),
        cmocka_unit_test(test_error_missing_and_not_hdf5),
        cmocka_unit_test(test_error_missing_dataset),
        cmocka_unit_test(test_error_counts_differ),
        cmocka_unit_test(test_error_label_range),
        cmocka_unit_test(test_error_label_shape_and_type),
        cmocka_unit_test(test_error_empty),
        cmocka_unit_test(test_error_nan_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
