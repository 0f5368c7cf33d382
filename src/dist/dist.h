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
    DIST_ALLREDUCE_NCCL = 3, /* NCCL on device buffers (dist/nccl.c, built with NCCL) */
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
/* A buffer of n floats that every rank on this node can read and write (an
 * MPI-3 shared window), zeroed. Collective over the world: every rank
 * allocates the same n, in the same order. hier all-reduces a slice of it
 * without staging (docs/COMMUNICATION.md, "Shared buffers"); the other
 * backends treat it as ordinary memory. At most 8 at once. Free with
 * dist_shared_free (collective too, same order); the world frees what is left
 * at finalize. */
float *dist_shared_alloc(dist_world *w, size_t n, core_error *err);
void dist_shared_free(dist_world *w, float *p);
/* 1 when every node's shared-memory file system (Open MPI's backing
 * directory for shared windows: $OMPI_MCA_osc_sm_backing_directory, else
 * /dev/shm) has room for a shared buffer of n floats on each of its ranks,
 * plus a margin; else 0 and, in why, what is missing (containers often give
 * /dev/shm 64 MiB). Collective; the same answer on every rank.
 * dist_shared_alloc checks it first. */
int dist_shared_fits(dist_world *w, size_t n, char *why, size_t len);
/* 1 when [p, p+n) lies inside this rank's copy of a shared buffer. */
int dist_shared_contains(const dist_world *w, const float *p, size_t n);

/* The sharded optimizer step. A node's ranks split n floats into one slice
 * each, by local rank (whole cache lines, in order; the last ones may be
 * empty): dist_shard_slice gives this rank's [*a, *b). Each rank updates its
 * slice of a shared buffer (the parameters), then dist_shared_allgather
 * copies the other ranks' slices from their copies into this rank's, so that
 * every copy is whole again. Collective over the node, same order on every
 * rank; watched like a bucket (the waits name the rank not yet there). It
 * returns when every local rank has finished copying, so the caller may
 * write its slice again at once. dist_shard_gather makes a private buffer (the optimizer state)
 * whole on every local rank from each rank's slice, through MPI; it is meant
 * for checkpoints, not for every step. */
void dist_shard_slice(const dist_world *w, size_t n, size_t *a, size_t *b);
int dist_shared_allgather(dist_world *w, float *buf, size_t n, core_error *err);
int dist_shard_gather(dist_world *w, float *buf, size_t n, core_error *err);

/* The optimizer state sharded across every rank (ZeRO-1, dist/zero.c).
 * dist_zero_slice: rank `rank` of `size` owns [*a, *b) of n floats:
 * contiguous, in rank order, whole 64-byte lines, lengths within one line of
 * each other (the last slices may be short or empty), a pure function of
 * (n, size, rank). dist_zero_allgather: every rank has updated its slice of
 * buf; afterwards every rank's buf is whole (collective, in place, watched).
 * dist_zero_gather: the range [lo, hi) of a sharded buffer, of which each
 * rank holds its slice's part in `mine` (mine[0] is its slice's first
 * float), arrives whole in rank 0's dst (hi - lo floats; dst is unused
 * elsewhere). dist_zero_scatter: the reverse, rank 0's src to the owners.
 * Collective, every rank the same n, lo and hi. */
void dist_zero_slice(size_t n, int size, int rank, size_t *a, size_t *b);
int dist_zero_allgather(dist_world *w, float *buf, size_t n, core_error *err);
int dist_zero_gather(dist_world *w, const float *mine, size_t n, size_t lo, size_t hi, float *dst,
                     core_error *err);
int dist_zero_scatter(dist_world *w, float *mine, size_t n, size_t lo, size_t hi, const float *src,
                      core_error *err);
/* Ring segment size in bytes (default 256 KiB); every rank must set the same. */
int dist_world_set_ring_segment(dist_world *w, size_t bytes, core_error *err);
size_t dist_world_ring_segment(const dist_world *w);

/* Watchdog timeout (default DIST_COMM_TIMEOUT_DEFAULT seconds) of the
 * watched collectives: bucket all-reduces, dist_agree_flags,
 * dist_check_same*. Past it, the rank prints what it waited for and on whom,
 * and the job ends with MPI_Abort (exit code 3). */
#define DIST_COMM_TIMEOUT_DEFAULT 300.0
int dist_world_set_comm_timeout(dist_world *w, double seconds, core_error *err);
double dist_world_comm_timeout(const dist_world *w);

/* Per-call length check in dist_allreduce_sum (default on): every rank's n is
 * gathered first and a mismatch is an error on every rank. Every rank must
 * set the same. The bucket scheduler checks its layout once instead. */
void dist_world_set_length_check(dist_world *w, int on);

/* NCCL (collective, once, before dist_buckets_create with DIST_ALLREDUCE_NCCL):
 * the unique id from rank 0 over MPI, then the communicator on `device`;
 * compute_stream is the GPU engine's (engine_ops.stream), on which the bucket
 * scheduler records each bucket's ready event. Fails with a clear message
 * when ringtrain was built without NCCL. See docs/GPU.md. */
