/*
 * data/loader.c: the loader thread that serves a rank's shard in batches.
 *
 * One producer thread fills a small ring of batch buffers while the trainer
 * computes on the batch it holds; both sides sleep on condition variables.
 *
 * The epoch is a fixed sequence of shard samples, a pure function of
 * (seed, rank, epoch), so starting at batch k is the same as starting at 0
 * and discarding k batches:
 *  - in memory (the shard fits within the cap): the whole shard is read once
 *    at create with one hyperslab read; each epoch shuffles an index array.
 *  - streaming (it does not): the shard is cut into fixed-size blocks; each
 *    epoch shuffles the block order, groups consecutive blocks of that order
 *    into windows of a few blocks, reads a window block by block (one
 *    hyperslab each) and shuffles the samples within the window.
 * RNG: stream = (rank, epoch); the block or sample permutation uses counters
 * from 0 and window w's shuffle counters from (w + 1) << 40. The layout is
 * data_layout_plan's (order.c), and data_order_epoch replays these shuffles.
 *
 * A list epoch (data_loader_begin_list, for the remainder of an epoch begun
 * at another world size) serves an explicit list of samples, reading it in
 * windows through the same buffers.
 *
 * Samples are kept as the file stores them (uint8 images stay bytes, a
 * quarter of float32) and widened to float one batch at a time.
 *
 * Every buffer is sized at create; nothing is allocated per batch.
 */
#include "data/data.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/rng.h"
#include "data/loader_source.h"

#define RING           3
#define WINDOW_BLOCKS  4
#define WINDOW_COUNTER 40

struct data_loader {
    data_dataset *d;
    data_loader_config cfg;
    size_t ss;       /* floats per sample */
    size_t rowb;     /* bytes per stored sample (ss * data_dataset_elem_bytes) */
    size_t nbatches; /* per epoch */
    size_t mem_bytes;
    int streaming;

    float *bx[RING];
    int32_t *by[RING];
    size_t *bi[RING];
    int bn[RING];

    /* in memory */
    unsigned char *mx;
    int32_t *my;
    uint32_t *perm;

    /* streaming */
    size_t block, nblocks, wblocks, nwin;
    size_t base; /* absolute index of block 0's start (chunk-aligned if possible) */
    uint32_t *bperm;
    size_t *win_start; /* nwin + 1 epoch positions */
    unsigned char *wx;
    int32_t *wy;
    uint32_t *widx;
    long cur_win;
    size_t wfirst[WINDOW_BLOCKS], wrow[WINDOW_BLOCKS + 1]; /* the window's blocks */

    /* list epoch: lidx[0..lcount) in serve order; windows of lwin samples */
    size_t *lidx, lcount, lwin;
    uint64_t *lsort; /* (index << 32 | position) of one window, sorted */
    long cur_lwin;
    int list, reload; /* reload: the in-memory shard was overwritten */

    /* epoch state, touched by the producer only while busy */
    long epoch;
    int need_setup;
    size_t pos, end;

    pthread_t thread;
    int thread_started, sync_init;
    pthread_mutex_t mu;
    pthread_cond_t cv_prod, cv_cons;
    int stop, active, busy, done, failed;
    int head, filled, held;
    core_error perr;

    /* another source (loader_source.h, e.g. token windows): every call goes there */
    data_loader_source src;
    int wrapped;
};

data_loader *data_loader_wrap_source(const data_loader_source *src)
{
    data_loader *l = calloc(1, sizeof *l);
    if (l) {
        l->src = *src;
        l->wrapped = 1;
    }
    return l;
}

static uint64_t epoch_stream(const data_loader *l)
{
    return ((uint64_t)(uint32_t)l->cfg.rank << 32) | (uint64_t)(uint32_t)l->epoch;
}

/* Block b covers [base + b*block, base + (b+1)*block) clipped to the shard,
 * so when block is a multiple of the file's chunk, every read is whole chunks
 * except at the shard's two ends. */
static size_t block_first(const data_loader *l, size_t b)
{
    size_t s = l->base + b * l->block;
    return s > l->cfg.shard_start ? s : l->cfg.shard_start;
}

static size_t block_len(const data_loader *l, size_t b)
{
    size_t end = l->cfg.shard_start + l->cfg.shard_count;
    size_t e = l->base + (b + 1) * l->block;
    return (e < end ? e : end) - block_first(l, b);
}

