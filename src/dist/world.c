/*
 * dist/world.c: the world of ranks (MPI start-up and shut-down) and the small
 * collectives the trainer uses to agree on flags, statistics and parameters.
 *
 * MPI is initialized with MPI_THREAD_MULTIPLE requested: the bucket scheduler
 * runs gradient all-reduces on a comm thread while the main thread computes
 * (see docs/COMMUNICATION.md, "Threading"). Every communicator the library
 * uses returns errors (MPI_ERRORS_RETURN), so an MPI failure becomes a
 * core_error with MPI's own text instead of an abort deep inside MPI.
 */
#include "dist/dist_internal.h"

#include <limits.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/mem.h"

/* Largest count handed to one MPI call; keeps counts well inside int. */
#define DIST_MPI_MAX_COUNT ((size_t)1 << 30)

int dist_mpi_error(const dist_world *w, core_error *err, int rc, const char *what)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS)
        snprintf(text, sizeof text, "MPI error code %d", rc);
    return core_error_set(err, "%s: %s (rank %d)", what, text, w ? w->rank : -1);
}

static const char *thread_level_name(int level)
{
    switch (level) {
    case MPI_THREAD_SINGLE:
        return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED:
        return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED:
        return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE:
        return "MPI_THREAD_MULTIPLE";
    default:
        return "an unknown thread level";
    }
}

/* Any InfiniBand / RoCE / iWARP device on this node. */
static int has_rdma_device(void)
{
    DIR *d = opendir("/sys/class/infiniband");
    if (!d)
        return 0;
    int found = 0;
    for (struct dirent *e; !found && (e = readdir(d));)
        found = e->d_name[0] != '.';
    closedir(d);
    return found;
}

static int start_mpi(int *argc, char ***argv, dist_world *w, core_error *err)
{
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) {
        /* Someone else (a test harness, an embedding program) owns MPI. */
        MPI_Query_thread(&w->thread_level);
        w->owns_mpi = 0;
    } else {
        /* Started without a launcher (a one-rank run, a GPU check): Open MPI's
         * singleton would spawn a daemon first, most of a 0.5 s start-up. */
        if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMIX_RANK") && !getenv("PMI_RANK"))
            setenv("OMPI_MCA_ess_singleton_isolated", "1", 0);
        /* Without an RDMA device Open MPI's UCX PML has nothing to offer over
         * ob1 (shared memory and TCP), but probing it costs ~0.2 s of every
         * start. A PML the user chose is kept. */
        if (!has_rdma_device())
            setenv("OMPI_MCA_pml", "ob1", 0);
        int rc = MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &w->thread_level);
        if (rc != MPI_SUCCESS)
            return core_error_set(err,
                                  "dist: MPI_Init_thread failed (code %d); check that the "
                                  "program was started with mpirun/srun",
                                  rc);
        w->owns_mpi = 1;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &w->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &w->size);
    if (w->thread_level < MPI_THREAD_SERIALIZED)
        return core_error_set(err,
                              "dist: the MPI library provides only %s, but the comm thread "
                              "needs at least MPI_THREAD_SERIALIZED (MPI_THREAD_MULTIPLE "
                              "preferred); use an MPI built with thread support (rank %d)",
                              thread_level_name(w->thread_level), w->rank);
    return 0;
}

static int make_comms(dist_world *w, core_error *err)
{
    w->lengths = calloc((size_t)w->size, sizeof *w->lengths);
    if (!w->lengths)
        return core_error_set(err, "dist: out of memory (rank %d)", w->rank);
    int rc = MPI_Comm_dup(MPI_COMM_WORLD, &w->ctl);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_set_errhandler(w->ctl, MPI_ERRORS_RETURN);
    if (rc != MPI_SUCCESS)
        return dist_mpi_error(w, err, rc, "dist: duplicating the world communicator");
    rc = MPI_Comm_dup(MPI_COMM_WORLD, &w->grad);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_set_errhandler(w->grad, MPI_ERRORS_RETURN);
    if (rc != MPI_SUCCESS)
        return dist_mpi_error(w, err, rc, "dist: duplicating the gradient communicator");
    rc = MPI_Comm_split_type(w->ctl, MPI_COMM_TYPE_SHARED, w->rank, MPI_INFO_NULL, &w->local);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_set_errhandler(w->local, MPI_ERRORS_RETURN);
    if (rc != MPI_SUCCESS)
        return dist_mpi_error(w, err, rc, "dist: splitting the node-local communicator");
    MPI_Comm_rank(w->local, &w->local_rank);
    MPI_Comm_size(w->local, &w->local_size);
    return dist_hier_init(w, err);
}

