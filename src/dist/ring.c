/*
 * dist/ring.c: ringtrain's own ring all-reduce over MPI point-to-point.
 *
 * The buffer is cut into `size` chunks whose lengths differ by at most one.
 * Reduce-scatter: in size-1 steps each rank sends one chunk to rank+1 and adds
 * the chunk arriving from rank-1 into its own copy; afterwards rank r holds
 * the full sum of chunk r+1. All-gather: in size-1 more steps the finished
 * chunks travel once around the ring and are copied, not added.
 *
 * Determinism: chunk c is summed exactly once, along the fixed chain
 * c, c+1, ..., c-1 (mod size), and then only copied, so every rank ends with
 * the same bits. The result does not depend on timing or on segmenting.
 *
 * Streaming: each step moves its chunk in segments (dist_world_set_ring_segment)
 * with DIST_RING_WINDOW receives and sends in flight, so a segment is reduced
 * while the next ones are still arriving.
 *
 * Waiting: requests are tested, not waited on (dist_wait_req), so a rank
 * whose peer is late sleeps instead of spinning, and the watchdog can name
 * the peer (rank-1 for a receive, rank+1 for a send).
 */
#include "dist/dist_internal.h"

#define RING_TAG 0x5249 /* "RI" */

/* Chunk i of n floats over p ranks: the first n % p chunks are one longer. */
static size_t chunk_start(size_t n, int p, int i)
{
    size_t q = n / (size_t)p, r = n % (size_t)p, ui = (size_t)i;
    return ui * q + (ui < r ? ui : r);
}

static size_t chunk_len(size_t n, int p, int i)
{
    return chunk_start(n, p, i + 1) - chunk_start(n, p, i);
}

static int mod(int a, int p)
{
    return ((a % p) + p) % p;
}

static size_t seg_count(size_t len, size_t seg)
{
    return len / seg + (len % seg != 0);
}

static size_t seg_len(size_t len, size_t seg, size_t k)
{
    size_t left = len - k * seg;
    return left < seg ? left : seg;
}

/* acc += in; restrict and a plain loop so that the compiler vectorizes it. */
static void ring_add(float *restrict acc, const float *restrict in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        acc[i] += in[i];
}

/* The ring's communicator and this rank's place in it. */
typedef struct ring_ctx {
    dist_world *w;
    MPI_Comm comm;
    int rank, size;
    size_t segment;
} ring_ctx;

typedef struct ring_step {
    const float *send; /* chunk to send to rank+1 */
    size_t send_n;
    float *recv; /* where the chunk from rank-1 lands */
    size_t recv_n;
    float *acc; /* when not NULL, recv is added into acc segment by segment */
} ring_step;

static int post_recv(const ring_ctx *c, const ring_step *s, size_t k, MPI_Request *req,
                     core_error *err)
{
    int prev = mod(c->rank - 1, c->size);
    size_t off = k * c->segment;
    int rc = MPI_Irecv(s->recv + off, (int)seg_len(s->recv_n, c->segment, k), MPI_FLOAT, prev,
                       RING_TAG, c->comm, req);
    return rc == MPI_SUCCESS ? 0 : dist_mpi_error(c->w, err, rc, "MPI_Irecv");
}

static int post_send(const ring_ctx *c, const ring_step *s, size_t k, MPI_Request *req,
                     core_error *err)
{
    int next = mod(c->rank + 1, c->size);
    size_t off = k * c->segment;
    int rc = MPI_Isend(s->send + off, (int)seg_len(s->send_n, c->segment, k), MPI_FLOAT, next,
                       RING_TAG, c->comm, req);
    return rc == MPI_SUCCESS ? 0 : dist_mpi_error(c->w, err, rc, "MPI_Isend");
}

/* The peer's rank in the world, for the watchdog's message. */
static int world_rank_of(const ring_ctx *c, int r)
{
    if (c->comm == c->w->grad)
        return r;
    MPI_Group g, wg;
    int out = -1;
    MPI_Comm_group(c->comm, &g);
    MPI_Comm_group(c->w->grad, &wg);
    MPI_Group_translate_ranks(g, 1, &r, wg, &out);
    MPI_Group_free(&g);
    MPI_Group_free(&wg);
    return out;
}

