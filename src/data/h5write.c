/*
 * data/h5write.c: see h5write.h.
 */
#include "data/h5write.h"

int data_h5_write(hid_t loc, const char *name, hid_t file_type, hid_t mem_type, int rank,
                  const hsize_t *dims, const void *data)
{
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t ds =
        sp < 0 ? -1 : H5Dcreate2(loc, name, file_type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = ds >= 0 && (dims[0] == 0 ||
                         H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0)
                 ? 0
                 : -1;
    if (ds >= 0)
        H5Dclose(ds);
    if (sp >= 0)
        H5Sclose(sp);
    return rc;
}