int dist_world_init(int *argc, char ***argv, dist_world **out, core_error *err)
{
    *out = NULL;
    dist_world *w = calloc(1, sizeof *w);
    if (!w)
        return core_error_set(err, "dist: out of memory for the world");
    w->ctl = w->grad = w->local = MPI_COMM_NULL;
    w->segment = DIST_RING_SEGMENT_DEFAULT;
    w->length_check = 1;
    w->timeout_s = DIST_COMM_TIMEOUT_DEFAULT;
    const char *wait = getenv("RINGTRAIN_COMM_WAIT");
    w->wait_spin = wait && strcmp(wait, "spin") == 0;
    /* For comparison only: hier copies through its staging slots even when
     * the buffer is a shared one (docs/COMMUNICATION.md). */
    const char *staging = getenv("RINGTRAIN_HIER_STAGING");
    w->hier_zero_copy = !(staging && strcmp(staging, "1") == 0);
    if (start_mpi(argc, argv, w, err) != 0) {
        /* Every rank got the same thread level, so every rank is here and
         * MPI can be finalized cleanly (if this call started it). */
        dist_world_finalize(w);
        return -1;
    }
    if (make_comms(w, err) != 0) {
        /* Possibly on some ranks only: a collective MPI_Finalize could hang, so
         * leave MPI running; the caller reports the error and exits non-zero,
         * and the launcher ends the job. */
        w->owns_mpi = 0;
        dist_world_finalize(w);
        return -1;
    }
    core_log_set_rank(w->rank, w->size);
    *out = w;
    return 0;
}

static void free_comm(MPI_Comm *c)
{
    if (*c != MPI_COMM_NULL)
        MPI_Comm_free(c);
}

void dist_world_finalize(dist_world *w)
{
    if (!w)
        return;
    int finalized = 0;
    MPI_Finalized(&finalized);
#ifdef RINGTRAIN_HAVE_NCCL
    dist_nccl_free(w);
#endif
    if (!finalized) {
        dist_hier_free(w);
        free_comm(&w->local);
        free_comm(&w->grad);
        free_comm(&w->ctl);
        if (w->owns_mpi)
            MPI_Finalize();
    }
    core_free(w->scratch);
    free(w->lengths);
    free(w);
}

void dist_world_abort(dist_world *w, int code)
{
    (void)w;
    MPI_Abort(MPI_COMM_WORLD, code);
}

int dist_rank(const dist_world *w)
{
    return w->rank;
}

int dist_size(const dist_world *w)
{
    return w->size;
}

int dist_local_rank(const dist_world *w)
{
    return w->local_rank;
}

int dist_local_size(const dist_world *w)
{
    return w->local_size;
}

int dist_thread_multiple(const dist_world *w)
{
    return w->thread_level >= MPI_THREAD_MULTIPLE;
}

int dist_world_reserve(dist_world *w, size_t n, core_error *err)
{
    if (n <= w->reserved_n)
        return 0;
    /* The ring over all ranks needs ceil(n/size); hier's ring over the node
     * leaders needs ceil(n/nodes), which is larger when there are several. */
    size_t groups = (size_t)(dist_hier_nodes(w) > 1 ? dist_hier_nodes(w) : w->size);
    size_t floats = n / groups + (n % groups != 0);
    float *s = NULL;
    if (w->size > 1) {
        s = core_alloc(floats * sizeof(float), "all-reduce scratch", err);
        if (!s)
            return core_error_prefix(err, "dist (rank %d)", w->rank);
    }
    core_free(w->scratch);
    w->scratch = s;
    w->reserved_n = n;
    return 0;
}