static int wait_req(const ring_ctx *c, MPI_Request *req, int peer, const char *what,
                    core_error *err)
{
    int done = 0;
    /* Most segments have already arrived: test first, and translate the
     * peer's rank only for a wait that may reach the watchdog. */
    int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS)
        return dist_mpi_error(c->w, err, rc, what);
    if (done)
        return 0;
    return dist_wait_req(c->w, req, world_rank_of(c, peer), what, err);
}

/*
 * One ring step. Segments of one (source, tag, communicator) arrive in the
 * order they were sent (MPI's non-overtaking rule), so every segment uses the
 * same tag. Segment k's slot in the window is k % DIST_RING_WINDOW; a slot is
 * reused only after its previous request completed.
 */
static int ring_step_run(const ring_ctx *c, const ring_step *s, core_error *err)
{
    MPI_Request rreq[DIST_RING_WINDOW], sreq[DIST_RING_WINDOW];
    size_t seg = c->segment;
    size_t nrecv = seg_count(s->recv_n, seg);
    size_t nsend = seg_count(s->send_n, seg);
    size_t nmax = nrecv > nsend ? nrecv : nsend;
    int prev = mod(c->rank - 1, c->size), next = mod(c->rank + 1, c->size);
    for (size_t k = 0; k < DIST_RING_WINDOW && k < nrecv; k++)
        if (post_recv(c, s, k, &rreq[k], err) != 0)
            return -1;
    for (size_t k = 0; k < DIST_RING_WINDOW && k < nsend; k++)
        if (post_send(c, s, k, &sreq[k], err) != 0)
            return -1;
    for (size_t k = 0; k < nmax; k++) {
        size_t slot = k % DIST_RING_WINDOW;
        if (k < nrecv) {
            if (wait_req(c, &rreq[slot], prev, "waiting for a receive", err) != 0)
                return -1;
            if (k + DIST_RING_WINDOW < nrecv &&
                post_recv(c, s, k + DIST_RING_WINDOW, &rreq[slot], err) != 0)
                return -1;
            if (s->acc) {
                size_t off = k * seg;
                ring_add(s->acc + off, s->recv + off, seg_len(s->recv_n, seg, k));
            }
        }
        if (k < nsend) {
            if (wait_req(c, &sreq[slot], next, "waiting for a send", err) != 0)
                return -1;
            if (k + DIST_RING_WINDOW < nsend &&
                post_send(c, s, k + DIST_RING_WINDOW, &sreq[slot], err) != 0)
                return -1;
        }
    }
    return 0;
}

int dist_ring_allreduce_comm(dist_world *w, MPI_Comm comm, float *buf, size_t n, float *scratch,
                             core_error *err)
{
    ring_ctx c = {w, comm, 0, 1, w->segment};
    MPI_Comm_rank(comm, &c.rank);
    MPI_Comm_size(comm, &c.size);
    int p = c.size, r = c.rank;
    if (p == 1 || n == 0)
        return 0;
    if (!buf || !scratch)
        return core_error_set(err, "dist/ring: %s is NULL for an all-reduce of %zu floats",
                              buf ? "scratch" : "buffer", n);
    /* Reduce-scatter: at step t, send chunk r-t, add chunk r-t-1 from rank-1. */
    for (int t = 0; t < p - 1; t++) {
        int cs = mod(r - t, p), cr = mod(r - t - 1, p);
        ring_step s = {buf + chunk_start(n, p, cs), chunk_len(n, p, cs), scratch,
                       chunk_len(n, p, cr), buf + chunk_start(n, p, cr)};
        if (ring_step_run(&c, &s, err) != 0)
            return core_error_prefix(err, "dist/ring: reduce-scatter step %d of %d", t + 1, p - 1);
    }
    /* All-gather: rank r now owns chunk r+1; at step t, pass chunk r+1-t on and
     * receive chunk r-t straight into place. */
    for (int t = 0; t < p - 1; t++) {
        int cs = mod(r + 1 - t, p), cr = mod(r - t, p);
        ring_step s = {buf + chunk_start(n, p, cs), chunk_len(n, p, cs),
                       buf + chunk_start(n, p, cr), chunk_len(n, p, cr), NULL};
        if (ring_step_run(&c, &s, err) != 0)
            return core_error_prefix(err, "dist/ring: all-gather step %d of %d", t + 1, p - 1);
    }
    return 0;
}

int dist_ring_allreduce(dist_world *w, float *buf, size_t n, float *scratch, core_error *err)
{
    return dist_ring_allreduce_comm(w, w->grad, buf, n, scratch, err);
}
