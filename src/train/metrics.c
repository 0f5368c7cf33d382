/*
 * train/metrics.c: the JSON-lines metrics file (see metrics.h).
 */
#include "train/metrics.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void num(FILE *f, const char *key, double v)
{
    if (isfinite(v))
        fprintf(f, ",\"%s\":%.9g", key, v);
    else
        fprintf(f, ",\"%s\":null", key);
}

static double wall_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int make_parent(const char *path, core_error *err)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0755) != 0 && errno != EEXIST)
            return core_error_set(err, "%s: cannot create directory for the metrics file: %s", dir,
                                  strerror(errno));
        *p = '/';
    }
    return 0;
}

int train_metrics_open(train_metrics *mt, const char *path, int append, core_error *err)
{
    memset(mt, 0, sizeof *mt);
    if (make_parent(path, err) != 0)
        return -1;
    mt->f = fopen(path, append ? "a" : "w");
    if (!mt->f)
        return core_error_set(err, "%s: cannot open the metrics file: %s", path, strerror(errno));
    snprintf(mt->path, sizeof mt->path, "%s", path);
    return 0;
}

static long record_step(const char *line)
{
    const char *p = strstr(line, "\"step\":");
    return p ? strtol(p + 7, NULL, 10) : -1;
}

int train_metrics_rewind(const char *path, long step, long *dropped, core_error *err)
{
    *dropped = 0;
    FILE *in = fopen(path, "r");
    if (!in)
        return errno == ENOENT ? 0
                               : core_error_set(err, "%s: cannot read the metrics file: %s", path,
                                                strerror(errno));
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *out = fopen(tmp, "w");
    if (!out) {
        fclose(in);
        return core_error_set(err, "%s: cannot create: %s", tmp, strerror(errno));
    }
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, in) > 0) {
        if (record_step(line) > step)
            (*dropped)++;
        else
            fputs(line, out);
    }
    free(line);
    fclose(in);
    int failed = fclose(out) != 0;
    if (failed || *dropped == 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        if (failed || *dropped > 0)
            return core_error_set(err, "%s: cannot rewrite the metrics file: %s", path,
                                  strerror(e));
    }
    return 0;
}

void train_metrics_close(train_metrics *mt)
{
    if (mt->f)
        fclose(mt->f);
    mt->f = NULL;
}

void train_metrics_step(train_metrics *mt, const train_step_record *r)
{
    if (!mt->f)
        return;
    fprintf(mt->f, "{\"type\":\"train\"");
    fprintf(mt->f, ",\"time\":%.3f", wall_time());
    fprintf(mt->f, ",\"step\":%ld", r->step);
    num(mt->f, "epoch", r->epoch);
    num(mt->f, "lr", r->lr);
    num(mt->f, "loss", r->loss);
    num(mt->f, "top1", r->top1);
    num(mt->f, "top5", r->top5);
    num(mt->f, "images_per_s", r->images_per_s);
    num(mt->f, "grad_norm", r->grad_norm);
    fprintf(mt->f, "}\n");
    fflush(mt->f);
}

void train_metrics_write_eval(FILE *f, const char *split, long step, double epoch,
                              const train_eval *e, const char *extra)
{
    fprintf(f, "{\"type\":\"eval\",\"split\":\"%s\"", split);
    fprintf(f, ",\"time\":%.3f", wall_time());
    fprintf(f, ",\"step\":%ld", step);
    num(f, "epoch", epoch);
    fprintf(f, ",\"count\":%.0f", e->count);
    num(f, "loss", train_eval_loss(e));
    num(f, "top1", train_eval_top1(e));
    num(f, "top5", train_eval_top5(e));
    if (e->confusion) { /* none for a language model's vocabulary (eval.h) */
        fprintf(f, ",\"per_class\":[");
        for (int c = 0; c < e->classes; c++) {
            double a = train_eval_class_accuracy(e, c);
            fprintf(f, c ? "," : "");
            if (isfinite(a))
                fprintf(f, "%.6g", a);
            else
                fprintf(f, "null");
        }
        fprintf(f, "],\"confusion\":[");
        for (int r = 0; r < e->classes; r++) {
            fprintf(f, "%s[", r ? "," : "");
            for (int c = 0; c < e->classes; c++)
                fprintf(f, "%s%.0f", c ? "," : "",
                        e->confusion[(size_t)r * (size_t)e->classes + (size_t)c]);
            fprintf(f, "]");
        }
        fprintf(f, "]");
    }
    if (extra && *extra)
        fprintf(f, ",%s", extra);
    fprintf(f, "}\n");
    fflush(f);
}

void train_metrics_eval(train_metrics *mt, const char *split, long step, double epoch,
                        const train_eval *e, const char *extra)
{
    if (mt->f)
        train_metrics_write_eval(mt->f, split, step, epoch, e, extra);
}
