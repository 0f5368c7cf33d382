/*
 * dist/hier.c: the hierarchical all-reduce ("hier"): ranks of one node sum
 * through shared memory, node leaders run the ring across nodes, and the
 * result is shared back within the node.
 *
 * Two paths. A buffer from dist_shared_alloc (the trainer's gradients) is
 * summed in place by the zero-copy path further down ("Shared buffers").
 * Any other buffer goes through staging slots:
 *
 * Shared memory: at world init every node-local rank allocates a segment of
 * an MPI-3 shared window (MPI_Win_allocate_shared on the node communicator):
 * sequence counters, each on its own cache line, and DIST_HIER_SLOTS
 * staging slots of one block each. A call walks the buffer block by block
 * (a block stays in cache between the passes); block s, on local rank r of L:
 *
 *   1. wait until every rank has copied block s-SLOTS out (slot free);
 *      copy the block into slot s % SLOTS, except slice r      -> in[r] = s
 *   2. wait for in[*] >= s; sum slice r over ranks 0..L-1 in that order
 *      (slice r of this rank's own buffer, the others' slots) into this
 *      rank's slot and its buffer                             -> red[r] = s
 *   3. wait for red[*] >= s; copy every other slice q from rank q's slot
 *      into the buffer                                         -> out[r] = s
 *
 * That is a reduce-scatter in place followed by an all-gather, with no
 * message: each rank moves (L-1)/L of the block in and out once and sums
 * 1/L of it. Counters are C11 atomics in the window (release on store,
 * acquire on load); the window uses MPI's unified memory model, checked at
 * init. Waits spin briefly then sleep (wait.c), and name the local rank
 * whose counter is behind, for the watchdog.
 *
 * Several nodes: only the leader (local rank 0) copies the node sum out in
 * step 3; the leaders run the ring on their own communicator; then each
 * block goes from the leader's slot to the other local ranks.
 *
 * Determinism: every element is summed once, in local rank order, then
 * (several nodes) by the ring in its fixed order, and only copied after
 * that: every rank ends with the same bits.
 *
 * The same window also carries the trainer's per-step flag agreement when
 * the whole job is one node (dist_hier_agree_max: each rank stores its flags
 * and waits for the others', no MPI message), and the zero-copy path finds
 * the ranks whose gradients hold a NaN or an Inf while it sums them, so the
 * trainer needs no scan of its own (dist_hier_allreduce_checked).
 *
 * Test-only: RINGTRAIN_TEST_NODE_SIZE=k groups ranks into "nodes" of k
 * consecutive ranks instead of by shared memory, so that the leaders' ring
 * is exercised on one machine.
 */
#include "dist/dist_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "core/mem.h"

#define DIST_HIER_SLOTS 2
/* Floats per block: 512 KiB, a few blocks fit in a core's L2. */
#define DIST_HIER_BLOCK ((size_t)128 * 1024)

/* Staging path: IN, RED, OUT. Shared buffers (below): ARRIVE, CLAIM, RING,
 * COPIED, BAD per rank; TICKET and DONE only in local rank 0's segment. */
enum {
    HIER_IN,
    HIER_RED,
    HIER_OUT,
    HIER_ARRIVE,
    HIER_CLAIM,
    HIER_RING,
    HIER_COPIED,
    HIER_BAD,
    HIER_AGREE,
    HIER_GATHER,
    HIER_GATHERED,
    HIER_TICKET,
    HIER_DONE,
    HIER_NFLAGS
};

/* Buffers from dist_shared_alloc that may be live at once. */
#define DIST_HIER_SHARED_MAX 8
/* Floats per claimed block of the shared path: 128 KiB. */
#define DIST_HIER_ZBLOCK ((size_t)32 * 1024)

typedef struct hier_flag {
    _Alignas(64) uint64_t seq;
    char pad[64 - sizeof(uint64_t)];
} hier_flag;

typedef struct hier_buf {
    MPI_Win win;  /* MPI_WIN_NULL: slot unused */
    float **base; /* every local rank's copy, mapped here */
    size_t n;     /* floats per rank */
} hier_buf;

typedef struct hier_seg {
    hier_flag flag[HIER_NFLAGS];
    /* dist_hier_agree_max's values, double-buffered by call parity: a rank
     * can be one call ahead of the slowest reader, never two. */
    _Alignas(64) int32_t agree[2][DIST_MAX_FLAGS];
    _Alignas(64) float data[]; /* DIST_HIER_SLOTS blocks */
} hier_seg;

