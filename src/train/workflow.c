/*
 * train/workflow.c: validation, metrics, early stopping, regularization,
 * schedules, progress and fine-tuning around the fit loop (see workflow.h).
 */
#include "train/workflow.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/sum.h"
#include "train/checkpoint.h"
#include "train/early_stop.h"
#include "train/eval.h"
#include "train/init_from.h"
#include "train/metrics.h"
#include "train/shard.h"

struct train_wf {
    train_wf_setup s;
    train_wf_config wc;
    int rank, size;
    data_dataset *val_ds; /* own, when a separate file */
    data_loader *val_ld;
    train_eval ev;
    train_metrics mt;
    optim_schedule sched;
    train_early_stop es;
    int es_on;
    train_progress_view view;
    float lr;
    double grad_norm;
    float *frozen; /* copy of the parameters; only the frozen ranges are used */
    int *loaded;   /* per tensor */
    long epoch;    /* 0-based, in progress */
    long done;     /* steps of the epoch done */
    /* the window since the last log point */
    double win_loss, win_top1, win_top5, win_count, win_t0;
    char best_path[1024];
};

void train_wf_config_defaults(train_wf_config *wc)
{
    memset(wc, 0, sizeof *wc);
    wc->schedule = OPTIM_SCHED_CONSTANT;
    wc->lr_gamma = 0.1f;
    wc->progress = TRAIN_PROGRESS_AUTO;
}

size_t train_wf_train_count(const train_wf_config *wc, size_t n)
{
    if (wc->val_path || wc->val_fraction <= 0.0f)
        return n;
    size_t held = (size_t)floor((double)wc->val_fraction * (double)n);
    return n - held;
}

