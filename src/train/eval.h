/*
 * train/eval.h: evaluation of a model on one split, spread over the ranks.
 *
 * Each rank runs its shard in inference mode (dropout off) and accumulates
 * the summed loss, top-1 and top-5 hits and a confusion matrix; one
 * all-reduce of (4 + classes + classes^2) doubles then gives every rank the totals of
 * the whole split. Above TRAIN_EVAL_CONFUSION_MAX classes (a language
 * model's vocabulary: 8192^2 doubles would be 512 MiB per rank and per
 * evaluation) there is no confusion matrix, and no per-class accuracy. Used by the fit loop
 * (validation, test) and by the `eval`, `predict` and `quantize` commands.
 */
#ifndef TRAIN_EVAL_H
#define TRAIN_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "data/data.h"
#include "dist/dist.h"
#include "nn/model.h"
#include "optim/optim.h"

typedef struct train_eval {
    int classes;
    double loss_sum;    /* summed cross-entropy */
    double count;       /* samples */
    double top1, top5;  /* hits (top5 = top-min(5, classes)) */
    double *confusion;  /* classes x classes, row = true class, column = predicted (top-1);
                           NULL above TRAIN_EVAL_CONFUSION_MAX classes */
    double *nan_rows;   /* per true class: samples whose outputs held a NaN (a miss, in no
                           column of the matrix); NULL with the matrix */
    double counters[4]; /* reduced with the matrix when there is none */
} train_eval;

#define TRAIN_EVAL_CONFUSION_MAX 1024

int train_eval_create(train_eval *e, int classes, core_error *err);
/* Bytes train_eval_create allocates (the memory plan). */
double train_eval_bytes(int classes);
void train_eval_free(train_eval *e);
void train_eval_reset(train_eval *e);

/* Rank of the label among the probabilities: the number of classes with a
 * strictly higher probability, ties counted for the label, i.e. 0 = top-1;
 * `classes` (no top-k at all) when any probability is NaN. */
int train_eval_label_rank(const float *probs, int classes, int32_t label);
/* The top-1 prediction (lowest index among ties). */
int train_eval_argmax(const float *probs, int classes);
/* Adds n samples: probs (n x classes) and labels, and their summed loss. */
void train_eval_add(train_eval *e, const float *probs, const int32_t *labels, int n,
                    double loss_sum);
/* Sums the counters over all ranks (collective). */
int train_eval_reduce(dist_world *w, train_eval *e, core_error *err);

/* Collective: resets e, runs every batch of the loader (epoch 0, no shuffle)
 * through m in inference mode, reduces. A read error on any rank fails all. */
int train_eval_loader(dist_world *w, nn_model *m, data_loader *ld, train_eval *e, core_error *err);

double train_eval_loss(const train_eval *e);
double train_eval_top1(const train_eval *e);
double train_eval_top5(const train_eval *e);
/* Accuracy of class c: the diagonal over its row (NAN for a class with no samples). */
double train_eval_class_accuracy(const train_eval *e, int c);

/* Collective agreement on failure, as the fit loop does it: when any rank
 * failed, every rank returns -1 with the lowest failed rank's message. */
int train_agree(dist_world *w, int failed, core_error *err);
/* Collective: every rank's err becomes rank `first`'s message ("rank r: ..."
 * when there are several ranks); returns -1. */
int train_report_rank(dist_world *w, int first, core_error *err);

/* The sharded optimizer step (docs/COMMUNICATION.md, "The sharded optimizer
 * step"): with hier's node-shared gradients on a host engine, the
 * parameters move into a node-shared buffer too, and each rank of a node
 * updates only its slice [*a, *b) of them, then takes the others' slices.
 * Collective. Returns 1 when sharded, 0 when not (want = 0, a GPU engine,
 * private gradients, or no room in /dev/shm: one warning line), -1 on error
 * (agreed on every rank). *a, *b: this rank's slice ([0, n) if not). */
int train_shard_params(dist_world *w, nn_model *m, int want, size_t *a, size_t *b, core_error *err);
/* After a node-sharded step each rank holds the optimizer state of its
 * slice only: this makes it whole on every rank, before a checkpoint is
 * written. Collective; a no-op when not sharded, and when the state is
 * sharded across every rank (o->sharded: train_checkpoint_save gathers it
 * range by range). */
int train_optim_gather(dist_world *w, optim *o, int sharded, core_error *err);

/* Collective: dist_buckets_create over the model's gradient buffer, with
 * buckets ending on the model's layer boundaries (cfg->ready_points). */
int train_buckets_create(dist_world *w, nn_model *m, dist_bucket_config cfg, dist_buckets **out,
                         core_error *err);

#endif
