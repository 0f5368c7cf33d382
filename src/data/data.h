/*
 * data/data.h: the HDF5 dataset (schema check, shards, hyperslab reads) and
 * the loader thread that streams a rank's shard in shuffled batches.
 *
 * Schema (docs/DATA_FORMAT.md): one HDF5 file holds a sample array whose
 * first axis is the sample (N, d1, ...), uint8 / integer / float, and a label
 * array of N integers in [0, classes). Default names "images" and "labels".
 * uint8 samples are scaled to [0, 1]; other types (float16 too) are
 * converted to float. Channels-last images are transposed while read
 * (data_dataset_match_input).
 * Chunked and gzip-compressed datasets are read like any other.
 *
 * HDF5 is used only inside data/ and train/checkpoint.c.
 */
#ifndef DATA_DATA_H
#define DATA_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define DATA_MAX_DIMS 4

typedef struct data_dataset data_dataset;

/* Opens read-only and validates the schema: both arrays exist, the sample
 * array has rank >= 2 and a supported type, labels are (N,) or (N,1)
 * integers, and the counts agree. num_classes > 0 also checks that every
 * label is in [0, num_classes) (streamed in blocks; names the index). */
int data_dataset_open(const char *path, const char *x_name, const char *y_name, int num_classes,
                      data_dataset **out, core_error *err);
void data_dataset_close(data_dataset *d);
/* Like data_dataset_open, but the label array may be missing (inference):
 * then reads give every label as -1. */
int data_dataset_open_unlabeled(const char *path, const char *x_name, const char *y_name,
                                int num_classes, data_dataset **out, core_error *err);
int data_dataset_has_labels(const data_dataset *d);

/* How an image sample's axes are stored: AUTO follows the sample dataset's
 * 'layout' attribute ("nchw" or "nhwc"), else channels-first. */
typedef enum data_image_layout {
    DATA_IMAGE_AUTO,
    DATA_IMAGE_NCHW,
    DATA_IMAGE_NHWC
} data_image_layout;

/* "auto", "nchw" or "nhwc" (the --layout flag). */
int data_image_layout_parse(const char *name, data_image_layout *out, core_error *err);

/* Checks that samples fit a model input of dims[0..nd) and sets how they
 * are read: the values per sample must agree; channels-last samples (H, W,
 * C) for an input (C, H, W) are transposed to (C, H, W) as they are read
 * when the layout (flag, else the dataset's attribute) is nhwc; a sample
 * shape that only reorders the input's axes is refused, naming both shapes,
 * unless a layout says how to read it. spec_path names the model in
 * messages. */
int data_dataset_match_input(data_dataset *d, const int *dims, int nd, data_image_layout layout,
                             const char *spec_path, core_error *err);

size_t data_dataset_count(const data_dataset *d);
/* Floats per sample, and the per-sample dims (without the sample axis). */
size_t data_dataset_sample_size(const data_dataset *d);
int data_dataset_sample_dims(const data_dataset *d, int dims[DATA_MAX_DIMS]);
const char *data_dataset_path(const data_dataset *d);

/* Bytes one element of a sample takes as data_dataset_read_raw returns it:
 * 1 for uint8 files (kept as stored), 4 (float32) for every other type. */
size_t data_dataset_elem_bytes(const data_dataset *d);

/* Samples [start, start+count) as stored (uint8 stays bytes; other types
 * become float32, checked finite) and int32 labels; x holds
 * count * sample_size * data_dataset_elem_bytes bytes. The loader keeps
 * shards in this form and widens one batch at a time. */
int data_dataset_read_raw(data_dataset *d, size_t start, size_t count, void *x, int32_t *y,
                          core_error *err);

/* Widens n elements read by data_dataset_read_raw to float (uint8 / 255,
 * float32 copied). */
void data_dataset_widen(const data_dataset *d, const void *raw, size_t n, float *out);

/* Reads samples [start, start+count) with one hyperslab per array; converts
 * to float (uint8 / 255) and int32 labels. Errors name file and dataset. */
int data_dataset_read(data_dataset *d, size_t start, size_t count, float *x, int32_t *y,
                      core_error *err);
/* Added: x or y may be NULL to read only the other array. Float inputs with
 * NaN/Inf are rejected (message names the sample index). Labels are checked
 * against num_classes when it was > 0 at open. */

/* Added: samples per chunk of the sample array (0 if not chunked). */
size_t data_dataset_chunk_samples(const data_dataset *d);
/* Added: switches off HDF5's own error printing for the calling thread (the
 * thread-safe HDF5 keeps this per thread); data/ calls it on every entry. */
void data_hdf5_quiet(void);

/* Contiguous shard of rank r: the first n % world ranks get one extra sample.
 * Shards are disjoint and cover [0, n) exactly. */
void data_shard_range(size_t n, int rank, int world, size_t *start, size_t *count);

typedef struct data_loader data_loader;

typedef struct data_loader_config {
    size_t shard_start, shard_count; /* samples of this rank */
    int batch;                       /* local batch size */
    int shuffle;                     /* per-epoch shuffle of the shard */
    int drop_last;                   /* 1 for training, 0 for evaluation */
    uint64_t seed;                   /* shuffle seed (same for all ranks is fine) */
    int rank;                        /* makes the shuffle stream per rank */
    size_t mem_cap_bytes;            /* bound on the loader's buffers; 0 = default 256 MiB */
} data_loader_config;

