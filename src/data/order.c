/*
 * data/order.c: the order in which a rank's loader serves an epoch, as a
 * pure function, and the remainder of an epoch that a run stopped at one
 * world size leaves for a run at another (docs/DATA_FORMAT.md, "Resuming at
 * another world size").
 *
 * data_layout_plan is the one place that decides a loader's layout;
 * loader.c uses it, and data_order_epoch replays the loader's shuffles
 * (tests/unit/test_data_order.c checks the two agree in both modes). The
 * remainder is computed identically on every rank from the checkpoint's
 * progress, so no rank needs to send another its sample list.
 */
#include "data/data.h"

#include <string.h>

#include "core/mem.h"
#include "core/rng.h"

#define RING           3
#define WINDOW_BLOCKS  4
#define DEFAULT_CAP    ((size_t)256 << 20)
#define WINDOW_COUNTER 40

/* Streaming layout: the largest block (with a window of WINDOW_BLOCKS
 * blocks) whose buffers, with the ring, fit within the cap. */
static size_t streaming_bytes(size_t count, size_t block, size_t per_sample, data_layout *lay)
{
    lay->nblocks = (count + block - 1) / block;
    lay->wblocks = lay->nblocks < WINDOW_BLOCKS ? lay->nblocks : WINDOW_BLOCKS;
    lay->nwin = (lay->nblocks + lay->wblocks - 1) / lay->wblocks;
    size_t wn = lay->wblocks * block;
    return wn * per_sample + wn * 4 + lay->nblocks * 4 + (lay->nwin + 1) * sizeof(size_t) + 5 * 64;
}

int data_layout_plan(const char *path, const data_loader_config *cfg, size_t sample_floats,
                     size_t elem_bytes, size_t chunk, data_layout *lay, core_error *err)
{
    memset(lay, 0, sizeof *lay);
    size_t cap = cfg->mem_cap_bytes ? cfg->mem_cap_bytes : DEFAULT_CAP;
    size_t count = cfg->shard_count;
    /* a stored sample and its label; a batch holds samples widened to float */
    size_t per_sample = sample_floats * elem_bytes + sizeof(int32_t);
    size_t per_batch_sample = sample_floats * sizeof(float) + sizeof(int32_t) + sizeof(size_t);
    size_t ring = RING * ((size_t)cfg->batch * per_batch_sample + 192);
    char a[32], b[32];
    if (ring >= cap)
        return core_error_set(err,
                              "%s: %d batch buffers of %d samples need %s, over the loader "
                              "memory cap of %s; lower the batch size or raise the cap",
                              path, RING, cfg->batch, core_format_bytes((double)ring, a, sizeof a),
                              core_format_bytes((double)cap, b, sizeof b));
    size_t budget = cap - ring;
    if (count * (per_sample + 4) + 64 * 3 <= budget)
        return 0;
    lay->streaming = 1;
    size_t block = budget / (WINDOW_BLOCKS * (per_sample + 4));
    if (block > count)
        block = count;
    /* count + block - 1 bounds the span once blocks are chunk-aligned. */
    while (block > 0 && streaming_bytes(count + block - 1, block, per_sample, lay) > budget)
        block -= block / 16 ? block / 16 : 1;
    if (block == 0)
        return core_error_set(err,
                              "%s: loader memory cap of %s leaves no room to stream samples of "
                              "%s; raise the cap",
                              path, core_format_bytes((double)cap, a, sizeof a),
                              core_format_bytes((double)per_sample, b, sizeof b));
    if (chunk > 0 && block > chunk)
        block -= block % chunk;
    lay->block = block;
    lay->base = cfg->shard_start;
    if (chunk > 0 && block % chunk == 0)
        lay->base -= lay->base % chunk;
    streaming_bytes(cfg->shard_start + count - lay->base, block, per_sample, lay);
    return 0;
}

static uint64_t epoch_stream(int rank, long epoch)
{
    return ((uint64_t)(uint32_t)rank << 32) | (uint64_t)(uint32_t)epoch;
}

/* Block b covers [base + b*block, base + (b+1)*block) clipped to the shard. */
static void block_span(const data_layout *lay, const data_loader_config *cfg, size_t b,
                       size_t *first, size_t *len)
{
    size_t s = lay->base + b * lay->block, end = cfg->shard_start + cfg->shard_count;
    size_t e = lay->base + (b + 1) * lay->block;
    *first = s > cfg->shard_start ? s : cfg->shard_start;
    *len = (e < end ? e : end) - *first;
}

