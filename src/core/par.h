/*
 * core/par.h: the rank's compute threads, a small pool with fixed
 * partitions.
 *
 * One pool per process (threads are a property of the process, like
 * OpenBLAS's own pool). The calling thread takes part 0 and each worker one
 * part; workers spin briefly between parts of a step and then sleep. Parts are
 * contiguous ranges decided by the caller's arguments and the thread count
 * only, never by timing, so an op whose elements do not depend on each other
 * gives the same bits at any thread count, and a reduction split by output
 * (one channel's sum in one part) does too.
 *
 * A call from inside a part, or from a second thread while the pool is busy
 * (the loader thread), runs its parts one after another on the caller: the
 * same partition, the same results.
 */
#ifndef RINGTRAIN_CORE_PAR_H
#define RINGTRAIN_CORE_PAR_H

#include <stddef.h>

/* Part `part` of `parts`: fn(ctx, part, parts). */
typedef void (*core_par_fn)(void *ctx, int part, int parts);

/* Resizes the pool to n threads in all (the caller counts; n <= 1: none).
 * Returns the count in effect (fewer when a thread cannot be started). */
int core_par_set_threads(int n);
/* Threads in the pool, the caller included (1 when none was set). */
int core_par_threads(void);
/* Runs fn for parts 0..parts-1, spread over the pool; returns when all are
 * done. */
void core_par_run(core_par_fn fn, void *ctx, int parts);
/* How many parts to cut n items into: one per thread, but none smaller than
 * `grain` items. */
int core_par_parts(size_t n, size_t grain);
/* The range [*lo, *hi) of part `part` of `parts` over n items, with inner
 * boundaries on multiples of `align` (>= 1). */
void core_par_range(size_t n, int part, int parts, size_t align, size_t *lo, size_t *hi);

/* fn(ctx, lo, hi) over [0, n) cut by core_par_parts(n, grain) and
 * core_par_range(..., align): the loop most ops need. */
typedef void (*core_par_range_fn)(void *ctx, size_t lo, size_t hi);
void core_par_for(size_t n, size_t grain, size_t align, core_par_range_fn fn, void *ctx);

/* The default thread count of a rank: OMP_NUM_THREADS when set; else the
 * CPUs the rank may run on (sched_getaffinity: what mpirun --bind-to or srun
 * gave it), but no more than the node's CPUs divided among its
 * `local_ranks` (ranks that were not bound, or bound to a socket they share,
 * see more CPUs than are theirs). *why says which rule applied. */
int core_par_default_threads(int local_ranks, const char **why);

#endif
