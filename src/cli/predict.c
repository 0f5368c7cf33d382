/*
 * cli/predict.c: `ringtrain predict`: class, probability and top-k of each
 * input, from samples of an HDF5 file or from image files of the model's
 * input size (binary PGM "P5" for one channel, PPM "P6" for three; 8 or 16
 * bits, scaled to [0, 1] like the uint8 datasets). Float and int8
 * checkpoints alike. Rank 0 does the work; other ranks only help load.
 *
 * Output, one line per input:
 *   <input>  class <c>  p <prob>  top-<k> c1:p1 c2:p2 ...  [label <l>]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/mem.h"
#include "data/data.h"
#include "train/eval.h"
#include "train/model_load.h"

typedef struct predict_args {
    const char *ckpt, *data, *images, *x_name, *y_name, *layout;
    long limit, start;
    int topk, help;
    data_image_layout lay;
    int need_labels; /* --y-name given: its labels must be there */
} predict_args;

static int pnm_int(FILE *f, long *out)
{
    int c = fgetc(f);
    for (;;) {
        while (c == ' ' || c == '\t' || c == '\n' || c == '\r')
            c = fgetc(f);
        if (c != '#')
            break;
        while (c != '\n' && c != EOF)
            c = fgetc(f);
    }
    long v = 0;
    int digits = 0;
    while (c >= '0' && c <= '9') {
        v = v * 10 + (c - '0');
        digits++;
        if (v > 1 << 20)
            return -1;
        c = fgetc(f);
    }
    *out = v;
    return digits ? 0 : -1; /* the one whitespace after maxval is consumed by the last fgetc */
}

/* Reads a P5/P6 image of exactly the model's (C, H, W) into x (C,H,W order). */
static int read_pnm(const char *path, const int *dims, int ndim, float *x, core_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return core_error_set(err, "%s: cannot open: %s", path, strerror(errno));
    char magic[3] = {0};
    long w = 0, h = 0, maxv = 0;
    int rc = 0;
    if (fread(magic, 1, 2, f) != 2 || magic[0] != 'P' || (magic[1] != '5' && magic[1] != '6') ||
        pnm_int(f, &w) || pnm_int(f, &h) || pnm_int(f, &maxv) || maxv <= 0 || maxv > 65535)
        rc = core_error_set(err, "%s: not a binary PGM (P5) or PPM (P6) image", path);
    int chans = magic[1] == '6' ? 3 : 1;
    int want_c = ndim == 3 ? dims[0] : 1, want_h = ndim == 3 ? dims[1] : 0,
        want_w = ndim == 3 ? dims[2] : 0;
    if (rc == 0 && (ndim != 3 || chans != want_c || h != want_h || w != want_w))
        rc = core_error_set(err,
                            "%s: image is %ldx%ld with %d channel(s); the model takes %dx%d with "
                            "%d (resize it, e.g. with netpbm's pamscale)",
                            path, w, h, chans, want_w, want_h, want_c);
    int bytes = maxv > 255 ? 2 : 1;
    for (long i = 0; rc == 0 && i < w * h; i++)
        for (int c = 0; c < chans; c++) {
            int hi = fgetc(f), lo = bytes == 2 ? fgetc(f) : 0;
            if (hi == EOF || lo == EOF) {
                rc = core_error_set(err, "%s: truncated image data", path);
                break;
            }
            long v = bytes == 2 ? (hi << 8 | lo) : hi;
            x[(size_t)c * (size_t)(w * h) + (size_t)i] = (float)v / (float)maxv;
        }
    fclose(f);
    return rc;
}

static void print_one(const char *what, const float *p, int classes, int topk, int label)
{
    char line[2048];
    int best = train_eval_argmax(p, classes);
    int k = snprintf(line, sizeof line, "%s  class %d  p %.4f  top-%d", what, best, (double)p[best],
                     topk);
    int used[512] = {0};
    for (int t = 0; t < topk && t < classes && t < 512; t++) {
        int b = -1;
        for (int c = 0; c < classes && c < 512; c++)
            if (!used[c] && (b < 0 || p[c] > p[b]))
                b = c;
        used[b] = 1;
        k += snprintf(line + k, sizeof line - (size_t)k, " %d:%.4f", b, (double)p[b]);
    }
    if (label >= 0)
        snprintf(line + k, sizeof line - (size_t)k, "  label %d", label);
    printf("%s\n", line);
}

