/*
 * cli/quantize.c: `ringtrain quantize`: post-training int8 quantization of a
 * float checkpoint (train/quantize.h), then a report of size and accuracy
 * before and after. Calibration and writing happen on rank 0; the two
 * evaluations are spread over all ranks.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/commands.h"
#include "core/log.h"
#include "core/mem.h"
#include "data/data.h"
#include "nn/layer.h"
#include "train/checkpoint.h"
#include "train/eval.h"
#include "train/model_load.h"
#include "train/quantize.h"

typedef struct quant_args {
    const char *ckpt, *calib, *test, *out, *x_name, *y_name, *layout;
    long calib_n, test_limit;
    int batch, help;
    data_image_layout lay;
} quant_args;

static double file_bytes(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (double)st.st_size : 0.0;
}

/* Collective evaluation of m on the test file; NAN accuracy when none. */
static int eval_on(dist_world *w, nn_model *m, const quant_args *a, int local, train_eval *e,
                   core_error *err)
{
    int rank = dist_rank(w), size = dist_size(w);
    data_dataset *ds = NULL;
    data_loader *ld = NULL;
    int failed =
        data_dataset_open(a->test, a->x_name, a->y_name, nn_model_num_classes(m), &ds, err) != 0 ||
        cli_match_input(ds, m, a->lay, a->ckpt, err) != 0;
    if (!failed) {
        size_t n = data_dataset_count(ds);
        if (a->test_limit > 0 && (size_t)a->test_limit < n)
            n = (size_t)a->test_limit;
        data_loader_config lc = {0};
        data_shard_range(n, rank, size, &lc.shard_start, &lc.shard_count);
        lc.batch = local;
        lc.rank = rank;
        failed = data_loader_create(ds, &lc, &ld, err) != 0;
    }
    int rc = train_agree(w, failed, err);
    if (rc == 0)
        rc = train_eval_loader(w, m, ld, e, err);
    data_loader_free(ld);
    data_dataset_close(ds);
    return rc;
}

/* Rank 0: calibrate on the float model, write the int8 file, and a float
 * checkpoint without optimizer state for an honest size comparison. */
static int quantize(train_loaded *f, const quant_args *a, double *float_bytes, core_error *err)
{
    nn_model *m = f->model;
    int nl = nn_model_layer_count(m);
    float *scales = core_alloc((size_t)nl * sizeof(float), "scales", err);
    if (!scales)
        return -1;
    data_dataset *cal = NULL;
    int rc = data_dataset_open(a->calib, a->x_name, a->y_name, 0, &cal, err);
    if (rc == 0)
        rc = cli_match_input(cal, m, a->lay, f->path, err);
    if (rc == 0)
        rc = train_quant_calibrate(m, cal, (size_t)a->calib_n, scales, err);
    data_dataset_close(cal);
    if (rc == 0)
        rc = train_quant_write(a->out, m, scales, f->path, err);
    if (rc == 0) {
        char dir[1200], path[1300];
        snprintf(dir, sizeof dir, "%s.floatref", a->out);
        train_progress p = {0};
        if (train_checkpoint_write(dir, m, NULL, &p, "", path, sizeof path, err) == 0) {
            *float_bytes = file_bytes(path);
            unlink(path);
            snprintf(path, sizeof path, "%s/latest", dir);
            unlink(path);
            rmdir(dir);
        } else {
            core_log_warn("could not write a float reference file: %s", err->msg);
            core_error_clear(err);
        }
        core_log_info("int8 input scales (calibrated on %ld samples of %s):", a->calib_n, a->calib);
        for (int i = 0; i < nl; i++)
            if (scales[i] > 0.0f)
                core_log_info("  %-8s %.6g (max |x| %.4g)", nn_model_layer(m, i)->name,
                              (double)scales[i], (double)scales[i] * 127.0);
    }
    core_free(scales);
    return rc;
}

