/*
 * data/dataset.c: the HDF5 dataset behind data.h.
 *
 * Opens a file read-only, checks the schema once (names, ranks, dtypes,
 * counts, optionally every label), and then serves hyperslab reads of sample
 * ranges, converting to float inputs and int32 labels. The file and dataset
 * handles stay open for the life of the data_dataset so that a read is one
 * H5Dread per array. HDF5's own error printing is switched off in every
 * thread that calls in here: the user sees only our one-line messages.
 *
 * A data_dataset is not meant to be read from two threads at once (the
 * loader owns it while an epoch runs); HDF5 itself is the thread-safe build.
 */
#include "data/data.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/par.h"

#define LABEL_CHECK_BLOCK 65536

struct data_dataset {
    char *path;
    char *x_name;
    char *y_name;
    hid_t file, x, y;
    int x_u8;    /* uint8 samples: scaled by 1/255 */
    int x_float; /* float samples: checked for NaN/Inf */
    int x_rank;
    hsize_t x_dims[DATA_MAX_DIMS + 1];
    data_image_layout attr_layout; /* the sample dataset's 'layout' attribute, AUTO if none */
    int nhwc;                      /* samples stored (H, W, C), transposed to (C, H, W) on read */
    size_t ch, hw;                 /* with nhwc: channels, and height * width */
    unsigned char *tbuf;           /* with nhwc: one sample, the transpose's scratch */
    int y_rank;
    hsize_t chunk0; /* samples per chunk of the sample array, 0 if contiguous */
    size_t n, sample_size;
    int num_classes;
};

void data_hdf5_quiet(void)
{
    /* Per thread in the thread-safe build, so every entry point calls it. */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static herr_t first_error_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    char *buf = data;
    if (n == 0 && e->desc)
        snprintf(buf, 256, "%s", e->desc);
    return 0;
}

