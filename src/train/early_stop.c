/*
 * train/early_stop.c: early stopping (see early_stop.h).
 */
#include "train/early_stop.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/mem.h"

int train_early_stop_init(train_early_stop *es, const char *metric, int patience, double min_delta,
                          size_t n, int keep_params, core_error *err)
{
    memset(es, 0, sizeof *es);
    if (strcmp(metric, "val_loss") == 0)
        es->maximize = 0;
    else if (strcmp(metric, "val_top1") == 0 || strcmp(metric, "val_top5") == 0)
        es->maximize = 1;
    else
        return core_error_set(err,
                              "unknown early-stopping metric '%s'; expected val_loss, val_top1 or "
                              "val_top5",
                              metric);
    snprintf(es->metric, sizeof es->metric, "%s", metric);
    es->patience = patience;
    es->min_delta = min_delta;
    es->best = NAN;
    es->n = n;
    if (keep_params) {
        es->best_params = core_alloc(n * sizeof(float), "best parameters", err);
        if (!es->best_params)
            return -1;
    }
    return 0;
}

void train_early_stop_free(train_early_stop *es)
{
    core_free(es->best_params);
    es->best_params = NULL;
}

int train_early_stop_observe(train_early_stop *es, double value, long step, int epoch,
                             const float *params)
{
    int better = 0;
    if (isfinite(value)) {
        if (!isfinite(es->best))
            better = 1;
        else if (es->maximize)
            better = value > es->best + es->min_delta;
        else
            better = value < es->best - es->min_delta;
    }
    if (!better) {
        es->bad++;
        if (es->patience > 0 && es->bad >= es->patience)
            es->stop = 1;
        return 0;
    }
    es->best = value;
    es->best_step = step;
    es->best_epoch = epoch;
    es->bad = 0;
    if (es->best_params && params)
        memcpy(es->best_params, params, es->n * sizeof(float));
    return 1;
}

int train_early_stop_restore(const train_early_stop *es, float *params)
{
    if (!es->best_params || !isfinite(es->best))
        return -1;
    memcpy(params, es->best_params, es->n * sizeof(float));
    return 0;
}
