/*
 * train/eval.c: evaluation spread over the ranks (see eval.h).
 */
#include "train/eval.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/mem.h"
#include "engine/engine.h"

int train_eval_create(train_eval *e, int classes, core_error *err)
{
    memset(e, 0, sizeof *e);
    e->classes = classes;
    if (classes > TRAIN_EVAL_CONFUSION_MAX)
        return 0;
    size_t cc = (size_t)classes * (size_t)classes;
    e->confusion = core_alloc((cc + 4 + (size_t)classes) * sizeof(double), "confusion matrix", err);
    if (!e->confusion)
        return -1;
    e->nan_rows = e->confusion + cc + 4; /* after the matrix and the 4 counters */
    return 0;
}

double train_eval_bytes(int classes)
{
    return classes > TRAIN_EVAL_CONFUSION_MAX
               ? 0.0
               : 8.0 * ((double)classes * (double)classes + 4.0 + (double)classes);
}

/* (classes x classes, or no matrix) */
static size_t matrix_size(const train_eval *e)
{
    return e->confusion ? (size_t)e->classes * (size_t)e->classes : 0;
}

void train_eval_free(train_eval *e)
{
    core_free(e->confusion);
    e->confusion = NULL;
}

void train_eval_reset(train_eval *e)
{
    e->loss_sum = e->count = e->top1 = e->top5 = 0.0;
    if (!e->confusion)
        return;
    memset(e->confusion, 0, matrix_size(e) * sizeof(double));
    memset(e->nan_rows, 0, (size_t)e->classes * sizeof(double));
}

int train_eval_label_rank(const float *probs, int classes, int32_t label)
{
    float p = probs[label];
    int above = 0, nan = 0;
    /* counts, not an early exit, so that the loop vectorizes (8192-class
     * language-model rows, every training step) */
    for (int k = 0; k < classes; k++) {
        above += probs[k] > p;
        nan += probs[k] != probs[k];
    }
    return nan ? classes : above; /* NaN outputs rank the label nowhere: never a hit */
}

int train_eval_argmax(const float *probs, int classes)
{
    int best = 0;
    for (int k = 1; k < classes; k++)
        if (probs[k] > probs[best])
            best = k;
    return best;
}

void train_eval_add(train_eval *e, const float *probs, const int32_t *labels, int n,
                    double loss_sum)
{
    int c = e->classes, k5 = c < 5 ? c : 5;
    for (int i = 0; i < n; i++) {
        const float *p = probs + (size_t)i * (size_t)c;
        int rank = train_eval_label_rank(p, c, labels[i]);
        e->top1 += rank == 0;
        e->top5 += rank < k5;
        if (!e->confusion)
            continue;
        if (rank < c)
            e->confusion[(size_t)labels[i] * (size_t)c + (size_t)train_eval_argmax(p, c)] += 1.0;
        else /* NaN outputs: no predicted class, a miss */
            e->nan_rows[labels[i]] += 1.0;
    }
    e->count += n;
    e->loss_sum += loss_sum;
}

int train_eval_reduce(dist_world *w, train_eval *e, core_error *err)
{
    size_t cc = matrix_size(e);
    double *v = e->confusion ? e->confusion : e->counters; /* the 4 counters ride after it */
    v[cc] = e->loss_sum;
    v[cc + 1] = e->count;
    v[cc + 2] = e->top1;
    v[cc + 3] = e->top5;
    int n = (int)(cc + 4) + (e->confusion ? e->classes : 0); /* and nan_rows */
    if (dist_sum_f64(w, v, n, err) != 0)
        return -1;
    e->loss_sum = v[cc];
    e->count = v[cc + 1];
    e->top1 = v[cc + 2];
    e->top5 = v[cc + 3];
    return 0;
}

int train_report_rank(dist_world *w, int first, core_error *err)
{
    char msg[CORE_ERROR_MAX];
    memcpy(msg, err->msg, sizeof msg);
    msg[sizeof msg - 1] = '\0';
    if (dist_broadcast(w, msg, sizeof msg, first, NULL) != 0)
        snprintf(msg, sizeof msg, "failed (message lost)");
    if (dist_size(w) > 1)
        return core_error_set(err, "rank %d: %s", first, msg);
    return core_error_set(err, "%s", msg);
}

int train_agree(dist_world *w, int failed, core_error *err)
{
    int first = dist_first_failed(w, failed);
    return first < 0 ? 0 : train_report_rank(w, first, err);
}