/* The most specific message on HDF5's error stack, or a generic one. */
static const char *hdf5_reason(char buf[256])
{
    buf[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, first_error_cb, buf);
    H5Eclear2(H5E_DEFAULT);
    if (!buf[0])
        snprintf(buf, 256, "HDF5 error");
    for (char *c = buf; *c; c++) /* I/O messages carry a ctime() with its newline */
        if (*c == '\n')
            *c = ' ';
    return buf;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

static void format_shape(char *buf, size_t len, int rank, const hsize_t *dims)
{
    size_t off = 0;
    off += (size_t)snprintf(buf + off, len - off, "(");
    for (int i = 0; i < rank && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%llu", i ? ", " : "",
                                (unsigned long long)dims[i]);
    if (off < len && rank == 1)
        off += (size_t)snprintf(buf + off, len - off, ",");
    if (off < len)
        snprintf(buf + off, len - off, ")");
}

static void format_type(char *buf, size_t len, hid_t type)
{
    H5T_class_t cls = H5Tget_class(type);
    size_t bits = H5Tget_size(type) * 8;
    switch (cls) {
    case H5T_INTEGER:
        snprintf(buf, len, "%s%zu", H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int", bits);
        break;
    case H5T_FLOAT:
        snprintf(buf, len, "float%zu", bits);
        break;
    case H5T_STRING:
        snprintf(buf, len, "string");
        break;
    case H5T_COMPOUND:
        snprintf(buf, len, "compound");
        break;
    case H5T_ENUM:
        snprintf(buf, len, "enum (e.g. bool)");
        break;
    default:
        snprintf(buf, len, "HDF5 type class %d", (int)cls);
        break;
    }
}

struct name_list {
    char buf[512];
    size_t len;
};

static herr_t list_cb(hid_t group, const char *name, const H5L_info_t *info, void *data)
{
    struct name_list *nl = data;
    const char *suffix = "";
    hid_t obj = H5Oopen(group, name, H5P_DEFAULT);
    if (obj >= 0) {
        if (H5Iget_type(obj) == H5I_GROUP)
            suffix = "/";
        H5Oclose(obj);
    }
    if (nl->len < sizeof nl->buf) {
        int w = snprintf(nl->buf + nl->len, sizeof nl->buf - nl->len, "%s%s%s", nl->len ? ", " : "",
                         name, suffix);
        if (w > 0)
            nl->len += (size_t)w;
    }
    return 0;
}

/* True if every component of the (possibly nested) link path exists. */
static int link_exists(hid_t file, const char *name)
{
    char buf[1024];
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof buf)
        return 0;
    memcpy(buf, name, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        htri_t e = H5Lexists(file, buf, H5P_DEFAULT);
        buf[i] = c;
        if (e <= 0)
            return 0;
    }
    return 1;
}

static int open_array(data_dataset *d, const char *name, const char *flag, hid_t *out,
                      core_error *err)
{
    if (!link_exists(d->file, name)) {
        struct name_list nl = {{0}, 0};
        H5Literate(d->file, H5_INDEX_NAME, H5_ITER_INC, NULL, list_cb, &nl);
        H5Eclear2(H5E_DEFAULT);
        return core_error_set(err, "%s: dataset '%s' not found (available: %s); use %s", d->path,
                              name, nl.len ? nl.buf : "none", flag);
    }
    hid_t obj = H5Oopen(d->file, name, H5P_DEFAULT);
    if (obj < 0) {
        char r[256];
        return core_error_set(err, "%s: cannot open '%s' (%s)", d->path, name, hdf5_reason(r));
    }
    if (H5Iget_type(obj) != H5I_DATASET) {
        H5Oclose(obj);
        return core_error_set(err, "%s: '%s' is a group, not a dataset; use %s", d->path, name,
                              flag);
    }
    *out = obj;
    return 0;
}

static int check_x(data_dataset *d, core_error *err)
{
    hid_t type = H5Dget_type(d->x);
    hid_t space = H5Dget_space(d->x);
    char tname[64];
    format_type(tname, sizeof tname, type);
    H5T_class_t cls = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    int ok_int = cls == H5T_INTEGER && size <= 8;
    /* float16 (h5py's 'f2') too: HDF5 converts IEEE half to float32 on read */
    int ok_float = cls == H5T_FLOAT && (size == 2 || size == 4 || size == 8);
    d->x_u8 = ok_int && size == 1 && H5Tget_sign(type) == H5T_SGN_NONE;
    d->x_float = ok_float;
    int rank = H5Sget_simple_extent_ndims(space);
    hsize_t dims[H5S_MAX_RANK];
    if (rank > 0)
        H5Sget_simple_extent_dims(space, dims, NULL);
    hid_t dcpl = H5Dget_create_plist(d->x);
    d->chunk0 = 0;
    if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED && rank > 0) {
        hsize_t cd[H5S_MAX_RANK];
        if (H5Pget_chunk(dcpl, rank, cd) == rank)
            d->chunk0 = cd[0];
    }
    if (dcpl >= 0)
        H5Pclose(dcpl);
    H5Tclose(type);
    H5Sclose(space);

    if (!ok_int && !ok_float)
        return core_error_set(err,
                              "%s: dataset '%s' has unsupported dtype %s; expected uint8, "
                              "another integer type, float16, float32 or float64",
                              d->path, d->x_name, tname);
    char shape[160];
    format_shape(shape, sizeof shape, rank < 0 ? 0 : rank, dims);
    if (rank < 2 || rank > DATA_MAX_DIMS + 1)
        return core_error_set(err,
                              "%s: dataset '%s' has shape %s, expected (N, d1[, d2, ...]) with "
                              "2 to %d axes",
                              d->path, d->x_name, shape, DATA_MAX_DIMS + 1);
    d->x_rank = rank;
    memcpy(d->x_dims, dims, sizeof(hsize_t) * (size_t)rank);
    d->n = (size_t)dims[0];
    d->sample_size = 1;
    for (int i = 1; i < rank; i++)
        d->sample_size *= (size_t)dims[i];
    if (d->n == 0 || d->sample_size == 0)
        return core_error_set(err, "%s: dataset '%s' is empty (shape %s)", d->path, d->x_name,
                              shape);
    return 0;
}

