/*
 * train/resize.c: the remainder epoch after a change of world size.
 *
 * A checkpoint records the data order of its epoch: the world size, global
 * batch, training samples and loader cap of the run that began the epoch,
 * plus (epoch_segments) any stretches of it already run at other world sizes.
 * When a run resumes mid-epoch with another world size or global batch (or
 * loader cap, which can change the streaming order), every rank computes the
 * same remainder of the epoch from that record (data_remainder_part), takes
 * its contiguous part, and serves it as one list epoch of
 * floor(remainder / global batch) steps; later epochs are normal epochs of
 * the new world. A checkpoint taken during the remainder epoch records the
 * stretches, so it can be resumed at any world size again.
 */
#include "train/resize.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/mem.h"
#include "train/workflow.h"

/* The samples the training shards cover: the same count fit.c shards, i.e.
 * after --train-limit and without the held-out validation tail. */
static size_t train_samples(const train_config *cfg, data_dataset *ds)
{
    size_t n = data_dataset_count(ds);
    if (cfg->train_limit > 0 && (size_t)cfg->train_limit < n)
        n = (size_t)cfg->train_limit;
    return train_wf_train_count(&cfg->wf, n);
}

static void open_trace(train_resize *rs, int rank)
{
    const char *base = getenv("RINGTRAIN_TEST_TRACE_SAMPLES");
    if (!base || !*base)
        return;
    char path[1024];
    snprintf(path, sizeof path, "%s.rank%d", base, rank);
    rs->trace = fopen(path, "a");
    if (!rs->trace)
        core_log_warn("RINGTRAIN_TEST_TRACE_SAMPLES: cannot open %s", path);
}

/* Records the stretch the checkpoint's run took of this epoch, when it is
 * not the stretch this run continues. */
static int add_segment(train_progress *p, int same, core_error *err)
{
    if (p->batch_in_epoch == 0 || same)
        return 0;
    if (p->nseg == TRAIN_MAX_SEGMENTS)
        return core_error_set(err,
                              "epoch %ld has changed world size %d times already; finish it at "
                              "%d rank(s) with global batch %d",
                              p->epoch + 1, TRAIN_MAX_SEGMENTS, p->world, p->batch);
    data_segment s = {p->world, p->batch, p->batch_in_epoch};
    p->seg[p->nseg++] = s;
    p->batch_in_epoch = 0;
    return 0;
}

static int plan_remainder(train_resize *rs, train_progress *p, const train_config *cfg,
                          data_dataset *ds, int world, int rank, core_error *err)
{
    if (p->order_samples != rs->samples)
        return core_error_set(err,
                              "%s: the checkpoint's epoch %ld covers %llu training samples, this "
                              "run has %zu; resume with the same data and --train-limit",
                              cfg->train_path, p->epoch + 1, (unsigned long long)p->order_samples,
                              rs->samples);
    data_epoch_key k = {cfg->train_path,
                        rs->samples,
                        p->seed,
                        p->epoch,
                        data_dataset_sample_size(ds),
                        data_dataset_elem_bytes(ds),
                        data_dataset_chunk_samples(ds),
                        (size_t)p->order_cap};
    size_t remainder;
    if (data_remainder_part(&k, p->seg, p->nseg, world, cfg->batch, rank, &rs->part, &rs->len,
                            &rs->steps, &remainder, err) != 0)
        return -1;
    size_t skip = (size_t)p->batch_in_epoch * (size_t)data_local_batch(cfg->batch, world, rank);
    if (p->batch_in_epoch > rs->steps)
        return core_error_set(err,
                              "%s: the checkpoint is at batch %ld of a remainder epoch of %ld "
                              "steps; it does not match this data",
                              cfg->train_path, p->batch_in_epoch, rs->steps);
    memmove(rs->part, rs->part + skip, (rs->len - skip) * sizeof *rs->part);
    rs->len -= skip;
    rs->pending = 1;
    const data_segment *s0 = &p->seg[0];
    core_log_info(
        "epoch %ld was begun at %d rank(s), global batch %d; continuing it at %d "
        "rank(s), global batch %d: %zu samples not yet seen, %ld steps (%ld already taken), "
        "%zu left out at its end",
        p->epoch + 1, s0->world, s0->batch, world, cfg->batch, remainder, rs->steps,
        p->batch_in_epoch, remainder - (size_t)rs->steps * (size_t)cfg->batch);
    return 0;
}

int train_resize_prepare(train_resize *rs, train_progress *p, const train_config *cfg,
                         data_dataset *ds, int world, int rank, core_error *err)
{
    memset(rs, 0, sizeof *rs);
    if (!ds) {
        /* Token files: each rank draws windows from its own part of the
         * stream, so there is no global sample order to take a remainder of. */
        int same = p->world == 0 || (p->world == world && p->batch == cfg->batch);
        if (!same && p->batch_in_epoch > 0)
            return core_error_set(err,
                                  "%s: this checkpoint stopped in the middle of epoch %ld at %d "
                                  "ranks (global batch %d); a token-file run resumes mid-epoch "
                                  "only with the same ranks and batch: resume at %d ranks, or "
                                  "from a checkpoint written at the end of an epoch",
                                  cfg->train_path, p->epoch + 1, p->world, p->batch, p->world);
        p->nseg = 0;
        p->world = world;
        p->batch = cfg->batch;
        return 0;
    }
    rs->samples = train_samples(cfg, ds);
    rs->cap = cfg->loader_mem_cap;
    open_trace(rs, rank);
    int in_remainder = p->nseg > 0 && p->seg_epoch == p->epoch;
    /* world 0: a checkpoint from before these records, taken as this run's */
    int same = p->world == 0 || (p->world == world && p->batch == cfg->batch);
    int same_order = p->world == 0 || (same && p->order_cap == rs->cap);
    if (!in_remainder && (p->batch_in_epoch == 0 || same_order)) {
        p->nseg = 0;
        p->order_samples = rs->samples;
        p->order_cap = rs->cap;
    } else {
        if (!in_remainder)
            p->nseg = 0;
        if (add_segment(p, same && in_remainder, err) != 0)
            return -1;
        p->seg_epoch = p->epoch;
        if (plan_remainder(rs, p, cfg, ds, world, rank, err) != 0)
            return -1;
    }
    p->world = world;
    p->batch = cfg->batch;
    return 0;
}

int train_resize_begin_epoch(train_resize *rs, data_loader *ld, train_progress *p,
                             long normal_steps, long *steps, core_error *err)
{
    if (rs->pending) {
        rs->pending = 0;
        *steps = rs->steps;
        int rc = data_loader_begin_list(ld, rs->part, rs->len, err);
        core_free(rs->part);
        rs->part = NULL;
        return rc;
    }
    p->nseg = 0;
    p->order_samples = rs->samples;
    p->order_cap = rs->cap;
    *steps = normal_steps;
    return data_loader_begin_epoch(ld, p->epoch, p->batch_in_epoch, err);
}

void train_resize_trace(train_resize *rs, const data_batch *b, const train_progress *p)
{
    if (!rs->trace)
        return;
    fprintf(rs->trace, "%ld %ld", p->epoch, p->step);
    for (int j = 0; j < b->n; j++)
        fprintf(rs->trace, " %zu", b->idx[j]);
    fputc('\n', rs->trace);
    fflush(rs->trace);
}

void train_resize_free(train_resize *rs)
{
    core_free(rs->part);
    rs->part = NULL;
    if (rs->trace)
        fclose(rs->trace);
    rs->trace = NULL;
}