int dist_nccl_init(dist_world *w, int device, void *compute_stream, core_error *err);

/*
 * Ranks and GPUs (docs/GPU.md, "Ranks and GPUs"): a rank uses GPU
 * dist_gpu_ordinal(local rank, GPUs it sees) = local rank mod the GPUs it
 * sees (-1 when it sees none); the CUDA engine and NCCL both get this device.
 * dist_gpu_select (collective, before anything that could block on a peer)
 * finds it and refuses, with one line naming the rank, its local rank and
 * the GPUs it sees, on every rank, when two ranks of a node would use the
 * same physical GPU and allow_shared is 0. A rank that sees no GPU (or a
 * build without CUDA) is not refused here: the engine says why. The GPUs
 * seen come from cudaGetDeviceCount (CUDA_VISIBLE_DEVICES), or from the
 * test-only RINGTRAIN_TEST_GPU_COUNT.
 */
#define DIST_GPU_ID_LEN 40
int dist_gpu_ordinal(int local_rank, int visible);
/* The lowest local rank below `me` whose GPU id equals ids[me], or -1 (also
 * for an empty id: no GPU): the rank that comes second to a GPU is the one
 * that shares it. ids: one per local rank. */
int dist_gpu_shared_with(const char (*ids)[DIST_GPU_ID_LEN], int nlocal, int me);
int dist_gpu_select(dist_world *w, int allow_shared, int *device, core_error *err);

/*
 * Host staging of device gradients, for ring, hier and mpi with the GPU
 * engine (dist/cuda.c): given to dist_buckets_set_stage, the scheduler sums
 * a pinned host copy of each bucket and copies it back. The callbacks (ctx
 * first; the scheduler owns ctx and calls destroy):
 *   setup     once, in dist_buckets_set_stage: nb buckets, n floats; *host = the
 *             host buffer of n floats
 *   down      compute thread, when backward has queued bucket i: copy the
 *             device slice to the host slice (asynchronously); errors are
 *             reported by the next down_done
 *   down_done comm thread: 0 when bucket i is in host memory, 1 not yet, -1
 *             error
 *   up        comm thread, after the sum: copy the host slice back
 *   join      compute thread, after the last bucket: what the engine runs
 *             next waits for every copy back
 * dist_stage_cuda fills one for the engine's stream (engine_ops.stream) on
 * the current device; tests may supply their own.
 */
typedef struct dist_stage {
    void *ctx;
    int (*setup)(void *ctx, int nb, size_t n, float **host, core_error *err);
    void (*down)(void *ctx, int i, float *host, const float *dev, size_t n);
    int (*down_done)(void *ctx, int i, core_error *err);
    int (*up)(void *ctx, int i, float *dev, const float *host, size_t n, core_error *err);
    int (*join)(void *ctx, core_error *err);
    void (*destroy)(void *ctx);
} dist_stage;
int dist_stage_cuda(void *compute_stream, dist_stage *out, core_error *err);

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
/* A barrier that sleeps while it waits (MPI_Barrier spins): for a rank that
 * must stay off its core while others work (bench scaling's idle ranks). */
int dist_barrier_idle(dist_world *w, core_error *err);

/* Collective agreement on failure: every rank passes whether it failed.
 * Returns the lowest failed rank, or -1 when all succeeded. */
int dist_first_failed(dist_world *w, int failed);

/*
 * Start-up consistency check (collective, once): every rank hashes `data`
 * (FNV-1a 64); if any rank's hash differs from rank 0's, EVERY rank returns
 * -1 with "dist: rank 1 differs from rank 0 in <what> (hash ..)", naming all
 * differing ranks. dist_check_same_i64 does the same for one number and
 * prints the values ("rank 1 has 32, rank 0 has 64").
 */
int dist_check_same(dist_world *w, const char *what, const void *data, size_t len, core_error *err);
int dist_check_same_i64(dist_world *w, const char *what, int64_t value, core_error *err);

/*
 * Per-step flags (collective, one MAX all-reduce for all of them): local[k]
 * is this rank's flag k (0/1); first_rank[k] becomes the lowest rank that
 * raised flag k, or -1, identically on every rank. Suggested indices below;
 * `step` only labels the watchdog message.
 */
#define DIST_MAX_FLAGS 16
enum { DIST_FLAG_NONFINITE = 0, DIST_FLAG_PREEMPT = 1, DIST_FLAG_FAILED = 2, DIST_FLAG_COUNT = 3 };
int dist_agree_flags(dist_world *w, long step, const int *local, int *first_rank, int n,
                     core_error *err);
/* dist_agree_flags for one flag. */
int dist_any_nonfinite(dist_world *w, long step, int local_nonfinite, int *first_rank,
                       core_error *err);
/* 1 when x[0..n) holds a NaN or an Inf. */
int dist_has_nonfinite(const float *x, size_t n);