static int check_y(data_dataset *d, core_error *err)
{
    hid_t type = H5Dget_type(d->y);
    hid_t space = H5Dget_space(d->y);
    char tname[64];
    format_type(tname, sizeof tname, type);
    int ok = H5Tget_class(type) == H5T_INTEGER && H5Tget_size(type) <= 8;
    int rank = H5Sget_simple_extent_ndims(space);
    hsize_t dims[H5S_MAX_RANK];
    if (rank > 0)
        H5Sget_simple_extent_dims(space, dims, NULL);
    H5Tclose(type);
    H5Sclose(space);
    if (!ok)
        return core_error_set(err, "%s: dataset '%s' has dtype %s, expected an integer type",
                              d->path, d->y_name, tname);
    char shape[160];
    format_shape(shape, sizeof shape, rank < 0 ? 0 : rank, dims);
    if (!(rank == 1 || (rank == 2 && dims[1] == 1)))
        return core_error_set(err, "%s: dataset '%s' has shape %s, expected (N,) or (N,1)", d->path,
                              d->y_name, shape);
    d->y_rank = rank;
    if (dims[0] == 0)
        return core_error_set(err, "%s: dataset '%s' is empty (shape %s)", d->path, d->y_name,
                              shape);
    if ((size_t)dims[0] != d->n)
        return core_error_set(err,
                              "%s: dataset '%s' has %llu samples but dataset '%s' has %llu "
                              "labels; counts must agree",
                              d->path, d->x_name, (unsigned long long)d->n, d->y_name,
                              (unsigned long long)dims[0]);
    return 0;
}

/* The sample dataset's string attribute 'layout' ("nchw" or "nhwc", any
 * case; h5py writes variable-length UTF-8, other tools fixed-length). */
static int read_layout_attr(data_dataset *d, core_error *err)
{
    d->attr_layout = DATA_IMAGE_AUTO;
    if (H5Aexists(d->x, "layout") <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return 0;
    }
    char val[16] = "";
    hid_t a = H5Aopen(d->x, "layout", H5P_DEFAULT);
    hid_t ft = a >= 0 ? H5Aget_type(a) : H5I_INVALID_HID;
    hid_t mt = ft >= 0 && H5Tget_class(ft) == H5T_STRING ? H5Tget_native_type(ft, H5T_DIR_ASCEND)
                                                         : H5I_INVALID_HID;
    if (mt >= 0 && H5Tis_variable_str(ft) > 0) {
        char *v = NULL;
        if (H5Aread(a, mt, &v) >= 0 && v) {
            snprintf(val, sizeof val, "%s", v);
            H5free_memory(v);
        }
    } else if (mt >= 0 && H5Tget_size(ft) < sizeof val) {
        if (H5Aread(a, mt, val) < 0)
            val[0] = '\0';
        val[sizeof val - 1] = '\0';
    }
    if (mt >= 0)
        H5Tclose(mt);
    if (ft >= 0)
        H5Tclose(ft);
    if (a >= 0)
        H5Aclose(a);
    H5Eclear2(H5E_DEFAULT);
    if (strcasecmp(val, "nchw") == 0)
        d->attr_layout = DATA_IMAGE_NCHW;
    else if (strcasecmp(val, "nhwc") == 0)
        d->attr_layout = DATA_IMAGE_NHWC;
    else
        return core_error_set(err,
                              "%s: dataset '%s' has a 'layout' attribute of '%s'; expected the "
                              "string \"nchw\" or \"nhwc\"",
                              d->path, d->x_name, val);
    return 0;
}

static int check_labels(data_dataset *d, core_error *err)
{
    size_t block = d->n < LABEL_CHECK_BLOCK ? d->n : LABEL_CHECK_BLOCK;
    int32_t *buf = malloc(block * sizeof *buf);
    if (!buf)
        return core_error_set(err, "%s: out of memory checking labels", d->path);
    int rc = 0;
    for (size_t s = 0; s < d->n && rc == 0; s += block) {
        size_t c = d->n - s < block ? d->n - s : block;
        rc = data_dataset_read(d, s, c, NULL, buf, err);
    }
    free(buf);
    return rc;
}

