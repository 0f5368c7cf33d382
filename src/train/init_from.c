/*
 * train/init_from.c: partial load of a checkpoint's parameters by name and
 * shape (see init_from.h). HDF5 is read here directly: unlike
 * train_checkpoint_read, a mismatch is not an error but a line of the report.
 */
#include "train/init_from.h"

#include <hdf5.h>
#include <stdio.h>
#include <string.h>

static void shape_text(char *buf, size_t len, int ndim, const hsize_t *d)
{
    size_t k = (size_t)snprintf(buf, len, "(");
    for (int i = 0; i < ndim && k < len; i++)
        k += (size_t)snprintf(buf + k, len - k, i ? ",%llu" : "%llu", (unsigned long long)d[i]);
    if (k < len)
        snprintf(buf + k, len - k, ")");
}

static void add_line(char *report, size_t len, const char *line)
{
    size_t k = strlen(report);
    if (k + 1 < len)
        snprintf(report + k, len - k, "%s\n", line);
}

/* 1 loaded, 0 not (the reason in why), -1 read error. */
static int load_one(hid_t g, const nn_tensor *t, float *dst, char *why, size_t wlen)
{
    hsize_t want[NN_MAX_DIMS], have[H5S_MAX_RANK];
    for (int i = 0; i < t->ndim; i++)
        want[i] = (hsize_t)t->dims[i];
    char ws[64], hs[64];
    shape_text(ws, sizeof ws, t->ndim, want);
    if (H5Lexists(g, t->name, H5P_DEFAULT) <= 0) {
        snprintf(why, wlen, "not loaded %s %s: not in the file", t->name, ws);
        return 0;
    }
    hid_t ds = H5Dopen2(g, t->name, H5P_DEFAULT);
    if (ds < 0) {
        snprintf(why, wlen, "not loaded %s: not a dataset", t->name);
        return 0;
    }
    hid_t sp = H5Dget_space(ds), ty = H5Dget_type(ds);
    int ndim = H5Sget_simple_extent_ndims(sp);
    if (ndim > 0 && ndim <= H5S_MAX_RANK)
        H5Sget_simple_extent_dims(sp, have, NULL);
    int same = ndim == t->ndim;
    for (int i = 0; same && i < ndim; i++)
        same = have[i] == want[i];
    int f32 = H5Tget_class(ty) == H5T_FLOAT && H5Tget_size(ty) == 4;
    H5Sclose(sp);
    H5Tclose(ty);
    int rc = 0;
    if (!same) {
        shape_text(hs, sizeof hs, ndim > 0 && ndim <= H5S_MAX_RANK ? ndim : 0, have);
        snprintf(why, wlen, "not loaded %s: shape %s in the model, %s in the file", t->name, ws,
                 hs);
    } else if (!f32) {
        snprintf(why, wlen, "not loaded %s: not float32 in the file", t->name);
    } else if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0) {
        snprintf(why, wlen, "%s: read error", t->name);
        rc = -1;
    } else {
        snprintf(why, wlen, "loaded %s %s", t->name, ws);
        rc = 1;
    }
    H5Dclose(ds);
    return rc;
}

int train_init_from(const char *path, nn_model *m, int *loaded, int *nloaded, char *report,
                    size_t report_len, core_error *err)
{
    H5E_auto2_t func;
    void *data;
    H5Eget_auto2(H5E_DEFAULT, &func, &data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    int rc = 0;
    *nloaded = 0;
    report[0] = '\0';
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t g = f >= 0 ? H5Gopen2(f, "/params", H5P_DEFAULT) : -1;
    if (f < 0)
        rc = core_error_set(err, "%s: cannot open as an HDF5 checkpoint (--init-from)", path);
    else if (g < 0)
        rc = core_error_set(err, "%s: no /params group; not a ringtrain checkpoint", path);
    float *params = nn_model_params(m);
    for (int i = 0; rc == 0 && i < nn_model_tensor_count(m); i++) {
        const nn_tensor *t = nn_model_tensor(m, i);
        char line[512];
        int got = load_one(g, t, params + t->offset, line, sizeof line);
        if (got < 0)
            rc = core_error_set(err, "%s: %s", path, line);
        loaded[i] = got == 1;
        *nloaded += got == 1;
        add_line(report, report_len, line);
    }
    if (rc == 0 && *nloaded == 0)
        rc = core_error_set(err,
                            "%s: no tensor of the model matches the file by name and shape; is "
                            "it a checkpoint of a related model?",
                            path);
    if (g >= 0)
        H5Gclose(g);
    if (f >= 0)
        H5Fclose(f);
    H5Eset_auto2(H5E_DEFAULT, func, data);
    return rc;
}