static int order_streaming(const data_layout *lay, const data_loader_config *cfg, long epoch,
                           size_t *out, core_error *err)
{
    size_t wn = lay->wblocks * lay->block;
    uint32_t *bperm = core_alloc(lay->nblocks * sizeof *bperm, "block order", err);
    uint32_t *widx = bperm ? core_alloc(wn * sizeof *widx, "window index", err) : NULL;
    size_t *rows = widx ? core_alloc(wn * sizeof *rows, "window rows", err) : NULL;
    if (!rows) {
        core_free(bperm);
        core_free(widx);
        return -1;
    }
    core_rng rng = core_rng_make(cfg->seed, epoch_stream(cfg->rank, epoch));
    for (size_t i = 0; i < lay->nblocks; i++)
        bperm[i] = (uint32_t)i;
    if (cfg->shuffle)
        core_rng_shuffle_u32(&rng, bperm, lay->nblocks);
    size_t p = 0;
    for (size_t w = 0; w < lay->nwin; w++) {
        size_t off = 0;
        for (size_t k = w * lay->wblocks; k < (w + 1) * lay->wblocks && k < lay->nblocks; k++) {
            size_t first, len;
            block_span(lay, cfg, bperm[k], &first, &len);
            for (size_t t = 0; t < len; t++)
                rows[off++] = first + t;
        }
        for (size_t i = 0; i < off; i++)
            widx[i] = (uint32_t)i;
        if (cfg->shuffle) {
            core_rng wr = core_rng_make(cfg->seed, epoch_stream(cfg->rank, epoch));
            wr.counter = (uint64_t)(w + 1) << WINDOW_COUNTER;
            core_rng_shuffle_u32(&wr, widx, off);
        }
        for (size_t i = 0; i < off; i++)
            out[p++] = rows[widx[i]];
    }
    core_free(bperm);
    core_free(widx);
    core_free(rows);
    return 0;
}

