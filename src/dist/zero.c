/*
 * dist/zero.c: the optimizer state sharded across every rank (ZeRO-1,
 * `--shard-optimizer all`; docs/COMMUNICATION.md, "ZeRO-1 across every
 * rank").
 *
 * n parameters are cut into one contiguous slice per world rank, in rank
 * order, in whole 64-byte lines: the ring's chunk formula over lines, so
 * slice lengths differ by at most one line and depend on (n, world size)
 * only. Each rank keeps the optimizer state of its slice, updates that
 * slice of the parameters after the gradient all-reduce, and
 * dist_zero_allgather hands every rank every other slice (MPI_Iallgatherv
 * in place, on the main thread's communicator, watched).
 *
 * Checkpoints: the state never exists whole on any rank. dist_zero_gather
 * brings one bounded range of it to rank 0 (each owner sends the part of
 * the range inside its slice), dist_zero_scatter sends a range from rank 0
 * to its owners; the trainer walks the state range by range
 * (train/shard.c), so rank 0 holds one range at a time.
 */
#include "dist/dist_internal.h"

#include <limits.h>
#include <stdint.h>

#include "core/mem.h"

#define ZERO_LINE 16 /* floats per 64-byte line */

void dist_zero_slice(size_t n, int size, int rank, size_t *a, size_t *b)
{
    size_t lines = (n + ZERO_LINE - 1) / ZERO_LINE, s = size > 0 ? (size_t)size : 1;
    size_t q = (size_t)rank, per = lines / s, extra = lines % s;
    size_t lo = q * per + (q < extra ? q : extra);
    size_t hi = lo + per + (q < extra ? 1 : 0);
    lo *= ZERO_LINE;
    hi *= ZERO_LINE;
    *a = lo < n ? lo : n;
    *b = hi < n ? hi : n;
}

/* Counts and displacements (relative to lo) of every rank's part of
 * [lo, hi): its slice's intersection with the range. */
static int zero_parts(const dist_world *w, size_t n, size_t lo, size_t hi, int *counts, int *displs,
                      core_error *err)
{
    if (hi - lo > (size_t)INT_MAX)
        return core_error_set(err,
                              "dist: a range of %zu floats is too large for one MPI call "
                              "(rank %d)",
                              hi - lo, w->rank);
    for (int q = 0; q < w->size; q++) {
        size_t a, b;
        dist_zero_slice(n, w->size, q, &a, &b);
        a = a > lo ? a : lo;
        b = b < hi ? b : hi;
        counts[q] = a < b ? (int)(b - a) : 0;
        displs[q] = a < b ? (int)(a - lo) : 0;
    }
    return 0;
}

static int *zero_tables(const dist_world *w, core_error *err)
{
    return core_alloc(2 * (size_t)w->size * sizeof(int), "ZeRO counts", err);
}

/* Waits, watched, for a collective that MPI_I* started (rc: its return). */
static int zero_finish(dist_world *w, int rc, MPI_Request *req, int peer, const char *what,
                       core_error *err)
{
    if (rc != MPI_SUCCESS)
        return dist_mpi_error(w, err, rc, what);
    int outer = dist_watch_active();
    if (!outer)
        dist_watch_begin(what, w->timeout_s);
    rc = dist_wait_req(w, req, peer, what, err);
    if (!outer)
        dist_watch_end();
    return rc;
}

int dist_zero_allgather(dist_world *w, float *buf, size_t n, core_error *err)
{
    if (w->size == 1 || n == 0)
        return 0;
    if (n > (size_t)INT_MAX)
        return core_error_set(err,
                              "dist: --shard-optimizer all supports up to %d parameters, the "
                              "model has %zu (rank %d)",
                              INT_MAX, n, w->rank);
    int *counts = zero_tables(w, err);
    if (!counts)
        return -1;
    int *displs = counts + w->size;
    int rc = zero_parts(w, n, 0, n, counts, displs, err);
    if (rc == 0) {
        MPI_Request req;
        rc = zero_finish(w,
                         MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, displs,
                                         MPI_FLOAT, w->ctl, &req),
                         &req, -1, "dist: the parameter all-gather of the sharded optimizer step",
                         err);
    }
    core_free(counts);
    return rc;
}

/* One range [lo, hi) between rank 0's root_buf and the owners' slices:
 * gathered to rank 0, or scattered from it. */
static int zero_range(dist_world *w, float *mine, size_t n, size_t lo, size_t hi, float *root_buf,
                      int scatter, core_error *err)
{
    if (hi <= lo)
        return 0;
    int *counts = zero_tables(w, err);
    if (!counts)
        return -1;
    int *displs = counts + w->size, r = w->rank;
    int rc = zero_parts(w, n, lo, hi, counts, displs, err);
    size_t a, b;
    dist_zero_slice(n, w->size, r, &a, &b);
    /* this rank's part of the range, in its own slice's buffer */
    float *part = counts[r] > 0 ? mine + (lo + (size_t)displs[r] - a) : mine;
    int peer = r == 0 ? -1 : 0;
    MPI_Request req;
    if (rc == 0 && scatter)
        rc = zero_finish(w,
                         MPI_Iscatterv(root_buf, counts, displs, MPI_FLOAT, part, counts[r],
                                       MPI_FLOAT, 0, w->ctl, &req),
                         &req, peer, "dist: handing the optimizer state from rank 0 to its shards",
                         err);
    else if (rc == 0)
        rc = zero_finish(w,
                         MPI_Igatherv(part, counts[r], MPI_FLOAT, root_buf, counts, displs,
                                      MPI_FLOAT, 0, w->ctl, &req),
                         &req, peer, "dist: gathering the sharded optimizer state on rank 0", err);
    core_free(counts);
    return rc;
}

int dist_zero_gather(dist_world *w, const float *mine, size_t n, size_t lo, size_t hi, float *dst,
                     core_error *err)
{
    /* MPI_Igatherv only reads the send buffer */
    return zero_range(w, (float *)(uintptr_t)mine, n, lo, hi, dst, 0, err);
}

int dist_zero_scatter(dist_world *w, float *mine, size_t n, size_t lo, size_t hi, const float *src,
                      core_error *err)
{
    /* MPI_Iscatterv only reads rank 0's buffer */
    return zero_range(w, mine, n, lo, hi, (float *)(uintptr_t)src, 1, err);
}
