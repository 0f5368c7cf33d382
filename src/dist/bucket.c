/*
 * dist/bucket.c: the bucket scheduler - gradient all-reduces overlapped with
 * backward.
 *
 * The gradient buffer is cut into buckets, plain slices of it: a small first
 * one (default 1 MiB, so communication starts early) and then equal ones
 * (default 25 MiB), as PyTorch DDP does. Backward fills the buffer front to
 * back and reports how far it got (nn_grad_ready_fn); dist_buckets_ready
 * hands every bucket that is now complete to a persistent comm thread, which
 * all-reduces the buckets one by one, in index order - the same order on
 * every rank, so the collectives on the gradient communicator match.
 *
 * Without overlap (cfg.overlap = 0) there is no thread: dist_buckets_wait
 * reduces the same buckets, in the same order, with the same backend, on the
 * calling thread; the results are bitwise identical to the overlapped ones.
 *
 * Waiting: the idle comm thread sleeps on a condition variable; inside a
 * collective it tests requests with backoff (wait.c), so it does not take a
 * core from compute. The watchdog: the comm thread watches each bucket's
 * all-reduce (it knows the peer it waits on); the compute thread, in
 * dist_buckets_wait, watches the comm thread itself (a comm thread stuck
 * before or inside a call that cannot time out), with a margin so that the
 * comm thread's more precise message comes first.
 *
 * GPU gradients with ring, hier or mpi (dist_buckets_set_stage, dist/cuda.c): the
 * same buckets, but dist_buckets_ready queues each bucket's copy into pinned
 * host memory as backward reports it (the bucket is only queued on the GPU),
 * the comm thread waits for that copy, sums the host bucket and queues the
 * copy back; dist_buckets_wait then makes the engine's stream wait for the
 * copies back. With NCCL (dist/nccl.c) the device buffer is summed in place.
 *
 * Test-only hook: RINGTRAIN_TEST_STALL_RANK=r and RINGTRAIN_TEST_STALL_STEP=s
 * (optional RINGTRAIN_TEST_STALL_BUCKET=b, default 0, and
 * RINGTRAIN_TEST_STALL_SECONDS, default 3600) make rank r sleep before the
 * all-reduce of bucket b of step s. It exists for the watchdog's test only.
 */
#include "dist/dist_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/mem.h"

struct dist_buckets {
    dist_world *w;
    dist_bucket_config cfg;
    float *grads;
    size_t n;
    int nb;
    size_t *end; /* bucket i is [end[i-1], end[i]), end[-1] = 0 */
    int handed;  /* compute thread only: buckets passed on this step */
    int begun;
    dist_stage stage; /* dist_buckets_set_stage */
    float *host;      /* staged: the host copy of grads, else NULL */
    int queued;       /* staged, compute thread only: buckets copied down this step */

    /* Shared with the comm thread, under mu. */
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    int thread_up;
    pthread_t thread;
    int ready;    /* buckets that may be reduced */
    int next;     /* bucket the comm thread reduces next */
    int finished; /* buckets done (reduced, or skipped after a failure) */
    int quit;
    int failed;
    core_error err;
    long step;
    int nonfinite;
    double progress_at; /* last bucket start or finish, for the compute thread's watch */

    /* Test-only stall hook. */
    int stall_rank, stall_bucket;
    long stall_step;
    double stall_seconds;
};

static size_t bucket_begin(const dist_buckets *b, int i)
{
    return i == 0 ? 0 : b->end[i - 1];
}

static void describe(const dist_buckets *b, int i, long step, char *out, size_t cap)
{
    char sz[32];
    size_t len = b->end[i] - bucket_begin(b, i);
    core_format_bytes((double)(len * sizeof(float)), sz, sizeof sz);
    snprintf(out, cap, "all-reduce of step %ld bucket %d of %d (%s, floats %zu..%zu)", step, i,
             b->nb, sz, bucket_begin(b, i), b->end[i]);
}

