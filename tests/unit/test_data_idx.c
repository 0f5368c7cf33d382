/*
 * tests/unit/test_data_idx.c: the idx -> HDF5 converter (datasets/rt_idx2h5.c)
 * round trip. The converter's core is included here without its main(); the
 * synthetic idx files are written with zlib (gzip'd) or stdio (plain) and
 * the result is read back through data_dataset_read.
 */
#define RT_IDX2H5_NO_MAIN
#include "../../datasets/rt_idx2h5.c"

#include <unistd.h>

#include "test_support.h"

#define NIMG 2500 /* spans three 1024-sample chunks */
#define ROWS 5
#define COLS 4

static unsigned char pixel(size_t i, size_t j)
{
    return (unsigned char)((i * 31 + j * 7) & 255);
}

static void be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Writes an idx file: gzip'd if gz, plain otherwise. */
static void write_idx(const char *path, int gz, uint32_t magic, int ndims, const uint32_t *dims,
                      const unsigned char *data, size_t n)
{
    unsigned char h[16];
    be32(h, magic);
    for (int i = 0; i < ndims; i++)
        be32(h + 4 + 4 * i, dims[i]);
    size_t hl = 4 + 4 * (size_t)ndims;
    if (gz) {
        gzFile g = gzopen(path, "wb");
        assert_non_null(g);
        assert_int_equal(gzwrite(g, h, (unsigned)hl), (int)hl);
        assert_int_equal(gzwrite(g, data, (unsigned)n), (int)n);
        assert_int_equal(gzclose(g), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(h, 1, hl, f), hl);
        assert_int_equal(fwrite(data, 1, n, f), n);
        fclose(f);
    }
}

static char g_img[4096], g_lab[4096], g_out[4096];

static void write_pair(const char *tag, int gz, uint32_t nimg, uint32_t nlab)
{
    const char *dir = test_tmpdir(tag);
    snprintf(g_img, sizeof g_img, "%s/img-idx3-ubyte%s", dir, gz ? ".gz" : "");
    snprintf(g_lab, sizeof g_lab, "%s/lab-idx1-ubyte%s", dir, gz ? ".gz" : "");
    snprintf(g_out, sizeof g_out, "%s/out.h5", dir);
    unsigned char *px = malloc((size_t)nimg * ROWS * COLS);
    unsigned char *lb = malloc(nlab);
    for (size_t i = 0; i < nimg; i++)
        for (size_t j = 0; j < ROWS * COLS; j++)
            px[i * ROWS * COLS + j] = pixel(i, j);
    for (size_t i = 0; i < nlab; i++)
        lb[i] = (unsigned char)(i % 10);
    uint32_t di[3] = {nimg, ROWS, COLS}, dl[1] = {nlab};
    write_idx(g_img, gz, IDX_IMAGES_MAGIC, 3, di, px, (size_t)nimg * ROWS * COLS);
    write_idx(g_lab, gz, IDX_LABELS_MAGIC, 1, dl, lb, nlab);
    free(px);
    free(lb);
}

static idx2h5_options opts(void)
{
    idx2h5_options o = {g_img, g_lab, g_out, "images", "labels", 0, 0, -1};
    return o;
}

static void check_roundtrip(const char *x_name, const char *y_name, size_t expect_n)
{
    core_error err = {{0}};
    data_dataset *d;
    if (data_dataset_open(g_out, x_name, y_name, 10, &d, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(data_dataset_count(d), expect_n);
    int dims[DATA_MAX_DIMS];
    assert_int_equal(data_dataset_sample_dims(d, dims), 3);
    assert_int_equal(dims[0], 1);
    assert_int_equal(dims[1], ROWS);
    assert_int_equal(dims[2], COLS);
    size_t start = expect_n > 1100 ? 1000 : 0,
           count = expect_n - start < 100 ? expect_n - start : 100;
    float *x = malloc(count * ROWS * COLS * sizeof *x);
    int32_t y[100];
    assert_int_equal(data_dataset_read(d, start, count, x, y, &err), 0);
    for (size_t i = 0; i < count; i++) {
        assert_int_equal(y[i], (int32_t)((start + i) % 10));
        for (size_t j = 0; j < ROWS * COLS; j++)
            assert_true(x[i * ROWS * COLS + j] == (float)pixel(start + i, j) / 255.0f);
    }
    free(x);
    data_dataset_close(d);
}

static void test_roundtrip_gz(void **state)
{
    write_pair("idxgz", 1, NIMG, NIMG);
    idx2h5_options o = opts();
    core_error err = {{0}};
    if (idx2h5_convert(&o, &err))
        fail_msg("%s", err.msg);
    check_roundtrip("images", "labels", NIMG);

    /* float32 output reads back to the same values; names are configurable */
    o.as_float = 1;
    o.x_name = "x";
    o.y_name = "y";
    if (idx2h5_convert(&o, &err))
        fail_msg("%s", err.msg);
    check_roundtrip("x", "y", NIMG);

    o = opts();
    o.limit = 300;
    assert_int_equal(idx2h5_convert(&o, &err), 0);
    check_roundtrip("images", "labels", 300);
}

static void test_roundtrip_plain(void **state)
{
    write_pair("idxplain", 0, 1200, 1200);
    idx2h5_options o = opts();
    core_error err = {{0}};
    if (idx2h5_convert(&o, &err))
        fail_msg("%s", err.msg);
    check_roundtrip("images", "labels", 1200);
}

static void test_errors(void **state)
{
    core_error err = {{0}};
    write_pair("idxerr", 1, 50, 50);
    idx2h5_options o = opts();
    o.images = g_lab; /* swapped: labels file as images */
    o.labels = g_img;
    assert_int_equal(idx2h5_convert(&o, &err), -1);
    assert_non_null(strstr(err.msg, "bad idx magic 0x00000801, expected 0x00000803"));
    assert_non_null(strstr(err.msg, g_lab));
    assert_int_equal(access(g_out, F_OK), -1); /* nothing left behind */

    write_pair("idxcnt", 1, 50, 40);
    o = opts();
    assert_int_equal(idx2h5_convert(&o, &err), -1);
    assert_non_null(strstr(err.msg, "has 50 images but"));
    assert_non_null(strstr(err.msg, "has 40 labels"));

    /* truncated pixel data */
    write_pair("idxtrunc", 0, 50, 50);
    assert_int_equal(truncate(g_img, 16 + 10 * ROWS * COLS), 0);
    o = opts();
    assert_int_equal(idx2h5_convert(&o, &err), -1);
    assert_non_null(strstr(err.msg, "truncated"));
    assert_int_equal(access(g_out, F_OK), -1);

    o = opts();
    o.images = "/nonexistent/idx";
    assert_int_equal(idx2h5_convert(&o, &err), -1);
    assert_non_null(strstr(err.msg, "/nonexistent/idx: cannot open"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_gz),
        cmocka_unit_test(test_roundtrip_plain),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