/* What to do when any rank saw a non-finite loss or gradient. */
typedef enum dist_nonfinite_policy {
    DIST_NONFINITE_SKIP = 0, /* skip the optimizer step on every rank (count and log it) */
    DIST_NONFINITE_STOP = 1, /* stop with a message naming the rank and step */
} dist_nonfinite_policy;
int dist_nonfinite_policy_parse(const char *name, dist_nonfinite_policy *out, core_error *err);
/* Given the agreed first_rank (-1: none): 0 take the step, 1 skip it, -1 stop (err set). */
int dist_nonfinite_decide(dist_nonfinite_policy policy, long step, int first_rank, core_error *err);

/*
 * The bucket scheduler: gradient all-reduces overlapped with backward.
 *
 * The gradient buffer grads[0..n) is cut into buckets [0, first), then
 * slices of bucket_bytes; bucket i is all-reduced (in place, backend `kind`)
 * once backward has filled it, in index order on every rank. Per step:
 *
 *   dist_buckets_begin(b, step);
 *   nn_model_backward(m, accumulate, dist_buckets_on_ready, b);
 *   dist_buckets_wait(b, &err);     // all buckets summed (or error / abort)
 *
 * With gradient accumulation, only the last micro-batch's backward gets the
 * callback and the begin/wait pair; earlier ones run with on_ready = NULL.
 */
typedef struct dist_buckets dist_buckets;

#define DIST_FIRST_BUCKET_DEFAULT ((size_t)1 << 20)  /* 1 MiB */
#define DIST_BUCKET_DEFAULT       ((size_t)25 << 20) /* 25 MiB */

typedef struct dist_bucket_config {
    dist_allreduce_kind kind;
    size_t first_bucket_bytes; /* 0: DIST_FIRST_BUCKET_DEFAULT */
    size_t bucket_bytes;       /* 0: DIST_BUCKET_DEFAULT */
    double timeout_s;          /* watchdog; <= 0: the world's comm timeout */
    int overlap;               /* 1: comm thread; 0: buckets reduced inside dist_buckets_wait */
    int check_finite;          /* 1: scan each bucket for NaN/Inf before reducing it */
    /* Optional: the ascending `done` values backward reports (layer ends,
     * nn_model_ready_points). A bucket then ends with a layer: at the last
     * one in (size/2, size] from its start, else the first one past its
     * size if within twice it, else at its size (a layer larger than the
     * bucket is cut into slices). A bucket is then ready when its last
     * layer is, not one layer later, and the bucket backward completes last
     * (whose communication cannot overlap) holds as little as possible. Read
     * only by dist_buckets_create. */
    const size_t *ready_points;
    int nready_points;
} dist_bucket_config;

/* Collective. Checks on every rank that n and the layout are the same
 * (dist_check_same: the per-bucket length check), reserves all-reduce scratch
 * for n floats and starts the comm thread when overlap is on (which needs
 * MPI_THREAD_MULTIPLE). grads must stay valid until dist_buckets_free. */
int dist_buckets_create(dist_world *w, float *grads, size_t n, const dist_bucket_config *cfg,
                        dist_buckets **out, core_error *err);
void dist_buckets_free(dist_buckets *b);
/* GPU gradients with ring, hier or mpi: grads is device memory, summed
 * through pinned host memory bucket by bucket (see dist_stage). Call once,
 * after dist_buckets_create and before the first step; local (the caller
 * agrees on failure). The scheduler owns stage from here on, even when this
 * fails. */
int dist_buckets_set_stage(dist_buckets *b, dist_stage stage, core_error *err);
int dist_buckets_count(const dist_buckets *b);
void dist_buckets_bounds(const dist_buckets *b, int i, size_t *begin, size_t *end);
/* Starts a step; call before the backward whose gradients are reduced. */
void dist_buckets_begin(dist_buckets *b, long step);
/* The first `done` gradient floats are final: hands every bucket inside
 * [0, done) to the comm thread. Cheap and never waits for communication;
 * a no-op without overlap. */
void dist_buckets_ready(dist_buckets *b, size_t done);
/* dist_buckets_ready with nn_grad_ready_fn's signature (ctx = the scheduler). */
void dist_buckets_on_ready(void *ctx, size_t done);
/* Hands over whatever is left and waits until every bucket is summed. -1: an
 * all-reduce failed (the gradient collective is then broken; the caller
 * reports and calls dist_world_abort). A hang ends in the watchdog. */
int dist_buckets_wait(dist_buckets *b, core_error *err);
/* After dist_buckets_wait, with check_finite: whether this rank's own
 * gradients held a NaN/Inf before reduction (feed to dist_agree_flags). */
int dist_buckets_nonfinite(const dist_buckets *b);

/* What a waiting comm thread costs compute (collective, >= 2 ranks): rank 0
 * computes a fixed loop (a) with nothing pending, (b) while its comm thread
 * waits for peers that are still computing, with the backoff, and (c) the
 * same with waits that never sleep; prints the median times and ratios. */
int dist_bench_idle(dist_world *w, dist_allreduce_kind kind, int trials, core_error *err);

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
