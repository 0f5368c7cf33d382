/*
 * dist/dist.h: the world of ranks and the collectives the trainer needs.
 *
 * MPI (and later NCCL) appear only inside dist/. The trainer sees an opaque
 * world, a gradient all-reduce with a selectable backend, and a few small
 * collectives for agreeing on flags, statistics and start-up parameters.
 *
 * The ring all-reduce is reduce-scatter then all-gather over MPI
 * point-to-point, for any length (0 and lengths below the world size too)
 * and any world size. Its scratch buffer is reserved at start-up
 * (dist_world_reserve) so that no step allocates.
 */
#ifndef DIST_DIST_H
#define DIST_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct dist_world dist_world;

typedef enum dist_allreduce_kind {
    DIST_ALLREDUCE_RING = 0, /* ringtrain's own ring over MPI point-to-point */
    DIST_ALLREDUCE_MPI = 1,  /* the MPI library's MPI_Allreduce */
    DIST_ALLREDUCE_HIER = 2, /* node-local shared memory, then the ring across node leaders */
    /* DIST_ALLREDUCE_NCCL comes with the GPU engine: one value, one table row. */
} dist_allreduce_kind;

/* MPI_Init_thread (MULTIPLE requested, SERIALIZED at least, else an error)
 * + rank/size/local rank. If MPI is already initialized, uses it and leaves
 * its finalization to its owner. Calls core_log_set_rank. */
int dist_world_init(int *argc, char ***argv, dist_world **out, core_error *err);
/* Finalizes MPI and frees the world. */
void dist_world_finalize(dist_world *w);
/* Ends every rank of the job at once with this exit code (MPI_Abort). */
void dist_world_abort(dist_world *w, int code);

int dist_rank(const dist_world *w);
int dist_size(const dist_world *w);
int dist_local_rank(const dist_world *w);
/* Ranks on this node (MPI_COMM_TYPE_SHARED). */
int dist_local_size(const dist_world *w);
/* 1 when MPI provided MPI_THREAD_MULTIPLE (two threads may call dist_*
 * at once); 0 when only SERIALIZED (callers must take turns). */
int dist_thread_multiple(const dist_world *w);

/* Ensures scratch for all-reduces of up to n floats; call at start-up. */
int dist_world_reserve(dist_world *w, size_t n, core_error *err);
/* Ring segment size in bytes (default 256 KiB); every rank must set the same. */
int dist_world_set_ring_segment(dist_world *w, size_t bytes, core_error *err);
size_t dist_world_ring_segment(const dist_world *w);

/* Per-call length check in dist_allreduce_sum (default on): every rank's n is
 * gathered first and a mismatch is an error on every rank. Every rank must
 * set the same. The bucket scheduler checks its layout once instead. */
void dist_world_set_length_check(dist_world *w, int on);

int dist_allreduce_kind_parse(const char *name, dist_allreduce_kind *out, core_error *err);
const char *dist_allreduce_kind_name(dist_allreduce_kind k);

/* In-place float sum over all ranks; every rank passes the same n (checked,
 * see dist_world_set_length_check). RING (and HIER across several nodes)
 * need n <= the size reserved with dist_world_reserve. RING and HIER results
 * are bitwise identical on every rank. */
int dist_allreduce_sum(dist_world *w, dist_allreduce_kind kind, float *buf, size_t n,
                       core_error *err);
/* The ring itself, on an explicit scratch of at least ceil(n/size) floats
 * (may be NULL when size == 1 or n == 0). */
int dist_ring_allreduce(dist_world *w, float *buf, size_t n, float *scratch, core_error *err);

/* Small collectives (MPI_Allreduce / MPI_Bcast underneath). */
int dist_sum_f64(dist_world *w, double *v, int n, core_error *err);
int dist_max_i32(dist_world *w, int32_t *v, int n, core_error *err);
int dist_broadcast(dist_world *w, void *buf, size_t bytes, int root, core_error *err);
int dist_barrier(dist_world *w, core_error *err);

/* Collective agreement on failure: every rank passes whether it failed.
 * Returns the lowest failed rank, or -1 when all succeeded. */
int dist_first_failed(dist_world *w, int failed);

/* Benchmark (collective): backends kinds[0..nkinds) side by side (NULL: ring,
 * mpi, hier) on sizes bytes[0..nsizes) (NULL: 1, 4, 16, 64 MiB), iters timed
 * calls each (median); prints one row per size on rank 0's stdout: per backend
 * time/call, algbw, busbw, correct; then each backend's busbw ratio to mpi. */
typedef struct dist_bench_config {
    const size_t *bytes;
    int nsizes;
    const dist_allreduce_kind *kinds;
    int nkinds;
    int iters;
} dist_bench_config;
int dist_bench_allreduce_run(dist_world *w, const dist_bench_config *cfg, core_error *err);

/* Benchmark (collective): times the ring and MPI_Allreduce side by side on
 * buffers of bytes[0..nsizes) (NULL: 1, 4, 16, 64 MiB), iters timed calls
 * each (median reported), and prints a table on rank 0's stdout. */
int dist_bench_allreduce(dist_world *w, const size_t *bytes, int nsizes, int iters,
                         core_error *err);

#endif