static int run(dist_world *w, const quant_args *a, core_error *err)
{
    int local = a->batch / dist_size(w) + 1, rank = dist_rank(w);
    train_loaded f, q;
    memset(&q, 0, sizeof q);
    double float_bytes = 0.0;
    int rc = train_model_load(w, a->ckpt, local, &f, err);
    if (rc == 0 && f.int8)
        rc = train_agree(w, core_error_set(err, "%s is already int8", f.path) != 0, err);
    if (rc == 0)
        rc = train_agree(w, rank == 0 && quantize(&f, a, &float_bytes, err) != 0, err);
    train_eval ef = {0}, eq = {0};
    if (rc == 0)
        rc = train_model_load(w, a->out, local, &q, err);
    if (rc == 0 && a->test) {
        rc = train_eval_create(&ef, nn_model_num_classes(f.model), err) != 0 ||
                     train_eval_create(&eq, nn_model_num_classes(f.model), err) != 0
                 ? -1
                 : 0;
        if (rc == 0)
            rc = eval_on(w, f.model, a, local, &ef, err);
        if (rc == 0)
            rc = eval_on(w, q.model, a, local, &eq, err);
    }
    if (rc == 0) {
        double pbytes = 4.0 * (double)nn_model_param_count(f.model);
        double qbytes = file_bytes(a->out), cbytes = file_bytes(f.path);
        core_log_info("size: float32 parameters %.0f bytes (checkpoint %s: %.0f bytes; without "
                      "optimizer state: %.0f bytes) -> int8 file %s: %.0f bytes, %.2fx smaller "
                      "than the float file without optimizer state",
                      pbytes, f.path, cbytes, float_bytes, a->out, qbytes,
                      qbytes > 0 ? float_bytes / qbytes : 0.0);
        if (a->test)
            core_log_info(
                "accuracy on %s (%.0f samples): float %.2f%% (top-5 %.2f%%, loss %.4f) "
                "-> int8 %.2f%% (top-5 %.2f%%, loss %.4f): %+.2f points",
                a->test, ef.count, 100.0 * train_eval_top1(&ef), 100.0 * train_eval_top5(&ef),
                train_eval_loss(&ef), 100.0 * train_eval_top1(&eq), 100.0 * train_eval_top5(&eq),
                train_eval_loss(&eq), 100.0 * (train_eval_top1(&eq) - train_eval_top1(&ef)));
    }
    train_eval_free(&ef);
    train_eval_free(&eq);
    train_loaded_free(&f);
    train_loaded_free(&q);
    return rc;
}

int cli_quantize_main(dist_world *w, int argc, char **argv)
{
    quant_args a = {NULL,   NULL, NULL, NULL, "images", "labels",
                    "auto", 512,  0,    256,  0,        DATA_IMAGE_AUTO};
    cli_flag flags[] = {
        {"--checkpoint", "FILE|DIR", CLI_STRING, &a.ckpt, "float checkpoint to quantize", 1, 0},
        {"--calib-data", "FILE", CLI_STRING, &a.calib,
         "HDF5 file to calibrate activations on (the training file)", 1, 0},
        {"--calib-samples", "N", CLI_NONNEG_LONG, &a.calib_n,
         "calibration samples, spread over the file", 0, 0},
        {"--out", "FILE", CLI_STRING, &a.out, "the int8 file to write", 1, 0},
        {"--test-data", "FILE", CLI_STRING, &a.test,
         "HDF5 file to report accuracy before and after on", 0, 0},
        {"--test-limit", "N", CLI_NONNEG_LONG, &a.test_limit, "only the first N test samples", 0,
         0},
        {"--x-name", "NAME", CLI_STRING, &a.x_name, "name of the sample dataset", 0, 0},
        {"--y-name", "NAME", CLI_STRING, &a.y_name, "name of the label dataset", 0, 0},
        {"--layout", "auto|nchw|nhwc", CLI_STRING, &a.layout,
         "axis order of image samples (nhwc: channels-last)", 0, 0},
        {"--batch-size", "N", CLI_POS_INT, &a.batch, "global batch of the evaluations", 0, 0},
        {"--help", NULL, CLI_FLAG, &a.help, "show this help", 0, 0},
        {NULL, NULL, 0, NULL, NULL, 0, 0},
    };
    core_error err = {{0}};
    int speak = dist_rank(w) == 0;
    int rc = cli_args_command(flags, argc, argv, 2,
                              "quantize --checkpoint FILE|DIR --calib-data FILE --out FILE [flags]",
                              speak, &err);
    if (rc == 0 && a.calib_n <= 0)
        rc = core_error_set(&err, "--calib-samples must be positive");
    if (rc == 0)
        rc = data_image_layout_parse(a.layout, &a.lay, &err);
    if (rc != 0)
        return rc > 0 ? 0 : cli_usage_error("quantize", speak, &err);
    return run(w, &a, &err) == 0 ? 0 : cli_run_error(speak, &err);
}