static void stall_hook(const dist_buckets *b, int i, long step)
{
    if (b->stall_rank != b->w->rank || b->stall_step != step || b->stall_bucket != i)
        return;
    fprintf(stderr,
            "ringtrain: [rank %d] TEST HOOK: stalling %.0f s before bucket %d of step %ld\n",
            b->w->rank, b->stall_seconds, i, step);
    fflush(stderr);
    struct timespec ts = {(time_t)b->stall_seconds, 0};
    nanosleep(&ts, NULL);
}

/* Staged, compute thread: queue the copies down of buckets [queued, k). */
static void stage_down(dist_buckets *b, int k)
{
    for (; b->host && b->queued < k; b->queued++) {
        size_t a = bucket_begin(b, b->queued);
        b->stage.down(b->stage.ctx, b->queued, b->host + a, b->grads + a, b->end[b->queued] - a);
    }
}

/* Staged, comm thread (watched): until bucket i's copy down has landed. */
static int stage_wait_down(dist_buckets *b, int i, core_error *err)
{
    dist_backoff bo;
    dist_backoff_start(&bo);
    int rc;
    while ((rc = b->stage.down_done(b->stage.ctx, i, err)) > 0)
        dist_backoff_pause(b->w, &bo, -1);
    return rc;
}

/* The all-reduce of one bucket [a, a + len): in place, or on its host copy. */
static int reduce_bucket(dist_buckets *b, int i, size_t a, size_t len, int *nonfinite,
                         core_error *err)
{
    float *buf = (b->host ? b->host : b->grads) + a;
    if (b->host && stage_wait_down(b, i, err) != 0)
        return -1;
    int rc = b->cfg.check_finite
                 ? dist_allreduce_run_checked(b->w, b->cfg.kind, buf, len, nonfinite, err)
                 : dist_allreduce_run(b->w, b->cfg.kind, buf, len, err);
    if (rc == 0 && b->host)
        rc = b->stage.up(b->stage.ctx, i, b->grads + a, buf, len, err);
    return rc;
}

/* One bucket: stall hook, watched all-reduce with the non-finite check. */
static int run_bucket(dist_buckets *b, int i, long step, int *nonfinite, core_error *err)
{
    size_t a = bucket_begin(b, i), len = b->end[i] - a;
    stall_hook(b, i, step);
#ifdef RINGTRAIN_HAVE_NCCL
    if (b->cfg.kind == DIST_ALLREDUCE_NCCL)
        dist_nccl_begin_bucket(b->w, i);
#endif
    char what[192];
    describe(b, i, step, what, sizeof what);
    dist_watch_begin(what, b->cfg.timeout_s);
    int rc = reduce_bucket(b, i, a, len, nonfinite, err);
    dist_watch_end();
    if (rc != 0)
        core_error_prefix(err, "dist: %s", what);
    return rc;
}