struct dist_hier {
    MPI_Comm node;    /* ranks of this node (shared memory) */
    MPI_Comm leaders; /* local rank 0 of every node; MPI_COMM_NULL elsewhere */
    int lrank, lsize, nnodes;
    MPI_Win win;
    int win_locked;
    hier_seg **seg; /* every local rank's segment, mapped here */
    int *world_of;  /* world rank of every local rank */
    uint64_t seq;   /* blocks done so far; the same on every local rank */
    size_t block;
    hier_buf shared[DIST_HIER_SHARED_MAX];
    uint64_t zcalls;  /* shared-path calls so far; the same on every local rank */
    uint64_t agrees;  /* dist_hier_agree_max calls so far; the same on every rank */
    uint64_t gathers; /* dist_shared_allgather calls so far; the same on every local rank */
    uint64_t zticket; /* first ticket of the next shared-path call */
};

static int chunk_begin(size_t m, int p, int i, size_t *out)
{
    size_t q = m / (size_t)p, r = m % (size_t)p, ui = (size_t)i;
    *out = ui * q + (ui < r ? ui : r);
    return 0;
}

static void slice_of(size_t m, int p, int i, size_t *a, size_t *b)
{
    chunk_begin(m, p, i, a);
    chunk_begin(m, p, i + 1, b);
}

static int node_color(const dist_world *w, int *color, MPI_Comm *node, core_error *err)
{
    const char *test = getenv("RINGTRAIN_TEST_NODE_SIZE");
    int k = test ? atoi(test) : 0;
    int rc;
    if (k > 0)
        rc = MPI_Comm_split(w->grad, w->rank / k, w->rank, node);
    else
        rc = MPI_Comm_split_type(w->grad, MPI_COMM_TYPE_SHARED, w->rank, MPI_INFO_NULL, node);
    *color = 0;
    if (rc != MPI_SUCCESS)
        return dist_mpi_error(w, err, rc, "dist/hier: splitting the node communicator");
    return 0;
}

