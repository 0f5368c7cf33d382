/*
 * train/model_load.c: inference models from checkpoints (see model_load.h).
 */
#include "train/model_load.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "nn/layer.h"
#include "train/checkpoint.h"
#include "train/eval.h"
#include "train/quantize.h"

/* Rank 0: resolve, read spec and kind. */
static int read_head(const char *ckpt, train_loaded *out, char **spec, core_error *err)
{
    if (train_checkpoint_resolve(ckpt, out->path, sizeof out->path, err) != 0)
        return -1;
    out->int8 = train_quant_is_int8(out->path);
    return train_checkpoint_read_text(out->path, spec, NULL, err);
}

static int share_spec(dist_world *w, char **spec, core_error *err)
{
    int64_t len = *spec ? (int64_t)strlen(*spec) + 1 : 0;
    if (dist_broadcast(w, &len, sizeof len, 0, err) != 0)
        return -1;
    if (dist_rank(w) != 0) {
        *spec = core_alloc((size_t)len, "model spec", err);
        if (!*spec)
            return -1;
    }
    return dist_broadcast(w, *spec, (size_t)len, 0, err);
}

/* Epochs done at the checkpoint: prog.epoch whole ones, and of the current
 * one the steps taken over the steps an earlier epoch took (unknown in the
 * first epoch, which then counts as 0). */
static double checkpoint_epoch(const train_progress *p)
{
    double e = (double)p->epoch;
    if (p->batch_in_epoch > 0 && p->epoch > 0 && p->step > p->batch_in_epoch)
        e += (double)p->batch_in_epoch / ((double)(p->step - p->batch_in_epoch) / (double)p->epoch);
    return e;
}

int train_model_load(dist_world *w, const char *ckpt, int max_batch, train_loaded *out,
                     core_error *err)
{
    memset(out, 0, sizeof *out);
    char *spec = NULL;
    int rank = dist_rank(w);
    int failed = rank == 0 && read_head(ckpt, out, &spec, err) != 0;
    if (train_agree(w, failed, err) != 0)
        return -1;
    if (dist_broadcast(w, &out->int8, sizeof out->int8, 0, err) != 0 ||
        share_spec(w, &spec, err) != 0)
        return -1;
    failed = nn_model_create(spec, out->path[0] ? out->path : ckpt, max_batch, &out->model, err);
    core_free(spec);
    if (train_agree(w, failed != 0, err) != 0)
        return -1;
    int nl = nn_model_layer_count(out->model);
    if (out->int8) {
        out->scales = core_alloc((size_t)nl * sizeof(float), "int8 scales", err);
        failed = !out->scales;
    }
    if (!failed && rank == 0) {
        train_progress prog = {0};
        failed = out->int8 ? train_quant_read(out->path, out->model, out->scales, err) != 0
                           : train_checkpoint_read(out->path, out->model, NULL, &prog, err) != 0;
        out->step = prog.step;
        out->epoch = checkpoint_epoch(&prog);
    }
    if (train_agree(w, failed, err) != 0)
        return -1;
    if (dist_broadcast(w, nn_model_params(out->model),
                       nn_model_param_count(out->model) * sizeof(float), 0, err) != 0)
        return -1;
    if (!out->int8)
        return 0;
    if (dist_broadcast(w, out->scales, (size_t)nl * sizeof(float), 0, err) != 0)
        return -1;
    return train_agree(w, train_quant_apply(out->model, out->scales, err) != 0, err);
}

void train_loaded_free(train_loaded *l)
{
    nn_model_free(l->model);
    core_free(l->scales);
    l->model = NULL;
    l->scales = NULL;
}
