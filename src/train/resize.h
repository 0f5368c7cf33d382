/*
 * train/resize.h: continuing an epoch at another world size (or global
 * batch) than the run that checkpointed it, without repeating or skipping
 * samples; see docs/DATA_FORMAT.md, "Resuming at another world size".
 *
 * The fit loop calls three functions: train_resize_prepare once at setup
 * (after any checkpoint is loaded), train_resize_begin_epoch in place of
 * data_loader_begin_epoch, and train_resize_trace after each step (a
 * test-only hook). train_resize_free at teardown.
 */
#ifndef TRAIN_RESIZE_H
#define TRAIN_RESIZE_H

#include <stdio.h>

#include "core/error.h"
#include "data/data.h"
#include "train/checkpoint.h"
#include "train/train.h"

typedef struct train_resize {
    int pending;    /* the next epoch begun is the remainder epoch */
    size_t *part;   /* this rank's part of the remainder, from its resume point */
    size_t len;     /* entries of part */
    long steps;     /* steps of the whole remainder epoch */
    size_t samples; /* training samples of this run */
    size_t cap;     /* this run's loader memory cap */
    FILE *trace;    /* RINGTRAIN_TEST_TRACE_SAMPLES */
} train_resize;

/* Once, with p as loaded from the checkpoint (or fresh). When the epoch in
 * progress was begun with another data order (world size, global batch or
 * loader cap) or is already a remainder epoch, computes this rank's part of
 * what is left of it; then records this run's world and batch in p.
 * Identical on every rank (p is the same everywhere); no communication. */
int train_resize_prepare(train_resize *rs, train_progress *p, const train_config *cfg,
                         data_dataset *ds, int world, int rank, core_error *err);

/* Begins epoch p->epoch on ld: the remainder epoch if one is pending (its
 * steps in *steps), else the normal epoch from batch p->batch_in_epoch with
 * normal_steps. */
int train_resize_begin_epoch(train_resize *rs, data_loader *ld, train_progress *p,
                             long normal_steps, long *steps, core_error *err);

/* Test only: with RINGTRAIN_TEST_TRACE_SAMPLES=FILE set, appends a line
 * "<epoch> <step> <index>..." to FILE.rank<r> for each step taken: the
 * 0-based epoch, the optimizer steps completed before this one, and the
 * global indices of the samples this rank consumed in it. */
void train_resize_trace(train_resize *rs, const data_batch *b, const train_progress *p);

void train_resize_free(train_resize *rs);

#endif
