/*
 * datasets/rt_idx2h5.c: converts an idx image/label pair (MNIST, Fashion-MNIST;
 * gzip'd or plain, zlib's gzopen reads both) into the ringtrain HDF5 schema
 * (docs/DATA_FORMAT.md):
 *
 *   images  (N, 1, rows, cols) uint8, or float32 in [0, 1] with --float
 *           chunked 1024 samples per chunk, gzip level 4
 *   labels  (N,) uint8
 *   root attributes: source, classes, and class_names for Fashion-MNIST
 *
 * The output is written under OUT.tmp and renamed when complete, so a failed
 * run never leaves a half-written file under the real name. The conversion
 * core is static functions above main(); the unit test includes this file
 * with RT_IDX2H5_NO_MAIN defined and calls idx2h5_convert directly.
 */
#include <ctype.h>
#include <errno.h>
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/error.h"
#include "data/data.h"

#define IDX2H5_CHUNK      1024
#define IDX2H5_GZIP_LEVEL 4
#define IDX_IMAGES_MAGIC  0x00000803u
#define IDX_LABELS_MAGIC  0x00000801u

typedef struct idx2h5_options {
    const char *images, *labels, *out;
    const char *x_name, *y_name;
    long limit; /* <= 0: all */
    int as_float;
    int fashion; /* -1 auto-detect from the file names, 0 no, 1 yes */
} idx2h5_options;

