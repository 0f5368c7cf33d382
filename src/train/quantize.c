/*
 * train/quantize.c: int8 post-training quantization (see quantize.h).
 */
#include "train/quantize.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "data/h5write.h"
#include "nn/layer.h"
#include "train/checkpoint.h"

#define QUANT_FORMAT "ringtrain-int8"

static int is_weight(const nn_tensor *t)
{
    size_t n = strlen(t->name);
    return n > 7 && strcmp(t->name + n - 7, ".weight") == 0 && t->ndim >= 2;
}

int train_quant_layer(nn_model *m, int layer)
{
    nn_layer *l = nn_model_layer(m, layer);
    return l->ntensors > 0 && is_weight(&l->tensor[0]);
}

int train_quant_calibrate(nn_model *m, data_dataset *d, size_t n, float *scales, core_error *err)
{
    int nl = nn_model_layer_count(m), batch = nn_model_max_batch(m);
    size_t total = data_dataset_count(d);
    if (n > total)
        n = total;
    if (n == 0)
        return core_error_set(err, "%s: no calibration samples", data_dataset_path(d));
    float *x = core_alloc((size_t)batch * nn_model_input_size(m) * sizeof(float),
                          "calibration batch", err);
    if (!x)
        return -1;
    for (int i = 0; i < nl; i++)
        scales[i] = 0.0f;
    /* evenly spaced blocks of one batch over the file: every class shows up */
    size_t blocks = (n + (size_t)batch - 1) / (size_t)batch, stride = total / blocks;
    int rc = 0;
    for (size_t b = 0; b < blocks && rc == 0; b++) {
        size_t start = b * stride, cnt = n - b * (size_t)batch;
        if (cnt > (size_t)batch)
            cnt = (size_t)batch;
        if (start + cnt > total)
            start = total - cnt;
        rc = data_dataset_read(d, start, cnt, x, NULL, err);
        if (rc != 0)
            break;
        nn_model_forward(m, x, NULL, (int)cnt, 0, NULL);
        for (int i = 0; i < nl; i++) {
            if (!train_quant_layer(m, i))
                continue;
            float mx = nn_model_input_absmax(m, i, x, (int)cnt);
            scales[i] = mx > scales[i] ? mx : scales[i];
        }
    }
    core_free(x);
    for (int i = 0; i < nl; i++)
        scales[i] = scales[i] > 0.0f ? scales[i] / 127.0f : 0.0f;
    return rc;
}

/* ---- HDF5 ---- */

static int write_str_attr(hid_t obj, const char *name, const char *text)
{
    hid_t ty = H5Tcopy(H5T_C_S1);
    H5Tset_size(ty, H5T_VARIABLE);
    H5Tset_cset(ty, H5T_CSET_UTF8);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, ty, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a >= 0 && H5Awrite(a, ty, &text) >= 0 ? 0 : -1;
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(ty);
    return rc;
}

static int write_i64_attr(hid_t obj, const char *name, int64_t v)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &v) >= 0 ? 0 : -1;
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    return rc;
}

/* Per output channel: scale = max|w| / 127 (1 for an all-zero row). */
static void quantize_tensor(const float *w, const nn_tensor *t, int8_t *q, float *scale)
{
    size_t rows = (size_t)t->dims[0], cols = t->count / rows;
    for (size_t r = 0; r < rows; r++) {
        const float *wr = w + r * cols;
        float mx = 0.0f;
        for (size_t k = 0; k < cols; k++)
            mx = fabsf(wr[k]) > mx ? fabsf(wr[k]) : mx;
        scale[r] = mx > 0.0f ? mx / 127.0f : 1.0f;
        for (size_t k = 0; k < cols; k++) {
            float v = nearbyintf(wr[k] / scale[r]);
            q[r * cols + k] = (int8_t)(v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v));
        }
    }
}

