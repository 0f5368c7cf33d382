/*
 * train/checkpoint.c: rank 0's checkpoints (see checkpoint.h and
 * docs/CHECKPOINT_FORMAT.md).
 *
 * Writing is crash-safe by construction: the HDF5 file is built under a
 * ".tmp" name, flushed, closed and fsync'd, and only then renamed to its final
 * name (rename(2) is atomic), after which the directory is fsync'd so the
 * rename itself is durable. The "latest" pointer is replaced the same way.
 * A reader therefore never sees a half-written file under a final name.
 *
 * Reading validates the whole file (format version, tensor names, shapes and
 * dtypes, optimizer kind) into temporary buffers before touching the model or
 * the optimizer, so a bad checkpoint leaves the run exactly as it was.
 *
 * HDF5's own error printing is switched off while we work (and restored
 * afterwards); the innermost HDF5 message is folded into our one-line error.
 */
#include "train/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "core/log.h"
#include "core/mem.h"

#define CKPT_PATH_MAX 4096
#define CKPT_LATEST   "latest"

/* ---------------------------------------------------------------- HDF5 glue */

typedef struct h5_quiet {
    H5E_auto2_t func;
    void *data;
} h5_quiet;

static h5_quiet h5_quiet_begin(void)
{
    h5_quiet q = {NULL, NULL};
    H5Eget_auto2(H5E_DEFAULT, &q.func, &q.data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return q;
}

static void h5_quiet_end(h5_quiet q)
{
    H5Eset_auto2(H5E_DEFAULT, q.func, q.data);
}

typedef struct h5_detail_buf {
    char text[256];
} h5_detail_buf;

static herr_t h5_detail_walk(unsigned n, const H5E_error2_t *e, void *data)
{
    h5_detail_buf *b = data;
    if (n == 0 && e->desc)
        snprintf(b->text, sizeof b->text, "%s", e->desc);
    return 0;
}

/* The innermost message of HDF5's current error stack ("truncated file:
 * eof = ..."), i.e. the place where the problem was detected. */
static const char *h5_detail(h5_detail_buf *b)
{
    b->text[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_detail_walk, b);
    if (!b->text[0])
        snprintf(b->text, sizeof b->text, "no detail from HDF5");
    for (char *c = b->text; *c; c++) /* I/O messages carry a ctime() with its newline */
        if (*c == '\n')
            *c = ' ';
    return b->text;
}

static void h5_close(hid_t *id, herr_t (*fn)(hid_t))
{
    if (*id >= 0)
        fn(*id);
    *id = -1;
}

/* A file access list whose close really closes the file, even if an object
 * were left open, so the fsync that follows sees every byte. */
static hid_t h5_fapl(void)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0)
        H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
    return fapl;
}

static const char *shape_str(char *buf, size_t len, int ndim, const hsize_t *dims)
{
    size_t k = 0;
    k += (size_t)snprintf(buf + k, len - k, "(");
    for (int i = 0; i < ndim && k < len; i++)
        k += (size_t)snprintf(buf + k, len - k, i ? ",%llu" : "%llu", (unsigned long long)dims[i]);
    if (k < len)
        snprintf(buf + k, len - k, ")");
    return buf;
}

/* ------------------------------------------------------------ file system */

static int join_path(char *out, size_t len, const char *dir, const char *name, core_error *err)
{
    int n = snprintf(out, len, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= len)
        return core_error_set(err, "%s/%s: path too long", dir, name);
    return 0;
}

/* mkdir -p: creates every missing component of dir. */
static int make_dirs(const char *dir, core_error *err)
{
    char buf[CKPT_PATH_MAX];
    size_t n = strlen(dir);
    if (n == 0)
        return core_error_set(err, "checkpoint directory is an empty string");
    if (n >= sizeof buf)
        return core_error_set(err, "%s: path too long", dir);
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return core_error_set(err, "cannot create checkpoint directory '%s': %s (at '%s')", dir,
                                  strerror(errno), buf);
        buf[i] = saved;
    }
    struct stat st;
    if (stat(dir, &st) != 0)
        return core_error_set(err, "cannot create checkpoint directory '%s': %s", dir,
                              strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return core_error_set(err, "checkpoint directory '%s' exists and is not a directory", dir);
    return 0;
}