static void setup_epoch(data_loader *l)
{
    core_rng rng = core_rng_make(l->cfg.seed, epoch_stream(l));
    if (!l->streaming) {
        for (size_t i = 0; i < l->cfg.shard_count; i++)
            l->perm[i] = (uint32_t)i;
        if (l->cfg.shuffle)
            core_rng_shuffle_u32(&rng, l->perm, l->cfg.shard_count);
        return;
    }
    for (size_t i = 0; i < l->nblocks; i++)
        l->bperm[i] = (uint32_t)i;
    if (l->cfg.shuffle)
        core_rng_shuffle_u32(&rng, l->bperm, l->nblocks);
    size_t p = 0;
    for (size_t w = 0; w < l->nwin; w++) {
        l->win_start[w] = p;
        for (size_t k = w * l->wblocks; k < (w + 1) * l->wblocks && k < l->nblocks; k++)
            p += block_len(l, l->bperm[k]);
    }
    l->win_start[l->nwin] = p;
    l->cur_win = -1;
}

static int load_window(data_loader *l, size_t w, core_error *err)
{
    size_t off = 0, nb = 0;
    l->cur_win = -1;
    for (size_t k = w * l->wblocks; k < (w + 1) * l->wblocks && k < l->nblocks; k++) {
        size_t b = l->bperm[k], n = block_len(l, b);
        if (data_dataset_read_raw(l->d, block_first(l, b), n, l->wx + off * l->rowb, l->wy + off,
                                  err))
            return -1;
        l->wfirst[nb] = block_first(l, b);
        l->wrow[nb++] = off;
        off += n;
    }
    l->wrow[nb] = off;
    for (size_t k = nb + 1; k <= WINDOW_BLOCKS; k++)
        l->wrow[k] = off;
    for (size_t i = 0; i < off; i++)
        l->widx[i] = (uint32_t)i;
    if (l->cfg.shuffle) {
        core_rng rng = core_rng_make(l->cfg.seed, epoch_stream(l));
        rng.counter = (uint64_t)(w + 1) << WINDOW_COUNTER;
        core_rng_shuffle_u32(&rng, l->widx, off);
    }
    l->cur_win = (long)w;
    return 0;
}

/* Window holding epoch position p (windows are visited in order, so this is
 * usually the next one). */