static void *comm_main(void *arg)
{
    dist_buckets *b = arg;
    dist_wait_may_sleep(1); /* this thread shares the core with backward */
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (!b->quit && b->next >= b->ready)
            pthread_cond_wait(&b->work, &b->mu);
        if (b->quit)
            break;
        int i = b->next;
        long step = b->step;
        int skip = b->failed;
        b->progress_at = dist_now();
        pthread_mutex_unlock(&b->mu);
        core_error e = {{0}};
        int nonfinite = 0;
        int rc = skip ? 0 : run_bucket(b, i, step, &nonfinite, &e);
        pthread_mutex_lock(&b->mu);
        if (rc != 0 && !b->failed) {
            b->failed = 1;
            b->err = e;
        }
        b->nonfinite |= nonfinite;
        b->next++;
        b->finished++;
        b->progress_at = dist_now();
        pthread_cond_signal(&b->done);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

/* End of a bucket starting at `at` with room for `cap` floats: the last
 * ready point in (at + cap/2, at + cap] (the bucket ends with a layer, a
 * little short), else the first past at + cap if within at + 2 cap (a little
 * long), else at + cap (inside a layer larger than the bucket). */
static size_t bucket_end(const dist_bucket_config *c, size_t at, size_t cap, size_t n)
{
    if (cap >= n - at)
        return n;
    size_t want = at + cap, below = 0, above = 0;
    for (int i = 0; i < c->nready_points && !above; i++) {
        size_t p = c->ready_points[i];
        if (p > at + cap / 2 && p <= want)
            below = p;
        else if (p > want)
            above = p;
    }
    if (below)
        return below;
    if (above && above <= n && above - at <= 2 * cap)
        return above;
    return want;
}

/* The last bucket is reduced after backward has finished, so nothing hides
 * it: it should hold only what backward finishes last. When it spans a layer
 * boundary, it is cut at the last one if both parts are at least the first
 * bucket's size (smaller tails are not worth another call), so that the
 * layers before it go out while backward computes the last one. */
static void split_tail(const dist_bucket_config *c, size_t *end, size_t *k, size_t min)
{
    size_t a = *k > 1 ? end[*k - 2] : 0, n = end[*k - 1], cut = 0;
    for (int i = 0; i < c->nready_points; i++)
        if (c->ready_points[i] > a && c->ready_points[i] < n)
            cut = c->ready_points[i];
    if (cut && cut - a >= min && n - cut >= min) {
        end[*k - 1] = cut;
        end[(*k)++] = n;
    }
}

static int make_layout(dist_buckets *b, core_error *err)
{
    size_t first = b->cfg.first_bucket_bytes / sizeof(float);
    size_t rest = b->cfg.bucket_bytes / sizeof(float);
    if (first == 0 || rest == 0)
        return core_error_set(err, "dist: bucket sizes must be at least 4 bytes (got %zu and %zu)",
                              b->cfg.first_bucket_bytes, b->cfg.bucket_bytes);
    size_t nb = 1;
    if (b->n > first)
        nb += (b->n - first) / rest + ((b->n - first) % rest != 0);
    if (nb > (size_t)1 << 24)
        return core_error_set(err, "dist: %zu buckets is too many; raise the bucket size", nb);
    /* A bucket ending on a layer is longer than half its size, so there are
     * fewer than twice as many as plain slices; one more for the tail split. */
    nb = 2 * nb + 2;
    b->end = calloc(nb, sizeof *b->end);
    if (!b->end)
        return core_error_set(err, "dist: out of memory for %zu buckets", nb);
    size_t at = bucket_end(&b->cfg, 0, first, b->n), k = 0;
    b->end[k++] = at;
    while (at < b->n) {
        at = bucket_end(&b->cfg, at, rest, b->n);
        b->end[k++] = at;
    }
    split_tail(&b->cfg, b->end, &k, first);
    b->nb = (int)k;
    return 0;
}

static void read_stall_hook(dist_buckets *b)
{
    const char *r = getenv("RINGTRAIN_TEST_STALL_RANK");
    const char *s = getenv("RINGTRAIN_TEST_STALL_STEP");
    const char *k = getenv("RINGTRAIN_TEST_STALL_BUCKET");
    const char *t = getenv("RINGTRAIN_TEST_STALL_SECONDS");
    b->stall_rank = r && s ? atoi(r) : -1;
    b->stall_step = s ? atol(s) : -1;
    b->stall_bucket = k ? atoi(k) : 0;
    b->stall_seconds = t ? atof(t) : 3600.0;
}

/* Every rank must cut the same buckets and use the same backend: checked
 * once here, which is what makes every bucket's length match across ranks. */
static int check_layout(dist_buckets *b, core_error *err)
{
    uint64_t ends = 1469598103934665603ULL; /* FNV-1a of the bucket ends */
    for (int i = 0; b->end && i < b->nb; i++)
        ends = (ends ^ b->end[i]) * 1099511628211ULL;
    uint64_t layout[5] = {b->n, b->cfg.first_bucket_bytes, b->cfg.bucket_bytes,
                          (uint64_t)b->cfg.kind, ends};
    if (dist_check_same_i64(b->w, "gradient buffer length (parameter count)", (int64_t)b->n, err) !=
        0)
        return -1;
    return dist_check_same(b->w, "bucket layout (--bucket-size, --first-bucket, --allreduce)",
                           layout, sizeof layout, err);
}

int dist_buckets_create(dist_world *w, float *grads, size_t n, const dist_bucket_config *cfg,
                        dist_buckets **out, core_error *err)
{
    *out = NULL;
    dist_buckets *b = calloc(1, sizeof *b);
    if (!b)
        return core_error_set(err, "dist: out of memory for the bucket scheduler");
    b->w = w;
    b->cfg = *cfg;
    if (b->cfg.first_bucket_bytes == 0)
        b->cfg.first_bucket_bytes = DIST_FIRST_BUCKET_DEFAULT;
    if (b->cfg.bucket_bytes == 0)
        b->cfg.bucket_bytes = DIST_BUCKET_DEFAULT;
    if (b->cfg.timeout_s <= 0.0)
        b->cfg.timeout_s = w->timeout_s;
    b->grads = grads;
    b->n = n;
    read_stall_hook(b);
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->work, NULL);
    pthread_cond_init(&b->done, NULL);
    int rc = make_layout(b, err);
    /* Collective from here on: every rank takes part even after a local
     * failure, so the caller can agree on it (dist_first_failed). */
    if (check_layout(b, rc == 0 ? err : &(core_error){{0}}) != 0)
        rc = -1;
    if (rc == 0 && dist_world_reserve(w, n, err) != 0)
        rc = -1;
#ifdef RINGTRAIN_HAVE_NCCL
    if (rc == 0 && b->cfg.kind == DIST_ALLREDUCE_NCCL && dist_nccl_buckets(w, b->nb, err) != 0)
        rc = -1;
#endif
    /* Local failures (memory, the GPU) end every rank here, not in a step. */
    int first = dist_first_failed(w, rc != 0);
    if (first >= 0 && rc == 0)
        rc = core_error_set(err, "dist: rank %d could not set up the bucket scheduler", first);
    if (rc == 0 && b->cfg.overlap && !dist_thread_multiple(w))
        rc = core_error_set(err, "dist: overlapping communication with backward needs "
                                 "MPI_THREAD_MULTIPLE, which this MPI does not provide; "
                                 "run without overlap");
    if (rc == 0 && b->cfg.overlap) {
        if (pthread_create(&b->thread, NULL, comm_main, b) != 0)
            rc = core_error_set(err, "dist: cannot start the comm thread");
        else
            b->thread_up = 1;
    }
    if (rc != 0) {
        dist_buckets_free(b);
        return core_error_prefix(err, "rank %d", w->rank);
    }
    *out = b;
    return 0;
}