static const char *const idx2h5_fashion_names[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

typedef struct idx_file {
    gzFile gz;
    const char *path;
    uint32_t dims[3];
} idx_file;

static int idx_read_exact(idx_file *f, void *buf, size_t n, const char *what, core_error *err)
{
    unsigned char *p = buf;
    size_t got = 0;
    while (got < n) {
        size_t want = n - got > (1u << 30) ? (1u << 30) : n - got;
        int r = gzread(f->gz, p + got, (unsigned)want);
        if (r < 0) {
            int code;
            const char *m = gzerror(f->gz, &code);
            return core_error_set(err, "%s: read error in %s (%s)", f->path, what, m);
        }
        if (r == 0)
            return core_error_set(err, "%s: file truncated in %s: expected %zu bytes, got %zu",
                                  f->path, what, n, got);
        got += (size_t)r;
    }
    return 0;
}

static int idx_open(idx_file *f, const char *path, uint32_t magic, int ndims, const char *kind,
                    core_error *err)
{
    f->path = path;
    f->gz = gzopen(path, "rb");
    if (!f->gz)
        return core_error_set(err, "%s: cannot open: %s", path, strerror(errno));
    unsigned char h[4];
    if (idx_read_exact(f, h, 4, "the idx header", err))
        return -1;
    uint32_t m = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    if (m != magic)
        return core_error_set(err,
                              "%s: bad idx magic 0x%08x, expected 0x%08x (%s); is this the %s "
                              "file?",
                              path, m, magic, ndims == 3 ? "idx3 ubyte" : "idx1 ubyte", kind);
    for (int i = 0; i < ndims; i++) {
        if (idx_read_exact(f, h, 4, "the idx header", err))
            return -1;
        f->dims[i] = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    }
    return 0;
}

static void idx_close(idx_file *f)
{
    if (f->gz)
        gzclose(f->gz);
    f->gz = NULL;
}

static int idx2h5_is_fashion(const idx2h5_options *o)
{
    if (o->fashion >= 0)
        return o->fashion;
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", o->images);
    for (char *p = buf; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return strstr(buf, "fashion") != NULL;
}

static int write_attrs(hid_t file, const idx2h5_options *o, int classes, int fashion)
{
    int rc = 0;
    hid_t scalar = H5Screate(H5S_SCALAR);
    hid_t str = H5Tcopy(H5T_C_S1);
    H5Tset_size(str, H5T_VARIABLE);
    H5Tset_cset(str, H5T_CSET_UTF8);

    char source[8192];
    snprintf(source, sizeof source, "idx: %s + %s%s", o->images, o->labels,
             fashion ? " (Fashion-MNIST)" : "");
    const char *sp = source;
    hid_t a = H5Acreate2(file, "source", str, scalar, H5P_DEFAULT, H5P_DEFAULT);
    rc |= a < 0 || H5Awrite(a, str, &sp) < 0;
    H5Aclose(a);

    a = H5Acreate2(file, "classes", H5T_STD_I32LE, scalar, H5P_DEFAULT, H5P_DEFAULT);
    rc |= a < 0 || H5Awrite(a, H5T_NATIVE_INT, &classes) < 0;
    H5Aclose(a);

    if (fashion) {
        hsize_t n = 10;
        hid_t sp10 = H5Screate_simple(1, &n, NULL);
        a = H5Acreate2(file, "class_names", str, sp10, H5P_DEFAULT, H5P_DEFAULT);
        rc |= a < 0 || H5Awrite(a, str, idx2h5_fashion_names) < 0;
        H5Aclose(a);
        H5Sclose(sp10);
    }
    H5Tclose(str);
    H5Sclose(scalar);
    return rc ? -1 : 0;
}

static hid_t create_array(hid_t file, const char *name, hid_t type, int rank, const hsize_t *dims,
                          hsize_t chunk0)
{
    hsize_t chunk[4];
    for (int i = 0; i < rank; i++)
        chunk[i] = dims[i];
    chunk[0] = chunk0 < dims[0] ? chunk0 : dims[0];
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, rank, chunk);
    H5Pset_deflate(dcpl, IDX2H5_GZIP_LEVEL);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t d = H5Dcreate2(file, name, type, space, lcpl, dcpl, H5P_DEFAULT);
    H5Pclose(lcpl);
    H5Pclose(dcpl);
    H5Sclose(space);
    return d;
}

static int write_rows(hid_t dset, int rank, const hsize_t *dims, hsize_t start, hsize_t count,
                      hid_t mem_type, const void *buf)
{
    hsize_t off[4] = {start, 0, 0, 0};
    hsize_t cnt[4];
    for (int i = 0; i < rank; i++)
        cnt[i] = dims[i];
    cnt[0] = count;
    hid_t fs = H5Dget_space(dset);
    hid_t ms = H5Screate_simple(rank, cnt, NULL);
    herr_t rc = H5Sselect_hyperslab(fs, H5S_SELECT_SET, off, NULL, cnt, NULL);
    if (rc >= 0)
        rc = H5Dwrite(dset, mem_type, ms, fs, H5P_DEFAULT, buf);
    H5Sclose(ms);
    H5Sclose(fs);
    return rc < 0 ? -1 : 0;
}

/* Streams the pixels in blocks of IDX2H5_CHUNK images (one chunk per write). */
static int copy_images(idx_file *fi, hid_t xd, const hsize_t *xdims, int as_float, const char *tmp,
                       const char *x_name, core_error *err)
{
    size_t per = (size_t)xdims[2] * (size_t)xdims[3];
    unsigned char *u8 = malloc(IDX2H5_CHUNK * per);
    float *f32 = as_float ? malloc(IDX2H5_CHUNK * per * sizeof(float)) : NULL;
    int rc = 0;
    if (!u8 || (as_float && !f32))
        rc = core_error_set(err, "out of memory converting images");
    for (hsize_t s = 0; rc == 0 && s < xdims[0]; s += IDX2H5_CHUNK) {
        hsize_t c = xdims[0] - s < IDX2H5_CHUNK ? xdims[0] - s : IDX2H5_CHUNK;
        if (idx_read_exact(fi, u8, (size_t)c * per, "the pixel data", err)) {
            rc = -1;
            break;
        }
        if (as_float)
            for (size_t i = 0; i < (size_t)c * per; i++)
                f32[i] = (float)u8[i] / 255.0f;
        if (write_rows(xd, 4, xdims, s, c, as_float ? H5T_NATIVE_FLOAT : H5T_NATIVE_UCHAR,
                       as_float ? (void *)f32 : (void *)u8))
            rc = core_error_set(err, "%s: cannot write dataset '%s'", tmp, x_name);
    }
    free(u8);
    free(f32);
    return rc;
}

static int write_h5(const idx2h5_options *o, idx_file *fi, const unsigned char *labels, size_t n,
                    int classes, int fashion, const char *tmp, core_error *err)
{
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0)
        return core_error_set(err, "%s: cannot create the output file", tmp);
    hsize_t xdims[4] = {n, 1, fi->dims[1], fi->dims[2]};
    hsize_t ydims[1] = {n};
    hid_t xd = create_array(file, o->x_name, o->as_float ? H5T_IEEE_F32LE : H5T_STD_U8LE, 4, xdims,
                            IDX2H5_CHUNK);
    hid_t yd = create_array(file, o->y_name, H5T_STD_U8LE, 1, ydims, 65536);
    int rc = 0;
    if (xd < 0 || yd < 0)
        rc = core_error_set(err, "%s: cannot create datasets '%s' and '%s'", tmp, o->x_name,
                            o->y_name);
    if (rc == 0)
        rc = copy_images(fi, xd, xdims, o->as_float, tmp, o->x_name, err);
    if (rc == 0 && write_rows(yd, 1, ydims, 0, n, H5T_NATIVE_UCHAR, labels))
        rc = core_error_set(err, "%s: cannot write dataset '%s'", tmp, o->y_name);
    if (rc == 0 && write_attrs(file, o, classes, fashion))
        rc = core_error_set(err, "%s: cannot write the attributes", tmp);
    if (xd >= 0)
        H5Dclose(xd);
    if (yd >= 0)
        H5Dclose(yd);
    if (H5Fclose(file) < 0 && rc == 0)
        rc = core_error_set(err, "%s: cannot close (disk full?)", tmp);
    return rc;
}