static int check_path(const char *path, core_error *err)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return core_error_set(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int isdir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
    close(fd);
    if (isdir)
        return core_error_set(err, "%s: cannot open: Is a directory", path);
    if (H5Fis_hdf5(path) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return core_error_set(err, "%s: not an HDF5 file", path);
    }
    return 0;
}

/* Why H5Fopen failed. HDF5 (1.10+) locks a file while a program has it open
 * for writing and then reports only the lock's errno. */
static void open_failed(const char *path, core_error *err)
{
    char r[256];
    hdf5_reason(r);
    if (strstr(r, "unable to lock file") && strstr(r, "errno = 11"))
        core_error_set(err,
                       "%s: another program has this file open for writing (HDF5 file lock "
                       "held); let it finish and close the file (h5py: f.close()), then run "
                       "again",
                       path);
    else if (strstr(r, "unable to lock file"))
        core_error_set(err,
                       "%s: cannot open as HDF5 (%s); if this file system does not support "
                       "file locks, run with HDF5_USE_FILE_LOCKING=FALSE in the environment of "
                       "every rank (mpirun -x HDF5_USE_FILE_LOCKING=FALSE)",
                       path, r);
    else
        core_error_set(err, "%s: cannot open as HDF5 (%s)", path, r);
}

/* The label array, unless it may be missing and is. */
static int open_labels(data_dataset *d, int optional, int num_classes, core_error *err)
{
    if (optional && !link_exists(d->file, d->y_name)) {
        H5Eclear2(H5E_DEFAULT);
        return 0;
    }
    if (open_array(d, d->y_name, "--y-name", &d->y, err) || check_y(d, err))
        return -1;
    return num_classes > 0 ? check_labels(d, err) : 0;
}

static int open_file(const char *path, const char *x_name, const char *y_name, int num_classes,
                     int labels_optional, data_dataset **out, core_error *err)
{
    data_hdf5_quiet();
    *out = NULL;
    if (!x_name)
        x_name = "images";
    if (!y_name)
        y_name = "labels";
    if (check_path(path, err))
        return -1;
    data_dataset *d = calloc(1, sizeof *d);
    if (!d)
        return core_error_set(err, "%s: out of memory", path);
    d->file = d->x = d->y = H5I_INVALID_HID;
    d->num_classes = num_classes;
    d->path = dup_str(path);
    d->x_name = dup_str(x_name);
    d->y_name = dup_str(y_name);
    if (!d->path || !d->x_name || !d->y_name) {
        data_dataset_close(d);
        return core_error_set(err, "%s: out of memory", path);
    }
    d->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (d->file < 0) {
        open_failed(path, err);
        data_dataset_close(d);
        return -1;
    }
    if (open_array(d, x_name, "--x-name", &d->x, err) || check_x(d, err) ||
        read_layout_attr(d, err) || open_labels(d, labels_optional, num_classes, err)) {
        data_dataset_close(d);
        return -1;
    }
    *out = d;
    return 0;
}

int data_dataset_open(const char *path, const char *x_name, const char *y_name, int num_classes,
                      data_dataset **out, core_error *err)
{
    return open_file(path, x_name, y_name, num_classes, 0, out, err);
}

int data_dataset_open_unlabeled(const char *path, const char *x_name, const char *y_name,
                                int num_classes, data_dataset **out, core_error *err)
{
    return open_file(path, x_name, y_name, num_classes, 1, out, err);
}

int data_dataset_has_labels(const data_dataset *d)
{
    return d->y >= 0;
}

void data_dataset_close(data_dataset *d)
{
    if (!d)
        return;
    data_hdf5_quiet();
    if (d->x >= 0)
        H5Oclose(d->x);
    if (d->y >= 0)
        H5Oclose(d->y);
    if (d->file >= 0)
        H5Fclose(d->file);
    free(d->tbuf);
    free(d->path);
    free(d->x_name);
    free(d->y_name);
    free(d);
}

size_t data_dataset_count(const data_dataset *d)
{
    return d->n;
}

size_t data_dataset_sample_size(const data_dataset *d)
{
    return d->sample_size;
}

int data_dataset_sample_dims(const data_dataset *d, int dims[DATA_MAX_DIMS])
{
    for (int i = 0; i < DATA_MAX_DIMS; i++)
        dims[i] = i + 1 < d->x_rank ? (int)d->x_dims[i + 1] : 0;
    return d->x_rank - 1;
}