typedef struct data_batch {
    const float *x;    /* n x sample_size */
    const int32_t *y;  /* n */
    const size_t *idx; /* n: the samples' global indices in the file */
    int n;
} data_batch;

int data_loader_create(data_dataset *d, const data_loader_config *cfg, data_loader **out,
                       core_error *err);
void data_loader_free(data_loader *l);
/* Batches per epoch for this rank. */
size_t data_loader_batches(const data_loader *l);
/* Starts epoch `epoch` (its shuffle is a function of seed, rank and epoch),
 * skipping the first skip_batches batches (exact resume). The loader thread
 * begins prefetching immediately. */
int data_loader_begin_epoch(data_loader *l, long epoch, long skip_batches, core_error *err);
/* Returns 1 and fills *b (valid until the next call), 0 at the end of the
 * epoch, -1 on a read error (message names file, dataset and samples). */
int data_loader_next(data_loader *l, data_batch *b, core_error *err);

/* Added: bytes of buffers the loader holds (always <= the memory cap), and
 * whether the shard is streamed in blocks (1) or held in memory (0). */
size_t data_loader_mem_bytes(const data_loader *l);
int data_loader_streaming(const data_loader *l);

/* Starts a list epoch: batches of the local batch size from the samples
 * idx[0..count) (global indices, served in that order; the short last batch
 * is dropped when drop_last). The list is copied. Samples are read window by
 * window (the buffers the shard mode already holds), each window sorted by
 * index and read in runs of consecutive samples, one hyperslab per run. The
 * next data_loader_begin_epoch returns to the shard (re-reading it when it
 * is held in memory). Beyond the cap: 8 bytes per listed sample and 8 per
 * window sample while the list epoch lasts. */
int data_loader_begin_list(data_loader *l, const size_t *idx, size_t count, core_error *err);

/*
 * The epoch order as a pure function (data/order.c), and the remainder of an
 * epoch interrupted at one world size and continued at another.
 */

/* How a loader lays out its shard: in memory, or streamed in blocks grouped
 * into windows. A pure function of the shard, the local batch, the sample
 * size, the file's chunk size and the memory cap (0 = default 256 MiB);
 * path only names the file in errors. */
typedef struct data_layout {
    int streaming;
    size_t block, nblocks, wblocks, nwin;
    size_t base; /* absolute index of block 0's start (chunk-aligned if possible) */
} data_layout;

/* sample_floats: floats per sample in a batch; elem_bytes: bytes per element
 * as the loader stores the shard (data_dataset_elem_bytes). */
int data_layout_plan(const char *path, const data_loader_config *cfg, size_t sample_floats,
                     size_t elem_bytes, size_t chunk, data_layout *out, core_error *err);

/* Global indices of the shard's samples in the order a loader created with
 * cfg serves epoch `epoch` (cfg->shard_count of them into out). */
int data_order_epoch(const char *path, const data_loader_config *cfg, size_t sample_floats,
                     size_t elem_bytes, size_t chunk, long epoch, size_t *out, core_error *err);

/* Local batch of rank r when the global batch is split over world ranks:
 * batch / world, plus one for the first batch % world ranks. */
int data_local_batch(int batch, int world, int rank);

/* What fixes the order of one training epoch, whatever the world size. */
typedef struct data_epoch_key {
    const char *path;     /* for messages */
    size_t n;             /* training samples: the epoch covers [0, n) */
    uint64_t seed;        /* shuffle seed */
    long epoch;           /* 0-based */
    size_t sample_floats; /* data_dataset_sample_size */
    size_t elem_bytes;    /* data_dataset_elem_bytes */
    size_t chunk;         /* data_dataset_chunk_samples */
    size_t mem_cap;       /* loader cap of the run that started the epoch (0 = default) */
} data_epoch_key;

/* A stretch of an epoch run at one world size and global batch. */
typedef struct data_segment {
    int world, batch;
    long steps;
} data_segment;

/* The samples of the epoch not yet consumed after segs[0..nseg) (nseg >= 1),
 * in one deterministic order (the same on every rank):
 *  - segs[0] is the run that started the epoch: its rank r (of world) served
 *    its shard in data_order_epoch order, steps * local batch of it consumed;
 *    the remainder is, rank by rank, the unconsumed tail of each shard order;
 *  - each later segment split the remainder so far with data_remainder_split
 *    and consumed steps * local batch from the front of each rank's part;
 *    what it did not consume stays in place, in order (including the tail
 *    its split left out).
 * *out (core_alloc'd, n entries at most) receives *count indices. */
int data_remainder_build(const data_epoch_key *k, const data_segment *segs, int nseg, size_t **out,
                         size_t *count, core_error *err);

/* Splits a remainder of `count` samples over world ranks for a global batch:
 * steps = count / batch; rank r gets the contiguous part [from, from + len),
 * len = steps * its local batch, parts in rank order; the last
 * count - steps * batch samples are left out. */
void data_remainder_split(size_t count, int batch, int world, int rank, size_t *from, size_t *len,
                          long *steps);

/* data_remainder_build + data_remainder_split: rank's part (core_alloc'd),
 * its length, the steps, and the remainder's size. */
int data_remainder_part(const data_epoch_key *k, const data_segment *segs, int nseg, int world,
                        int batch, int rank, size_t **part, size_t *len, long *steps,
                        size_t *remainder, core_error *err);

#endif
