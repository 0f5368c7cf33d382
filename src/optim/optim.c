/*
 * optim/optim.c: SGD (momentum, Nesterov) and Adam on the flat parameter
 * buffer, with PyTorch's update rules so that a run can be checked against
 * torch.optim step by step.
 *
 * optim_step is on the hot path: every variant is one branch-free loop over
 * the buffer (the choice of variant is made once, outside the loop), with
 * restrict pointers so the compiler vectorizes it, and nothing is allocated.
 */
#include "optim/optim.h"

#include <math.h>
#include <string.h>

#include "core/mem.h"
#include "core/par.h"

optim_config optim_config_default(optim_kind kind)
{
    optim_config c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    if (kind == OPTIM_ADAM) {
        c.lr = 1e-3f;
    } else {
        c.lr = 0.01f;
        c.momentum = 0.9f;
    }
    return c;
}

int optim_kind_parse(const char *name, optim_kind *out, core_error *err)
{
    if (name && strcmp(name, "sgd") == 0) {
        *out = OPTIM_SGD;
        return 0;
    }
    if (name && strcmp(name, "adam") == 0) {
        *out = OPTIM_ADAM;
        return 0;
    }
    return core_error_set(err, "unknown optimizer '%s'; expected sgd, adam or adamw",
                          name ? name : "(null)");
}

const char *optim_kind_name(optim_kind kind)
{
    switch (kind) {
    case OPTIM_SGD:
        return "sgd";
    case OPTIM_ADAM:
        return "adam";
    }
    return "unknown";
}

int optim_create(optim *o, const optim_config *cfg, size_t n, core_error *err)
{
    return optim_create_range(o, cfg, n, 0, n, err);
}

int optim_create_range(optim *o, const optim_config *cfg, size_t n, size_t lo, size_t hi,
                       core_error *err)
{
    memset(o, 0, sizeof *o);
    if (cfg->kind != OPTIM_SGD && cfg->kind != OPTIM_ADAM)
        return core_error_set(err, "optim: unknown optimizer kind %d", (int)cfg->kind);
    if (lo > hi || hi > n)
        return core_error_set(err, "optim: state range [%zu, %zu) is not inside [0, %zu)", lo, hi,
                              n);
    o->cfg = *cfg;
    o->n = n;
    o->lo = lo;
    o->hi = hi;
    size_t len = hi - lo;
    /* core_alloc of 0 bytes: one float, so that an empty slice still has a buffer */
    o->m = core_alloc((len ? len : 1) * sizeof(float), "optimizer first moment", err);
    if (!o->m)
        return -1;
    if (cfg->kind == OPTIM_ADAM) {
        o->v = core_alloc((len ? len : 1) * sizeof(float), "optimizer second moment", err);
        if (!o->v) {
            core_free(o->m);
            o->m = NULL;
            return -1;
        }
    }
    return 0;
}

void optim_destroy(optim *o)
{
    if (!o)
        return;
    core_free(o->m);
    core_free(o->v);
    o->m = NULL;
    o->v = NULL;
}

int optim_state_count(const optim *o)
{
    return o->cfg.kind == OPTIM_ADAM ? 2 : 1;
}

int optim_state_whole(const optim *o)
{
    return o->lo == 0 && o->hi == o->n;
}

size_t optim_state_bytes(optim_kind kind, size_t count)
{
    return (kind == OPTIM_ADAM ? 2 : 1) * count * sizeof(float);
}

/* torch.optim.SGD with momentum == 0: p -= lr * (g + wd p). */
static void sgd_plain(size_t n, float *restrict p, const float *restrict g, float lr, float wd)
{
    for (size_t i = 0; i < n; i++)
        p[i] -= lr * (g[i] + wd * p[i]);
}

/* buf = mu buf + d; p -= lr buf. The buffer starts at zero, so the first step
 * gives buf = d, which is what PyTorch's "clone on first step" does. */
static void sgd_momentum(size_t n, float *restrict p, const float *restrict g, float *restrict buf,
                         float lr, float mu, float wd)
{
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + wd * p[i];
        float b = mu * buf[i] + d;
        buf[i] = b;
        p[i] -= lr * b;
    }
}