static int fsync_path(const char *path, int is_dir, core_error *err)
{
    int fd = open(path, is_dir ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
    if (fd < 0)
        return core_error_set(err, "%s: cannot open to sync: %s", path, strerror(errno));
    /* Some file systems cannot sync a directory; the rename is then as
     * durable as they make it, which is all we can ask for. */
    if (fsync(fd) != 0 && !(is_dir && errno == EINVAL)) {
        int e = errno;
        close(fd);
        return core_error_set(err, "%s: fsync failed: %s", path, strerror(e));
    }
    close(fd);
    return 0;
}

static int write_all(int fd, const char *buf, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Replaces <dir>/latest with a file holding `name` (a basename) and a newline. */
static int write_pointer(const char *dir, const char *name, core_error *err)
{
    char tmp[CKPT_PATH_MAX], final[CKPT_PATH_MAX], line[CKPT_PATH_MAX];
    char tmp_name[64];
    snprintf(tmp_name, sizeof tmp_name, CKPT_LATEST ".tmp.%ld", (long)getpid());
    if (join_path(tmp, sizeof tmp, dir, tmp_name, err) != 0 ||
        join_path(final, sizeof final, dir, CKPT_LATEST, err) != 0)
        return -1;
    int len = snprintf(line, sizeof line, "%s\n", name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return core_error_set(err, "%s: cannot create: %s", tmp, strerror(errno));
    if (write_all(fd, line, (size_t)len) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return core_error_set(err, "%s: cannot write: %s", tmp, strerror(e));
    }
    if (close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return core_error_set(err, "%s: cannot write: %s", tmp, strerror(e));
    }
    if (rename(tmp, final) != 0) {
        int e = errno;
        unlink(tmp);
        return core_error_set(err, "cannot rename %s to %s: %s", tmp, final, strerror(e));
    }
    return fsync_path(dir, 1, err);
}

/* ----------------------------------------------------------------- writing */

static int attr_write(hid_t obj, const char *name, hid_t file_type, hid_t mem_type, const void *val,
                      core_error *err)
{
    h5_detail_buf d;
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = sp < 0 ? -1 : H5Acreate2(obj, name, file_type, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t st = a < 0 ? -1 : H5Awrite(a, mem_type, val);
    if (st < 0)
        core_error_set(err, "cannot write attribute '%s' (%s)", name, h5_detail(&d));
    h5_close(&a, H5Aclose);
    h5_close(&sp, H5Sclose);
    return st < 0 ? -1 : 0;
}

static int attr_write_i64(hid_t obj, const char *name, int64_t v, core_error *err)
{
    return attr_write(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, err);
}

static int attr_write_u64(hid_t obj, const char *name, uint64_t v, core_error *err)
{
    return attr_write(obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v, err);
}

static int attr_write_f64(hid_t obj, const char *name, double v, core_error *err)
{
    return attr_write(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v, err);
}

static int attr_write_segments(hid_t obj, const train_progress *p, core_error *err)
{
    h5_detail_buf d;
    int64_t v[TRAIN_MAX_SEGMENTS * 3];
    for (int i = 0; i < p->nseg; i++) {
        v[3 * i] = p->seg[i].world;
        v[3 * i + 1] = p->seg[i].batch;
        v[3 * i + 2] = p->seg[i].steps;
    }
    hsize_t dims[2] = {(hsize_t)p->nseg, 3};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t a = sp < 0
                  ? -1
                  : H5Acreate2(obj, "epoch_segments", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t st = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_INT64, v);
    if (st < 0)
        core_error_set(err, "cannot write attribute 'epoch_segments' (%s)", h5_detail(&d));
    h5_close(&a, H5Aclose);
    h5_close(&sp, H5Sclose);
    return st < 0 ? -1 : 0;
}

/* Variable-length UTF-8, which h5py returns as a Python str. */
static int attr_write_str(hid_t obj, const char *name, const char *text, core_error *err)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0 || H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        h5_close(&t, H5Tclose);
        return core_error_set(err, "cannot make a string type for attribute '%s'", name);
    }
    const char *s = text ? text : "";
    int rc = attr_write(obj, name, t, t, &s, err);
    h5_close(&t, H5Tclose);
    return rc;
}

static int write_tensor(hid_t group, const char *gname, const nn_tensor *t, const float *base,
                        core_error *err)
{
    h5_detail_buf d;
    hsize_t dims[NN_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++)
        dims[i] = (hsize_t)t->dims[i];
    hid_t sp = t->ndim > 0 ? H5Screate_simple(t->ndim, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t ds = sp < 0 ? -1
                      : H5Dcreate2(group, t->name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                                   H5P_DEFAULT);
    herr_t st =
        ds < 0 ? -1
               : H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, base + t->offset);
    if (st < 0)
        core_error_set(err, "cannot write dataset %s/%s (%s)", gname, t->name, h5_detail(&d));
    h5_close(&ds, H5Dclose);
    h5_close(&sp, H5Sclose);
    return st < 0 ? -1 : 0;
}

/* One group holding every model tensor, taken from `base` (params or a moment). */
static int write_group(hid_t file, const char *gname, const nn_model *m, const float *base,
                       core_error *err)
{
    h5_detail_buf d;
    hid_t g = H5Gcreate2(file, gname, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0)
        return core_error_set(err, "cannot create group %s (%s)", gname, h5_detail(&d));
    int rc = 0;
    for (int i = 0; i < nn_model_tensor_count(m) && rc == 0; i++)
        rc = write_tensor(g, gname, nn_model_tensor(m, i), base, err);
    h5_close(&g, H5Gclose);
    return rc;
}

/* Row layout of a tensor: rows along the first dimension, `row` floats each
 * (a scalar is one row of one). */
static void tensor_rows(const nn_tensor *t, size_t *rows, size_t *row)
{
    *rows = t->ndim > 0 ? (size_t)t->dims[0] : 1;
    *row = *rows > 0 ? t->count / *rows : 1;
}

int train_checkpoint_ranges(const nn_model *m, int states, train_ckpt_range_fn fn, void *ctx)
{
    for (int k = 0; k < states; k++)
        for (int i = 0; i < nn_model_tensor_count(m); i++) {
            const nn_tensor *t = nn_model_tensor(m, i);
            size_t rows, row;
            tensor_rows(t, &rows, &row);
            size_t per = row > 0 && TRAIN_CKPT_RANGE / row > 0 ? TRAIN_CKPT_RANGE / row : 1;
            for (size_t r = 0; r < rows; r += per) {
                size_t nr = rows - r < per ? rows - r : per;
                int rc = fn(ctx, k, t->offset + r * row, t->offset + (r + nr) * row);
                if (rc != 0)
                    return rc;
            }
        }
    return 0;
}

/* Writing the state range by range (train_checkpoint_write_from with a
 * source): each range is filled into buf and written as a hyperslab of
 * rows of its tensor's dataset, created at the tensor's first range. */
typedef struct range_writer {
    hid_t file, group, ds;
    const nn_model *m;
    const train_ckpt_source *src;
    float *buf;
    int k, tensor;
    core_error *err;
} range_writer;

static int tensor_at(const nn_model *m, size_t lo)
{
    int i = 0;
    while (i + 1 < nn_model_tensor_count(m) &&
           !(lo >= nn_model_tensor(m, i)->offset &&
             lo < nn_model_tensor(m, i)->offset + nn_model_tensor(m, i)->count))
        i++;
    return i;
}

/* The file and memory spaces of rows [lo, hi) of tensor t's dataset (H5S_ALL
 * for a scalar); close them with close_rows. */
static herr_t select_rows(hid_t ds, const nn_tensor *t, size_t lo, size_t hi, hid_t *fs, hid_t *ms)
{
    *fs = *ms = H5S_ALL;
    if (t->ndim == 0)
        return 0;
    size_t rows, row;
    tensor_rows(t, &rows, &row);
    hsize_t start[NN_MAX_DIMS] = {0}, cnt[NN_MAX_DIMS];
    for (int j = 0; j < t->ndim; j++)
        cnt[j] = (hsize_t)t->dims[j];
    start[0] = (hsize_t)((lo - t->offset) / row);
    cnt[0] = (hsize_t)((hi - lo) / row);
    *fs = H5Dget_space(ds);
    *ms = H5Screate_simple(t->ndim, cnt, NULL);
    if (*fs < 0 || *ms < 0)
        return -1;
    return H5Sselect_hyperslab(*fs, H5S_SELECT_SET, start, NULL, cnt, NULL);
}

static void close_rows(const nn_tensor *t, hid_t *fs, hid_t *ms)
{
    if (t->ndim == 0)
        return;
    h5_close(fs, H5Sclose);
    h5_close(ms, H5Sclose);
}

static int write_range(void *ctx, int k, size_t lo, size_t hi)
{
    range_writer *rw = ctx;
    h5_detail_buf d;
    static const char *const names[2] = {"/optim/m", "/optim/v"};
    if (k != rw->k) {
        h5_close(&rw->ds, H5Dclose);
        h5_close(&rw->group, H5Gclose);
        rw->k = k;
        rw->tensor = -1;
        rw->group = H5Gcreate2(rw->file, names[k], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (rw->group < 0)
            return core_error_set(rw->err, "cannot create group %s (%s)", names[k], h5_detail(&d));
    }
    int i = tensor_at(rw->m, lo);
    const nn_tensor *t = nn_model_tensor(rw->m, i);
    hsize_t dims[NN_MAX_DIMS];
    for (int j = 0; j < t->ndim; j++)
        dims[j] = (hsize_t)t->dims[j];
    if (i != rw->tensor) {
        h5_close(&rw->ds, H5Dclose);
        rw->tensor = i;
        hid_t sp = t->ndim > 0 ? H5Screate_simple(t->ndim, dims, NULL) : H5Screate(H5S_SCALAR);
        rw->ds = sp < 0 ? -1
                        : H5Dcreate2(rw->group, t->name, H5T_IEEE_F32LE, sp, H5P_DEFAULT,
                                     H5P_DEFAULT, H5P_DEFAULT);
        h5_close(&sp, H5Sclose);
        if (rw->ds < 0)
            return core_error_set(rw->err, "cannot create dataset %s/%s (%s)", names[k], t->name,
                                  h5_detail(&d));
    }
    if (rw->src->fill(rw->src->ctx, k, lo, hi, rw->buf, rw->err) != 0)
        return -1;
    hid_t fs, ms;
    herr_t st = select_rows(rw->ds, t, lo, hi, &fs, &ms);
    if (st >= 0)
        st = H5Dwrite(rw->ds, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, rw->buf);
    if (st < 0)
        core_error_set(rw->err, "cannot write dataset %s/%s (%s)", names[k], t->name,
                       h5_detail(&d));
    close_rows(t, &fs, &ms);
    return st < 0 ? -1 : 0;
}

static int write_state_ranges(hid_t file, const nn_model *m, const optim *o,
                              const train_ckpt_source *src, core_error *err)
{
    size_t longest = TRAIN_CKPT_RANGE;
    for (int i = 0; i < nn_model_tensor_count(m); i++) {
        size_t rows, row;
        tensor_rows(nn_model_tensor(m, i), &rows, &row);
        longest = row > longest ? row : longest;
    }
    range_writer rw = {file, -1, -1, m, src, NULL, -1, -1, err};
    rw.buf = core_alloc(longest * sizeof(float), "checkpoint range buffer", err);
    if (!rw.buf)
        return -1;
    int rc = train_checkpoint_ranges(m, optim_state_count(o), write_range, &rw);
    h5_close(&rw.ds, H5Dclose);
    h5_close(&rw.group, H5Gclose);
    core_free(rw.buf);
    return rc ? -1 : 0;
}

static int write_optim(hid_t file, const nn_model *m, const optim *o, const train_ckpt_source *src,
                       core_error *err)
{
    h5_detail_buf d;
    hid_t g = H5Gcreate2(file, "/optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0)
        return core_error_set(err, "cannot create group /optim (%s)", h5_detail(&d));
    /* The hyperparameters travel for the record; resuming keeps the run's own. */
    const optim_config *c = &o->cfg;
    int rc = attr_write_f64(g, "momentum", c->momentum, err) ||
             attr_write_i64(g, "nesterov", c->nesterov, err) ||
             attr_write_f64(g, "beta1", c->beta1, err) ||
             attr_write_f64(g, "beta2", c->beta2, err) || attr_write_f64(g, "eps", c->eps, err) ||
             attr_write_f64(g, "weight_decay", c->weight_decay, err);
    h5_close(&g, H5Gclose);
    if (rc)
        return -1;
    if (src)
        return write_state_ranges(file, m, o, src, err);
    if (write_group(file, "/optim/m", m, o->m, err) != 0)
        return -1;
    if (optim_state_count(o) > 1 && write_group(file, "/optim/v", m, o->v, err) != 0)
        return -1;
    return 0;
}

static int write_root_attrs(hid_t f, const nn_model *m, const optim *o, const train_progress *p,
                            const char *config_text, core_error *err)
{
    if (attr_write_i64(f, "format_version", TRAIN_CHECKPOINT_VERSION, err) ||
        attr_write_i64(f, "step", p->step, err) || attr_write_i64(f, "epoch", p->epoch, err) ||
        attr_write_i64(f, "batch_in_epoch", p->batch_in_epoch, err) ||
        attr_write_u64(f, "seed", p->seed, err) ||
        attr_write_str(f, "optimizer", o ? optim_kind_name(o->cfg.kind) : "none", err) ||
        attr_write_i64(f, "optim_step", o ? o->step : 0, err) ||
        attr_write_f64(f, "lr", o ? o->cfg.lr : 0.0, err) ||
        attr_write_str(f, "model_spec", nn_model_spec_text(m), err) ||
        attr_write_str(f, "config", config_text, err) ||
        attr_write_u64(f, "rng_seed", p->rng.seed, err) ||
        attr_write_u64(f, "rng_stream", p->rng.stream, err) ||
        attr_write_u64(f, "rng_counter", p->rng.counter, err) ||
        attr_write_i64(f, "world_size", p->world, err) ||
        attr_write_i64(f, "global_batch", p->batch, err) ||
        attr_write_u64(f, "train_samples", p->order_samples, err) ||
        attr_write_u64(f, "loader_mem_cap", p->order_cap, err) ||
        attr_write_f64(f, "epoch_loss_sum", p->ep_loss_sum, err) ||
        attr_write_i64(f, "epoch_correct", p->ep_correct, err) ||
        attr_write_i64(f, "epoch_samples", p->ep_count, err) ||
        attr_write_f64(f, "epoch_seconds", p->ep_seconds, err) ||
        attr_write_f64(f, "window_loss_sum", p->window[0], err) ||
        attr_write_f64(f, "window_top1", p->window[1], err) ||
        attr_write_f64(f, "window_top5", p->window[2], err) ||
        attr_write_f64(f, "window_rows", p->window[3], err) ||
        attr_write_i64(f, "blas_threads", p->blas_threads, err) ||
        (p->nseg > 0 && p->seg_epoch == p->epoch && attr_write_segments(f, p, err)))
        return -1;
    return 0;
}

/* The core driver's own memory (file image callbacks): the file is written
 * to disk from it, without a second copy of the checkpoint in memory. */
typedef struct core_image {
    void *mem;
} core_image;

static void *image_malloc(size_t size, H5FD_file_image_op_t op, void *udata)
{
    (void)op;
    core_image *im = udata;
    im->mem = malloc(size);
    return im->mem;
}

static void *image_memcpy(void *dst, const void *src, size_t size, H5FD_file_image_op_t op,
                          void *udata)
{
    (void)op;
    (void)udata;
    return memcpy(dst, src, size);
}

static void *image_realloc(void *ptr, size_t size, H5FD_file_image_op_t op, void *udata)
{
    (void)op;
    core_image *im = udata;
    void *p = realloc(ptr, size);
    if (p)
        im->mem = p;
    return p;
}

static herr_t image_free(void *ptr, H5FD_file_image_op_t op, void *udata)
{
    (void)op;
    core_image *im = udata;
    if (ptr == im->mem)
        im->mem = NULL;
    free(ptr);
    return 0;
}

static void *image_udata_copy(void *udata)
{
    return udata; /* one image per file: the copies of the access list share it */
}

static herr_t image_udata_free(void *udata)
{
    (void)udata;
    return 0;
}

/* The file is built in memory (HDF5's core driver, no backing store) and
 * then written to fd with write(2) straight from the driver's memory: a
 * full disk or an I/O error surfaces as our own errno, and HDF5 never holds
 * a file it cannot close (a failed H5Fclose on a full disk left a file ID
 * behind that crashed HDF5's exit handler). Costs the checkpoint's size in
 * memory on rank 0, once, briefly. */
static int write_h5(int fd, const char *tmp, nn_model *m, const optim *o,
                    const train_ckpt_source *src, const train_progress *p, const char *config_text,
                    core_error *err)
{
    h5_detail_buf d;
    size_t states = o ? (size_t)optim_state_count(o) : 0;
    size_t guess = nn_model_param_count(m) * (1 + states) * sizeof(float) + ((size_t)1 << 20);
    core_image im = {NULL};
    H5FD_file_image_callbacks_t cb = {image_malloc, image_memcpy,     image_realloc,
                                      image_free,   image_udata_copy, image_udata_free,
                                      &im};
    hid_t fapl = h5_fapl();
    if (fapl < 0 || H5Pset_fapl_core(fapl, guess, 0) < 0 ||
        H5Pset_file_image_callbacks(fapl, &cb) < 0) {
        h5_close(&fapl, H5Pclose);
        return core_error_set(err, "cannot set up an in-memory HDF5 file (%s)", h5_detail(&d));
    }
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    h5_close(&fapl, H5Pclose);
    if (f < 0)
        return core_error_set(err, "cannot create HDF5 file (%s)", h5_detail(&d));
    int rc = write_root_attrs(f, m, o, p, config_text, err) ||
             write_group(f, "/params", m, nn_model_params(m), err) ||
             (o && write_optim(f, m, o, src, err));
    if (rc == 0 && H5Fflush(f, H5F_SCOPE_GLOBAL) < 0)
        rc = core_error_set(err, "cannot flush (%s)", h5_detail(&d));
    /* the image's size (the end of allocated space), without a copy */
    ssize_t size = rc == 0 ? H5Fget_file_image(f, NULL, 0) : -1;
    if (rc == 0 && (size <= 0 || !im.mem))
        rc = core_error_set(err, "cannot get the checkpoint image (%s)", h5_detail(&d));
    errno = 0;
    if (rc == 0 && write_all(fd, im.mem, (size_t)size) != 0)
        rc = core_error_set(err, "cannot write %zd bytes: %s", size,
                            errno ? strerror(errno) : "short write");
    if (H5Fclose(f) < 0 && rc == 0)
        rc = core_error_set(err, "cannot close (%s)", h5_detail(&d));
    if (rc == 0 && fsync(fd) != 0)
        rc = core_error_set(err, "fsync failed: %s", strerror(errno));
    return rc ? -1 : 0;
}

int train_checkpoint_write(const char *dir, nn_model *m, const optim *o, const train_progress *p,
                           const char *config_text, char *path_out, size_t path_len,
                           core_error *err)
{
    return train_checkpoint_write_from(dir, m, o, NULL, p, config_text, path_out, path_len, err);
}

int train_checkpoint_write_from(const char *dir, nn_model *m, const optim *o,
                                const train_ckpt_source *src, const train_progress *p,
                                const char *config_text, char *path_out, size_t path_len,
                                core_error *err)
{
    const train_progress zero = {0};
    if (!p)
        p = &zero;
    if (o && o->n != nn_model_param_count(m))
        return core_error_set(err,
                              "checkpoint: optimizer holds %zu values but the model has %zu "
                              "parameters",
                              o->n, nn_model_param_count(m));
    if (o && !src && !optim_state_whole(o))
        return core_error_set(err,
                              "checkpoint: the optimizer holds the state of parameters %zu..%zu "
                              "only; a sharded state is written through a source",
                              o->lo, o->hi);
    if (make_dirs(dir, err) != 0)
        return -1;
    char name[64], final[CKPT_PATH_MAX], tmp[CKPT_PATH_MAX];
    snprintf(name, sizeof name, "ckpt-%09ld.h5", p->step);
    if (join_path(final, sizeof final, dir, name, err) != 0)
        return -1;
    /* unique per writer: two processes never share a temporary file */
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", final, (long)getpid()) >= (int)sizeof tmp)
        return core_error_set(err, "%s.tmp: path too long", final);

    /* Plain open(2) first: it says why in errno terms (read-only, no space,
     * permission), which HDF5's message does not. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return core_error_set(err, "%s: cannot create checkpoint: %s", tmp, strerror(errno));
    h5_quiet q = h5_quiet_begin();
    int rc = write_h5(fd, tmp, m, o, src, p, config_text, err);
    h5_quiet_end(q);
    if (close(fd) != 0 && rc == 0)
        rc = core_error_set(err, "cannot write: %s", strerror(errno));
    if (rc != 0) {
        unlink(tmp);
        char why[CORE_ERROR_MAX];
        snprintf(why, sizeof why, "%s", err ? err->msg : "");
        return core_error_set(
            err, "%s: %s; the checkpoint was not written (previous ones are kept)", tmp, why);
    }
    if (rename(tmp, final) != 0) {
        int e = errno;
        unlink(tmp);
        return core_error_set(err, "cannot rename %s to %s: %s", tmp, final, strerror(e));
    }
    if (fsync_path(dir, 1, err) != 0 || write_pointer(dir, name, err) != 0)
        return -1;
    if (path_out && path_len > 0)
        snprintf(path_out, path_len, "%s", final);
    return 0;
}

/* ----------------------------------------------------------------- reading */

static int attr_open(hid_t obj, const char *name, H5T_class_t cls, hid_t *out, core_error *err)
{
    if (H5Aexists(obj, name) <= 0)
        return core_error_set(err, "attribute '%s' is missing", name);
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t t = a < 0 ? -1 : H5Aget_type(a);
    hid_t s = a < 0 ? -1 : H5Aget_space(a);
    int ok = t >= 0 && s >= 0 && H5Tget_class(t) == cls && H5Sget_simple_extent_npoints(s) == 1;
    h5_close(&t, H5Tclose);
    h5_close(&s, H5Sclose);
    if (!ok) {
        h5_close(&a, H5Aclose);
        return core_error_set(err, "attribute '%s' has the wrong type or shape", name);
    }
    *out = a;
    return 0;
}

static int attr_read_num(hid_t obj, const char *name, H5T_class_t cls, hid_t mem_type, void *out,
                         core_error *err)
{
    hid_t a = -1;
    if (attr_open(obj, name, cls, &a, err) != 0)
        return -1;
    herr_t st = H5Aread(a, mem_type, out);
    h5_close(&a, H5Aclose);
    if (st < 0)
        return core_error_set(err, "cannot read attribute '%s'", name);
    return 0;
}

static int attr_read_i64(hid_t obj, const char *name, int64_t *out, core_error *err)
{
    return attr_read_num(obj, name, H5T_INTEGER, H5T_NATIVE_INT64, out, err);
}

static int attr_read_u64(hid_t obj, const char *name, uint64_t *out, core_error *err)
{
    return attr_read_num(obj, name, H5T_INTEGER, H5T_NATIVE_UINT64, out, err);
}

/* Reads a string attribute (variable or fixed length) into a core_alloc'd
 * NUL-terminated copy. */
static int attr_read_str(hid_t obj, const char *name, char **out, core_error *err)
{
    *out = NULL;
    hid_t a = -1;
    if (attr_open(obj, name, H5T_STRING, &a, err) != 0)
        return -1;
    hid_t ft = H5Aget_type(a);
    hid_t mt = H5Tcopy(ft);
    int rc = -1;
    if (H5Tis_variable_str(ft) > 0) {
        char *s = NULL;
        if (H5Aread(a, mt, &s) >= 0 && s) {
            size_t n = strlen(s);
            *out = core_alloc(n + 1, "checkpoint text attribute", err);
            if (*out) {
                memcpy(*out, s, n + 1);
                rc = 0;
            }
            H5free_memory(s);
        }
    } else {
        size_t n = H5Tget_size(ft);
        *out = core_alloc(n + 1, "checkpoint text attribute", err);
        if (*out && H5Aread(a, mt, *out) >= 0) {
            (*out)[n] = '\0';
            rc = 0;
        } else if (*out) {
            core_free(*out);
            *out = NULL;
        }
    }
    h5_close(&mt, H5Tclose);
    h5_close(&ft, H5Tclose);
    h5_close(&a, H5Aclose);
    if (rc != 0 && !*out)
        core_error_set(err, "cannot read attribute '%s'", name);
    return rc;
}

/* numpy-style name of an HDF5 numeric type ("float64", "uint8"). */
static void dtype_str(char *buf, size_t len, hid_t ty)
{
    H5T_class_t cls = ty >= 0 ? H5Tget_class(ty) : H5T_NO_CLASS;
    int bits = ty >= 0 ? (int)H5Tget_size(ty) * 8 : 0;
    if (cls == H5T_FLOAT)
        snprintf(buf, len, "float%d", bits);
    else if (cls == H5T_INTEGER)
        snprintf(buf, len, "%sint%d", H5Tget_sign(ty) == H5T_SGN_NONE ? "u" : "", bits);
    else
        snprintf(buf, len, "non-numeric");
}

/* Opens gname/<tensor> and checks it is float32 with the tensor's dims. A
 * shape mismatch under /params means a different model. */
static int open_tensor(hid_t g, const char *gname, const nn_tensor *t, hid_t *out, core_error *err)
{
    char want[96], have[96];
    hsize_t wdims[NN_MAX_DIMS], hdims[H5S_MAX_RANK];
    for (int i = 0; i < t->ndim; i++)
        wdims[i] = (hsize_t)t->dims[i];
    int is_params = strcmp(gname, "/params") == 0;
    if (H5Lexists(g, t->name, H5P_DEFAULT) <= 0) {
        if (is_params)
            return core_error_set(err,
                                  "model tensor '%s' %s is not in the checkpoint; it was written "
                                  "for a different model spec",
                                  t->name, shape_str(want, sizeof want, t->ndim, wdims));
        return core_error_set(err, "optimizer state %s/%s is missing", gname, t->name);
    }
    hid_t ds = H5Dopen2(g, t->name, H5P_DEFAULT);
    if (ds < 0)
        return core_error_set(err, "%s/%s is not a dataset", gname, t->name);
    hid_t ty = H5Dget_type(ds), sp = H5Dget_space(ds);
    int ndim = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
    if (ndim >= 0 && ndim <= H5S_MAX_RANK)
        H5Sget_simple_extent_dims(sp, hdims, NULL);
    int is_f32 = ty >= 0 && H5Tget_class(ty) == H5T_FLOAT && H5Tget_size(ty) == 4;
    char dtype[32];
    dtype_str(dtype, sizeof dtype, ty);
    int same = ndim == t->ndim;
    for (int i = 0; same && i < ndim; i++)
        same = hdims[i] == wdims[i];
    h5_close(&ty, H5Tclose);
    h5_close(&sp, H5Sclose);
    if (same && is_f32) {
        *out = ds;
        return 0;
    }
    h5_close(&ds, H5Dclose);
    if (ndim < 0 || ndim > H5S_MAX_RANK)
        return core_error_set(err, "%s/%s has an unreadable shape", gname, t->name);
    shape_str(have, sizeof have, ndim, hdims);
    shape_str(want, sizeof want, t->ndim, wdims);
    if (!same && is_params)
        return core_error_set(err,
                              "tensor '%s' has shape %s in the checkpoint but %s in the model; "
                              "it was written for a different model spec",
                              t->name, have, want);
    if (!same)
        return core_error_set(err, "%s/%s has shape %s, expected %s", gname, t->name, have, want);
    return core_error_set(err, "%s/%s has dtype %s, expected float32", gname, t->name, dtype);
}

/* Layer of a tensor name: "conv1" for "conv1.weight" (model.h's naming). */
static size_t layer_len(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot ? (size_t)(dot - name) : strlen(name);
}

static int same_layer(const nn_tensor *a, const nn_tensor *b)
{
    size_t n = layer_len(a->name);
    return n == layer_len(b->name) && strncmp(a->name, b->name, n) == 0;
}

/* Tensor indices in spec order: the buffer holds the last layer first, so
 * layers are walked backwards, keeping each layer's own tensor order (weight,
 * then bias). "The first tensor that differs" then reads as the user wrote
 * the spec. */
static void spec_order(const nn_model *m, int *order)
{
    int k = 0, end = nn_model_tensor_count(m);
    while (end > 0) {
        int start = end - 1;
        while (start > 0 && same_layer(nn_model_tensor(m, start - 1), nn_model_tensor(m, end - 1)))
            start--;
        for (int i = start; i < end; i++)
            order[k++] = i;
        end = start;
    }
}

/* Names one tensor of group g that the model does not have, into out. */
static void find_extra(hid_t g, hsize_t nlinks, const nn_model *m, char *out, size_t len)
{
    snprintf(out, len, "?");
    for (hsize_t k = 0; k < nlinks; k++) {
        char nm[256];
        if (H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, k, nm, sizeof nm, H5P_DEFAULT) <
            0)
            continue;
        int known = 0;
        for (int i = 0; i < nn_model_tensor_count(m) && !known; i++)
            known = strcmp(nn_model_tensor(m, i)->name, nm) == 0;
        if (!known) {
            snprintf(out, len, "%s", nm);
            return;
        }
    }
}

/* Reads every model tensor of group gname into dst (laid out like params),
 * after checking names, shapes and dtypes, and that the group holds nothing
 * the model does not have; dst NULL: the checks only. */
static int read_group(hid_t f, const char *gname, const nn_model *m, const int *order, float *dst,
                      core_error *err)
{
    if (H5Lexists(f, gname, H5P_DEFAULT) <= 0)
        return core_error_set(err, "%s %s is missing",
                              strncmp(gname, "/optim", 6) == 0 ? "optimizer state" : "group",
                              gname);
    hid_t g = H5Gopen2(f, gname, H5P_DEFAULT);
    if (g < 0)
        return core_error_set(err, "%s is not a group", gname);
    int count = nn_model_tensor_count(m);
    int rc = 0;
    for (int i = 0; i < count && rc == 0; i++) {
        const nn_tensor *t = nn_model_tensor(m, order[i]);
        hid_t ds = -1;
        rc = open_tensor(g, gname, t, &ds, err);
        if (rc != 0)
            break;
        if (dst &&
            H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst + t->offset) < 0) {
            h5_detail_buf d;
            rc = core_error_set(err, "cannot read %s/%s (%s)", gname, t->name, h5_detail(&d));
        }
        h5_close(&ds, H5Dclose);
    }
    H5G_info_t info;
    if (rc == 0 && H5Gget_info(g, &info) >= 0 && info.nlinks != (hsize_t)count) {
        char extra[256];
        find_extra(g, info.nlinks, m, extra, sizeof extra);
        rc = core_error_set(err,
                            "%s holds %llu tensors, the model %d (first extra: '%s'); it was "
                            "written for a different model spec",
                            gname, (unsigned long long)info.nlinks, count, extra);
    }
    h5_close(&g, H5Gclose);
    return rc;
}

static int check_optimizer_kind(hid_t f, const optim *o, core_error *err)
{
    char *kind = NULL;
    if (attr_read_str(f, "optimizer", &kind, err) != 0)
        return -1;
    const char *want = optim_kind_name(o->cfg.kind);
    int rc = 0;
    if (strcmp(kind, "none") == 0)
        rc = core_error_set(err, "holds no optimizer state (written without one); this run uses %s",
                            want);
    else if (strcmp(kind, want) != 0)
        rc = core_error_set(err,
                            "optimizer state is for %s, this run uses %s; resume with the same "
                            "optimizer",
                            kind, want);
    core_free(kind);
    return rc;
}

/* The data order attributes, absent from older checkpoints (left 0). */
static int read_order(hid_t f, train_progress *p, core_error *err)
{
    int64_t world, batch;
    if (H5Aexists(f, "world_size") <= 0)
        return 0;
    if (attr_read_i64(f, "world_size", &world, err) ||
        attr_read_i64(f, "global_batch", &batch, err) ||
        attr_read_u64(f, "train_samples", &p->order_samples, err) ||
        attr_read_u64(f, "loader_mem_cap", &p->order_cap, err))
        return -1;
    if (world == 0)
        return 0; /* written without a data order: as the resuming run */
    if (world < 0 || world > INT32_MAX || batch < world || batch > INT32_MAX)
        return core_error_set(err, "attributes world_size %lld / global_batch %lld are not valid",
                              (long long)world, (long long)batch);
    p->world = (int)world;
    p->batch = (int)batch;
    if (H5Aexists(f, "epoch_segments") <= 0)
        return 0;
    hid_t a = H5Aopen(f, "epoch_segments", H5P_DEFAULT);
    hid_t s = a < 0 ? -1 : H5Aget_space(a);
    hsize_t dims[2] = {0, 0};
    int ok = s >= 0 && H5Sget_simple_extent_ndims(s) == 2 &&
             H5Sget_simple_extent_dims(s, dims, NULL) == 2 && dims[1] == 3 && dims[0] >= 1 &&
             dims[0] <= TRAIN_MAX_SEGMENTS;
    int64_t v[TRAIN_MAX_SEGMENTS * 3];
    ok = ok && H5Aread(a, H5T_NATIVE_INT64, v) >= 0;
    h5_close(&s, H5Sclose);
    h5_close(&a, H5Aclose);
    if (!ok)
        return core_error_set(err,
                              "attribute 'epoch_segments' has the wrong type or shape "
                              "(expected int64 (k, 3), k <= %d)",
                              TRAIN_MAX_SEGMENTS);
    p->nseg = (int)dims[0];
    p->seg_epoch = p->epoch;
    for (int i = 0; i < p->nseg; i++) {
        if (v[3 * i] <= 0 || v[3 * i] > INT32_MAX || v[3 * i + 1] < v[3 * i] ||
            v[3 * i + 1] > INT32_MAX || v[3 * i + 2] < 0)
            return core_error_set(err, "attribute 'epoch_segments' row %d is not valid", i);
        p->seg[i].world = (int)v[3 * i];
        p->seg[i].batch = (int)v[3 * i + 1];
        p->seg[i].steps = (long)v[3 * i + 2];
    }
    return 0;
}

/* The epoch's partial sums and the BLAS thread count, absent from older
 * checkpoints (left 0: the resumed epoch then reports only its own steps). */
static int read_epoch_sums(hid_t f, train_progress *p, core_error *err)
{
    int64_t correct = 0, count = 0, threads = 0;
    if (H5Aexists(f, "blas_threads") > 0 && attr_read_i64(f, "blas_threads", &threads, err) != 0)
        return -1;
    if (threads < 0 || threads > INT32_MAX)
        return core_error_set(err, "attribute 'blas_threads' is not valid (%lld)",
                              (long long)threads);
    p->blas_threads = (int)threads;
    if (H5Aexists(f, "epoch_loss_sum") <= 0)
        return 0;
    static const char *const win[4] = {"window_loss_sum", "window_top1", "window_top5",
                                       "window_rows"};
    if (attr_read_num(f, "epoch_loss_sum", H5T_FLOAT, H5T_NATIVE_DOUBLE, &p->ep_loss_sum, err) ||
        attr_read_i64(f, "epoch_correct", &correct, err) ||
        attr_read_i64(f, "epoch_samples", &count, err) ||
        attr_read_num(f, "epoch_seconds", H5T_FLOAT, H5T_NATIVE_DOUBLE, &p->ep_seconds, err))
        return -1;
    int ok = count >= 0 && correct >= 0 && correct <= count && isfinite(p->ep_loss_sum) &&
             p->ep_seconds >= 0.0;
    for (int i = 0; i < 4 && ok; i++) {
        if (attr_read_num(f, win[i], H5T_FLOAT, H5T_NATIVE_DOUBLE, &p->window[i], err) != 0)
            return -1;
        ok = isfinite(p->window[i]) && (i == 0 || p->window[i] >= 0.0);
    }
    if (!ok)
        return core_error_set(err, "attributes epoch_* / window_* hold values that are not valid");
    p->ep_correct = (long)correct;
    p->ep_count = (long)count;
    return 0;
}

static int read_progress(hid_t f, train_progress *p, int64_t *optim_step, core_error *err)
{
    int64_t step, epoch, bie;
    if (attr_read_i64(f, "step", &step, err) || attr_read_i64(f, "epoch", &epoch, err) ||
        attr_read_i64(f, "batch_in_epoch", &bie, err) || attr_read_u64(f, "seed", &p->seed, err) ||
        attr_read_u64(f, "rng_seed", &p->rng.seed, err) ||
        attr_read_u64(f, "rng_stream", &p->rng.stream, err) ||
        attr_read_u64(f, "rng_counter", &p->rng.counter, err) ||
        attr_read_i64(f, "optim_step", optim_step, err))
        return -1;
    p->step = (long)step;
    p->epoch = (long)epoch;
    p->batch_in_epoch = (long)bie;
    return read_epoch_sums(f, p, err) != 0 ? -1 : read_order(f, p, err);
}

static int check_version(hid_t f, core_error *err)
{
    int64_t version;
    if (H5Aexists(f, "format_version") <= 0)
        return core_error_set(err, "not a ringtrain checkpoint (no format_version attribute)");
    if (attr_read_i64(f, "format_version", &version, err) != 0)
        return -1;
    if (version != TRAIN_CHECKPOINT_VERSION)
        return core_error_set(err, "written by format version %lld, this build reads %d",
                              (long long)version, TRAIN_CHECKPOINT_VERSION);
    return 0;
}

/* An int8 file of `ringtrain quantize` shares the format version but holds
 * int8 weights and no optimizer state: it is for eval and predict. */
static int check_not_int8(hid_t f, core_error *err)
{
    char *format = NULL;
    if (H5Aexists(f, "format") <= 0)
        return 0;
    int int8 =
        attr_read_str(f, "format", &format, err) == 0 && strcmp(format, "ringtrain-int8") == 0;
    core_free(format);
    if (!int8)
        return 0;
    return core_error_set(
        err, "an int8 deployment file made by 'ringtrain quantize', not a training "
             "checkpoint; it cannot be resumed (eval and predict take it): resume from "
             "the float checkpoint it was made from");
}

/* Shapes can agree while layers differ (relu -> tanh, another dropout
 * rate): the spec the checkpoint was trained with must be this model's. */
static int check_same_spec(hid_t f, const nn_model *m, core_error *err)
{
    char *saved = NULL;
    if (H5Aexists(f, "model_spec") <= 0 || attr_read_str(f, "model_spec", &saved, err) != 0)
        return 0; /* the tensors' shapes were checked */
    char was[256], now[256];
    int line = nn_spec_diff(saved, nn_model_spec_text(m), was, now, sizeof was);
    core_free(saved);
    if (line == 0)
        return 0;
    return core_error_set(err,
                          "written for a different model spec: line %d of this spec is '%s', the "
                          "checkpoint's '%s'; resume with the spec it was trained with, or start "
                          "from its weights with --init-from",
                          line, now, was);
}

static hid_t open_h5(const char *path, core_error *err)
{
    h5_detail_buf d;
    if (H5Fis_hdf5(path) <= 0) {
        core_error_set(err, "not an HDF5 file (damaged, or not a checkpoint)");
        return -1;
    }
    /* The default access list: a file already open in this process (the
     * training data given as --resume) cannot be opened again with another
     * close degree. */
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) /* before any other HDF5 call clears the error stack */
        core_error_set(err, "cannot open as HDF5, the file is truncated or damaged (%s)",
                       h5_detail(&d));
    return f;
}

static int read_h5(const char *path, nn_model *m, optim *o, train_progress *p, core_error *err)
{
    size_t n = nn_model_param_count(m);
    if (o && o->n != n)
        return core_error_set(err, "optimizer holds %zu values but the model has %zu parameters",
                              o->n, n);
    if (o && !optim_state_whole(o))
        return core_error_set(err, "the optimizer holds the state of parameters %zu..%zu only",
                              o->lo, o->hi);
    hid_t f = open_h5(path, err);
    if (f < 0)
        return -1;
    int states = o ? optim_state_count(o) : 0;
    float *buf = NULL;
    int *order = NULL;
    train_progress prog = {0};
    int64_t ostep = 0;
    int rc = check_version(f, err);
    if (rc == 0)
        rc = check_not_int8(f, err);
    if (rc == 0)
        buf = core_alloc(n * (size_t)(1 + states) * sizeof(float), "checkpoint read buffer", err);
    if (rc == 0 && buf)
        order = core_alloc((size_t)nn_model_tensor_count(m) * sizeof *order, "tensor order", err);
    if (rc == 0 && !order)
        rc = -1;
    if (rc == 0)
        spec_order(m, order);
    if (rc == 0)
        rc = read_group(f, "/params", m, order, buf, err);
    if (rc == 0 && o)
        rc = check_optimizer_kind(f, o, err);
    if (rc == 0 && states > 0)
        rc = read_group(f, "/optim/m", m, order, buf + n, err);
    if (rc == 0 && states > 1)
        rc = read_group(f, "/optim/v", m, order, buf + 2 * n, err);
    if (rc == 0)
        rc = read_progress(f, &prog, &ostep, err);
    if (rc == 0)
        rc = check_same_spec(f, m, err);
    H5Fclose(f);
    if (rc == 0) {
        memcpy(nn_model_params(m), buf, n * sizeof(float));
        if (states > 0)
            memcpy(o->m, buf + n, n * sizeof(float));
        if (states > 1)
            memcpy(o->v, buf + 2 * n, n * sizeof(float));
        if (o)
            o->step = (long)ostep;
        if (p)
            *p = prog;
    }
    core_free(order);
    core_free(buf);
    return rc;
}

int train_checkpoint_read(const char *path, nn_model *m, optim *o, train_progress *p,
                          core_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return core_error_set(err, "%s: cannot read checkpoint: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        char file[CKPT_PATH_MAX];
        if (train_checkpoint_resolve(path, file, sizeof file, err) != 0)
            return -1;
        return train_checkpoint_read(file, m, o, p, err);
    }
    h5_quiet q = h5_quiet_begin();
    int rc = read_h5(path, m, o, p, err);
    h5_quiet_end(q);
    return rc ? core_error_prefix(err, "%s", path) : 0;
}

/* Reading the state range by range (train_checkpoint_read_state). */
typedef struct range_reader {
    hid_t file, group, ds;
    const nn_model *m;
    train_ckpt_sink_fn sink;
    void *ctx;
    float *buf;
    int k, tensor;
    core_error *err;
} range_reader;

static int read_range(void *ctx, int k, size_t lo, size_t hi)
{
    range_reader *rr = ctx;
    static const char *const names[2] = {"/optim/m", "/optim/v"};
    h5_detail_buf d;
    int i = tensor_at(rr->m, lo);
    const nn_tensor *t = nn_model_tensor(rr->m, i);
    if (k != rr->k || i != rr->tensor) {
        h5_close(&rr->ds, H5Dclose);
        if (k != rr->k) {
            h5_close(&rr->group, H5Gclose);
            rr->group = H5Gopen2(rr->file, names[k], H5P_DEFAULT);
        }
        rr->k = k;
        rr->tensor = i;
        rr->ds = rr->group < 0 ? -1 : H5Dopen2(rr->group, t->name, H5P_DEFAULT);
    }
    hid_t fs = -1, ms = -1;
    herr_t st = rr->ds < 0 ? -1 : select_rows(rr->ds, t, lo, hi, &fs, &ms);
    if (st >= 0)
        st = H5Dread(rr->ds, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, rr->buf);
    close_rows(t, &fs, &ms);
    if (st < 0)
        return core_error_set(rr->err, "cannot read %s/%s (%s)", names[k], t->name, h5_detail(&d));
    return rr->sink(rr->ctx, k, lo, hi, rr->buf, rr->err);
}

static int read_state_h5(const char *path, const nn_model *m, optim *o, train_ckpt_sink_fn sink,
                         void *ctx, core_error *err)
{
    hid_t f = open_h5(path, err);
    if (f < 0)
        return -1;
    int states = optim_state_count(o);
    range_reader rr = {f, -1, -1, m, sink, ctx, NULL, -1, -1, err};
    int *order = core_alloc((size_t)nn_model_tensor_count(m) * sizeof *order, "tensor order", err);
    int64_t ostep = 0;
    int rc = order ? check_version(f, err) : -1;
    if (rc == 0)
        spec_order(m, order);
    if (rc == 0)
        rc = check_optimizer_kind(f, o, err);
    if (rc == 0)
        rc = read_group(f, "/optim/m", m, order, NULL, err);
    if (rc == 0 && states > 1)
        rc = read_group(f, "/optim/v", m, order, NULL, err);
    if (rc == 0)
        rc = attr_read_i64(f, "optim_step", &ostep, err);
    size_t longest = TRAIN_CKPT_RANGE;
    for (int i = 0; i < nn_model_tensor_count(m); i++) {
        size_t rows, row;
        tensor_rows(nn_model_tensor(m, i), &rows, &row);
        longest = row > longest ? row : longest;
    }
    if (rc == 0)
        rr.buf = core_alloc(longest * sizeof(float), "checkpoint range buffer", err);
    if (rc == 0 && !rr.buf)
        rc = -1;
    if (rc == 0)
        o->step = (long)ostep;
    if (rc == 0 && train_checkpoint_ranges(m, states, read_range, &rr) != 0)
        rc = -1;
    h5_close(&rr.ds, H5Dclose);
    h5_close(&rr.group, H5Gclose);
    H5Fclose(f);
    core_free(rr.buf);
    core_free(order);
    return rc;
}

int train_checkpoint_read_state(const char *path, const nn_model *m, optim *o,
                                train_ckpt_sink_fn sink, void *ctx, core_error *err)
{
    h5_quiet q = h5_quiet_begin();
    int rc = read_state_h5(path, m, o, sink, ctx, err);
    h5_quiet_end(q);
    return rc ? core_error_prefix(err, "%s", path) : 0;
}

int train_checkpoint_read_text(const char *path, char **model_spec, char **config_text,
                               core_error *err)
{
    if (model_spec)
        *model_spec = NULL;
    if (config_text)
        *config_text = NULL;
    h5_quiet q = h5_quiet_begin();
    hid_t f = open_h5(path, err);
    int rc = f < 0 ? -1 : check_version(f, err);
    if (rc == 0 && model_spec)
        rc = attr_read_str(f, "model_spec", model_spec, err);
    if (rc == 0 && config_text)
        rc = attr_read_str(f, "config", config_text, err);
    if (f >= 0)
        H5Fclose(f);
    h5_quiet_end(q);
    if (rc == 0)
        return 0;
    if (model_spec) {
        core_free(*model_spec);
        *model_spec = NULL;
    }
    return core_error_prefix(err, "%s", path);
}

/* --------------------------------------------------------------- resolving */

/* Complete = opens as HDF5 (superblock and end-of-file agree) and carries
 * our format_version; a file renamed into place always is. */
static int is_complete(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    h5_quiet q = h5_quiet_begin();
    int ok = 0;
    if (H5Fis_hdf5(path) > 0) {
        hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (f >= 0) {
            ok = H5Aexists(f, "format_version") > 0;
            H5Fclose(f);
        }
    }
    h5_quiet_end(q);
    return ok;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* "ckpt-<digits>.h5" exactly, so "*.h5.tmp" and anything else are skipped. */
static int parse_ckpt_name(const char *name, long long *step)
{
    if (strncmp(name, "ckpt-", 5) != 0)
        return 0;
    const char *s = name + 5;
    size_t digits = strspn(s, "0123456789");
    if (digits == 0 || digits > 18 || strcmp(s + digits, ".h5") != 0)
        return 0;
    *step = strtoll(s, NULL, 10);
    return 1;
}

/* The file named by <dir>/latest, if that is a complete checkpoint. */
static int from_pointer(const char *dir, char *path, size_t len)
{
    char ptr[CKPT_PATH_MAX], line[CKPT_PATH_MAX];
    if (join_path(ptr, sizeof ptr, dir, CKPT_LATEST, NULL) != 0)
        return 0;
    FILE *fp = fopen(ptr, "r");
    if (!fp)
        return 0;
    char *got = fgets(line, sizeof line, fp);
    fclose(fp);
    if (!got)
        return 0;
    line[strcspn(line, "\r\n")] = '\0';
    if (!line[0] || ends_with(line, ".tmp"))
        return 0;
    int n =
        line[0] == '/' ? snprintf(path, len, "%s", line) : snprintf(path, len, "%s/%s", dir, line);
    if (n < 0 || (size_t)n >= len || !is_complete(path)) {
        core_log_warn("checkpoint: %s names '%s', which is missing or incomplete; using the "
                      "newest complete checkpoint instead",
                      ptr, line);
        return 0;
    }
    return 1;
}

typedef struct ckpt_entry {
    long long step;
    char name[256];
} ckpt_entry;

static int by_step_desc(const void *a, const void *b)
{
    long long x = ((const ckpt_entry *)a)->step, y = ((const ckpt_entry *)b)->step;
    return (x < y) - (x > y);
}

/* Lists ckpt-*.h5 in dir, newest first; *out is malloc'd. */
static int list_checkpoints(const char *dir, ckpt_entry **out, size_t *count, core_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return core_error_set(err, "%s: cannot list checkpoints: %s", dir, strerror(errno));
    ckpt_entry *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long long step;
        if (!parse_ckpt_name(e->d_name, &step) || strlen(e->d_name) >= sizeof v->name)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            ckpt_entry *nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                free(v);
                closedir(d);
                return core_error_set(err, "%s: out of memory listing checkpoints", dir);
            }
            v = nv;
        }
        v[n].step = step;
        snprintf(v[n].name, sizeof v[n].name, "%s", e->d_name);
        n++;
    }
    closedir(d);
    if (n > 1)
        qsort(v, n, sizeof *v, by_step_desc);
    *out = v;
    *count = n;
    return 0;
}