void dist_buckets_free(dist_buckets *b)
{
    if (!b)
        return;
    if (b->thread_up) {
        pthread_mutex_lock(&b->mu);
        b->quit = 1;
        pthread_cond_signal(&b->work);
        pthread_mutex_unlock(&b->mu);
        pthread_join(b->thread, NULL);
    }
    pthread_cond_destroy(&b->done);
    pthread_cond_destroy(&b->work);
    pthread_mutex_destroy(&b->mu);
    if (b->stage.ctx)
        b->stage.destroy(b->stage.ctx);
    free(b->end);
    free(b);
}

int dist_buckets_set_stage(dist_buckets *b, dist_stage stage, core_error *err)
{
    if (b->stage.ctx) {
        stage.destroy(stage.ctx);
        return core_error_set(err, "dist: the bucket scheduler is already staged");
    }
    b->stage = stage;
    /* The comm thread reads host only for buckets handed over under the
     * mutex, after this. */
    return b->stage.setup(b->stage.ctx, b->nb, b->n, &b->host, err);
}

int dist_buckets_count(const dist_buckets *b)
{
    return b->nb;
}

void dist_buckets_bounds(const dist_buckets *b, int i, size_t *begin, size_t *end)
{
    *begin = bucket_begin(b, i);
    *end = b->end[i];
}

