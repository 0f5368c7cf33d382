/*
 * data/h5write.h: writing one whole HDF5 dataset, for the files ringtrain
 * writes besides checkpoints (token files, int8 models).
 */
#ifndef DATA_H5WRITE_H
#define DATA_H5WRITE_H

#include <hdf5.h>

/* Creates loc/name of file_type with the given shape (contiguous) and writes
 * data (mem_type) into it; an empty first axis writes nothing. 0 or -1. */
int data_h5_write(hid_t loc, const char *name, hid_t file_type, hid_t mem_type, int rank,
                  const hsize_t *dims, const void *data);

#endif