const char *data_dataset_path(const data_dataset *d)
{
    return d->path;
}

size_t data_dataset_chunk_samples(const data_dataset *d)
{
    return (size_t)d->chunk0;
}

int data_image_layout_parse(const char *name, data_image_layout *out, core_error *err)
{
    static const char *const names[] = {"auto", "nchw", "nhwc"};
    for (int i = 0; i < 3; i++)
        if (name && strcmp(name, names[i]) == 0) {
            *out = (data_image_layout)i;
            return 0;
        }
    return core_error_set(err, "--layout expects auto, nchw or nhwc, got '%s'",
                          name ? name : "(null)");
}

static void format_dims(char *buf, size_t len, int n, const int *dims)
{
    hsize_t h[DATA_MAX_DIMS + 1];
    for (int i = 0; i < n && i <= DATA_MAX_DIMS; i++)
        h[i] = (hsize_t)dims[i];
    format_shape(buf, len, n, h);
}

/* The axes other than those of length 1, which do not change the order of
 * the values. */
static int squeeze(int n, const int *dims, int *out)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        if (dims[i] != 1)
            out[k++] = dims[i];
    return k;
}

static int cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

/* Same axis lengths in another order, and an order that changes how the
 * values would be read. */
static int is_reordering(int n, const int *a, const int *b)
{
    int sa[DATA_MAX_DIMS], sb[DATA_MAX_DIMS], qa[DATA_MAX_DIMS], qb[DATA_MAX_DIMS];
    memcpy(sa, a, sizeof(int) * (size_t)n);
    memcpy(sb, b, sizeof(int) * (size_t)n);
    qsort(sa, (size_t)n, sizeof(int), cmp_int);
    qsort(sb, (size_t)n, sizeof(int), cmp_int);
    if (memcmp(sa, sb, sizeof(int) * (size_t)n) != 0)
        return 0;
    int ka = squeeze(n, a, qa), kb = squeeze(n, b, qb);
    return ka != kb || memcmp(qa, qb, sizeof(int) * (size_t)ka) != 0;
}

int data_dataset_match_input(data_dataset *d, const int *dims, int nd, data_image_layout layout,
                             const char *spec_path, core_error *err)
{
    size_t want = 1;
    for (int i = 0; i < nd; i++)
        want *= (size_t)dims[i];
    if (d->sample_size != want)
        return core_error_set(err,
                              "%s: samples have %zu values each but the model's input takes %zu; "
                              "check the 'input' line of %s",
                              d->path, d->sample_size, want, spec_path);
    int sd[DATA_MAX_DIMS];
    int ns = data_dataset_sample_dims(d, sd);
    char have[96], model[96];
    format_dims(have, sizeof have, ns, sd);
    format_dims(model, sizeof model, nd, dims);
    int from_flag = layout != DATA_IMAGE_AUTO;
    if (!from_flag)
        layout = d->attr_layout;
    d->nhwc = 0;
    free(d->tbuf); /* a second call decides afresh */
    d->tbuf = NULL;
    if (layout == DATA_IMAGE_NHWC) {
        if (nd != 3 || ns != 3 || sd[0] != dims[1] || sd[1] != dims[2] || sd[2] != dims[0])
            return core_error_set(err,
                                  "%s: %s says the samples of dataset '%s' are channels-last "
                                  "(H, W, C), but they have shape %s and the model's input is "
                                  "(C, H, W) = %s",
                                  d->path, from_flag ? "--layout nhwc" : "its attribute layout",
                                  d->x_name, have, model);
        if (dims[0] == 1)
            return 0; /* one channel: (H, W, 1) holds the values in (1, H, W) order */
        d->tbuf = malloc(d->sample_size * sizeof(float));
        if (!d->tbuf)
            return core_error_set(err, "%s: out of memory", d->path);
        d->nhwc = 1;
        d->ch = (size_t)dims[0];
        d->hw = (size_t)dims[1] * (size_t)dims[2];
        return 0;
    }
    if (layout == DATA_IMAGE_NCHW || ns != nd || !is_reordering(nd, sd, dims))
        return 0;
    int hwc = nd == 3 && sd[0] == dims[1] && sd[1] == dims[2] && sd[2] == dims[0];
    if (hwc)
        return core_error_set(err,
                              "%s: dataset '%s' has samples of shape %s but the model's input "
                              "is %s; if they are channels-last images (NHWC, as TensorFlow "
                              "and most image files store them) pass --layout nhwc, or set the "
                              "attribute layout=\"nhwc\" on the dataset",
                              d->path, d->x_name, have, model);
    return core_error_set(err,
                          "%s: dataset '%s' has samples of shape %s but the model's input is %s; "
                          "store them in the model's axis order (or pass --layout nchw to read "
                          "them as stored)",
                          d->path, d->x_name, have, model);
}