static size_t find_window(const data_loader *l, size_t p)
{
    size_t lo = 0, hi = l->nwin;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (l->win_start[mid] <= p)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* Global index of row i of the loaded window. */
static size_t window_sample(const data_loader *l, size_t i)
{
    size_t k = 0;
    while (i >= l->wrow[k + 1])
        k++;
    return l->wfirst[k] + (i - l->wrow[k]);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* List window w: its samples sorted by index, read in runs of consecutive
 * indices (one hyperslab each) into rows in sorted order; the row map
 * (perm or widx) then sends each list position to its row. */
static int load_list_window(data_loader *l, size_t w, core_error *err)
{
    unsigned char *bx = l->streaming ? l->wx : l->mx;
    int32_t *by = l->streaming ? l->wy : l->my;
    uint32_t *rowof = l->streaming ? l->widx : l->perm;
    size_t first = w * l->lwin, n = l->lcount - first < l->lwin ? l->lcount - first : l->lwin;
    l->cur_lwin = -1;
    for (size_t j = 0; j < n; j++)
        l->lsort[j] = ((uint64_t)l->lidx[first + j] << 32) | j;
    qsort(l->lsort, n, sizeof *l->lsort, cmp_u64);
    for (size_t s = 0; s < n; s++)
        rowof[(uint32_t)l->lsort[s]] = (uint32_t)s;
    for (size_t s = 0, e; s < n; s = e) {
        size_t start = (size_t)(l->lsort[s] >> 32);
        for (e = s + 1; e < n && (size_t)(l->lsort[e] >> 32) == start + (e - s); e++) {
        }
        if (data_dataset_read_raw(l->d, start, e - s, bx + s * l->rowb, by + s, err))
            return -1;
    }
    l->cur_lwin = (long)w;
    return 0;
}

static int produce_list(data_loader *l, int n, float *x, int32_t *y, size_t *xi, core_error *err)
{
    const unsigned char *bx = l->streaming ? l->wx : l->mx;
    const int32_t *by = l->streaming ? l->wy : l->my;
    const uint32_t *rowof = l->streaming ? l->widx : l->perm;
    for (int j = 0; j < n; j++, l->pos++) {
        size_t w = l->pos / l->lwin;
        if (l->cur_lwin != (long)w && load_list_window(l, w, err))
            return -1;
        size_t r = rowof[l->pos - w * l->lwin];
        data_dataset_widen(l->d, bx + r * l->rowb, l->ss, x + (size_t)j * l->ss);
        y[j] = by[r];
        xi[j] = l->lidx[l->pos];
    }
    return 0;
}

static int produce(data_loader *l, int slot, core_error *err)
{
    if (l->need_setup) {
        if (l->reload && !l->list) {
            if (data_dataset_read_raw(l->d, l->cfg.shard_start, l->cfg.shard_count, l->mx, l->my,
                                      err))
                return -1;
            l->reload = 0;
        }
        if (!l->list)
            setup_epoch(l);
        l->need_setup = 0;
    }
    size_t want = l->end - l->pos;
    int n = want < (size_t)l->cfg.batch ? (int)want : l->cfg.batch;
    float *x = l->bx[slot];
    int32_t *y = l->by[slot];
    size_t *xi = l->bi[slot];
    l->bn[slot] = n;
    if (l->list)
        return produce_list(l, n, x, y, xi, err);
    int j = 0;
    while (j < n) {
        if (!l->streaming) {
            size_t i = l->cfg.shuffle ? l->perm[l->pos] : l->pos;
            data_dataset_widen(l->d, l->mx + i * l->rowb, l->ss, x + (size_t)j * l->ss);
            y[j] = l->my[i];
            xi[j] = l->cfg.shard_start + i;
            j++;
            l->pos++;
            continue;
        }
        if (l->cur_win < 0 || l->pos < l->win_start[l->cur_win] ||
            l->pos >= l->win_start[l->cur_win + 1]) {
            if (load_window(l, find_window(l, l->pos), err))
                return -1;
        }
        size_t ws = l->win_start[l->cur_win], we = l->win_start[l->cur_win + 1];
        while (j < n && l->pos < we) {
            size_t i = l->widx[l->pos - ws];
            data_dataset_widen(l->d, l->wx + i * l->rowb, l->ss, x + (size_t)j * l->ss);
            y[j] = l->wy[i];
            xi[j] = window_sample(l, i);
            j++;
            l->pos++;
        }
    }
    return 0;
}

static void *loader_main(void *arg)
{
    data_loader *l = arg;
    data_hdf5_quiet();
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->stop && !(l->active && !l->done && !l->failed && l->filled + l->held < RING))
            pthread_cond_wait(&l->cv_prod, &l->mu);
        if (l->stop)
            break;
        int slot = (l->head + l->held + l->filled) % RING;
        l->busy = 1;
        pthread_mutex_unlock(&l->mu);
        core_error e;
        core_error_clear(&e);
        int rc = produce(l, slot, &e);
        pthread_mutex_lock(&l->mu);
        l->busy = 0;
        if (rc) {
            l->perr = e;
            l->failed = 1;
        } else {
            l->filled++;
            if (l->pos >= l->end)
                l->done = 1;
        }
        pthread_cond_broadcast(&l->cv_cons);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void *alloc_count(size_t bytes, const char *what, data_loader *l, core_error *err)
{
    void *p = core_alloc(bytes, what, err);
    if (p)
        l->mem_bytes += (bytes + 63) & ~(size_t)63;
    return p;
}

static int plan(data_loader *l, core_error *err)
{
    data_layout lay;
    if (data_layout_plan(data_dataset_path(l->d), &l->cfg, l->ss, data_dataset_elem_bytes(l->d),
                         data_dataset_chunk_samples(l->d), &lay, err) != 0)
        return -1;
    l->streaming = lay.streaming;
    l->block = lay.block;
    l->nblocks = lay.nblocks;
    l->wblocks = lay.wblocks;
    l->nwin = lay.nwin;
    l->base = lay.base;
    return 0;
}

static int allocate(data_loader *l, core_error *err)
{
    size_t bs = (size_t)l->cfg.batch;
    for (int i = 0; i < RING; i++) {
        l->bx[i] = alloc_count(bs * l->ss * sizeof(float), "loader batch", l, err);
        l->by[i] = alloc_count(bs * sizeof(int32_t), "loader batch labels", l, err);
        l->bi[i] = alloc_count(bs * sizeof(size_t), "loader batch indices", l, err);
        if (!l->bx[i] || !l->by[i] || !l->bi[i])
            return -1;
    }
    size_t count = l->cfg.shard_count;
    if (!l->streaming) {
        l->mx = alloc_count(count * l->rowb, "in-memory shard", l, err);
        l->my = alloc_count(count * sizeof(int32_t), "in-memory shard labels", l, err);
        l->perm = alloc_count(count * sizeof(uint32_t), "shuffle index", l, err);
        if (!l->mx || !l->my || !l->perm)
            return -1;
        return data_dataset_read_raw(l->d, l->cfg.shard_start, count, l->mx, l->my, err);
    }
    size_t wn = l->wblocks * l->block;
    l->wx = alloc_count(wn * l->rowb, "loader window", l, err);
    l->wy = alloc_count(wn * sizeof(int32_t), "loader window labels", l, err);
    l->widx = alloc_count(wn * sizeof(uint32_t), "window index", l, err);
    l->bperm = alloc_count(l->nblocks * sizeof(uint32_t), "block order", l, err);
    l->win_start = alloc_count((l->nwin + 1) * sizeof(size_t), "window index", l, err);
    if (!l->wx || !l->wy || !l->widx || !l->bperm || !l->win_start)
        return -1;
    return 0;
}

int data_loader_create(data_dataset *d, const data_loader_config *cfg, data_loader **out,
                       core_error *err)
{
    *out = NULL;
    const char *path = data_dataset_path(d);
    size_t n = data_dataset_count(d);
    if (cfg->batch <= 0)
        return core_error_set(err, "%s: batch size must be positive (got %d)", path, cfg->batch);
    if (cfg->shard_start > n || cfg->shard_count > n - cfg->shard_start)
        return core_error_set(err, "%s: shard [%zu, %zu) is outside the %zu samples", path,
                              cfg->shard_start, cfg->shard_start + cfg->shard_count, n);
    if (cfg->shard_count > UINT32_MAX)
        return core_error_set(err,
                              "%s: shard of %zu samples is over the loader's 2^32 limit; "
                              "use more ranks",
                              path, cfg->shard_count);
    data_loader *l = calloc(1, sizeof *l);
    if (!l)
        return core_error_set(err, "%s: out of memory creating the loader", path);
    l->d = d;
    l->cfg = *cfg;
    l->ss = data_dataset_sample_size(d);
    l->rowb = l->ss * data_dataset_elem_bytes(d);
    size_t c = cfg->shard_count, b = (size_t)cfg->batch;
    l->nbatches = cfg->drop_last ? c / b : (c + b - 1) / b;
    l->cur_win = -1;
    l->cur_lwin = -1;
    if (plan(l, err) || allocate(l, err)) {
        data_loader_free(l);
        return -1;
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv_prod, NULL);
    pthread_cond_init(&l->cv_cons, NULL);
    l->sync_init = 1;
    if (pthread_create(&l->thread, NULL, loader_main, l) != 0) {
        data_loader_free(l);
        return core_error_set(err, "%s: cannot start the loader thread", path);
    }
    l->thread_started = 1;
    *out = l;
    return 0;
}

void data_loader_free(data_loader *l)
{
    if (!l)
        return;
    if (l->wrapped)
        l->src.free(l->src.ctx);
    if (l->thread_started) {
        pthread_mutex_lock(&l->mu);
        l->stop = 1;
        pthread_cond_broadcast(&l->cv_prod);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->thread, NULL);
    }
    if (l->sync_init) {
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->cv_prod);
        pthread_cond_destroy(&l->cv_cons);
    }
    for (int i = 0; i < RING; i++) {
        core_free(l->bx[i]);
        core_free(l->by[i]);
        core_free(l->bi[i]);
    }
    core_free(l->lidx);
    core_free(l->lsort);
    core_free(l->mx);
    core_free(l->my);
    core_free(l->perm);
    core_free(l->wx);
    core_free(l->wy);
    core_free(l->widx);
    core_free(l->bperm);
    core_free(l->win_start);
    free(l);
}

