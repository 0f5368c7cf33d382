/*
 * train/workflow.h: everything around the bare fit loop that a training run
 * of the tutorial needs: a validation split and evaluation every epoch or
 * every N steps, metrics (JSON lines), early stopping with a best
 * checkpoint, L1 and gradient clipping, learning-rate schedules, dropout
 * seeds, the progress bar or plain lines, initialization from another
 * checkpoint with optional freezing, and a final check that every rank holds
 * the same parameters. docs/WORKFLOW.md describes it for users.
 *
 * fit.c calls it at a few well-defined points (the train_wf_* hooks below),
 * so the loop itself stays short. Every hook marked "collective" must be
 * called by every rank, and agrees on failure like the loop does.
 */
#ifndef TRAIN_WORKFLOW_H
#define TRAIN_WORKFLOW_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "data/data.h"
#include "dist/dist.h"
#include "nn/model.h"
#include "optim/optim.h"
#include "optim/schedule.h"
#include "train/progress.h"

typedef struct train_wf_config {
    const char *val_path;     /* separate validation file; NULL: none or val_fraction */
    float val_fraction;       /* the LAST fraction of the (limited) training file is held out */
    long val_limit;           /* first N samples of a separate validation file (0 = all) */
    long eval_every;          /* validate every N steps; 0 = after every epoch */
    const char *metrics_path; /* NULL: <checkpoint dir>/metrics.jsonl, or none without a dir */
    float l1;                 /* L1 coefficient */
    float clip_norm;          /* clip the global gradient norm to this (0 = off) */
    optim_sched_kind schedule;
    long warmup;              /* warm-up steps */
    long lr_step_size;        /* step schedule: steps between decays */
    float lr_gamma;           /* step schedule: factor */
    float min_lr;             /* cosine floor */
    const char *early_metric; /* val_loss | val_top1 | val_top5; NULL = no early stopping */
    int patience;             /* evaluations without improvement before stopping */
    float min_delta;
    int restore_best; /* load the best weights back at the end */
    train_progress_mode progress;
    const char *init_from;    /* checkpoint to take matching layers from */
    int freeze_loaded;        /* keep the loaded tensors fixed */
    data_image_layout layout; /* --layout: axis order of image samples (data.h) */
} train_wf_config;

typedef struct train_wf train_wf;

/* What the fit loop hands over at setup (pointers stay owned by fit.c). */
typedef struct train_wf_setup {
    dist_world *w;
    const train_wf_config *wc;
    nn_model *model;
    optim *opt;
    struct train_progress *prog;
    const char *config_text;
    const char *ckpt_dir; /* may be NULL */
    data_dataset *train_ds;
    const char *train_path, *x_name, *y_name;
    size_t n_total, n_train; /* samples of the (limited) training file, and those trained on */
    int local_batch;
    long steps_per_epoch;
    int epochs;
    long global_batch;
    int log_every;
    uint64_t seed;
    int resumed;
    size_t loader_mem_cap;
    data_loader *test_ld; /* may be NULL */
    int sharded;          /* the optimizer step is sharded: gather its state before saving */
} train_wf_setup;

void train_wf_config_defaults(train_wf_config *wc);
/* Samples trained on when val_fraction holds out the tail of n. */
size_t train_wf_train_count(const train_wf_config *wc, size_t n);
/* The seed of a step's dropout masks on a rank. */
uint64_t train_wf_dropout_seed(uint64_t seed, int rank, long step);

/* Collective. Opens the validation split, the metrics file, sets up the
 * schedule, early stopping, and loads --init-from on rank 0 (then broadcast). */
int train_wf_create(train_wf **out, const train_wf_setup *s, core_error *err);
void train_wf_free(train_wf *wf);
/* Appends this run's workflow settings (schedule included) to the config text. */
void train_wf_config_text(const train_wf *wf, char *buf, size_t len);
/* One line describing the settings for the run header. */
void train_wf_describe(const train_wf *wf);

/* Per step, in this order. */
void train_wf_before_step(train_wf *wf, long step);
/* After the all-reduce: the division (grads *= scale, 1/global batch), L1,
 * the norm and clipping; returns the step's lr. Without L1 the division and
 * the norm take one pass (core_scale_sum_squares), with the same bits. */
float train_wf_update_grads(train_wf *wf, float *grads, size_t n, float scale);
/* The GPU path's train_wf_update_grads: the engine clipped the gradients and
 * measured their norm (train/device.c); records it and returns the step's lr. */
float train_wf_grad_norm_lr(train_wf *wf, double grad_norm);
/* After the optimizer step: frozen tensors are put back. */
void train_wf_after_update(train_wf *wf);

void train_wf_epoch_begin(train_wf *wf, long epoch, long first_batch);
/* The log window since the last metrics record: this rank's sums of loss,
 * top-1 hits, top-5 hits and label rows. A checkpoint carries them (summed
 * over ranks) so that a resumed run's next record covers the whole window;
 * add puts them back after train_wf_epoch_begin. */
void train_wf_window_get(const train_wf *wf, double v[4]);
void train_wf_window_add(train_wf *wf, const double v[4]);
/* After each forward of a training step: top-1/top-5 of its `rows` label
 * rows (samples, or tokens of a sequence loss) from the model's probabilities. */
void train_wf_observe(train_wf *wf, const int32_t *labels, int rows);
/* Collective. After step `done` (1-based within the epoch), with its `n`
 * label rows and summed loss: metrics, progress, validation every N steps. */
int train_wf_after_step(train_wf *wf, long done, int n, double loss_sum, core_error *err);
/* Collective. Ends the bar, evaluates the test set (if any) and the
 * validation set (per epoch), writes their records; appends "| test ... |
 * val ..." to line. test_loss / test_acc are set when there is a test set. */
int train_wf_epoch_end(train_wf *wf, char *line, size_t len, double *test_loss, double *test_acc,
                       core_error *err);
/* Early stopping asked the loop to end. */
int train_wf_should_stop(const train_wf *wf);
/* Collective. Restores the best weights if asked (re-evaluating), checks
 * that every rank holds the same parameters. */
int train_wf_finish(train_wf *wf, double *test_loss, double *test_acc, core_error *err);

#endif