/* (H, W, C) -> (C, H, W), sample by sample, through d->tbuf. */
static void to_channels_first(data_dataset *d, void *x, size_t count)
{
    size_t ss = d->sample_size, ch = d->ch, hw = d->hw;
    if (d->x_u8) {
        unsigned char *s = x, *t = d->tbuf;
        for (size_t n = 0; n < count; n++, s += ss) {
            memcpy(t, s, ss);
            for (size_t c = 0; c < ch; c++)
                for (size_t p = 0; p < hw; p++)
                    s[c * hw + p] = t[p * ch + c];
        }
        return;
    }
    float *s = x, *t = (float *)(void *)d->tbuf;
    for (size_t n = 0; n < count; n++, s += ss) {
        memcpy(t, s, ss * sizeof(float));
        for (size_t c = 0; c < ch; c++)
            for (size_t p = 0; p < hw; p++)
                s[c * hw + p] = t[p * ch + c];
    }
}

/* Selects rows [start, start+count) of a dataset of the given rank and reads
 * them as mem_type into buf. */
static int read_rows(data_dataset *d, hid_t dset, const char *name, int rank, const hsize_t *dims,
                     hid_t mem_type, size_t start, size_t count, void *buf, core_error *err)
{
    hsize_t off[DATA_MAX_DIMS + 1] = {0};
    hsize_t cnt[DATA_MAX_DIMS + 1];
    off[0] = start;
    cnt[0] = count;
    for (int i = 1; i < rank; i++)
        cnt[i] = dims[i];
    hid_t fspace = H5Dget_space(dset);
    /* Same shape as the file selection: HDF5 then copies whole runs instead of
     * iterating element sequences. */
    hid_t mspace = H5Screate_simple(rank, cnt, NULL);
    herr_t rc = -1;
    if (fspace >= 0 && mspace >= 0 &&
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, off, NULL, cnt, NULL) >= 0)
        rc = H5Dread(dset, mem_type, mspace, fspace, H5P_DEFAULT, buf);
    char r[256];
    if (rc < 0)
        hdf5_reason(r);
    if (fspace >= 0)
        H5Sclose(fspace);
    if (mspace >= 0)
        H5Sclose(mspace);
    if (rc < 0)
        return core_error_set(err,
                              "%s: dataset '%s': read of samples [%zu, %zu) failed (%s); "
                              "is the file truncated or corrupted?",
                              d->path, name, start, start + count, r);
    return 0;
}

size_t data_dataset_elem_bytes(const data_dataset *d)
{
    return d->x_u8 ? 1 : sizeof(float);
}

typedef struct widen_job {
    const unsigned char *src;
    float *out;
} widen_job;

static void widen_range(void *ctx, size_t lo, size_t hi)
{
    const widen_job *j = ctx;
    for (size_t i = lo; i < hi; i++)
        j->out[i] = (float)j->src[i] / 255.0f;
}

/* One sample at a time stays on the caller (the loader thread); a whole
 * shard read into floats at once is split over the rank's threads. */
void data_dataset_widen(const data_dataset *d, const void *raw, size_t n, float *out)
{
    if (!d->x_u8) {
        memcpy(out, raw, n * sizeof(float));
        return;
    }
    widen_job j = {raw, out};
    core_par_for(n, 1 << 16, 64, widen_range, &j);
}