size_t data_loader_batches(const data_loader *l)
{
    if (l->wrapped)
        return l->src.batches(l->src.ctx);
    return l->nbatches;
}

size_t data_loader_mem_bytes(const data_loader *l)
{
    if (l->wrapped)
        return l->src.mem_bytes(l->src.ctx);
    return l->mem_bytes;
}

int data_loader_streaming(const data_loader *l)
{
    return l->streaming;
}

/* Locks the loader and waits until the producer is idle and stopped. */
static void pause_producer(data_loader *l)
{
    pthread_mutex_lock(&l->mu);
    l->active = 0;
    while (l->busy)
        pthread_cond_wait(&l->cv_cons, &l->mu);
}

/* Serves [pos, end) from an empty ring; unlocks. */
static void resume_producer(data_loader *l, size_t pos, size_t end)
{
    l->need_setup = 1;
    l->pos = pos < end ? pos : end;
    l->end = end;
    l->head = l->filled = l->held = 0;
    l->failed = 0;
    l->done = l->pos >= l->end;
    l->active = 1;
    pthread_cond_broadcast(&l->cv_prod);
    pthread_mutex_unlock(&l->mu);
}

int data_loader_begin_epoch(data_loader *l, long epoch, long skip_batches, core_error *err)
{
    if (l->wrapped)
        return l->src.begin_epoch(l->src.ctx, epoch, skip_batches, err);
    if (epoch < 0 || skip_batches < 0 || (size_t)skip_batches > l->nbatches)
        return core_error_set(err,
                              "%s: cannot start epoch %ld at batch %ld (an epoch has %zu batches)",
                              data_dataset_path(l->d), epoch, skip_batches, l->nbatches);
    pause_producer(l);
    size_t *lidx = l->lidx;
    uint64_t *lsort = l->lsort;
    l->lidx = NULL;
    l->lsort = NULL;
    l->list = 0;
    l->epoch = epoch;
    resume_producer(l, (size_t)skip_batches * (size_t)l->cfg.batch,
                    l->cfg.drop_last ? l->nbatches * (size_t)l->cfg.batch : l->cfg.shard_count);
    core_free(lidx);
    core_free(lsort);
    return 0;
}