static int idx2h5_convert(const idx2h5_options *o, core_error *err)
{
    data_hdf5_quiet();
    idx_file fi = {0}, fl = {0};
    unsigned char *labels = NULL;
    char tmp[4096];
    int rc = -1;
    snprintf(tmp, sizeof tmp, "%s.tmp", o->out);
    if (idx_open(&fi, o->images, IDX_IMAGES_MAGIC, 3, "images", err) ||
        idx_open(&fl, o->labels, IDX_LABELS_MAGIC, 1, "labels", err))
        goto done;
    if (fi.dims[0] != fl.dims[0]) {
        core_error_set(err, "%s has %u images but %s has %u labels; counts must agree", o->images,
                       fi.dims[0], o->labels, fl.dims[0]);
        goto done;
    }
    if (fi.dims[0] == 0 || fi.dims[1] == 0 || fi.dims[2] == 0 || fi.dims[1] > 65536 ||
        fi.dims[2] > 65536) {
        core_error_set(err, "%s: implausible image array %u x %u x %u", o->images, fi.dims[0],
                       fi.dims[1], fi.dims[2]);
        goto done;
    }
    size_t n = fi.dims[0];
    if (o->limit > 0 && (size_t)o->limit < n)
        n = (size_t)o->limit;
    labels = malloc(n);
    if (!labels) {
        core_error_set(err, "out of memory reading labels");
        goto done;
    }
    if (idx_read_exact(&fl, labels, n, "the labels", err))
        goto done;
    int maxl = 0;
    for (size_t i = 0; i < n; i++)
        maxl = labels[i] > maxl ? labels[i] : maxl;
    int fashion = idx2h5_is_fashion(o);
    int classes = fashion ? 10 : maxl + 1;
    if (maxl >= classes) {
        core_error_set(err, "%s: label %d is out of range [0, %d) for Fashion-MNIST", o->labels,
                       maxl, classes);
        goto done;
    }
    if (write_h5(o, &fi, labels, n, classes, fashion, tmp, err))
        goto done;
    if (rename(tmp, o->out) != 0) {
        core_error_set(err, "%s: cannot rename from %s: %s", o->out, tmp, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    if (rc)
        remove(tmp);
    free(labels);
    idx_close(&fi);
    idx_close(&fl);
    return rc;
}

#ifndef RT_IDX2H5_NO_MAIN
static void usage(FILE *out)
{
    fprintf(out,
            "usage: rt_idx2h5 --images FILE --labels FILE --out FILE.h5 [options]\n"
            "  --images FILE   idx3 ubyte image file (.gz or plain)\n"
            "  --labels FILE   idx1 ubyte label file (.gz or plain)\n"
            "  --out FILE.h5   output HDF5 file (written as FILE.h5.tmp, then renamed)\n"
            "  --x-name NAME   name of the sample dataset (default images)\n"
            "  --y-name NAME   name of the label dataset (default labels)\n"
            "  --limit N       convert only the first N samples\n"
            "  --float         store images as float32 in [0, 1] instead of uint8\n"
            "  --fashion       write Fashion-MNIST class names (auto if a path says 'fashion')\n"
            "  --no-fashion    never write Fashion-MNIST class names\n");
}

int main(int argc, char **argv)
{
    idx2h5_options o = {NULL, NULL, NULL, "images", "labels", 0, 0, -1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (!strcmp(a, "--images") && v)
            o.images = v;
        else if (!strcmp(a, "--labels") && v)
            o.labels = v;
        else if (!strcmp(a, "--out") && v)
            o.out = v;
        else if (!strcmp(a, "--x-name") && v)
            o.x_name = v;
        else if (!strcmp(a, "--y-name") && v)
            o.y_name = v;
        else if (!strcmp(a, "--limit") && v) {
            char *end;
            o.limit = strtol(v, &end, 10);
            if (*end || o.limit <= 0) {
                fprintf(stderr, "rt_idx2h5: --limit needs a positive integer, got '%s'\n", v);
                return 2;
            }
        } else {
            takes = 0;
            if (!strcmp(a, "--float"))
                o.as_float = 1;
            else if (!strcmp(a, "--fashion"))
                o.fashion = 1;
            else if (!strcmp(a, "--no-fashion"))
                o.fashion = 0;
            else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
                usage(stdout);
                return 0;
            } else {
                fprintf(stderr, "rt_idx2h5: unknown or incomplete option '%s'\n", a);
                usage(stderr);
                return 2;
            }
        }
        i += takes;
    }
    if (!o.images || !o.labels || !o.out) {
        fprintf(stderr, "rt_idx2h5: --images, --labels and --out are required\n");
        usage(stderr);
        return 2;
    }
    core_error err;
    core_error_clear(&err);
    if (idx2h5_convert(&o, &err)) {
        fprintf(stderr, "rt_idx2h5: %s\n", err.msg);
        return 1;
    }
    return 0;
}
#endif