int train_eval_loader(dist_world *w, nn_model *m, data_loader *ld, train_eval *e, core_error *err)
{
    train_eval_reset(e);
    int failed = data_loader_begin_epoch(ld, 0, 0, err) != 0;
    while (!failed) {
        data_batch b = {0};
        int rc = data_loader_next(ld, &b, err);
        if (rc < 0)
            failed = 1;
        if (rc <= 0)
            break;
        nn_stats s = {0};
        nn_model_forward(m, b.x, b.y, b.n, 0, &s);
        train_eval_add(e, nn_model_probs(m), b.y, b.n * nn_model_labels_per_sample(m), s.loss_sum);
    }
    if (train_agree(w, failed, err) != 0)
        return -1;
    return train_eval_reduce(w, e, err);
}

double train_eval_loss(const train_eval *e)
{
    return e->count > 0 ? e->loss_sum / e->count : NAN;
}

double train_eval_top1(const train_eval *e)
{
    return e->count > 0 ? e->top1 / e->count : NAN;
}

double train_eval_top5(const train_eval *e)
{
    return e->count > 0 ? e->top5 / e->count : NAN;
}

double train_eval_class_accuracy(const train_eval *e, int c)
{
    if (!e->confusion)
        return NAN;
    double row = e->nan_rows[c];
    for (int k = 0; k < e->classes; k++)
        row += e->confusion[(size_t)c * (size_t)e->classes + (size_t)k];
    return row > 0 ? e->confusion[(size_t)c * (size_t)e->classes + (size_t)c] / row : NAN;
}

int train_buckets_create(dist_world *w, nn_model *m, dist_bucket_config cfg, dist_buckets **out,
                         core_error *err)
{
    int np = nn_model_ready_points(m, NULL, 0);
    size_t *pts = core_alloc((size_t)(np > 0 ? np : 1) * sizeof *pts, "bucket boundaries", err);
    cfg.ready_points = pts;
    cfg.nready_points = pts ? nn_model_ready_points(m, pts, np) : 0;
    /* hier sums gradients that live in a node-shared buffer in place, without
     * staging them (docs/COMMUNICATION.md, "Shared buffers"). The other
     * backends and the GPU engine keep the model's own buffer. */
    size_t nparams = nn_model_param_count(m);
    int want = cfg.kind == DIST_ALLREDUCE_HIER && dist_size(w) > 1 &&
               !nn_model_engine(m)->device_memory &&
               !dist_shared_contains(w, nn_model_grads(m), nparams);
    char why[256];
    if (want && !dist_shared_fits(w, nparams, why, sizeof why)) {
        want = 0;
        if (dist_rank(w) == 0) /* the same decision everywhere: one line */
            core_log_warn("hier: %s; summing the gradients through staging slots instead (slower; "
                          "give the node more shared memory, e.g. docker run --shm-size, for the "
                          "zero-copy path)",
                          why);
    }
    if (want) {
        float *g = dist_shared_alloc(w, nparams, err);
        int failed = !g || nn_model_use_grads(m, g, err) != 0;
        if (train_agree(w, failed, err) != 0) {
            core_free(pts);
            return -1;
        }
    }
    /* collective even when the allocation failed: the layout check agrees */
    int rc = dist_buckets_create(w, nn_model_grads(m), nn_model_param_count(m), &cfg, out, err);
    core_free(pts);
    return pts ? rc : -1;
}

int train_shard_params(dist_world *w, nn_model *m, int want, size_t *a, size_t *b, core_error *err)
{
    size_t n = nn_model_param_count(m);
    *a = 0;
    *b = n;
    /* The same answer on every rank: the gradients are shared everywhere or
     * nowhere (train_buckets_create decided collectively). */
    if (!want || nn_model_engine(m)->device_memory || dist_size(w) == 1 ||
        !dist_shared_contains(w, nn_model_grads(m), n))
        return 0;
    char why[256];
    if (!dist_shared_fits(w, n, why, sizeof why)) {
        if (dist_rank(w) == 0)
            core_log_warn("sharded optimizer step: %s; every rank updates all parameters "
                          "instead",
                          why);
        return 0;
    }
    float *p = dist_shared_alloc(w, n, err);
    int failed = !p || nn_model_use_params(m, p, err) != 0;
    if (train_agree(w, failed, err) != 0)
        return -1;
    dist_shard_slice(w, n, a, b);
    return 1;
}

int train_optim_gather(dist_world *w, optim *o, int sharded, core_error *err)
{
    if (!sharded || o->sharded) /* across every rank: written range by range instead */
        return 0;
    if (dist_shard_gather(w, o->m, o->n, err) != 0)
        return -1;
    return o->v ? dist_shard_gather(w, o->v, o->n, err) : 0;
}