/* Float samples as read (file order): NaN or Inf ends the read. */
static int check_finite(data_dataset *d, size_t start, size_t count, const void *xv,
                        core_error *err)
{
    if (!d->x_float)
        return 0;
    const float *x = xv;
    size_t total = count * d->sample_size;
    for (size_t i = 0; i < total; i++) {
        if (isfinite(x[i]))
            continue;
        return core_error_set(err,
                              "%s: dataset '%s': sample %zu has %s at element %zu; inputs must "
                              "be finite (clean the file)",
                              d->path, d->x_name, start + i / d->sample_size,
                              isnan(x[i]) ? "NaN" : "Inf (or a value beyond float32 range)",
                              i % d->sample_size);
    }
    return 0;
}

/* x as stored: bytes for uint8 files, float32 (checked finite) otherwise. */
static int read_x_raw(data_dataset *d, size_t start, size_t count, void *xv, core_error *err)
{
    hid_t mem = d->x_u8 ? H5T_NATIVE_UCHAR : H5T_NATIVE_FLOAT;
    if (read_rows(d, d->x, d->x_name, d->x_rank, d->x_dims, mem, start, count, xv, err) ||
        check_finite(d, start, count, xv, err))
        return -1;
    if (d->nhwc)
        to_channels_first(d, xv, count);
    return 0;
}

static int read_x(data_dataset *d, size_t start, size_t count, float *x, core_error *err)
{
    if (!d->x_u8)
        return read_x_raw(d, start, count, x, err);
    /* Read the bytes into the last quarter of x and widen forward in place:
     * x[i] never overwrites a byte not yet read, so no scratch buffer. */
    size_t total = count * d->sample_size;
    unsigned char *src = (unsigned char *)x + 3 * total;
    if (read_x_raw(d, start, count, src, err))
        return -1;
    data_dataset_widen(d, src, total, x);
    return 0;
}

static int read_y(data_dataset *d, size_t start, size_t count, int32_t *y, core_error *err)
{
    if (d->y < 0) { /* opened without labels */
        for (size_t i = 0; i < count; i++)
            y[i] = -1;
        return 0;
    }
    hsize_t ydims[2] = {d->n, 1};
    if (read_rows(d, d->y, d->y_name, d->y_rank, ydims, H5T_NATIVE_INT32, start, count, y, err))
        return -1;
    if (d->num_classes <= 0)
        return 0;
    for (size_t i = 0; i < count; i++) {
        if (y[i] >= 0 && y[i] < d->num_classes)
            continue;
        return core_error_set(err,
                              "%s: dataset '%s': label %d at index %zu is out of range [0, %d)",
                              d->path, d->y_name, (int)y[i], start + i, d->num_classes);
    }
    return 0;
}

static int read_checked(data_dataset *d, size_t start, size_t count, void *x, int raw, int32_t *y,
                        core_error *err)
{
    data_hdf5_quiet();
    if (start > d->n || count > d->n - start)
        return core_error_set(err, "%s: samples [%zu, %zu) out of range (dataset has %zu)", d->path,
                              start, start + count, d->n);
    if (count == 0)
        return 0;
    if (x && (raw ? read_x_raw(d, start, count, x, err) : read_x(d, start, count, x, err)))
        return -1;
    if (y && read_y(d, start, count, y, err))
        return -1;
    return 0;
}

int data_dataset_read(data_dataset *d, size_t start, size_t count, float *x, int32_t *y,
                      core_error *err)
{
    return read_checked(d, start, count, x, 0, y, err);
}

int data_dataset_read_raw(data_dataset *d, size_t start, size_t count, void *x, int32_t *y,
                          core_error *err)
{
    return read_checked(d, start, count, x, 1, y, err);
}

void data_shard_range(size_t n, int rank, int world, size_t *start, size_t *count)
{
    if (world <= 0 || rank < 0 || rank >= world) {
        *start = n;
        *count = 0;
        return;
    }
    size_t w = (size_t)world, r = (size_t)rank;
    size_t base = n / w, extra = n % w;
    *count = base + (r < extra ? 1 : 0);
    *start = r * base + (r < extra ? r : extra);
}
