/*
 * dist/allreduce.c: the gradient all-reduce and its backends.
 *
 * One table maps each dist_allreduce_kind to a name and a function; a new
 * backend (NCCL, hierarchical node-then-ring) is one enum value, one row and
 * one function.
 */
#include "dist/dist_internal.h"

#include <string.h>

#define DIST_MPI_MAX_COUNT ((size_t)1 << 30)

static int allreduce_ring(dist_world *w, float *buf, size_t n, core_error *err)
{
    if (n > w->reserved_n)
        return core_error_set(err,
                              "dist: all-reduce of %zu floats exceeds the %zu reserved at "
                              "start-up; call dist_world_reserve with the largest size",
                              n, w->reserved_n);
    return dist_ring_allreduce(w, buf, n, w->scratch, err);
}

/* Called directly (benchmark, trainer without buckets): the library's own
 * blocking MPI_Allreduce, the reference. On a watched thread (the bucket
 * scheduler): MPI_Iallreduce tested with backoff, so that the comm thread
 * neither spins nor escapes the watchdog. */
static int allreduce_mpi(dist_world *w, float *buf, size_t n, core_error *err)
{
    for (size_t done = 0; done < n;) {
        size_t len = n - done < DIST_MPI_MAX_COUNT ? n - done : DIST_MPI_MAX_COUNT;
        int rc;
        if (dist_watch_active()) {
            MPI_Request req;
            rc = MPI_Iallreduce(MPI_IN_PLACE, buf + done, (int)len, MPI_FLOAT, MPI_SUM, w->grad,
                                &req);
            if (rc == MPI_SUCCESS && dist_wait_req(w, &req, -1, "dist: MPI_Iallreduce", err) != 0)
                return -1;
        } else {
            rc = MPI_Allreduce(MPI_IN_PLACE, buf + done, (int)len, MPI_FLOAT, MPI_SUM, w->grad);
        }
        if (rc != MPI_SUCCESS)
            return dist_mpi_error(w, err, rc, "dist: MPI_Allreduce of gradients");
        done += len;
    }
    return 0;
}

#ifndef RINGTRAIN_HAVE_NCCL
int dist_nccl_init(dist_world *w, int device, void *compute_stream, core_error *err)
{
    return core_error_set(err, "dist: --allreduce nccl: ringtrain was built without NCCL "
                               "(rebuild where CUDA and NCCL are installed)");
}
#endif

typedef int (*allreduce_fn)(dist_world *w, float *buf, size_t n, core_error *err);

static const struct {
    dist_allreduce_kind kind;
    const char *name;
    allreduce_fn fn;
} backends[] = {
    {DIST_ALLREDUCE_RING, "ring", allreduce_ring},
    {DIST_ALLREDUCE_MPI, "mpi", allreduce_mpi},
    {DIST_ALLREDUCE_HIER, "hier", dist_hier_allreduce},
#ifdef RINGTRAIN_HAVE_NCCL
    {DIST_ALLREDUCE_NCCL, "nccl", dist_nccl_allreduce},
#endif
};

#define NBACKENDS (sizeof backends / sizeof backends[0])

int dist_allreduce_kind_parse(const char *name, dist_allreduce_kind *out, core_error *err)
{
    for (size_t i = 0; name && i < NBACKENDS; i++) {
        if (strcmp(name, backends[i].name) == 0) {
            *out = backends[i].kind;
            return 0;
        }
    }
#ifndef RINGTRAIN_HAVE_NCCL
    if (name && strcmp(name, "nccl") == 0)
        return core_error_set(err, "dist: --allreduce nccl: ringtrain was built without NCCL "
                                   "(rebuild where CUDA and NCCL are installed)");
#endif
    return core_error_set(err,
                          "dist: unknown all-reduce backend '%s'; expected 'ring', 'mpi', 'hier'"
                          " or 'nccl'",
                          name ? name : "(none)");
}

const char *dist_allreduce_kind_name(dist_allreduce_kind k)
{
    for (size_t i = 0; i < NBACKENDS; i++)
        if (backends[i].kind == k)
            return backends[i].name;
    return "unknown";
}

int dist_allreduce_run(dist_world *w, dist_allreduce_kind kind, float *buf, size_t n,
                       core_error *err)
{
    for (size_t i = 0; i < NBACKENDS; i++)
        if (backends[i].kind == kind)
            return backends[i].fn(w, buf, n, err);
    return core_error_set(err, "dist: all-reduce backend %d is not built in", (int)kind);
}

int dist_allreduce_run_checked(dist_world *w, dist_allreduce_kind kind, float *buf, size_t n,
                               int *bad, core_error *err)
{
    if (kind == DIST_ALLREDUCE_HIER)
        return dist_hier_allreduce_checked(w, buf, n, bad, err);
    *bad = dist_has_nonfinite(buf, n);
    return dist_allreduce_run(w, kind, buf, n, err);
}

/*
 * The length check: every rank's n gathered on the gradient communicator
 * (one 8-byte MPI_Allgather, tested with backoff) before any gradient moves,
 * so that a mismatch is an error on every rank naming who differs, rather
 * than a truncation error on some ranks and a hang on others.
 */
static int check_length(dist_world *w, dist_allreduce_kind kind, size_t n, core_error *err)
{
    uint64_t mine = n, *all = w->lengths;
    MPI_Request req;
    int rc = MPI_Iallgather(&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, w->grad, &req);
    if (rc != MPI_SUCCESS)
        return dist_mpi_error(w, err, rc, "dist: all-reduce length check");
    if (dist_wait_req(w, &req, -1, "dist: all-reduce length check", err) != 0)
        return -1;
    for (int r = 1; r < w->size; r++)
        if (all[r] != all[0])
            return core_error_set(err,
                                  "dist: %s all-reduce length mismatch: rank %d passes %llu "
                                  "floats, rank 0 passes %llu; every rank must reduce the same "
                                  "buffer layout",
                                  dist_allreduce_kind_name(kind), r, (unsigned long long)all[r],
                                  (unsigned long long)all[0]);
    return 0;
}

int dist_allreduce_sum(dist_world *w, dist_allreduce_kind kind, float *buf, size_t n,
                       core_error *err)
{
    if (kind == DIST_ALLREDUCE_RING && n > w->reserved_n)
        return core_error_set(err,
                              "dist: all-reduce of %zu floats exceeds the %zu reserved at "
                              "start-up; call dist_world_reserve with the largest size",
                              n, w->reserved_n);
    if (w->length_check && w->size > 1 && check_length(w, kind, n, err) != 0)
        return -1;
    return dist_allreduce_run(w, kind, buf, n, err);
}
