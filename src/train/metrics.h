/*
 * train/metrics.h: the JSON-lines metrics file (docs/WORKFLOW.md).
 *
 * One JSON object per line, flushed as written, so a crashed or running job
 * leaves a readable file; a resumed run appends. Rank 0 writes; the other
 * ranks hold a closed writer and every call is a no-op for them.
 *
 *   {"type":"train","time":...,"step":N,"epoch":E,"lr":...,"loss":...,
 *    "top1":...,"top5":...,"images_per_s":...,"grad_norm":...}
 *   {"type":"eval","split":"val","time":...,"step":N,"epoch":E,"count":...,
 *    "loss":...,"top1":...,"top5":...,"per_class":[...],"confusion":[[...],...]}
 * Numbers that are not finite are written as null.
 */
#ifndef TRAIN_METRICS_H
#define TRAIN_METRICS_H

#include <stdio.h>

#include "core/error.h"
#include "train/eval.h"

typedef struct train_metrics {
    FILE *f;
    char path[1024];
} train_metrics;

typedef struct train_step_record {
    long step;
    double epoch; /* fractional: 1.5 = half-way through the second epoch */
    double lr, loss, top1, top5, images_per_s, grad_norm;
} train_step_record;

/* Opens (append = 1 keeps what is there); creates the directory if needed. */
int train_metrics_open(train_metrics *mt, const char *path, int append, core_error *err);
void train_metrics_close(train_metrics *mt);
/* Before a resumed run appends: removes the records of steps after `step`
 * (written after the checkpoint it resumes from, e.g. before a kill -9), so
 * each step is recorded once. Sets *dropped; a missing file is empty. */
int train_metrics_rewind(const char *path, long step, long *dropped, core_error *err);
void train_metrics_step(train_metrics *mt, const train_step_record *r);
/* `extra` (may be NULL) is appended inside the object verbatim, e.g. "\"restored_best\":true". */
void train_metrics_eval(train_metrics *mt, const char *split, long step, double epoch,
                        const train_eval *e, const char *extra);
/* The same eval object on any stream (eval --json). */
void train_metrics_write_eval(FILE *f, const char *split, long step, double epoch,
                              const train_eval *e, const char *extra);

#endif
