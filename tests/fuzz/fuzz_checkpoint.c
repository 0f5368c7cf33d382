/*
 * tests/fuzz/fuzz_checkpoint.c: libFuzzer target for the checkpoint loader
 * (train_checkpoint_read and _read_text). The input is decoded into a
 * checkpoint-shaped HDF5 file for the model "input 4 / dense 3 / loss"
 * with Adam state: which root attributes exist, their types and values;
 * whether /params, /optim/m and /optim/v exist; each tensor's presence,
 * dtype and shape; extra tensors. Raw bytes are not fed to HDF5: this
 * fuzzes our validation, not HDF5's file parser.
 *
 * Invariant checked: a checkpoint that fails to load leaves the model's
 * parameters and the optimizer state exactly as they were.
 */
#include <hdf5.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "core/mem.h"
#include "nn/model.h"
#include "optim/optim.h"
#include "train/checkpoint.h"

static const char *const int_attrs[] = {
    "format_version", "step",          "epoch",          "batch_in_epoch", "seed",
    "rng_seed",       "rng_stream",    "rng_counter",    "optim_step",     "world_size",
    "global_batch",   "train_samples", "loader_mem_cap",
};

static void attr_int(hid_t f, const char *name, fuzz_in *in)
{
    unsigned how = fuzz_byte(in);
    if (how % 8 == 0)
        return; /* missing */
    hid_t sp = H5Screate(H5S_SCALAR);
    if (how % 8 == 1) { /* a string where a number belongs */
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, 2);
        hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, t, "1");
        H5Aclose(a);
        H5Tclose(t);
    } else {
        int64_t v = 0;
        if (how % 8 == 2)
            fuzz_fill(in, &v, sizeof v);
        else
            v = (int64_t)(fuzz_byte(in) % 5) - (how % 8 == 3 ? 2 : 0);
        if (strcmp(name, "format_version") == 0 && how % 8 > 3)
            v = 1;
        hid_t a = H5Acreate2(f, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_INT64, &v);
        H5Aclose(a);
    }
    H5Sclose(sp);
}

static void attr_str(hid_t f, const char *name, const char *const *choices, int n, fuzz_in *in)
{
    unsigned how = fuzz_byte(in);
    if (how % 5 == 0)
        return;
    hid_t sp = H5Screate(H5S_SCALAR);
    if (how % 5 == 1) { /* a number where a string belongs */
        int64_t v = 3;
        hid_t a = H5Acreate2(f, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_INT64, &v);
        H5Aclose(a);
    } else {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, H5T_VARIABLE);
        const char *s = choices[fuzz_byte(in) % (unsigned)n];
        hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, t, &s);
        H5Aclose(a);
        H5Tclose(t);
    }
    H5Sclose(sp);
}

static void tensor(hid_t g, const char *name, int ndim, const hsize_t *want, fuzz_in *in)
{
    unsigned how = fuzz_byte(in);
    if (how % 6 == 0)
        return;
    hsize_t dims[3];
    int rank = ndim;
    memcpy(dims, want, sizeof(hsize_t) * (size_t)ndim);
    if (how % 6 == 1) {
        rank = (int)(fuzz_byte(in) % 4);
        for (int i = 0; i < rank; i++)
            dims[i] = fuzz_byte(in) % 6;
    }
    hid_t t = how % 6 == 2 ? H5T_IEEE_F64LE : how % 6 == 3 ? H5T_STD_I32LE : H5T_IEEE_F32LE;
    hid_t sp = rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t ds = H5Dcreate2(g, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    float v[64];
    fuzz_fill(in, v, sizeof v);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    if (ds >= 0 && n > 0 && n <= 64)
        H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    if (ds >= 0)
        H5Dclose(ds);
    H5Sclose(sp);
}

static void group(hid_t f, const char *name, fuzz_in *in)
{
    unsigned how = fuzz_byte(in);
    if (how % 7 == 0)
        return;
    if (how % 7 == 1) { /* a dataset where the group belongs */
        hsize_t one = 1;
        hid_t sp = H5Screate_simple(1, &one, NULL);
        H5Dclose(H5Dcreate2(f, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
        H5Sclose(sp);
        return;
    }
    hid_t g = H5Gcreate2(f, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0)
        return;
    hsize_t w[2] = {3, 4}, b[1] = {3};
    tensor(g, "dense1.weight", 2, w, in);
    tensor(g, "dense1.bias", 1, b, in);
    if (how % 7 == 2)
        tensor(g, "dense2.weight", 2, w, in);
    H5Gclose(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static nn_model *m;
    static optim o;
    static float before[3][15];
    core_error err = {{0}};
    if (!m) {
        if (nn_model_create("input 4\ndense 3\nloss softmax_cross_entropy\n", "fuzz", 1, &m,
                            &err) != 0)
            abort();
        optim_config c = optim_config_default(OPTIM_ADAM);
        if (optim_create(&o, &c, nn_model_param_count(m), &err) != 0)
            abort();
    }
    fuzz_in in = {data, size, 0};
    const char *path = fuzz_scratch("checkpoint");
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0)
        return 0;
    for (size_t i = 0; i < sizeof int_attrs / sizeof int_attrs[0]; i++)
        attr_int(f, int_attrs[i], &in);
    static const char *const optims[] = {"adam", "sgd", "none", ""};
    static const char *const specs[] = {"input 4\ndense 3\nloss softmax_cross_entropy\n", "", "x"};
    attr_str(f, "optimizer", optims, 4, &in);
    attr_str(f, "model_spec", specs, 3, &in);
    attr_str(f, "config", specs, 3, &in);
    if (fuzz_byte(&in) & 1) { /* epoch_segments with a fuzzed shape and rows */
        hsize_t dims[2] = {fuzz_byte(&in) % 10, fuzz_byte(&in) % 4};
        int64_t v[40];
        fuzz_fill(&in, v, sizeof v);
        hid_t sp = H5Screate_simple(2, dims, NULL);
        hid_t a = H5Acreate2(f, "epoch_segments", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0 && dims[0] * dims[1] > 0)
            H5Awrite(a, H5T_NATIVE_INT64, v);
        if (a >= 0)
            H5Aclose(a);
        H5Sclose(sp);
    }
    group(f, "/params", &in);
    hid_t og = H5Gcreate2(f, "/optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (og >= 0)
        H5Gclose(og);
    group(f, "/optim/m", &in);
    group(f, "/optim/v", &in);
    H5Fclose(f);

    size_t n = nn_model_param_count(m);
    for (size_t i = 0; i < n; i++)
        nn_model_params(m)[i] = o.m[i] = o.v[i] = (float)i;
    memcpy(before[0], nn_model_params(m), n * sizeof(float));
    memcpy(before[1], o.m, n * sizeof(float));
    memcpy(before[2], o.v, n * sizeof(float));
    train_progress p = {0};
    if (train_checkpoint_read(path, m, &o, &p, &err) != 0) {
        if (!err.msg[0] || strchr(err.msg, '\n'))
            abort();
        if (memcmp(before[0], nn_model_params(m), n * sizeof(float)) ||
            memcmp(before[1], o.m, n * sizeof(float)) || memcmp(before[2], o.v, n * sizeof(float)))
            abort(); /* a failed load changed the run */
    }
    char *spec = NULL, *config = NULL;
    if (train_checkpoint_read_text(path, &spec, &config, &err) == 0) {
        core_free(spec);
        core_free(config);
    }
    unlink(path);
    return 0;
}