uint64_t train_wf_dropout_seed(uint64_t seed, int rank, long step)
{
    /* splitmix64 finalizer over (seed, rank, step): distinct per rank and step */
    uint64_t z = seed ^ ((uint64_t)(uint32_t)rank << 40) ^ ((uint64_t)step * 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* ---- setup ---- */

static int open_val(train_wf *wf, core_error *err)
{
    const train_wf_setup *s = &wf->s;
    const train_wf_config *wc = &wf->wc;
    data_dataset *ds = s->train_ds;
    size_t start = s->n_train, count = s->n_total - s->n_train;
    if (wc->val_path) {
        if (data_dataset_open(wc->val_path, s->x_name, s->y_name, nn_model_num_classes(s->model),
                              &wf->val_ds, err) != 0)
            return -1;
        int dims[NN_MAX_DIMS];
        int nd = nn_model_input_dims(s->model, dims);
        if (data_dataset_match_input(wf->val_ds, dims, nd, wc->layout, "the model spec", err) != 0)
            return -1;
        ds = wf->val_ds;
        start = 0;
        count = data_dataset_count(ds);
        if (wc->val_limit > 0 && (size_t)wc->val_limit < count)
            count = (size_t)wc->val_limit;
    } else if (count == 0) {
        return 0;
    }
    data_loader_config lc = {0};
    data_shard_range(count, wf->rank, wf->size, &lc.shard_start, &lc.shard_count);
    lc.shard_start += start;
    lc.batch = s->local_batch;
    lc.drop_last = 0;
    lc.seed = s->seed;
    lc.rank = wf->rank;
    lc.mem_cap_bytes = s->loader_mem_cap;
    return data_loader_create(ds, &lc, &wf->val_ld, err);
}

static int check_config(train_wf *wf, core_error *err)
{
    const train_wf_config *wc = &wf->wc;
    if (wc->val_fraction < 0.0f || wc->val_fraction >= 1.0f)
        return core_error_set(err, "--val-fraction must be in [0, 1), got %g",
                              (double)wc->val_fraction);
    if (wc->val_path && wc->val_fraction > 0.0f)
        return core_error_set(err, "give --val-data or --val-fraction, not both");
    if (wc->early_metric && !wc->val_path && wc->val_fraction <= 0.0f)
        return core_error_set(err,
                              "--early-stop %s needs a validation set: add --val-fraction F "
                              "or --val-data FILE",
                              wc->early_metric);
    if (wc->restore_best && !wc->early_metric)
        return core_error_set(err,
                              "--restore-best needs --early-stop METRIC (which metric is best)");
    if (wc->freeze_loaded && !wc->init_from)
        return core_error_set(err, "--freeze-loaded needs --init-from FILE");
    wf->sched.kind = wc->schedule;
    wf->sched.base_lr = wf->s.opt->cfg.lr;
    wf->sched.warmup = wc->warmup;
    wf->sched.step_size = wc->lr_step_size;
    wf->sched.gamma = wc->lr_gamma;
    wf->sched.total = (long)wf->s.epochs * wf->s.steps_per_epoch;
    wf->sched.min_lr = wc->min_lr;
    return optim_schedule_check(&wf->sched, err);
}

static int open_metrics(train_wf *wf, core_error *err)
{
    const char *path = wf->wc.metrics_path;
    char buf[1024];
    if (!path && wf->s.ckpt_dir) {
        snprintf(buf, sizeof buf, "%s/metrics.jsonl", wf->s.ckpt_dir);
        path = buf;
    }
    if (!path || wf->rank != 0)
        return 0;
    long dropped = 0;
    if (wf->s.resumed && train_metrics_rewind(path, wf->s.prog->step, &dropped, err) != 0)
        return -1;
    if (dropped > 0)
        core_log_info("metrics: %ld record(s) after step %ld removed from %s (written after the "
                      "checkpoint this run resumes from; the run writes them again)",
                      dropped, wf->s.prog->step, path);
    return train_metrics_open(&wf->mt, path, wf->s.resumed, err);
}

/* Rank 0 loads the matching tensors; the parameters and the mask of loaded
 * tensors are then broadcast, and the loaded ones remembered for freezing. */
static int init_from(train_wf *wf, core_error *err)
{
    nn_model *m = wf->s.model;
    int nt = nn_model_tensor_count(m), nloaded = 0, failed = 0;
    wf->loaded = calloc((size_t)nt + 1, sizeof *wf->loaded);
    if (!wf->loaded)
        return train_agree(wf->s.w, core_error_set(err, "out of memory") != 0, err);
    if (wf->rank == 0) {
        char report[8192];
        /* On resume only the mask is wanted (for freezing): frozen tensors
         * in the resumed checkpoint equal the file's, so loading is harmless,
         * and the resumed values of the others are put back below. */
        float *keep = NULL;
        size_t n = nn_model_param_count(m);
        if (wf->s.resumed) {
            keep = malloc(n * sizeof *keep);
            if (keep)
                memcpy(keep, nn_model_params(m), n * sizeof *keep);
            else
                failed = core_error_set(err, "out of memory") != 0;
        }
        char path[1024];
        struct stat st;
        if (!failed && stat(wf->wc.init_from, &st) != 0)
            failed =
                core_error_set(err, "--init-from %s: %s", wf->wc.init_from, strerror(errno)) != 0;
        if (!failed)
            failed =
                train_checkpoint_resolve(wf->wc.init_from, path, sizeof path, err) != 0 ||
                train_init_from(path, m, wf->loaded, &nloaded, report, sizeof report, err) != 0;
        if (keep) {
            memcpy(nn_model_params(m), keep, n * sizeof *keep);
            free(keep);
        }
        if (!failed && wf->s.resumed)
            core_log_info("resuming: --init-from %s is ignored, the run continues from its "
                          "checkpoint%s",
                          wf->wc.init_from,
                          wf->wc.freeze_loaded ? " (the tensors it matches stay frozen)" : "");
        if (!failed && !wf->s.resumed) {
            core_log_info("init from %s: %d of %d tensors loaded%s", path, nloaded, nt,
                          wf->wc.freeze_loaded ? " (frozen)" : "");
            for (char *line = strtok(report, "\n"); line; line = strtok(NULL, "\n"))
                core_log_info("  %s", line);
        }
    }
    if (train_agree(wf->s.w, failed, err) != 0)
        return -1;
    if (dist_broadcast(wf->s.w, wf->loaded, (size_t)nt * sizeof(int), 0, err) != 0 ||
        dist_broadcast(wf->s.w, nn_model_params(m), nn_model_param_count(m) * sizeof(float), 0,
                       err) != 0)
        return -1;
    if (!wf->wc.freeze_loaded)
        return 0;
    size_t n = nn_model_param_count(m);
    wf->frozen = core_alloc(n * sizeof(float), "frozen parameters", err);
    if (!wf->frozen)
        return -1;
    memcpy(wf->frozen, nn_model_params(m), n * sizeof(float));
    return 0;
}

int train_wf_create(train_wf **out, const train_wf_setup *s, core_error *err)
{
    *out = NULL;
    train_wf *wf = calloc(1, sizeof *wf);
    if (!wf)
        return train_agree(s->w, core_error_set(err, "out of memory") != 0, err);
    wf->s = *s;
    wf->wc = *s->wc;
    wf->rank = dist_rank(s->w);
    wf->size = dist_size(s->w);
    wf->lr = s->opt->cfg.lr;
    *out = wf;
    int failed = check_config(wf, err) != 0 ||
                 train_eval_create(&wf->ev, nn_model_num_classes(s->model), err) != 0 ||
                 open_val(wf, err) != 0 || open_metrics(wf, err) != 0;
    if (!failed && wf->wc.early_metric) {
        failed =
            train_early_stop_init(&wf->es, wf->wc.early_metric, wf->wc.patience, wf->wc.min_delta,
                                  nn_model_param_count(s->model), wf->wc.restore_best, err) != 0;
        wf->es_on = !failed;
    }
    if (train_agree(s->w, failed, err) != 0)
        return -1;
    if (wf->wc.init_from && init_from(wf, err) != 0)
        return -1;
    int lps = nn_model_labels_per_sample(s->model); /* language models count tokens */
    train_progress_init(&wf->view, wf->wc.progress, wf->rank, s->epochs,
                        (long)s->global_batch * lps, lps > 1 ? "tok/s" : "img/s", stdout);
    return 0;
}

void train_wf_free(train_wf *wf)
{
    if (!wf)
        return;
    data_loader_free(wf->val_ld);
    data_dataset_close(wf->val_ds);
    train_eval_free(&wf->ev);
    train_metrics_close(&wf->mt);
    train_early_stop_free(&wf->es);
    core_free(wf->frozen);
    free(wf->loaded);
    free(wf);
}

void train_wf_config_text(const train_wf *wf, char *buf, size_t len)
{
    size_t k = strlen(buf);
    if (k >= len)
        return;
    k += (size_t)optim_schedule_format(&wf->sched, buf + k, len - k);
    if (k >= len)
        return;
    const train_wf_config *wc = &wf->wc;
    snprintf(buf + k, len - k,
             "decoupled_weight_decay=%d\nl1=%g\nclip_norm=%g\nval_data=%s\nval_fraction=%g\n"
             "eval_every=%ld\nearly_stop=%s\npatience=%d\nmin_delta=%g\nrestore_best=%d\n"
             "init_from=%s\nfreeze_loaded=%d\n",
             wf->s.opt->cfg.decoupled, (double)wc->l1, (double)wc->clip_norm,
             wc->val_path ? wc->val_path : "", (double)wc->val_fraction, wc->eval_every,
             wc->early_metric ? wc->early_metric : "", wc->patience, (double)wc->min_delta,
             wc->restore_best, wc->init_from ? wc->init_from : "", wc->freeze_loaded);
}

void train_wf_describe(const train_wf *wf)
{
    const train_wf_config *wc = &wf->wc;
    char val[160] = "none";
    if (wc->val_path)
        snprintf(val, sizeof val, "%s", wc->val_path);
    else if (wf->val_ld)
        snprintf(val, sizeof val, "last %zu of the training samples",
                 wf->s.n_total - wf->s.n_train);
    core_log_info("schedule %s (warm-up %ld), validation %s%s%s",
                  optim_sched_kind_name(wc->schedule), wc->warmup, val,
                  wf->es_on ? ", early stopping on " : "", wf->es_on ? wc->early_metric : "");
    if (wf->mt.f)
        core_log_info("metrics: %s", wf->mt.path);
}

/* ---- per step ---- */

void train_wf_before_step(train_wf *wf, long step)
{
    nn_model_set_seed(wf->s.model, train_wf_dropout_seed(wf->s.seed, wf->rank, step));
}

float train_wf_update_grads(train_wf *wf, float *grads, size_t n, float scale)
{
    if (wf->wc.l1 == 0.0f) {
        /* the division and the norm in one pass over the gradients */
        wf->grad_norm = sqrt(core_scale_sum_squares(grads, n, scale));
        optim_clip_to_norm(grads, n, wf->wc.clip_norm, wf->grad_norm);
    } else {
        for (size_t i = 0; i < n; i++)
            grads[i] *= scale;
        optim_add_l1(grads, nn_model_params(wf->s.model), n, wf->wc.l1);
        wf->grad_norm = optim_clip_grad_norm(grads, n, wf->wc.clip_norm);
    }
    wf->lr = optim_schedule_lr(&wf->sched, wf->s.opt->step);
    return wf->lr;
}

float train_wf_grad_norm_lr(train_wf *wf, double grad_norm)
{
    wf->grad_norm = grad_norm;
    wf->lr = optim_schedule_lr(&wf->sched, wf->s.opt->step);
    return wf->lr;
}

void train_wf_after_update(train_wf *wf)
{
    if (!wf->frozen)
        return;
    nn_model *m = wf->s.model;
    float *p = nn_model_params(m);
    for (int i = 0; i < nn_model_tensor_count(m); i++) {
        const nn_tensor *t = nn_model_tensor(m, i);
        if (wf->loaded[i])
            memcpy(p + t->offset, wf->frozen + t->offset, t->count * sizeof(float));
    }
}

void train_wf_epoch_begin(train_wf *wf, long epoch, long first_batch)
{
    wf->epoch = epoch;
    wf->done = first_batch;
    wf->win_loss = wf->win_top1 = wf->win_top5 = wf->win_count = 0.0;
    wf->win_t0 = core_now();
    train_progress_epoch_begin(&wf->view, (int)epoch + 1, wf->s.steps_per_epoch, first_batch);
}

void train_wf_window_get(const train_wf *wf, double v[4])
{
    v[0] = wf->win_loss;
    v[1] = wf->win_top1;
    v[2] = wf->win_top5;
    v[3] = wf->win_count;
}

void train_wf_window_add(train_wf *wf, const double v[4])
{
    wf->win_loss += v[0];
    wf->win_top1 += v[1];
    wf->win_top5 += v[2];
    wf->win_count += v[3];
}

static double epoch_at(const train_wf *wf, long done)
{
    return (double)wf->epoch + (double)done / (double)wf->s.steps_per_epoch;
}

/* Collective: reduces the window and writes a train record. */
static int flush_window(train_wf *wf, long done, core_error *err)
{
    double v[4] = {wf->win_loss, wf->win_top1, wf->win_top5, wf->win_count};
    if (dist_sum_f64(wf->s.w, v, 4, err) != 0)
        return -1;
    double t = core_now();
    if (v[3] <= 0)
        return 0;
    train_step_record r = {wf->s.prog->step,
                           epoch_at(wf, done),
                           wf->lr,
                           v[0] / v[3],
                           v[1] / v[3],
                           v[2] / v[3],
                           t > wf->win_t0 ? v[3] / (t - wf->win_t0) : 0.0,
                           wf->grad_norm};
    train_metrics_step(&wf->mt, &r);
    train_progress_log(&wf->view, done, r.loss, r.top1, r.top5, r.lr, r.images_per_s);
    wf->win_loss = wf->win_top1 = wf->win_top5 = wf->win_count = 0.0;
    wf->win_t0 = t;
    return 0;
}

static int write_best(train_wf *wf, core_error *err)
{
    if (!wf->s.ckpt_dir)
        return 0;
    if (train_optim_gather(wf->s.w, wf->s.opt, wf->s.sharded, err) != 0)
        return -1;
    char dir[1024], path[1024], old[1024];
    snprintf(dir, sizeof dir, "%s/best", wf->s.ckpt_dir);
    snprintf(old, sizeof old, "%s", wf->best_path);
    int failed = train_checkpoint_save(wf->s.w, dir, wf->s.model, wf->s.opt, wf->s.prog,
                                       wf->s.config_text, path, sizeof path, err) != 0;
    if (wf->rank == 0) {
        if (!failed) {
            if (old[0] && strcmp(old, path) != 0)
                unlink(old);
            snprintf(wf->best_path, sizeof wf->best_path, "%s", path);
        }
    }
    return train_agree(wf->s.w, failed, err);
}

/* Collective: evaluates the validation split, records it, and feeds early stopping. */
static int validate(train_wf *wf, long done, char *line, size_t len, core_error *err)
{
    if (!wf->val_ld)
        return 0;
    if (train_eval_loader(wf->s.w, wf->s.model, wf->val_ld, &wf->ev, err) != 0)
        return core_error_prefix(err, "validation");
    long step = wf->s.prog->step;
    train_metrics_eval(&wf->mt, "val", step, epoch_at(wf, done), &wf->ev, NULL);
    if (line)
        snprintf(line, len, "  |  val loss %.4f acc %.2f%%", train_eval_loss(&wf->ev),
                 100.0 * train_eval_top1(&wf->ev));
    if (!wf->es_on)
        return 0;
    const char *m = wf->wc.early_metric;
    double v = strcmp(m, "val_loss") == 0   ? train_eval_loss(&wf->ev)
               : strcmp(m, "val_top1") == 0 ? train_eval_top1(&wf->ev)
                                            : train_eval_top5(&wf->ev);
    int better = train_early_stop_observe(&wf->es, v, step, (int)wf->epoch + 1,
                                          nn_model_params(wf->s.model));
    if (better)
        return write_best(wf, err);
    if (wf->es.stop)
        core_log_info("early stopping: %s has not improved by more than %g for %d evaluations "
                      "(best %.5g at epoch %d, step %ld)",
                      m, (double)wf->wc.min_delta, wf->wc.patience, wf->es.best, wf->es.best_epoch,
                      wf->es.best_step);
    return 0;
}

void train_wf_observe(train_wf *wf, const int32_t *labels, int rows)
{
    const float *probs = nn_model_probs(wf->s.model);
    int classes = nn_model_num_classes(wf->s.model), k5 = classes < 5 ? classes : 5;
    for (int i = 0; i < rows; i++) {
        int r = train_eval_label_rank(probs + (size_t)i * (size_t)classes, classes, labels[i]);
        wf->win_top1 += r == 0;
        wf->win_top5 += r < k5;
    }
}

int train_wf_after_step(train_wf *wf, long done, int n, double loss_sum, core_error *err)
{
    wf->win_loss += loss_sum;
    wf->win_count += n;
    wf->done = done;
    train_progress_step(&wf->view, done);
    if (wf->s.log_every > 0 && wf->s.prog->step % wf->s.log_every == 0 &&
        flush_window(wf, done, err) != 0)
        return -1;
    if (wf->wc.eval_every > 0 && wf->s.prog->step % wf->wc.eval_every == 0 && !wf->es.stop)
        return validate(wf, done, NULL, 0, err);
    return 0;
}

int train_wf_epoch_end(train_wf *wf, char *line, size_t len, double *test_loss, double *test_acc,
                       core_error *err)
{
    long done = wf->done;
    if (wf->win_count > 0 || wf->s.log_every <= 0)
        if (flush_window(wf, done, err) != 0)
            return -1;
    train_progress_epoch_end(&wf->view);
    size_t k = strlen(line);
    if (wf->s.test_ld) {
        if (train_eval_loader(wf->s.w, wf->s.model, wf->s.test_ld, &wf->ev, err) != 0)
            return -1;
        train_metrics_eval(&wf->mt, "test", wf->s.prog->step, epoch_at(wf, done), &wf->ev, NULL);
        *test_loss = train_eval_loss(&wf->ev);
        *test_acc = train_eval_top1(&wf->ev);
        snprintf(line + k, len - k, "  |  test loss %.4f acc %.2f%%", *test_loss,
                 100.0 * *test_acc);
        k = strlen(line);
    }
    if (wf->wc.eval_every > 0 || wf->es.stop)
        return 0;
    return validate(wf, done, line + k, len - k, err);
}

int train_wf_should_stop(const train_wf *wf)
{
    return wf && wf->es.stop;
}

/* Collective: a 62-bit checksum of the parameter bytes must be the same on every rank. */
static int check_replicas(train_wf *wf, core_error *err)
{
    const unsigned char *p = (const unsigned char *)nn_model_params(wf->s.model);
    size_t n = nn_model_param_count(wf->s.model) * sizeof(float);
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    int32_t v[4] = {(int32_t)(h & 0x7fffffff), (int32_t)((h >> 32) & 0x7fffffff), 0, 0};
    v[2] = -v[0];
    v[3] = -v[1];
    if (dist_max_i32(wf->s.w, v, 4, err) != 0)
        return -1;
    if (v[0] != -v[2] || v[1] != -v[3])
        return core_error_set(err, "the ranks' parameters differ after training (replicas "
                                   "diverged); this is a bug, please report it");
    core_log_info("replicas: parameters identical on all %d rank(s) (checksum %08x%08x)", wf->size,
                  (unsigned)v[1], (unsigned)v[0]);
    return 0;
}

int train_wf_finish(train_wf *wf, double *test_loss, double *test_acc, core_error *err)
{
    if (!wf)
        return 0;
    if (wf->es_on && isfinite(wf->es.best))
        core_log_info("best %s %.5g at epoch %d (step %ld)%s%s", wf->wc.early_metric, wf->es.best,
                      wf->es.best_epoch, wf->es.best_step, wf->best_path[0] ? ": " : "",
                      wf->best_path);
    if (wf->wc.restore_best &&
        train_early_stop_restore(&wf->es, nn_model_params(wf->s.model)) == 0) {
        if (train_eval_loader(wf->s.w, wf->s.model, wf->val_ld, &wf->ev, err) != 0)
            return -1;
        train_metrics_eval(&wf->mt, "val", wf->es.best_step, (double)wf->es.best_epoch, &wf->ev,
                           "\"restored_best\":true");
        char line[256];
        int k = snprintf(line, sizeof line, "restored best weights: val loss %.4f acc %.2f%%",
                         train_eval_loss(&wf->ev), 100.0 * train_eval_top1(&wf->ev));
        if (wf->s.test_ld) {
            if (train_eval_loader(wf->s.w, wf->s.model, wf->s.test_ld, &wf->ev, err) != 0)
                return -1;
            train_metrics_eval(&wf->mt, "test", wf->es.best_step, (double)wf->es.best_epoch,
                               &wf->ev, "\"restored_best\":true");
            *test_loss = train_eval_loss(&wf->ev);
            *test_acc = train_eval_top1(&wf->ev);
            snprintf(line + k, sizeof line - (size_t)k, "  |  test loss %.4f acc %.2f%%",
                     *test_loss, 100.0 * *test_acc);
        }
        core_log_info("%s", line);
    }
    return check_replicas(wf, err);
}