int data_order_epoch(const char *path, const data_loader_config *cfg, size_t sample_floats,
                     size_t elem_bytes, size_t chunk, long epoch, size_t *out, core_error *err)
{
    data_layout lay;
    if (data_layout_plan(path, cfg, sample_floats, elem_bytes, chunk, &lay, err) != 0)
        return -1;
    if (lay.streaming)
        return order_streaming(&lay, cfg, epoch, out, err);
    size_t n = cfg->shard_count;
    uint32_t *perm = core_alloc((n ? n : 1) * sizeof *perm, "shuffle index", err);
    if (!perm)
        return -1;
    for (size_t i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    if (cfg->shuffle) {
        core_rng rng = core_rng_make(cfg->seed, epoch_stream(cfg->rank, epoch));
        core_rng_shuffle_u32(&rng, perm, n);
    }
    for (size_t i = 0; i < n; i++)
        out[i] = cfg->shard_start + perm[i];
    core_free(perm);
    return 0;
}

int data_local_batch(int batch, int world, int rank)
{
    return batch / world + (rank < batch % world ? 1 : 0);
}

/* Sum of the local batches of ranks [0, rank). */
static size_t batch_before(int batch, int world, int rank)
{
    int extra = batch % world;
    return (size_t)rank * (size_t)(batch / world) + (size_t)(rank < extra ? rank : extra);
}

void data_remainder_split(size_t count, int batch, int world, int rank, size_t *from, size_t *len,
                          long *steps)
{
    size_t s = count / (size_t)batch;
    *steps = (long)s;
    *from = s * batch_before(batch, world, rank);
    *len = s * (size_t)data_local_batch(batch, world, rank);
}

static int check_segment(const data_epoch_key *k, const data_segment *s, int i, core_error *err)
{
    if (s->world <= 0 || s->batch < s->world || s->steps < 0)
        return core_error_set(err,
                              "%s: epoch %ld: segment %d of the resumed epoch (world %d, global "
                              "batch %d, %ld steps) is not valid",
                              k->path, k->epoch + 1, i, s->world, s->batch, s->steps);
    return 0;
}

/* Appends to r the unconsumed tail of every origin rank's shard order. */
static int origin_remainder(const data_epoch_key *k, const data_segment *s, size_t *r, size_t *m,
                            core_error *err)
{
    size_t max_shard = k->n / (size_t)s->world + 1;
    size_t *order = core_alloc(max_shard * sizeof *order, "epoch order", err);
    if (!order)
        return -1;
    *m = 0;
    for (int rank = 0; rank < s->world; rank++) {
        data_loader_config c = {0};
        data_shard_range(k->n, rank, s->world, &c.shard_start, &c.shard_count);
        c.batch = data_local_batch(s->batch, s->world, rank);
        c.shuffle = 1;
        c.drop_last = 1;
        c.seed = k->seed;
        c.rank = rank;
        c.mem_cap_bytes = k->mem_cap;
        size_t used = (size_t)s->steps * (size_t)c.batch;
        if (used > c.shard_count) {
            core_free(order);
            return core_error_set(err,
                                  "%s: epoch %ld: %ld steps at %d ranks would take %zu samples "
                                  "from rank %d's shard of %zu; the checkpoint does not match "
                                  "this data",
                                  k->path, k->epoch + 1, s->steps, s->world, used, rank,
                                  c.shard_count);
        }
        if (data_order_epoch(k->path, &c, k->sample_floats, k->elem_bytes, k->chunk, k->epoch,
                             order, err) != 0) {
            core_free(order);
            return -1;
        }
        memcpy(r + *m, order + used, (c.shard_count - used) * sizeof *r);
        *m += c.shard_count - used;
    }
    core_free(order);
    return 0;
}

/* Removes from r[0..*m) what segment s consumed from the front of each part. */
static int consume_segment(const data_epoch_key *k, const data_segment *s, size_t *r, size_t *m,
                           core_error *err)
{
    size_t from, len, kept = 0;
    long steps;
    data_remainder_split(*m, s->batch, s->world, 0, &from, &len, &steps);
    if (s->steps > steps)
        return core_error_set(err,
                              "%s: epoch %ld: %ld steps at %d ranks, but its remainder of %zu "
                              "samples held only %ld steps of global batch %d",
                              k->path, k->epoch + 1, s->steps, s->world, *m, steps, s->batch);
    for (int rank = 0; rank < s->world; rank++) {
        data_remainder_split(*m, s->batch, s->world, rank, &from, &len, &steps);
        size_t used = (size_t)s->steps * (size_t)data_local_batch(s->batch, s->world, rank);
        memmove(r + kept, r + from + used, (len - used) * sizeof *r);
        kept += len - used;
    }
    size_t split = (size_t)steps * (size_t)s->batch;
    memmove(r + kept, r + split, (*m - split) * sizeof *r);
    *m = kept + *m - split;
    return 0;
}

int data_remainder_build(const data_epoch_key *k, const data_segment *segs, int nseg, size_t **out,
                         size_t *count, core_error *err)
{
    *out = NULL;
    *count = 0;
    if (nseg < 1)
        return core_error_set(err, "%s: an epoch remainder needs the run that started it", k->path);
    for (int i = 0; i < nseg; i++)
        if (check_segment(k, &segs[i], i, err) != 0)
            return -1;
    size_t *r = core_alloc((k->n ? k->n : 1) * sizeof *r, "epoch remainder", err);
    if (!r)
        return -1;
    size_t m = 0;
    int rc = origin_remainder(k, &segs[0], r, &m, err);
    for (int i = 1; rc == 0 && i < nseg; i++)
        rc = consume_segment(k, &segs[i], r, &m, err);
    if (rc != 0) {
        core_free(r);
        return -1;
    }
    *out = r;
    *count = m;
    return 0;
}

int data_remainder_part(const data_epoch_key *k, const data_segment *segs, int nseg, int world,
                        int batch, int rank, size_t **part, size_t *len, long *steps,
                        size_t *remainder, core_error *err)
{
    size_t *r, m, from;
    *part = NULL;
    if (data_remainder_build(k, segs, nseg, &r, &m, err) != 0)
        return -1;
    data_remainder_split(m, batch, world, rank, &from, len, steps);
    *remainder = m;
    *part = core_alloc((*len ? *len : 1) * sizeof **part, "epoch remainder part", err);
    if (*part)
        memcpy(*part, r + from, *len * sizeof **part);
    core_free(r);
    return *part ? 0 : -1;
}