int data_loader_begin_list(data_loader *l, const size_t *idx, size_t count, core_error *err)
{
    const char *path = data_dataset_path(l->d);
    size_t n = data_dataset_count(l->d);
    size_t win = l->streaming ? l->wblocks * l->block : l->cfg.shard_count;
    if (win == 0 && count > 0)
        return core_error_set(err,
                              "%s: this rank's loader holds no sample buffer (empty shard), so "
                              "it cannot serve a list of %zu samples",
                              path, count);
    for (size_t i = 0; i < count; i++) {
        if (idx[i] >= n)
            return core_error_set(err,
                                  "%s: list entry %zu names sample %zu, outside the %zu samples",
                                  path, i, idx[i], n);
        if (idx[i] > UINT32_MAX)
            return core_error_set(err,
                                  "%s: list entry %zu names sample %zu; list epochs serve samples "
                                  "below 2^32",
                                  path, i, idx[i]);
    }
    size_t nsort = count < win ? count : win;
    size_t *lidx = core_alloc(count * sizeof *lidx, "loader sample list", err);
    uint64_t *lsort = lidx ? core_alloc(nsort * sizeof *lsort, "loader list window", err) : NULL;
    if (!lsort) {
        core_free(lidx);
        return -1;
    }
    memcpy(lidx, idx, count * sizeof *lidx);
    pause_producer(l);
    size_t *old_idx = l->lidx;
    uint64_t *old_sort = l->lsort;
    l->lidx = lidx;
    l->lsort = lsort;
    l->lcount = count;
    l->lwin = win;
    l->cur_lwin = -1;
    l->cur_win = -1;
    l->list = 1;
    if (!l->streaming)
        l->reload = 1;
    resume_producer(l, 0, l->cfg.drop_last ? count - count % (size_t)l->cfg.batch : count);
    core_free(old_idx);
    core_free(old_sort);
    return 0;
}

int data_loader_next(data_loader *l, data_batch *b, core_error *err)
{
    if (l->wrapped)
        return l->src.next(l->src.ctx, b, err);
    pthread_mutex_lock(&l->mu);
    if (!l->active) {
        pthread_mutex_unlock(&l->mu);
        return core_error_set(err, "%s: data_loader_next called before data_loader_begin_epoch",
                              data_dataset_path(l->d));
    }
    if (l->held) {
        l->held = 0;
        l->head = (l->head + 1) % RING;
        pthread_cond_broadcast(&l->cv_prod);
    }
    while (!l->filled && !l->failed && !l->done)
        pthread_cond_wait(&l->cv_cons, &l->mu);
    int rc;
    if (l->filled) {
        int s = l->head;
        b->x = l->bx[s];
        b->y = l->by[s];
        b->idx = l->bi[s];
        b->n = l->bn[s];
        l->filled--;
        l->held = 1;
        rc = 1;
    } else if (l->failed) {
        *err = l->perr;
        rc = -1;
    } else {
        rc = 0;
    }
    pthread_mutex_unlock(&l->mu);
    return rc;
}