static int write_tensors(hid_t f, nn_model *m, core_error *err)
{
    hid_t gq = H5Gcreate2(f, "qweights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t gs = H5Gcreate2(f, "qscales", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t gp = H5Gcreate2(f, "params", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = gq < 0 || gs < 0 || gp < 0 ? -1 : 0;
    const float *p = nn_model_params(m);
    for (int i = 0; rc == 0 && i < nn_model_tensor_count(m); i++) {
        const nn_tensor *t = nn_model_tensor(m, i);
        hsize_t dims[NN_MAX_DIMS];
        for (int k = 0; k < t->ndim; k++)
            dims[k] = (hsize_t)t->dims[k];
        if (!is_weight(t)) {
            rc = data_h5_write(gp, t->name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, t->ndim, dims,
                               p + t->offset);
            continue;
        }
        int8_t *q = malloc(t->count);
        float *s = malloc((size_t)t->dims[0] * sizeof *s);
        if (q && s) {
            quantize_tensor(p + t->offset, t, q, s);
            rc = data_h5_write(gq, t->name, H5T_STD_I8LE, H5T_NATIVE_INT8, t->ndim, dims, q);
            if (rc == 0)
                rc = data_h5_write(gs, t->name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, dims, s);
        } else {
            rc = -1;
        }
        free(q);
        free(s);
    }
    if (gq >= 0)
        H5Gclose(gq);
    if (gs >= 0)
        H5Gclose(gs);
    if (gp >= 0)
        H5Gclose(gp);
    return rc == 0 ? 0 : core_error_set(err, "cannot write the int8 tensors");
}

int train_quant_write(const char *path, nn_model *m, const float *scales, const char *source,
                      core_error *err)
{
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    H5E_auto2_t func;
    void *data;
    H5Eget_auto2(H5E_DEFAULT, &func, &data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    int rc = 0;
    if (f < 0) {
        rc = core_error_set(err, "%s: cannot create the int8 file", tmp);
    } else {
        char config[1200];
        snprintf(config, sizeof config, "quantized_from=%s\n", source);
        hsize_t nl = (hsize_t)nn_model_layer_count(m);
        if (write_i64_attr(f, "format_version", TRAIN_CHECKPOINT_VERSION) ||
            write_str_attr(f, "format", QUANT_FORMAT) ||
            write_str_attr(f, "model_spec", nn_model_spec_text(m)) ||
            write_str_attr(f, "config", config) ||
            data_h5_write(f, "act_scales", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &nl, scales))
            rc = core_error_set(err, "cannot write attributes");
        if (rc == 0)
            rc = write_tensors(f, m, err);
        if (H5Fclose(f) < 0 && rc == 0)
            rc = core_error_set(err, "cannot close the file");
        if (rc != 0)
            core_error_prefix(err, "%s", tmp);
    }
    H5Eset_auto2(H5E_DEFAULT, func, data);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = core_error_set(err, "%s: cannot rename into place: %s", path, strerror(errno));
    if (rc != 0)
        remove(tmp);
    return rc;
}

int train_quant_is_int8(const char *path)
{
    H5E_auto2_t func;
    void *data;
    H5Eget_auto2(H5E_DEFAULT, &func, &data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    int yes = 0;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f >= 0 && H5Aexists(f, "format") > 0) {
        hid_t a = H5Aopen(f, "format", H5P_DEFAULT);
        hid_t ty = H5Tcopy(H5T_C_S1);
        H5Tset_size(ty, H5T_VARIABLE);
        H5Tset_cset(ty, H5T_CSET_UTF8);
        char *s = NULL;
        if (a >= 0 && H5Aread(a, ty, &s) >= 0 && s) {
            yes = strcmp(s, QUANT_FORMAT) == 0;
            H5free_memory(s);
        }
        H5Tclose(ty);
        if (a >= 0)
            H5Aclose(a);
    }
    if (f >= 0)
        H5Fclose(f);
    H5Eset_auto2(H5E_DEFAULT, func, data);
    return yes;
}

static int read_ds(hid_t f, const char *gname, const char *name, hid_t mtype, size_t count,
                   void *buf)
{
    char full[160];
    int root = strcmp(gname, "/") == 0;
    snprintf(full, sizeof full, "%s/%s", root ? "" : gname, name);
    if ((!root && H5Lexists(f, gname, H5P_DEFAULT) <= 0) || H5Lexists(f, full, H5P_DEFAULT) <= 0)
        return 1;
    hid_t ds = H5Dopen2(f, full, H5P_DEFAULT);
    hid_t sp = ds >= 0 ? H5Dget_space(ds) : -1;
    int ok = sp >= 0 && (size_t)H5Sget_simple_extent_npoints(sp) == count &&
             H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0;
    if (sp >= 0)
        H5Sclose(sp);
    if (ds >= 0)
        H5Dclose(ds);
    return ok ? 0 : -1;
}

static int read_tensor(hid_t f, const nn_tensor *t, float *dst, core_error *err)
{
    if (!is_weight(t)) {
        int rc = read_ds(f, "/params", t->name, H5T_NATIVE_FLOAT, t->count, dst);
        return rc == 0 ? 0 : core_error_set(err, "/params/%s missing or of another size", t->name);
    }
    int8_t *q = malloc(t->count);
    float *s = malloc((size_t)t->dims[0] * sizeof *s);
    int rc = q && s ? 0 : core_error_set(err, "out of memory");
    if (rc == 0 && (read_ds(f, "/qweights", t->name, H5T_NATIVE_INT8, t->count, q) != 0 ||
                    read_ds(f, "/qscales", t->name, H5T_NATIVE_FLOAT, (size_t)t->dims[0], s) != 0))
        rc = core_error_set(err, "/qweights or /qscales of %s missing or of another size", t->name);
    size_t cols = t->count / (size_t)t->dims[0];
    for (size_t i = 0; rc == 0 && i < t->count; i++)
        dst[i] = (float)q[i] * s[i / cols];
    free(q);
    free(s);
    return rc;
}

int train_quant_read(const char *path, nn_model *m, float *scales, core_error *err)
{
    H5E_auto2_t func;
    void *data;
    H5Eget_auto2(H5E_DEFAULT, &func, &data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    int rc = f < 0 ? core_error_set(err, "cannot open") : 0;
    int nl = nn_model_layer_count(m);
    if (rc == 0 && read_ds(f, "/", "act_scales", H5T_NATIVE_FLOAT, (size_t)nl, scales) != 0)
        rc = core_error_set(err, "/act_scales missing or not one per layer (%d)", nl);
    float *p = nn_model_params(m);
    for (int i = 0; rc == 0 && i < nn_model_tensor_count(m); i++) {
        const nn_tensor *t = nn_model_tensor(m, i);
        rc = read_tensor(f, t, p + t->offset, err);
    }
    if (f >= 0)
        H5Fclose(f);
    H5Eset_auto2(H5E_DEFAULT, func, data);
    return rc == 0 ? 0 : core_error_prefix(err, "%s", path);
}

int train_quant_apply(nn_model *m, const float *scales, core_error *err)
{
    for (int i = 0; i < nn_model_layer_count(m); i++)
        if (nn_model_set_input_qscale(m, i, scales[i], err) != 0)
            return -1;
    return 0;
}
