/*
 * optim/schedule.h: learning-rate schedules as pure functions of the step.
 *
 * The rate of step t (0-based: the t-th optimizer step ever taken in the run)
 * depends only on t and the schedule's constants, so a resumed run, whose
 * optimizer step count comes from the checkpoint, continues the schedule
 * exactly. The constants are written into the checkpoint's config text.
 *
 *   warm-up (any kind):  t < warmup:  lr = base * (t + 1) / warmup
 *   constant:            lr = base
 *   step:                lr = base * gamma ^ floor((t - warmup) / step_size)
 *   cosine:              u = min(1, (t - warmup) / (total - warmup))
 *                        lr = min_lr + (base - min_lr) * (1 + cos(pi u)) / 2
 */
#ifndef OPTIM_SCHEDULE_H
#define OPTIM_SCHEDULE_H

#include <stddef.h>

#include "core/error.h"

typedef enum optim_sched_kind {
    OPTIM_SCHED_CONSTANT = 0,
    OPTIM_SCHED_STEP = 1,
    OPTIM_SCHED_COSINE = 2,
} optim_sched_kind;

typedef struct optim_schedule {
    optim_sched_kind kind;
    float base_lr;
    long warmup;    /* steps of linear warm-up (0: none) */
    long step_size; /* step: decay every step_size steps */
    float gamma;    /* step: factor per decay */
    long total;     /* cosine: the last step of the run (epochs * steps per epoch) */
    float min_lr;   /* cosine: the floor */
} optim_schedule;

int optim_sched_kind_parse(const char *name, optim_sched_kind *out, core_error *err);
const char *optim_sched_kind_name(optim_sched_kind k);
/* Checks the constants (step_size > 0 for step, total > warmup for cosine...). */
int optim_schedule_check(const optim_schedule *s, core_error *err);
float optim_schedule_lr(const optim_schedule *s, long step);
/* "schedule=cosine base_lr=0.001 warmup=100 ..." key=value lines for the checkpoint config. */
int optim_schedule_format(const optim_schedule *s, char *buf, size_t len);

#endif