static int predict_h5(nn_model *m, const predict_args *a, core_error *err)
{
    data_dataset *d = NULL;
    int classes = nn_model_num_classes(m);
    if ((a->need_labels
             ? data_dataset_open(a->data, a->x_name, a->y_name, classes, &d, err)
             : data_dataset_open_unlabeled(a->data, a->x_name, a->y_name, classes, &d, err)) != 0)
        return -1;
    int labeled = data_dataset_has_labels(d);
    int rc = 0;
    size_t n = data_dataset_count(d), start = (size_t)a->start;
    if (start >= n)
        rc = core_error_set(err, "%s: --start %zu but the file has %zu samples", a->data, start, n);
    if (rc == 0)
        rc = cli_match_input(d, m, a->lay, a->ckpt, err);
    size_t end = a->limit > 0 && start + (size_t)a->limit < n ? start + (size_t)a->limit : n;
    int batch = nn_model_max_batch(m);
    float *x = rc ? NULL : core_alloc((size_t)batch * nn_model_input_size(m) * 4, "batch", err);
    int32_t *y = x ? core_alloc((size_t)batch * 4, "labels", err) : NULL;
    long hits = 0;
    for (size_t i = start; y && rc == 0 && i < end; i += (size_t)batch) {
        int cnt = (int)(end - i < (size_t)batch ? end - i : (size_t)batch);
        rc = data_dataset_read(d, i, (size_t)cnt, x, y, err);
        if (rc)
            break;
        nn_model_forward(m, x, NULL, cnt, 0, NULL);
        const float *p = nn_model_probs(m);
        for (int j = 0; j < cnt; j++) {
            char what[64];
            snprintf(what, sizeof what, "%zu", i + (size_t)j);
            print_one(what, p + (size_t)j * (size_t)classes, classes, a->topk, y[j]);
            const float *pj = p + (size_t)j * (size_t)classes; /* a NaN row is never a hit */
            hits += train_eval_label_rank(pj, classes, y[j]) < classes &&
                    train_eval_argmax(pj, classes) == y[j];
        }
    }
    if (rc == 0 && y && end > start && labeled)
        printf("accuracy %.2f%% on %zu samples\n", 100.0 * (double)hits / (double)(end - start),
               end - start);
    if (!y && rc == 0)
        rc = -1;
    core_free(x);
    core_free(y);
    data_dataset_close(d);
    return rc;
}

static int predict_images(nn_model *m, const predict_args *a, core_error *err)
{
    int dims[NN_MAX_DIMS], nd = nn_model_input_dims(m, dims), classes = nn_model_num_classes(m);
    float *x = core_alloc(nn_model_input_size(m) * sizeof(float), "image", err);
    if (!x)
        return -1;
    char *list = strdup(a->images);
    int rc = list ? 0 : core_error_set(err, "out of memory");
    char *save = NULL;
    for (char *p = list ? strtok_r(list, ",", &save) : NULL; p && rc == 0;
         p = strtok_r(NULL, ",", &save)) {
        rc = read_pnm(p, dims, nd, x, err);
        if (rc)
            break;
        nn_model_forward(m, x, NULL, 1, 0, NULL);
        print_one(p, nn_model_probs(m), classes, a->topk, -1);
    }
    free(list);
    core_free(x);
    return rc;
}

int cli_predict_main(dist_world *w, int argc, char **argv)
{
    predict_args a = {NULL, NULL, NULL, "images", "labels",        "auto",
                      10,   0,    3,    0,        DATA_IMAGE_AUTO, 0};
    cli_flag flags[] = {
        {"--checkpoint", "FILE|DIR", CLI_STRING, &a.ckpt, "checkpoint (float or int8)", 1, 0},
        {"--data", "FILE", CLI_STRING, &a.data,
         "HDF5 file with samples; labels, when it has them, are printed and scored", 0, 0},
        {"--images", "A.pgm,B.pgm", CLI_STRING, &a.images,
         "comma-separated PGM (P5) / PPM (P6) images of the model's input size", 0, 0},
        {"--start", "I", CLI_NONNEG_LONG, &a.start, "first sample of --data", 0, 0},
        {"--limit", "N", CLI_NONNEG_LONG, &a.limit, "samples of --data (0: all)", 0, 0},
        {"--top-k", "K", CLI_POS_INT, &a.topk, "classes listed per input", 0, 0},
        {"--x-name", "NAME", CLI_STRING, &a.x_name, "name of the sample dataset", 0, 0},
        {"--y-name", "NAME", CLI_STRING, &a.y_name, "name of the label dataset", 0, 0},
        {"--layout", "auto|nchw|nhwc", CLI_STRING, &a.layout,
         "axis order of image samples (nhwc: channels-last)", 0, 0},
        {"--help", NULL, CLI_FLAG, &a.help, "show this help", 0, 0},
        {NULL, NULL, 0, NULL, NULL, 0, 0},
    };
    core_error err = {{0}};
    int speak = dist_rank(w) == 0;
    int rc = cli_args_command(flags, argc, argv, 2,
                              "predict --checkpoint FILE|DIR (--data FILE | --images LIST) [flags]",
                              speak, &err);
    if (rc == 0 && !a.data == !a.images)
        rc = core_error_set(&err, "give exactly one of --data FILE and --images LIST");
    if (rc == 0)
        rc = data_image_layout_parse(a.layout, &a.lay, &err);
    a.need_labels = rc == 0 && cli_args_find(flags, "--y-name")->seen;
    if (rc != 0)
        return rc > 0 ? 0 : cli_usage_error("predict", speak, &err);
    train_loaded ld;
    rc = train_model_load(w, a.ckpt, 64, &ld, &err);
    if (rc == 0 && dist_rank(w) == 0)
        rc = a.data ? predict_h5(ld.model, &a, &err) : predict_images(ld.model, &a, &err);
    rc = train_agree(w, rc != 0, &err);
    train_loaded_free(&ld);
    return rc == 0 ? 0 : cli_run_error(speak, &err);
}