void dist_buckets_begin(dist_buckets *b, long step)
{
    pthread_mutex_lock(&b->mu);
    b->step = step;
    b->ready = b->next = b->finished = 0;
    b->failed = b->nonfinite = 0;
    b->progress_at = dist_now();
    pthread_mutex_unlock(&b->mu);
    b->handed = b->queued = 0;
    b->begun = 1;
}

void dist_buckets_ready(dist_buckets *b, size_t done)
{
    if (!b->thread_up || !b->begun)
        return;
    int k = b->handed;
    while (k < b->nb && b->end[k] <= done)
        k++;
    if (k == b->handed)
        return;
#ifdef RINGTRAIN_HAVE_NCCL
    /* GPU: backward has only QUEUED these buckets' kernels; an event on the
     * compute stream is what the NCCL stream will wait for. */
    for (int i = b->handed; i < k && b->cfg.kind == DIST_ALLREDUCE_NCCL; i++)
        dist_nccl_mark(b->w, i);
#endif
    stage_down(b, k);
    b->handed = k;
    pthread_mutex_lock(&b->mu);
    b->ready = k;
    pthread_cond_signal(&b->work);
    pthread_mutex_unlock(&b->mu);
}

void dist_buckets_on_ready(void *ctx, size_t done)
{
    dist_buckets_ready(ctx, done);
}

/* The compute thread's watch over the comm thread: no bucket started or
 * finished for timeout + margin means the comm thread itself is stuck. */
static void watch_comm_thread(dist_buckets *b)
{
    double margin = b->cfg.timeout_s * 0.1 > 1.0 ? b->cfg.timeout_s * 0.1 : 1.0;
    double idle = dist_now() - b->progress_at;
    if (idle < b->cfg.timeout_s + margin)
        return;
    char what[192], who[96];
    describe(b, b->next < b->nb ? b->next : b->nb - 1, b->step, what, sizeof what);
    snprintf(who, sizeof who, "rank %d's own comm thread (stuck before or inside the call)",
             b->w->rank);
    dist_watch_fire(b->w, what, idle, who);
}

static int wait_thread(dist_buckets *b, core_error *err)
{
    dist_buckets_ready(b, b->n);
    double tick = b->cfg.timeout_s / 8 < 1.0 ? b->cfg.timeout_s / 8 : 1.0;
    pthread_mutex_lock(&b->mu);
    while (b->finished < b->nb) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double t = (double)ts.tv_nsec * 1e-9 + tick;
        ts.tv_sec += (time_t)t;
        ts.tv_nsec = (long)((t - (double)(time_t)t) * 1e9);
        pthread_cond_timedwait(&b->done, &b->mu, &ts);
        if (b->finished < b->nb)
            watch_comm_thread(b);
    }
    int rc = b->failed ? -1 : 0;
    if (rc != 0)
        *err = b->err;
    pthread_mutex_unlock(&b->mu);
    return rc;
}

static int wait_inline(dist_buckets *b, core_error *err)
{
    stage_down(b, b->nb);
    for (int i = 0; i < b->nb; i++) {
        int nonfinite = 0;
        if (run_bucket(b, i, b->step, &nonfinite, err) != 0)
            return -1;
        b->nonfinite |= nonfinite;
    }
    return 0;
}

int dist_buckets_wait(dist_buckets *b, core_error *err)
{
    if (!b->begun)
        return core_error_set(err, "dist: dist_buckets_wait without dist_buckets_begin");
    int rc = b->thread_up ? wait_thread(b, err) : wait_inline(b, err);
    if (rc == 0 && b->host)
        rc = b->stage.join(b->stage.ctx, err);
    b->begun = 0;
    return rc;
}

int dist_buckets_nonfinite(const dist_buckets *b)
{
    return b->nonfinite;
}