int dist_world_set_comm_timeout(dist_world *w, double seconds, core_error *err)
{
    if (!(seconds > 0.0) || seconds > 1e7)
        return core_error_set(err, "dist: comm timeout of %g s is out of range (0 .. 1e7 s)",
                              seconds);
    w->timeout_s = seconds;
    return 0;
}

double dist_world_comm_timeout(const dist_world *w)
{
    return w->timeout_s;
}

void dist_world_set_length_check(dist_world *w, int on)
{
    w->length_check = on != 0;
}

int dist_world_set_ring_segment(dist_world *w, size_t bytes, core_error *err)
{
    if (bytes < sizeof(float) || bytes > ((size_t)INT_MAX / 2))
        return core_error_set(err, "dist: ring segment of %zu bytes is out of range (4 B .. 1 GiB)",
                              bytes);
    w->segment = bytes / sizeof(float);
    return 0;
}

size_t dist_world_ring_segment(const dist_world *w)
{
    return w->segment * sizeof(float);
}

int dist_sum_f64(dist_world *w, double *v, int n, core_error *err)
{
    if (n <= 0)
        return 0;
    int rc = MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, w->ctl);
    if (rc != MPI_SUCCESS)
        return dist_mpi_error(w, err, rc, "dist: sum of doubles (MPI_Allreduce)");
    return 0;
}

int dist_max_i32(dist_world *w, int32_t *v, int n, core_error *err)
{
    if (n <= 0)
        return 0;
    int rc = MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_INT32_T, MPI_MAX, w->ctl);
    if (rc != MPI_SUCCESS)
        return dist_mpi_error(w, err, rc, "dist: max of int32 (MPI_Allreduce)");
    return 0;
}

int dist_broadcast(dist_world *w, void *buf, size_t bytes, int root, core_error *err)
{
    if (root < 0 || root >= w->size)
        return core_error_set(err, "dist: broadcast root %d is not a rank of a world of %d", root,
                              w->size);
    char *p = buf;
    for (size_t done = 0; done < bytes;) {
        size_t len = bytes - done < DIST_MPI_MAX_COUNT ? bytes - done : DIST_MPI_MAX_COUNT;
        int rc = MPI_Bcast(p + done, (int)len, MPI_BYTE, root, w->ctl);
        if (rc != MPI_SUCCESS)
            return dist_mpi_error(w, err, rc, "dist: broadcast (MPI_Bcast)");
        done += len;
    }
    return 0;
}

int dist_barrier(dist_world *w, core_error *err)
{
    int rc = MPI_Barrier(w->ctl);
    if (rc != MPI_SUCCESS)
        return dist_mpi_error(w, err, rc, "dist: barrier");
    return 0;
}

int dist_barrier_idle(dist_world *w, core_error *err)
{
    MPI_Request req;
    int rc = MPI_Ibarrier(w->ctl, &req);
    if (rc != MPI_SUCCESS)
        return dist_mpi_error(w, err, rc, "dist: idle barrier");
    int was = dist_wait_may_sleep(1); /* the backoff's sleeps, not its yields */
    rc = dist_wait_req(w, &req, -1, "dist: idle barrier", err);
    dist_wait_may_sleep(was);
    return rc;
}

int dist_first_failed(dist_world *w, int failed)
{
    int mine = failed ? w->rank : w->size;
    int lowest = mine;
    if (MPI_Allreduce(&mine, &lowest, 1, MPI_INT, MPI_MIN, w->ctl) != MPI_SUCCESS) {
        /* The agreement itself broke: report this rank as failed so that the
         * caller stops rather than carrying on with an unknown world. */
        core_log_error("dist: failure agreement (MPI_Allreduce) failed");
        return w->rank;
    }
    return lowest < w->size ? lowest : -1;
}
