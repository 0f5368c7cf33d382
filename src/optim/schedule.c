/*
 * optim/schedule.c: learning-rate schedules (see schedule.h for the formulas).
 */
#include "optim/schedule.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define SCHED_PI 3.14159265358979323846

static const char *const names[] = {"constant", "step", "cosine"};

int optim_sched_kind_parse(const char *name, optim_sched_kind *out, core_error *err)
{
    for (int i = 0; i < 3; i++)
        if (name && strcmp(name, names[i]) == 0) {
            *out = (optim_sched_kind)i;
            return 0;
        }
    return core_error_set(err,
                          "unknown learning-rate schedule '%s'; expected constant, step or "
                          "cosine",
                          name ? name : "(null)");
}

const char *optim_sched_kind_name(optim_sched_kind k)
{
    return (int)k >= 0 && (int)k < 3 ? names[k] : "unknown";
}

int optim_schedule_check(const optim_schedule *s, core_error *err)
{
    if (!(s->base_lr > 0.0f))
        return core_error_set(err, "schedule: learning rate must be positive");
    if (s->warmup < 0)
        return core_error_set(err, "schedule: warm-up must not be negative");
    if (s->kind == OPTIM_SCHED_STEP && (s->step_size <= 0 || !(s->gamma > 0.0f)))
        return core_error_set(err, "step schedule needs --lr-step-size > 0 and --lr-gamma > 0");
    if (s->kind == OPTIM_SCHED_COSINE && s->total <= s->warmup)
        return core_error_set(err,
                              "cosine schedule: the run has %ld steps, not more than the %ld "
                              "warm-up steps; lower --warmup-steps",
                              s->total, s->warmup);
    if (s->kind == OPTIM_SCHED_COSINE && s->min_lr > s->base_lr)
        return core_error_set(err, "cosine schedule: --min-lr %g is above the learning rate %g",
                              (double)s->min_lr, (double)s->base_lr);
    return 0;
}

float optim_schedule_lr(const optim_schedule *s, long step)
{
    double base = s->base_lr;
    if (step < s->warmup)
        return (float)(base * (double)(step + 1) / (double)s->warmup);
    long t = step - s->warmup;
    switch (s->kind) {
    case OPTIM_SCHED_STEP:
        return (float)(base * pow((double)s->gamma, (double)(t / s->step_size)));
    case OPTIM_SCHED_COSINE: {
        double u = (double)t / (double)(s->total - s->warmup);
        if (u > 1.0)
            u = 1.0;
        return (float)(s->min_lr + (base - s->min_lr) * 0.5 * (1.0 + cos(SCHED_PI * u)));
    }
    case OPTIM_SCHED_CONSTANT:
        break;
    }
    return (float)base;
}

int optim_schedule_format(const optim_schedule *s, char *buf, size_t len)
{
    return snprintf(buf, len,
                    "lr_schedule=%s\nlr_base=%g\nlr_warmup=%ld\nlr_step_size=%ld\nlr_gamma=%g\n"
                    "lr_total=%ld\nlr_min=%g\n",
                    optim_sched_kind_name(s->kind), (double)s->base_lr, s->warmup, s->step_size,
                    (double)s->gamma, s->total, (double)s->min_lr);
}