static int resolve_dir(const char *dir, char *path, size_t len, core_error *err)
{
    if (from_pointer(dir, path, len))
        return 0;
    ckpt_entry *v = NULL;
    size_t n = 0;
    if (list_checkpoints(dir, &v, &n, err) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int k = snprintf(path, len, "%s/%s", dir, v[i].name);
        if (k < 0 || (size_t)k >= len)
            continue;
        if (is_complete(path)) {
            free(v);
            return 0;
        }
    }
    free(v);
    if (n == 0)
        return core_error_set(err, "%s: no checkpoint here (no ckpt-*.h5 files)", dir);
    return core_error_set(err, "%s: none of the %zu ckpt-*.h5 files is a complete checkpoint", dir,
                          n);
}

int train_checkpoint_resolve(const char *dir_or_file, char *path, size_t len, core_error *err)
{
    struct stat st;
    if (stat(dir_or_file, &st) != 0)
        return core_error_set(err, "%s: cannot resume from it: %s", dir_or_file, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return resolve_dir(dir_or_file, path, len, err);
    int n = snprintf(path, len, "%s", dir_or_file);
    if (n < 0 || (size_t)n >= len)
        return core_error_set(err, "%s: path too long", dir_or_file);
    return 0;
}

int train_checkpoint_prune(const char *dir, int keep, core_error *err)
{
    if (keep <= 0)
        return 0;
    char current[CKPT_PATH_MAX] = "";
    if (!from_pointer(dir, current, sizeof current))
        current[0] = '\0';
    const char *current_name = strrchr(current, '/');
    current_name = current_name ? current_name + 1 : current;
    ckpt_entry *v = NULL;
    size_t n = 0;
    if (list_checkpoints(dir, &v, &n, err) != 0)
        return -1;
    int rc = 0;
    for (size_t i = (size_t)keep; i < n; i++) {
        if (strcmp(v[i].name, current_name) == 0)
            continue;
        char path[CKPT_PATH_MAX];
        if (join_path(path, sizeof path, dir, v[i].name, err) != 0 ||
            (unlink(path) != 0 && errno != ENOENT)) {
            rc = core_error_set(err, "%s/%s: cannot remove old checkpoint: %s", dir, v[i].name,
                                strerror(errno));
            break;
        }
    }
    free(v);
    return rc;
}

int train_checkpoint_make_dir(const char *dir, core_error *err)
{
    return make_dirs(dir, err);
}

int train_checkpoint_any(const char *dir)
{
    ckpt_entry *v = NULL;
    size_t n = 0;
    if (list_checkpoints(dir, &v, &n, NULL) != 0)
        return 0;
    free(v);
    return n > 0;
}
