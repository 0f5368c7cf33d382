/*
 * train/device.c: the fit loop's GPU path (see device.h, docs/GPU.md).
 */
#include "train/device.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

int train_device_select(const train_config *cfg, dist_world *w, int *gpu, core_error *err)
{
    *gpu = -1;
    if (!cfg->device_cuda)
        return 0;
    const char *env = getenv("RINGTRAIN_GPUS_SHARED");
    int shared = env && strcmp(env, "1") == 0 && cfg->allreduce != DIST_ALLREDUCE_NCCL;
    return dist_gpu_select(w, shared, gpu, err);
}

const engine_ops *train_device_engine(const train_config *cfg, int gpu, core_error *err)
{
    if (!cfg->device_cuda)
        return engine_cpu();
    const train_wf_config *wc = &cfg->wf;
    const char *unsupported = wc->l1 != 0.0f      ? "--l1"
                              : wc->freeze_loaded ? "--freeze-loaded"
                              : wc->restore_best  ? "--restore-best"
                                                  : NULL;
    if (unsupported) {
        core_error_set(err, "%s is not supported with --device cuda yet; run it on the CPU engine",
                       unsupported);
        return NULL;
    }
    const engine_ops *e = engine_cuda(gpu,
                                      cfg->bf16   ? ENGINE_CUDA_BF16
                                      : cfg->tf32 ? ENGINE_CUDA_TF32
                                                  : 0,
                                      err);
    if (e)
        core_log_info("engine: %s", e->name);
    return e;
}

int train_device_create(train_device *d, const engine_ops *e, const optim *o, core_error *err)
{
    memset(d, 0, sizeof *d);
    if (!e || !e->device_memory)
        return 0;
    d->e = e;
    d->n = o->n;
    d->m = e->alloc(o->n * sizeof(float), "optimizer first moment (GPU)", err);
    if (!d->m)
        return -1;
    if (o->v) {
        d->v = e->alloc(o->n * sizeof(float), "optimizer second moment (GPU)", err);
        if (!d->v)
            return -1;
    }
    return 0;
}

void train_device_free(train_device *d)
{
    if (!d->e)
        return;
    d->e->free(d->m);
    d->e->free(d->v);
    memset(d, 0, sizeof *d);
}

void train_device_push(train_device *d, nn_model *m, const optim *o)
{
    if (!d->e)
        return;
    nn_model_params_push(m);
    d->e->upload(d->m, o->m, d->n * sizeof(float));
    if (d->v)
        d->e->upload(d->v, o->v, d->n * sizeof(float));
    d->e->sync();
}

void train_device_pull(train_device *d, nn_model *m, optim *o)
{
    if (!d->e)
        return;
    nn_model_params_pull(m);
    d->e->download(o->m, d->m, d->n * sizeof(float));
    if (d->v)
        d->e->download(o->v, d->v, d->n * sizeof(float));
}

double train_device_grad_norm(train_device *d, nn_model *m, float scale, float clip_norm)
{
    const engine_ops *e = d->e;
    float *g = nn_model_grads(m);
    e->scale(g, d->n, scale);
    double norm = sqrt(e->sumsq(g, d->n));
    /* optim_clip_grad_norm's rule: the same coefficient on every rank */
    if (clip_norm > 0.0f) {
        double coef = (double)clip_norm / (norm + 1e-6);
        if (coef < 1.0)
            e->scale(g, d->n, (float)coef);
    }
    return norm;
}

void train_device_step(train_device *d, nn_model *m, optim *o, float lr)
{
    const engine_ops *e = d->e;
    const optim_config *c = &o->cfg;
    float *p = nn_model_engine_params(m);
    const float *g = nn_model_grads(m);
    o->step++;
    if (c->kind == OPTIM_ADAM) {
        double bc1 = 1.0 - pow((double)c->beta1, (double)o->step);
        double bc2 = 1.0 - pow((double)c->beta2, (double)o->step);
        float decay = c->decoupled ? 1.0f - lr * c->weight_decay : 1.0f;
        float wd = c->decoupled ? 0.0f : c->weight_decay;
        e->adam_update(p, g, d->m, d->v, d->n, decay, (float)((double)lr / bc1), (float)sqrt(bc2),
                       c->beta1, c->beta2, c->eps, wd);
        return;
    }
    e->sgd_update(p, g, d->m, d->n, lr, c->momentum, c->weight_decay, c->nesterov);
}

int train_device_nonfinite(train_device *d, nn_model *m)
{
    return d->e->nonfinite(nn_model_grads(m), d->n);
}
