/*
 * train/progress.h: what rank 0 shows while an epoch runs.
 *
 * On a terminal (stdout is a tty): one live bar per epoch, redrawn at most
 * ten times a second, "epoch 2/5 [=====>     ] 412/937  1234 img/s  loss
 * 0.4123  ETA 0:42", ended by the epoch summary line. Elsewhere (Slurm logs,
 * pipes): a plain timestamped line every N steps. Other ranks show nothing;
 * their warnings still reach stderr prefixed with their rank (core/log.h).
 */
#ifndef TRAIN_PROGRESS_H
#define TRAIN_PROGRESS_H

#include <stdio.h>

#include "core/error.h"

typedef enum train_progress_mode {
    TRAIN_PROGRESS_AUTO = 0, /* bar on a terminal, plain otherwise */
    TRAIN_PROGRESS_BAR,
    TRAIN_PROGRESS_PLAIN,
    TRAIN_PROGRESS_NONE,
} train_progress_mode;

typedef struct train_progress_view {
    train_progress_mode mode; /* resolved: BAR, PLAIN or NONE */
    FILE *out;
    int epochs;
    long total, first; /* steps in the epoch, first step index of this run in it */
    int epoch;         /* 1-based */
    double t0, last_draw;
    long per_step;     /* samples (or tokens) per step, for the rate */
    const char *unit;  /* "img/s", or "tok/s" for language models */
    int drawn;         /* a bar is on screen */
    double loss, top1; /* last global figures */
} train_progress_view;

int train_progress_mode_parse(const char *name, train_progress_mode *out, core_error *err);
/* rank != 0 resolves to NONE. per_step: what one step processes (the
 * global batch; times T for a language model, whose unit is "tok/s"). */
void train_progress_init(train_progress_view *v, train_progress_mode mode, int rank, int epochs,
                         long per_step, const char *unit, FILE *out);
void train_progress_epoch_begin(train_progress_view *v, int epoch, long total, long first);
/* After step `done` (1-based within the epoch). */
void train_progress_step(train_progress_view *v, long done);
/* New global figures (every log interval); in plain mode, prints the line. */
void train_progress_log(train_progress_view *v, long done, double loss, double top1, double top5,
                        double lr, double images_per_s);
/* Ends the bar's line before the epoch summary is printed. */
void train_progress_epoch_end(train_progress_view *v);

#endif
