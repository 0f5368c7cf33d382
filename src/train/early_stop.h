/*
 * train/early_stop.h: early stopping on a validation metric, with the best
 * weights kept in memory (identical on every rank, so restoring them needs
 * no communication).
 *
 * An evaluation improves on the best when value < best - min_delta (loss)
 * or value > best + min_delta (accuracies); otherwise it is a "bad" one, and
 * after `patience` bad evaluations in a row the run stops (patience 0: never
 * stops, the best is still tracked). The first finite value always improves.
 */
#ifndef TRAIN_EARLY_STOP_H
#define TRAIN_EARLY_STOP_H

#include <stddef.h>

#include "core/error.h"

typedef struct train_early_stop {
    char metric[32]; /* "val_loss", "val_top1", "val_top5" */
    int maximize;
    double min_delta;
    int patience;
    double best;    /* NAN until the first evaluation */
    long best_step; /* optimizer step of the best evaluation */
    int best_epoch; /* 1-based epoch of the best evaluation */
    int bad;        /* evaluations since the best */
    int stop;       /* set when patience is exhausted */
    float *best_params;
    size_t n;
} train_early_stop;

/* keep_params: also keep a copy of the best parameters (n floats). */
int train_early_stop_init(train_early_stop *es, const char *metric, int patience, double min_delta,
                          size_t n, int keep_params, core_error *err);
void train_early_stop_free(train_early_stop *es);
/* Records one evaluation; returns 1 when it is the new best (and copies
 * params when kept), 0 otherwise. */
int train_early_stop_observe(train_early_stop *es, double value, long step, int epoch,
                             const float *params);
/* Copies the best parameters back; returns 0, or -1 when none are kept. */
int train_early_stop_restore(const train_early_stop *es, float *params);

#endif
