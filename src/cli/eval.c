/*
 * cli/eval.c: `ringtrain eval`: any checkpoint (float or int8), any HDF5
 * split, any number of ranks. Each rank evaluates its shard; the totals are
 * reduced; rank 0 prints loss, top-1, top-5, per-class accuracy and the
 * confusion matrix, and can append the evaluation as one JSON line.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "core/log.h"
#include "data/data.h"
#include "train/eval.h"
#include "train/metrics.h"
#include "train/model_load.h"

typedef struct eval_args {
    const char *ckpt, *data, *x_name, *y_name, *json, *split, *layout;
    long limit;
    int batch, help;
    data_image_layout lay;
} eval_args;

static void print_report(const train_eval *e, const char *path, const char *data, int int8)
{
    core_log_info("%s%s on %s: %.0f samples  loss %.4f  top-1 %.2f%%  top-5 %.2f%%", path,
                  int8 ? " (int8)" : "", data, e->count, train_eval_loss(e),
                  100.0 * train_eval_top1(e), 100.0 * train_eval_top5(e));
    if (!e->confusion) /* a language model's vocabulary: no per-class report (eval.h) */
        return;
    core_log_info("per-class accuracy:");
    for (int c = 0; c < e->classes; c++)
        core_log_info("  class %2d  %6.2f%%", c, 100.0 * train_eval_class_accuracy(e, c));
    char line[4096];
    int k = snprintf(line, sizeof line, "confusion (rows: true class, columns: predicted):\n     ");
    for (int c = 0; c < e->classes && k < (int)sizeof line; c++)
        k += snprintf(line + k, sizeof line - (size_t)k, "%6d", c);
    core_log_info("%s", line);
    for (int r = 0; r < e->classes; r++) {
        k = snprintf(line, sizeof line, "  %2d ", r);
        for (int c = 0; c < e->classes && k < (int)sizeof line; c++)
            k += snprintf(line + k, sizeof line - (size_t)k, "%6.0f",
                          e->confusion[(size_t)r * (size_t)e->classes + (size_t)c]);
        core_log_info("%s", line);
    }
}

/* Rank 0 opens the --json file before any work, so a bad path ends the run
 * at once instead of after the evaluation. */
static int open_json(const char *path, FILE **out, core_error *err)
{
    *out = NULL;
    if (!path)
        return 0;
    *out = strcmp(path, "-") == 0 ? stdout : fopen(path, "a");
    if (!*out)
        return core_error_set(err, "%s: cannot open the --json file: %s", path, strerror(errno));
    return 0;
}

static int run(dist_world *w, const eval_args *a, core_error *err)
{
    int rank = dist_rank(w), size = dist_size(w);
    int local = a->batch / size + 1;
    FILE *jf = NULL;
    if (train_agree(w, rank == 0 && open_json(a->json, &jf, err) != 0, err) != 0)
        return -1;
    train_loaded ld;
    if (train_model_load(w, a->ckpt, local, &ld, err) != 0) {
        train_loaded_free(&ld);
        if (jf && jf != stdout)
            fclose(jf);
        return -1;
    }
    data_dataset *ds = NULL;
    data_loader *loader = NULL;
    train_eval e = {0};
    int failed = data_dataset_open(a->data, a->x_name, a->y_name, nn_model_num_classes(ld.model),
                                   &ds, err) != 0;
    if (!failed)
        failed = cli_match_input(ds, ld.model, a->lay, ld.path, err) != 0;
    if (!failed) {
        size_t n = data_dataset_count(ds);
        if (a->limit > 0 && (size_t)a->limit < n)
            n = (size_t)a->limit;
        data_loader_config lc = {0};
        data_shard_range(n, rank, size, &lc.shard_start, &lc.shard_count);
        lc.batch = local;
        lc.rank = rank;
        failed = data_loader_create(ds, &lc, &loader, err) != 0 ||
                 train_eval_create(&e, nn_model_num_classes(ld.model), err) != 0;
    }
    int rc = train_agree(w, failed, err);
    if (rc == 0)
        rc = train_eval_loader(w, ld.model, loader, &e, err);
    if (rc == 0 && rank == 0) {
        print_report(&e, ld.path, a->data, ld.int8);
        if (jf) {
            char extra[1200];
            snprintf(extra, sizeof extra, "\"checkpoint\":\"%s\",\"data\":\"%s\",\"int8\":%s",
                     ld.path, a->data, ld.int8 ? "true" : "false");
            train_metrics_write_eval(jf, a->split, ld.step, ld.epoch, &e, extra);
        }
    }
    if (jf && jf != stdout)
        fclose(jf);
    train_eval_free(&e);
    data_loader_free(loader);
    data_dataset_close(ds);
    train_loaded_free(&ld);
    return rc;
}

int cli_eval_main(dist_world *w, int argc, char **argv)
{
    eval_args a = {NULL,   NULL, "images", "labels", NULL,           "eval",
                   "auto", 0,    256,      0,        DATA_IMAGE_AUTO};
    cli_flag flags[] = {
        {"--checkpoint", "FILE|DIR", CLI_STRING, &a.ckpt,
         "checkpoint (float or int8) or checkpoint directory", 1, 0},
        {"--data", "FILE", CLI_STRING, &a.data, "HDF5 split to evaluate", 1, 0},
        {"--x-name", "NAME", CLI_STRING, &a.x_name, "name of the sample dataset", 0, 0},
        {"--y-name", "NAME", CLI_STRING, &a.y_name, "name of the label dataset", 0, 0},
        {"--layout", "auto|nchw|nhwc", CLI_STRING, &a.layout,
         "axis order of image samples (nhwc: channels-last)", 0, 0},
        {"--limit", "N", CLI_NONNEG_LONG, &a.limit, "only the first N samples (0: all)", 0, 0},
        {"--batch-size", "N", CLI_POS_INT, &a.batch, "global batch", 0, 0},
        {"--json", "FILE", CLI_STRING, &a.json,
         "append the evaluation as one JSON line (- for stdout); `ringtrain plot` draws it", 0, 0},
        {"--split", "NAME", CLI_STRING, &a.split, "split name in the JSON record", 0, 0},
        {"--help", NULL, CLI_FLAG, &a.help, "show this help", 0, 0},
        {NULL, NULL, 0, NULL, NULL, 0, 0},
    };
    core_error err = {{0}};
    int speak = dist_rank(w) == 0;
    int rc = cli_args_command(flags, argc, argv, 2,
                              "eval --checkpoint FILE|DIR --data FILE [flags]", speak, &err);
    if (rc == 0)
        rc = data_image_layout_parse(a.layout, &a.lay, &err);
    if (rc != 0)
        return rc > 0 ? 0 : cli_usage_error("eval", speak, &err);
    return run(w, &a, &err) == 0 ? 0 : cli_run_error(speak, &err);
}

int cli_match_input(data_dataset *d, const nn_model *m, data_image_layout layout,
                    const char *ckpt_path, core_error *err)
{
    int dims[NN_MAX_DIMS];
    int nd = nn_model_input_dims(m, dims);
    char spec[1100];
    snprintf(spec, sizeof spec, "the model spec in %s", ckpt_path);
    return data_dataset_match_input(d, dims, nd, layout, spec, err);
}