static int make_window(dist_world *w, struct dist_hier *h, core_error *err)
{
    MPI_Info info;
    MPI_Info_create(&info);
    /* Each segment on its owner's NUMA node, not one block on rank 0's. */
    MPI_Info_set(info, "alloc_shared_noncontig", "true");
    /* MPI aligns a segment to 8 bytes only: 64 more let each rank start its
     * segment on a cache line (hier_seg's counters each own one). */
    size_t bytes = sizeof(hier_seg) + DIST_HIER_SLOTS * h->block * sizeof(float) + 64;
    void *base = NULL;
    int rc = MPI_Win_allocate_shared((MPI_Aint)bytes, 1, info, h->node, &base, &h->win);
    MPI_Info_free(&info);
    if (rc != MPI_SUCCESS) {
        h->win = MPI_WIN_NULL;
        return dist_mpi_error(w, err, rc, "dist/hier: allocating the shared window");
    }
    int *model = NULL, flag = 0;
    MPI_Win_get_attr(h->win, MPI_WIN_MODEL, &model, &flag);
    if (!flag || *model != MPI_WIN_UNIFIED)
        return core_error_set(err, "dist/hier: the MPI library's shared windows are not in the "
                                   "unified memory model; use --allreduce ring");
    for (int q = 0; q < h->lsize; q++) {
        MPI_Aint sz;
        int disp;
        void *p = NULL;
        rc = MPI_Win_shared_query(h->win, q, &sz, &disp, &p);
        if (rc != MPI_SUCCESS)
            return dist_mpi_error(w, err, rc, "dist/hier: mapping a peer's segment");
        /* A segment's offset within its page is the same in every
         * process, so this finds the same cache line everywhere. */
        h->seg[q] = (hier_seg *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
    }
    memset(h->seg[h->lrank]->flag, 0, sizeof h->seg[h->lrank]->flag);
    rc = MPI_Win_lock_all(MPI_MODE_NOCHECK, h->win);
    if (rc != MPI_SUCCESS)
        return dist_mpi_error(w, err, rc, "dist/hier: opening the window's access epoch");
    h->win_locked = 1;
    /* Everyone's counters are zero before anyone reads them. */
    rc = MPI_Barrier(h->node);
    return rc == MPI_SUCCESS ? 0 : dist_mpi_error(w, err, rc, "dist/hier: barrier");
}

int dist_hier_init(dist_world *w, core_error *err)
{
    struct dist_hier *h = calloc(1, sizeof *h);
    if (!h)
        return core_error_set(err, "dist/hier: out of memory (rank %d)", w->rank);
    w->hier = h;
    h->node = h->leaders = MPI_COMM_NULL;
    h->win = MPI_WIN_NULL;
    h->block = DIST_HIER_BLOCK;
    for (int i = 0; i < DIST_HIER_SHARED_MAX; i++)
        h->shared[i].win = MPI_WIN_NULL;
    int color;
    if (node_color(w, &color, &h->node, err) != 0)
        return -1;
    MPI_Comm_set_errhandler(h->node, MPI_ERRORS_RETURN);
    MPI_Comm_rank(h->node, &h->lrank);
    MPI_Comm_size(h->node, &h->lsize);
    int rc = MPI_Comm_split(w->grad, h->lrank == 0 ? 0 : MPI_UNDEFINED, w->rank, &h->leaders);
    if (rc != MPI_SUCCESS)
        return dist_mpi_error(w, err, rc, "dist/hier: splitting the leaders' communicator");
    if (h->leaders != MPI_COMM_NULL)
        MPI_Comm_set_errhandler(h->leaders, MPI_ERRORS_RETURN);
    int lead = h->lrank == 0;
    rc = MPI_Allreduce(&lead, &h->nnodes, 1, MPI_INT, MPI_SUM, w->grad);
    if (rc != MPI_SUCCESS)
        return dist_mpi_error(w, err, rc, "dist/hier: counting nodes");
    h->seg = calloc((size_t)h->lsize, sizeof *h->seg);
    h->world_of = calloc((size_t)h->lsize, sizeof *h->world_of);
    if (!h->seg || !h->world_of)
        return core_error_set(err, "dist/hier: out of memory (rank %d)", w->rank);
    rc = MPI_Allgather(&w->rank, 1, MPI_INT, h->world_of, 1, MPI_INT, h->node);
    if (rc != MPI_SUCCESS)
        return dist_mpi_error(w, err, rc, "dist/hier: exchanging ranks");
    return make_window(w, h, err);
}

void dist_hier_free(dist_world *w)
{
    struct dist_hier *h = w->hier;
    if (!h)
        return;
    for (int i = 0; i < DIST_HIER_SHARED_MAX; i++)
        if (h->shared[i].win != MPI_WIN_NULL)
            dist_shared_free(w, h->shared[i].base[h->lrank]);
    if (h->win_locked)
        MPI_Win_unlock_all(h->win);
    if (h->win != MPI_WIN_NULL)
        MPI_Win_free(&h->win);
    if (h->leaders != MPI_COMM_NULL)
        MPI_Comm_free(&h->leaders);
    if (h->node != MPI_COMM_NULL)
        MPI_Comm_free(&h->node);
    free(h->seg);
    free(h->world_of);
    free(h);
    w->hier = NULL;
}

int dist_hier_nodes(const dist_world *w)
{
    return w->hier ? w->hier->nnodes : 1;
}

static float *slot(const struct dist_hier *h, int q, uint64_t s)
{
    return h->seg[q]->data + (size_t)(s % DIST_HIER_SLOTS) * h->block;
}

static void publish(struct dist_hier *h, int which, uint64_t s)
{
    __atomic_store_n(&h->seg[h->lrank]->flag[which].seq, s, __ATOMIC_RELEASE);
}

/* Waits until every local rank's counter `which` is at least s. */
static void wait_all(dist_world *w, const struct dist_hier *h, int which, uint64_t s)
{
    for (int q = 0; q < h->lsize; q++) {
        const uint64_t *f = &h->seg[q]->flag[which].seq;
        if (__atomic_load_n(f, __ATOMIC_ACQUIRE) >= s)
            continue;
        dist_backoff b;
        dist_backoff_start(&b);
        while (__atomic_load_n(f, __ATOMIC_ACQUIRE) < s)
            dist_backoff_pause(w, &b, h->world_of[q]);
    }
}

static void wait_one(dist_world *w, const struct dist_hier *h, int q, int which, uint64_t s)
{
    const uint64_t *f = &h->seg[q]->flag[which].seq;
    dist_backoff b;
    dist_backoff_start(&b);
    while (__atomic_load_n(f, __ATOMIC_ACQUIRE) < s)
        dist_backoff_pause(w, &b, h->world_of[q]);
}

static void add2(float *restrict d, const float *restrict a, const float *restrict b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        d[i] = a[i] + b[i];
}

static void add_into(float *restrict d, const float *restrict a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        d[i] += a[i];
}

/* Step 2: slice [a, b) of the block summed over local ranks 0..L-1, in that
 * order, into this rank's slot and into buf. */
static void reduce_slice(const struct dist_hier *h, uint64_t s, float *blk, size_t a, size_t b)
{
    int me = h->lrank, L = h->lsize;
    float *dst = slot(h, me, s) + a;
    const float *src0 = me == 0 ? blk + a : slot(h, 0, s) + a;
    const float *src1 = me == 1 ? blk + a : slot(h, 1, s) + a;
    add2(dst, src0, src1, b - a);
    for (int q = 2; q < L; q++)
        add_into(dst, q == me ? blk + a : slot(h, q, s) + a, b - a);
    memcpy(blk + a, dst, (b - a) * sizeof(float));
}

/* Steps 1-3 for one block of m floats at blk; copy_out: whether this rank
 * gathers the other slices (all ranks on one node; the leader otherwise). */
static void block_reduce(dist_world *w, struct dist_hier *h, float *blk, size_t m, int copy_out)
{
    int me = h->lrank, L = h->lsize;
    uint64_t s = ++h->seq;
    size_t a, b;
    slice_of(m, L, me, &a, &b);
    if (s > DIST_HIER_SLOTS)
        wait_all(w, h, HIER_OUT, s - DIST_HIER_SLOTS);
    float *mine = slot(h, me, s);
    memcpy(mine, blk, a * sizeof(float));
    memcpy(mine + b, blk + b, (m - b) * sizeof(float));
    publish(h, HIER_IN, s);
    wait_all(w, h, HIER_IN, s);
    reduce_slice(h, s, blk, a, b);
    publish(h, HIER_RED, s);
    wait_all(w, h, HIER_RED, s);
    for (int q = 0; copy_out && q < L; q++) {
        if (q == me)
            continue;
        size_t qa, qb;
        slice_of(m, L, q, &qa, &qb);
        memcpy(blk + qa, slot(h, q, s) + qa, (qb - qa) * sizeof(float));
    }
    publish(h, HIER_OUT, s);
}

/* The leader's finished block goes to every other local rank. */
static void block_share(dist_world *w, struct dist_hier *h, float *blk, size_t m)
{
    uint64_t s = ++h->seq;
    if (h->lrank == 0) {
        if (s > DIST_HIER_SLOTS)
            wait_all(w, h, HIER_OUT, s - DIST_HIER_SLOTS);
        memcpy(slot(h, 0, s), blk, m * sizeof(float));
    } else {
        wait_one(w, h, 0, HIER_IN, s);
        memcpy(blk, slot(h, 0, s), m * sizeof(float));
    }
    /* Keep all three counters in step, so the next call's waits line up. */
    publish(h, HIER_IN, s);
    publish(h, HIER_RED, s);
    publish(h, HIER_OUT, s);
}

/* ---- Shared buffers: the zero-copy path ----
 *
 * A buffer from dist_shared_alloc lives in a shared window, so every local
 * rank can read and write every other's copy. An all-reduce of a slice of it
 * then needs no staging: after every local rank has arrived (its slice is
 * final), the slice is cut into blocks of DIST_HIER_ZBLOCK floats, and any
 * rank that is running claims the next block (a ticket counter in local rank
 * 0's segment), sums it over ranks 0..L-1 in that order and writes the sum into
 * every rank's copy (only the leader's with several nodes), then counts it
 * done. A rank returns when every block is done. A peer that the OS or the
 * hypervisor has descheduled after arriving holds nobody up: the running
 * ranks take its share. Two waits per call instead of three per block of the
 * staging path, and one pass over memory less (no copy in and out of slots).
 * The same order of summation as the staging path: the same bits.
 *
 * Tickets are never reset: a call with nb blocks owns [zticket, zticket+nb),
 * a claim is a compare-and-swap that never moves the counter past the call's
 * end, so a late rank cannot take a ticket of the next call. Every local rank
 * makes the same calls in the same order, so zcalls and zticket agree. */

static hier_buf *find_shared(struct dist_hier *h, const float *buf, size_t n, size_t *off)
{
    for (int i = 0; i < DIST_HIER_SHARED_MAX; i++) {
        hier_buf *b = &h->shared[i];
        const float *mine = b->win != MPI_WIN_NULL ? b->base[h->lrank] : NULL;
        if (mine && buf >= mine && buf < mine + b->n && n <= b->n - (size_t)(buf - mine)) {
            *off = (size_t)(buf - mine);
            return b;
        }
    }
    return NULL;
}

static int rank_of_claim(const struct dist_hier *h)
{
    for (int q = 0; q < h->lsize; q++)
        if (__atomic_load_n(&h->seg[q]->flag[HIER_CLAIM].seq, __ATOMIC_RELAXED) != 0)
            return q;
    return 0;
}

/* Sums block [a, b) over the local ranks' copies into the copies of ranks
 * [d0, d1), through a small buffer that stays in L1. With check = the call
 * id, it also finds the ranks whose gradients hold a NaN or an Inf: any such
 * input makes the sum non-finite (NaN propagates, Inf + -Inf is NaN), so
 * only the sum is scanned, in L1, and the inputs only when it fails, before
 * they are overwritten; the guilty rank's BAD counter is set to the call. */
static void zsum_block(const struct dist_hier *h, const hier_buf *sb, size_t off, size_t a,
                       size_t b, int d0, int d1, uint64_t check)
{
    float tmp[1024];
    for (size_t i = a; i < b; i += 1024) {
        size_t m = b - i < 1024 ? b - i : 1024;
        add2(tmp, sb->base[0] + off + i, sb->base[1] + off + i, m);
        for (int q = 2; q < h->lsize; q++)
            add_into(tmp, sb->base[q] + off + i, m);
        if (check && dist_has_nonfinite(tmp, m))
            for (int q = 0; q < h->lsize; q++)
                if (dist_has_nonfinite(sb->base[q] + off + i, m))
                    __atomic_store_n(&h->seg[q]->flag[HIER_BAD].seq, check, __ATOMIC_RELAXED);
        for (int q = d0; q < d1; q++)
            memcpy(sb->base[q] + off + i, tmp, m * sizeof(float));
    }
}

static void zwait_done(dist_world *w, const struct dist_hier *h, uint64_t end)
{
    const uint64_t *done = &h->seg[0]->flag[HIER_DONE].seq;
    dist_backoff b;
    dist_backoff_start(&b);
    while (__atomic_load_n(done, __ATOMIC_ACQUIRE) < end)
        dist_backoff_pause(w, &b, h->world_of[rank_of_claim(h)]);
}

/* check: also find the local ranks with non-finite inputs (zsum_block);
 * *bad says whether this rank was one. */
static void shared_reduce(dist_world *w, struct dist_hier *h, const hier_buf *sb, size_t off,
                          size_t n, int leader_only, int check, int *bad)
{
    uint64_t c = ++h->zcalls;
    uint64_t nb = (n + DIST_HIER_ZBLOCK - 1) / DIST_HIER_ZBLOCK;
    uint64_t first = h->zticket, end = first + nb;
    h->zticket = end;
    publish(h, HIER_ARRIVE, c);
    wait_all(w, h, HIER_ARRIVE, c);
    uint64_t *ticket = &h->seg[0]->flag[HIER_TICKET].seq;
    uint64_t *done = &h->seg[0]->flag[HIER_DONE].seq;
    uint64_t t = __atomic_load_n(ticket, __ATOMIC_RELAXED);
    while (t < end) {
        if (!__atomic_compare_exchange_n(ticket, &t, t + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            continue; /* t now holds the counter's value */
        publish(h, HIER_CLAIM, t + 1);
        size_t a = (size_t)(t - first) * DIST_HIER_ZBLOCK;
        size_t b = n - a < DIST_HIER_ZBLOCK ? n - a : DIST_HIER_ZBLOCK;
        zsum_block(h, sb, off, a, a + b, 0, leader_only ? 1 : h->lsize, check ? c : 0);
        publish(h, HIER_CLAIM, 0);
        /* Release: a BAD mark set above is seen by whoever sees the count. */
        __atomic_fetch_add(done, 1, __ATOMIC_RELEASE);
        t = __atomic_load_n(ticket, __ATOMIC_RELAXED);
    }
    zwait_done(w, h, end);
    if (check)
        *bad = __atomic_load_n(&h->seg[h->lrank]->flag[HIER_BAD].seq, __ATOMIC_RELAXED) == c;
}

static int shared_allreduce(dist_world *w, struct dist_hier *h, const hier_buf *sb, size_t off,
                            size_t n, int *bad, core_error *err)
{
    int multi = h->nnodes > 1;
    if (h->lsize > 1)
        shared_reduce(w, h, sb, off, n, multi, bad != NULL, bad);
    else if (bad)
        *bad = dist_has_nonfinite(sb->base[0] + off, n);
    if (!multi)
        return 0;
    uint64_t c = h->zcalls;
    float *lead = sb->base[0] + off;
    if (h->lrank == 0) {
        int rc = dist_ring_allreduce_comm(w, h->leaders, lead, n, w->scratch, err);
        /* Published even on failure, so that no local rank is left waiting
         * for a result that will not come; the caller aborts the job. */
        publish(h, HIER_RING, c);
        if (rc != 0)
            return core_error_prefix(err, "dist/hier: ring across %d node leaders", h->nnodes);
        /* The others copy from this rank's buffer: it must stay as it is
         * until they have. */
        publish(h, HIER_COPIED, c);
        wait_all(w, h, HIER_COPIED, c);
        return 0;
    }
    wait_one(w, h, 0, HIER_RING, c);
    memcpy(sb->base[h->lrank] + off, lead, n * sizeof(float));
    publish(h, HIER_COPIED, c);
    return 0;
}

int dist_hier_agree_max(dist_world *w, int32_t *v, int n)
{
    struct dist_hier *h = w->hier;
    if (!h || h->nnodes != 1 || h->lsize != w->size || h->lsize < 2 || n > DIST_MAX_FLAGS)
        return 0;
    uint64_t c = ++h->agrees;
    int32_t(*val)[DIST_MAX_FLAGS] = h->seg[h->lrank]->agree;
    memcpy(val[c & 1], v, (size_t)n * sizeof *v);
    publish(h, HIER_AGREE, c);
    wait_all(w, h, HIER_AGREE, c);
    for (int q = 0; q < h->lsize; q++) {
        const int32_t *theirs = h->seg[q]->agree[c & 1];
        for (int k = 0; k < n; k++)
            v[k] = theirs[k] > v[k] ? theirs[k] : v[k];
    }
    return 1;
}

/* ---- The sharded optimizer step: slices by local rank ---- */

static void shard_of(size_t n, int L, int q, size_t *a, size_t *b)
{
    size_t per = (n + (size_t)L - 1) / (size_t)L;
    per = (per + 15) & ~(size_t)15; /* whole 64-byte lines */
    size_t lo = (size_t)q * per;
    *a = lo < n ? lo : n;
    *b = lo + per < n ? lo + per : n;
}

void dist_shard_slice(const dist_world *w, size_t n, size_t *a, size_t *b)
{
    const struct dist_hier *h = w->hier;
    shard_of(n, h ? h->lsize : 1, h ? h->lrank : 0, a, b);
}

int dist_shared_allgather(dist_world *w, float *buf, size_t n, core_error *err)
{
    struct dist_hier *h = w->hier;
    if (!h)
        return core_error_set(err, "dist/hier: not initialized (rank %d)", w->rank);
    if (h->lsize == 1 || n == 0)
        return 0;
    size_t off;
    const hier_buf *sb = find_shared(h, buf, n, &off);
    if (!sb)
        return core_error_set(err,
                              "dist: the sharded step's all-gather needs a buffer from "
                              "dist_shared_alloc (rank %d)",
                              w->rank);
    uint64_t c = ++h->gathers;
    char what[96];
    snprintf(what, sizeof what, "the parameter all-gather %llu of the sharded optimizer step",
             (unsigned long long)c);
    int outer = dist_watch_active();
    if (!outer)
        dist_watch_begin(what, w->timeout_s);
    publish(h, HIER_GATHER, c);
    for (int q = 0; q < h->lsize; q++) {
        if (q == h->lrank)
            continue;
        size_t a, b;
        shard_of(n, h->lsize, q, &a, &b);
        if (a < b) {
            wait_one(w, h, q, HIER_GATHER, c);
            memcpy(buf + a, sb->base[q] + off + a, (b - a) * sizeof(float));
        }
    }
    /* Nobody reads this rank's copy once this returns: the caller may write
     * its slice again at once. */
    publish(h, HIER_GATHERED, c);
    wait_all(w, h, HIER_GATHERED, c);
    if (!outer)
        dist_watch_end();
    return 0;
}

int dist_shard_gather(dist_world *w, float *buf, size_t n, core_error *err)
{
    struct dist_hier *h = w->hier;
    if (!h)
        return core_error_set(err, "dist/hier: not initialized (rank %d)", w->rank);
    if (h->lsize == 1)
        return 0; /* the one rank's slice is the whole buffer */
    /* One broadcast per slice from its owner, in pieces that fit an int;
     * watched, so that a peer that never comes ends the job, named. */
    const size_t piece = (size_t)1 << 28;
    const char *what = "dist: gathering the sharded optimizer state";
    int outer = dist_watch_active(), failed = 0;
    if (!outer)
        dist_watch_begin(what, w->timeout_s);
    for (int q = 0; q < h->lsize && !failed; q++) {
        size_t a, b;
        shard_of(n, h->lsize, q, &a, &b);
        for (size_t o = a; o < b && !failed; o += piece) {
            int cnt = (int)(b - o < piece ? b - o : piece);
            MPI_Request req;
            int rc = MPI_Ibcast(buf + o, cnt, MPI_FLOAT, q, h->node, &req);
            failed = rc != MPI_SUCCESS ? dist_mpi_error(w, err, rc, what) != 0
                                       : dist_wait_req(w, &req, h->world_of[q], what, err) != 0;
        }
    }
    if (!outer)
        dist_watch_end();
    return failed ? -1 : 0;
}

/* Open MPI backs shared windows with a file in this directory (its osc/sm
 * component's backing_directory parameter, /dev/shm by default). */
static const char *backing_dir(void)
{
    const char *d = getenv("OMPI_MCA_osc_sm_backing_directory");
    return d && *d ? d : "/dev/shm";
}

/* Room left beside the node's shared buffers, for MPI's own segments. */
#define DIST_SHARED_MARGIN ((double)(16u << 20))

int dist_shared_fits(dist_world *w, size_t n, char *why, size_t len)
{
    struct dist_hier *h = w->hier;
    int lsize = h ? h->lsize : 1;
    double need = (double)lsize * ((double)n * sizeof(float) + 4096.0) + DIST_SHARED_MARGIN;
    struct statvfs fs;
    const char *dir = backing_dir();
    int ok = statvfs(dir, &fs) == 0;
    double avail = ok ? (double)fs.f_bavail * (double)fs.f_frsize : 0.0;
    int fits = ok && avail >= need;
    if (!fits && why) {
        char a[32], b[32];
        if (ok)
            snprintf(why, len,
                     "%s has %s free; the %d rank(s) of this node need %s for a shared buffer "
                     "of %zu floats each",
                     dir, core_format_bytes(avail, a, sizeof a), lsize,
                     core_format_bytes(need, b, sizeof b), n);
        else
            snprintf(why, len, "cannot query the free space of %s", dir);
    }
    int all = fits;
    /* The same answer everywhere, or no rank could use the result. */
    if (MPI_Allreduce(&fits, &all, 1, MPI_INT, MPI_MIN, w->ctl) != MPI_SUCCESS)
        all = 0;
    if (!all && fits && why)
        snprintf(why, len, "another node lacks room for a shared buffer of %zu floats", n);
    return all;
}

float *dist_shared_alloc(dist_world *w, size_t n, core_error *err)
{
    struct dist_hier *h = w->hier;
    if (!h) {
        core_error_set(err, "dist/hier: not initialized (rank %d)", w->rank);
        return NULL;
    }
    unsigned long long mine = n, lo = 0, hi = 0;
    int rc = MPI_Allreduce(&mine, &lo, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, w->ctl);
    if (rc == MPI_SUCCESS)
        rc = MPI_Allreduce(&mine, &hi, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, w->ctl);
    if (rc != MPI_SUCCESS) {
        dist_mpi_error(w, err, rc, "dist/hier: agreeing on a shared buffer's size");
        return NULL;
    }
    if (lo != hi) {
        core_error_set(err,
                       "dist/hier: shared buffer sizes differ across ranks (%llu to %llu floats); "
                       "every rank must allocate the same",
                       lo, hi);
        return NULL;
    }
    /* Open MPI does not fail a window its backing file system cannot hold:
     * it warns and the job hangs or dies of SIGBUS on first touch. */
    char why[256];
    if (!dist_shared_fits(w, n, why, sizeof why)) {
        core_error_set(err, "dist/hier: no room for a shared buffer: %s", why);
        return NULL;
    }
    int slot_i = 0;
    while (slot_i < DIST_HIER_SHARED_MAX && h->shared[slot_i].win != MPI_WIN_NULL)
        slot_i++;
    /* Every rank has made the same allocations, so they agree on slot_i. */
    if (slot_i == DIST_HIER_SHARED_MAX) {
        core_error_set(err, "dist/hier: more than %d shared buffers at once", DIST_HIER_SHARED_MAX);
        return NULL;
    }
    hier_buf *b = &h->shared[slot_i];
    b->base = calloc((size_t)h->lsize, sizeof *b->base);
    if (!b->base) {
        core_error_set(err, "dist/hier: out of memory (rank %d)", w->rank);
        return NULL;
    }
    MPI_Info info;
    MPI_Info_create(&info);
    MPI_Info_set(info, "alloc_shared_noncontig", "true");
    void *base = NULL;
    MPI_Win win = MPI_WIN_NULL;
    rc = MPI_Win_allocate_shared((MPI_Aint)((n ? n : 1) * sizeof(float) + 64), 1, info, h->node,
                                 &base, &win);
    MPI_Info_free(&info);
    for (int q = 0; rc == MPI_SUCCESS && q < h->lsize; q++) {
        MPI_Aint sz;
        int disp;
        void *p = NULL;
        rc = MPI_Win_shared_query(win, q, &sz, &disp, &p);
        b->base[q] = (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
    }
    if (rc == MPI_SUCCESS)
        rc = MPI_Win_lock_all(MPI_MODE_NOCHECK, win);
    if (rc != MPI_SUCCESS) {
        if (win != MPI_WIN_NULL)
            MPI_Win_free(&win);
        free(b->base);
        b->base = NULL;
        dist_mpi_error(w, err, rc, "dist/hier: allocating a shared buffer");
        return NULL;
    }
    b->win = win;
    b->n = n;
    memset(b->base[h->lrank], 0, n * sizeof(float));
    return b->base[h->lrank];
}

void dist_shared_free(dist_world *w, float *p)
{
    struct dist_hier *h = w ? w->hier : NULL;
    hier_buf *b = NULL;
    for (int i = 0; h && p && i < DIST_HIER_SHARED_MAX && !b; i++)
        if (h->shared[i].win != MPI_WIN_NULL && h->shared[i].base[h->lrank] == p)
            b = &h->shared[i];
    if (!b)
        return;
    MPI_Win_unlock_all(b->win);
    MPI_Win_free(&b->win);
    b->win = MPI_WIN_NULL;
    free(b->base);
    b->base = NULL;
    b->n = 0;
}

int dist_shared_contains(const dist_world *w, const float *p, size_t n)
{
    size_t off;
    return w && w->hier && find_shared(w->hier, p, n, &off) != NULL;
}

/* bad: NULL, or where to say whether this rank's input held a NaN or an
 * Inf (found during the sum on the zero-copy path, by a scan otherwise). */
static int hier_allreduce(dist_world *w, float *buf, size_t n, int *bad, core_error *err)
{
    struct dist_hier *h = w->hier;
    if (!h)
        return core_error_set(err, "dist/hier: not initialized (rank %d)", w->rank);
    int multi = h->nnodes > 1;
    size_t off;
    const hier_buf *sb =
        w->hier_zero_copy && n > 0 && w->size > 1 ? find_shared(h, buf, n, &off) : NULL;
    if (bad && !sb)
        *bad = dist_has_nonfinite(buf, n);
    if (n == 0 || w->size == 1)
        return 0;
    if (multi && n > w->reserved_n)
        return core_error_set(err,
                              "dist/hier: all-reduce of %zu floats exceeds the %zu reserved at "
                              "start-up; call dist_world_reserve with the largest size",
                              n, w->reserved_n);
    if (sb)
        return shared_allreduce(w, h, sb, off, n, bad, err);
    if (h->lsize > 1)
        for (size_t o = 0; o < n; o += h->block)
            block_reduce(w, h, buf + o, n - o < h->block ? n - o : h->block,
                         !multi || h->lrank == 0);
    if (!multi)
        return 0;
    if (h->lrank == 0 && dist_ring_allreduce_comm(w, h->leaders, buf, n, w->scratch, err) != 0)
        return core_error_prefix(err, "dist/hier: ring across %d node leaders", h->nnodes);
    if (h->lsize > 1)
        for (size_t o = 0; o < n; o += h->block)
            block_share(w, h, buf + o, n - o < h->block ? n - o : h->block);
    return 0;
}

int dist_hier_allreduce(dist_world *w, float *buf, size_t n, core_error *err)
{
    return hier_allreduce(w, buf, n, NULL, err);
}

int dist_hier_allreduce_checked(dist_world *w, float *buf, size_t n, int *bad, core_error *err)
{
    return hier_allreduce(w, buf, n, bad, err);
}