/* Nesterov: buf as above, then the step uses d + mu buf. */
static void sgd_nesterov(size_t n, float *restrict p, const float *restrict g, float *restrict buf,
                         float lr, float mu, float wd)
{
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + wd * p[i];
        float b = mu * buf[i] + d;
        buf[i] = b;
        p[i] -= lr * (d + mu * b);
    }
}

/* torch.optim.Adam (not amsgrad, not maximize), in PyTorch's operation order:
 *   m = lerp(m, d, 1-b1);  v = b2 v + (1-b2) d^2
 *   p -= (lr / bc1) * (m / (sqrt(v) / sqrt(bc2) + eps))
 * with bc1 = 1 - b1^t and bc2 = 1 - b2^t computed in double, as PyTorch does
 * on the host. GCC vectorizes this loop only with -fno-math-errno (sqrtf
 * may set errno as far as it knows); without it the loop is scalar but still
 * a single pass over memory. */
static void adam_update(size_t n, float *restrict p, const float *restrict g, float *restrict m,
                        float *restrict v, float step_size, float bc2_sqrt, float b1, float b2,
                        float eps, float wd, float decay)
{
    const float c1 = 1.0f - b1, c2 = 1.0f - b2;
    for (size_t i = 0; i < n; i++) {
        float pi = p[i] * decay; /* AdamW's decoupled decay first (x 1.0f: exact) */
        float d = g[i] + wd * pi;
        float mi = m[i] + c1 * (d - m[i]);
        float vi = b2 * v[i] + c2 * (d * d);
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * (mi / (sqrtf(vi) / bc2_sqrt + eps));
    }
}

void optim_step(optim *o, float *params, const float *grads, float lr)
{
    optim_step_slice(o, params, grads, lr, 0, o->n);
}

/* One optimizer step over a range: the scalars are worked out once, the
 * elements are independent, so the rank's threads split the range
 * (core/par.h) and the result is the same at any thread count. */
typedef struct step_job {
    const optim_config *c;
    float *p, *m, *v;
    const float *g;
    float lr, step_size, bc2_sqrt, wd, decay;
} step_job;

static void step_range(void *ctx, size_t lo, size_t hi)
{
    const step_job *j = ctx;
    const optim_config *c = j->c;
    size_t n = hi - lo;
    float *p = j->p + lo, *m = j->m + lo;
    const float *g = j->g + lo;
    if (c->kind == OPTIM_ADAM) {
        adam_update(n, p, g, m, j->v + lo, j->step_size, j->bc2_sqrt, c->beta1, c->beta2, c->eps,
                    j->wd, j->decay);
        return;
    }
    if (c->momentum == 0.0f)
        sgd_plain(n, p, g, j->lr, c->weight_decay);
    else if (c->nesterov)
        sgd_nesterov(n, p, g, m, j->lr, c->momentum, c->weight_decay);
    else
        sgd_momentum(n, p, g, m, j->lr, c->momentum, c->weight_decay);
}

void optim_step_slice(optim *o, float *params, const float *grads, float lr, size_t a, size_t b)
{
    const optim_config *c = &o->cfg;
    o->step++;
    if (a < o->lo)
        a = o->lo;
    if (b > o->hi)
        b = o->hi;
    if (a >= b)
        return;
    step_job j = {c,
                  params + a,
                  o->m + (a - o->lo),
                  o->v ? o->v + (a - o->lo) : NULL,
                  grads + a,
                  lr,
                  0.0f,
                  0.0f,
                  c->weight_decay,
                  1.0f};
    if (c->kind == OPTIM_ADAM) {
        double bc1 = 1.0 - pow((double)c->beta1, (double)o->step);
        double bc2 = 1.0 - pow((double)c->beta2, (double)o->step);
        j.step_size = (float)((double)lr / bc1);
        j.bc2_sqrt = (float)sqrt(bc2);
        if (c->decoupled) { /* torch.optim.AdamW: p *= 1 - lr wd, then Adam without L2 */
            j.decay = 1.0f - lr * c->weight_decay;
            j.wd = 0.0f;
        }
    }
    core_par_for(b - a, 1 << 15, 16, step_range, &j);
}
