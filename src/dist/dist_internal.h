/*
 * dist/dist_internal.h: the world's layout, shared by the files of dist/ only.
 *
 * Nothing outside src/dist/ includes this file; it is what keeps MPI out of
 * the rest of ringtrain while letting world.c, ring.c, allreduce.c and
 * bench.c see the same communicators.
 */
#ifndef DIST_INTERNAL_H
#define DIST_INTERNAL_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "dist/dist.h"

/* Default ring segment: 256 KiB of floats (see docs/COMMUNICATION.md). */
#define DIST_RING_SEGMENT_DEFAULT ((size_t)(256 * 1024) / sizeof(float))
/* Segments in flight per direction in one ring step. */
#define DIST_RING_WINDOW 4

struct dist_world {
    /* Control traffic: small collectives, barriers, failure agreement. Used by
     * the main thread. */
    MPI_Comm ctl;
    /* Gradient traffic: ring and MPI all-reduces. Used by the comm thread once
     * it exists, so that its collectives never interleave with the main
     * thread's on one communicator. */
    MPI_Comm grad;
    /* Ranks that share memory with this one (one node). */
    MPI_Comm local;
    int rank, size;
    int local_rank, local_size;
    int thread_level;       /* what MPI_Init_thread provided */
    int owns_mpi;           /* 1 when dist_world_init initialized MPI */
    size_t reserved_n;      /* all-reduces of up to this many floats need no allocation */
    float *scratch;         /* ceil(reserved_n / size) floats */
    size_t segment;         /* ring segment, in floats */
    int length_check;       /* 1: dist_allreduce_sum checks n across ranks first */
    int wait_spin;          /* 1: waits never sleep (RINGTRAIN_COMM_WAIT=spin), for comparison */
    struct dist_hier *hier; /* shared-memory state of the hier backend (hier.c) */
    int hier_zero_copy;     /* 0: hier stages even shared buffers (RINGTRAIN_HIER_STAGING=1) */
    uint64_t *lengths;      /* size entries: gather buffer of the length and consistency checks */
    double timeout_s;       /* watchdog timeout of collectives (dist_world_set_comm_timeout) */
    struct dist_nccl *nccl; /* NCCL communicator and streams (nccl.c), NULL unless set up */
};

/* Node-local shared-memory all-reduce state; built at world init. */
struct dist_hier;
int dist_hier_init(dist_world *w, core_error *err);
void dist_hier_free(dist_world *w);
/* Number of node groups (leaders) the hier backend sees; sizes its scratch. */
int dist_hier_nodes(const dist_world *w);
int dist_hier_allreduce(dist_world *w, float *buf, size_t n, core_error *err);
/* The same, and *bad = whether this rank's input held a NaN or an Inf. On
 * the zero-copy path that costs no pass of its own: the sum is checked as it
 * is made (any non-finite input makes it non-finite), the inputs only then. */
int dist_hier_allreduce_checked(dist_world *w, float *buf, size_t n, int *bad, core_error *err);

/* Element-wise MAX of n int32 over every rank through the node's shared
 * window, when the whole world is one node: a store and a wait, no message.
 * Returns 0, untouched, where it does not apply (the caller uses MPI). */
int dist_hier_agree_max(dist_world *w, int32_t *v, int n);

/* The ring over any communicator of the world (the leaders' one for hier). */
int dist_ring_allreduce_comm(dist_world *w, MPI_Comm comm, float *buf, size_t n, float *scratch,
                             core_error *err);

/*
 * Waiting without taking a core (wait.c). A wait first spins for a few tens
 * of microseconds (a peer that is about to answer costs no sleep); then the
 * comm thread (dist_wait_may_sleep(1)) sleeps with a doubling nanosleep
 * capped at DIST_WAIT_SLEEP_MAX_NS, so it wakes about two thousand times a
 * second at most and leaves the core to backward, while any other thread -
 * the compute thread reducing its own gradients, which has nothing else to
 * do - keeps polling and only yields the CPU (sched_yield: an oversubscribed
 * peer or the loader thread may run), so it answers a peer at once instead
 * of up to a sleep later.
 *
 * The watchdog: a thread that runs a watched operation (dist_watch_begin)
 * has a deadline; a wait past it prints "[rank r] <what> has not completed
 * after T s; waiting on rank P" and ends the job with MPI_Abort.
 */
#define DIST_WAIT_SPIN_NS      50000L
#define DIST_WAIT_SLEEP_MAX_NS 500000L
#define DIST_WATCHDOG_EXIT     3

/* This thread's waits sleep after the spin (1) or poll and yield (0, the
 * default). */
int dist_wait_may_sleep(int on); /* returns the previous setting */

typedef struct dist_backoff {
    double start; /* when the wait began (seconds, monotonic) */
    long sleep_ns;
    unsigned polls;
} dist_backoff;

double dist_now(void);
void dist_backoff_start(dist_backoff *b);
/* One pause of a wait loop; peer is the rank waited on (-1: unknown). Never
 * returns if the thread's watched operation is past its deadline. */
void dist_backoff_pause(dist_world *w, dist_backoff *b, int peer);
/* Waits for req with MPI_Test + dist_backoff_pause; peer names whom the request waits on, for the
 * watchdog. */
int dist_wait_req(dist_world *w, MPI_Request *req, int peer, const char *what, core_error *err);

/* The calling thread's watched operation: what (e.g. "all-reduce of step 3
 * bucket 2 (1.0 MiB)"), timeout_s (<= 0: not watched). dist_watch_end ends it. */
void dist_watch_begin(const char *what, double timeout_s);
void dist_watch_end(void);
int dist_watch_active(void);
/* Prints the watchdog line and calls MPI_Abort; used by wait loops and the
 * bucket scheduler's own watch of its comm thread. */
void dist_watch_fire(dist_world *w, const char *what, double waited_s, const char *on_whom)
    __attribute__((noreturn));
/* Gradient all-reduce without the per-call length check (bucket layouts
 * are checked once at creation). */
int dist_allreduce_run(dist_world *w, dist_allreduce_kind kind, float *buf, size_t n,
                       core_error *err);
/* The same, and *bad = whether this rank's buf held a NaN or an Inf before
 * the sum: a scan first, except where hier finds it during the sum. Host
 * memory only (not nccl). */
int dist_allreduce_run_checked(dist_world *w, dist_allreduce_kind kind, float *buf, size_t n,
                               int *bad, core_error *err);

/* NCCL backend (nccl.c, built with RINGTRAIN_HAVE_NCCL): buf is device memory. */
int dist_nccl_allreduce(dist_world *w, float *buf, size_t n, core_error *err);
void dist_nccl_free(dist_world *w);
/* The bucket scheduler's seam: one event per bucket on the compute stream. */
int dist_nccl_buckets(dist_world *w, int nb, core_error *err);
void dist_nccl_mark(dist_world *w, int bucket);
void dist_nccl_begin_bucket(dist_world *w, int bucket);

/* The CUDA runtime's view (cuda.c; stubs in gpu.c without CUDA): the GPUs
 * this rank sees (-1: built without CUDA; 0: none or no driver), and a GPU's
 * identity (its UUID in hex) for telling physical GPUs apart. */
int dist_cuda_visible(void);
int dist_cuda_gpu_id(int device, char *id, size_t len);

/* Fills err with "<what>: <MPI error text> (rank r)" for an MPI return code; returns -1. */
int dist_mpi_error(const dist_world *w, core_error *err, int rc, const char *what);

#endif
