/*
 * tests/fuzz/fuzz_dataset.c: libFuzzer target for the dataset schema check
 * and reads (data_dataset_open / _read). The input is decoded into an HDF5
 * file (not fed to HDF5 as raw bytes: this fuzzes our validation, not
 * HDF5's parser): the dtype, rank and dims of the sample and label arrays,
 * whether each exists or is a group, chunking, the number of classes the
 * model would have, and the raw element bytes (so NaN, Inf, negative and
 * huge labels all occur). Every accepted file is then read in full.
 */
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "fuzz_common.h"

#define MAX_ELEMS 4096

static hid_t pick_type(unsigned b)
{
    switch (b % 11) {
    case 0:
        return H5Tcopy(H5T_STD_U8LE);
    case 1:
        return H5Tcopy(H5T_STD_I8LE);
    case 2:
        return H5Tcopy(H5T_STD_I16BE);
    case 3:
        return H5Tcopy(H5T_STD_I32LE);
    case 4:
        return H5Tcopy(H5T_STD_I64LE);
    case 5:
        return H5Tcopy(H5T_STD_U64BE);
    case 6:
        return H5Tcopy(H5T_IEEE_F32LE);
    case 7:
        return H5Tcopy(H5T_IEEE_F64BE);
    case 8: {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, 3);
        return t;
    }
    case 9: { /* IEEE half precision, which HDF5 widens to float32 on read */
        hid_t t = H5Tcopy(H5T_IEEE_F32LE);
        H5Tset_fields(t, 15, 10, 5, 0, 10);
        H5Tset_size(t, 2);
        H5Tset_ebias(t, 15);
        return t;
    }
    default: { /* what h5py writes for bool */
        hid_t t = H5Tenum_create(H5T_NATIVE_INT8);
        int8_t f = 0, tr = 1;
        H5Tenum_insert(t, "FALSE", &f);
        H5Tenum_insert(t, "TRUE", &tr);
        return t;
    }
    }
}

/* One array: name, type, rank, dims, optional chunking, raw bytes. */
static void make_array(hid_t f, const char *name, fuzz_in *in, hsize_t n0)
{
    unsigned mode = fuzz_byte(in);
    if (mode % 8 == 0)
        return; /* missing */
    if (mode % 8 == 1) {
        H5Gclose(H5Gcreate2(f, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
        return;
    }
    hid_t t = pick_type(fuzz_byte(in));
    int rank = (int)(fuzz_byte(in) % 7);
    hsize_t dims[6] = {0}, chunk[6];
    size_t count = 1;
    for (int i = 0; i < rank; i++) {
        dims[i] = i == 0 && (mode & 8) ? n0 : fuzz_byte(in) % (i == 0 ? 17 : 5);
        count *= (size_t)dims[i];
    }
    if (count > MAX_ELEMS) {
        H5Tclose(t);
        return;
    }
    hid_t sp = rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if ((mode & 16) && rank > 0 && count > 0) {
        for (int i = 0; i < rank; i++)
            chunk[i] = dims[i] ? dims[i] : 1;
        chunk[0] = 1 + fuzz_byte(in) % dims[0];
        H5Pset_chunk(dcpl, rank, chunk);
        if (mode & 32)
            H5Pset_deflate(dcpl, 1);
    }
    hid_t ds = H5Dcreate2(f, name, t, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    size_t bytes = (rank ? count : 1) * H5Tget_size(t);
    uint8_t *buf = malloc(bytes ? bytes : 1);
    if (ds >= 0 && buf && bytes) {
        fuzz_fill(in, buf, bytes);
        H5Dwrite(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    }
    free(buf);
    if (ds >= 0)
        H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(sp);
    H5Tclose(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size, 0};
    const char *path = fuzz_scratch("dataset");
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0)
        return 0;
    unsigned shape = fuzz_byte(&in);
    int classes = (int)(fuzz_byte(&in) % 13);
    hsize_t n0 = fuzz_byte(&in) % 17;
    const char *xname = shape & 1 ? "g/images" : "images";
    if (shape & 1)
        H5Gclose(H5Gcreate2(f, "g", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    make_array(f, xname, &in, n0);
    make_array(f, "labels", &in, n0);
    H5Fclose(f);

    core_error err = {{0}};
    data_dataset *d = NULL;
    if (data_dataset_open(path, xname, "labels", classes, &d, &err) == 0) {
        size_t n = data_dataset_count(d), ss = data_dataset_sample_size(d);
        int dims[DATA_MAX_DIMS];
        data_dataset_sample_dims(d, dims);
        float *x = malloc(n * ss * sizeof *x);
        int32_t *y = malloc(n * sizeof *y);
        if (x && y && data_dataset_read(d, 0, n, x, y, &err) == 0) {
            for (size_t i = 0; i < n * ss; i++)
                if (!isfinite(x[i]))
                    abort(); /* a non-finite input got through */
            for (size_t i = 0; i < n && classes > 0; i++)
                if (y[i] < 0 || y[i] >= classes)
                    abort(); /* a label out of range got through */
        }
        if (x && n > 1)
            data_dataset_read(d, n - 1, 1, x, NULL, &err);
        free(x);
        free(y);
        data_dataset_close(d);
    } else if (!err.msg[0] || strchr(err.msg, '\n')) {
        abort();
    }
    unlink(path);
    return 0;
}
