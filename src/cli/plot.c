/*
 * cli/plot.c: `ringtrain plot`: a metrics file (JSON lines, docs/WORKFLOW.md)
 * as pictures a user would rather look at than read: PREFIX-curves.svg
 * (loss and top-1 accuracy of training, validation and test against the
 * step, with epoch marks) and PREFIX-confusion.svg (the confusion matrix of
 * the last evaluation, cells shaded by the fraction of their true class).
 *
 * SVG is written directly (no dependency); it opens in any browser. Each
 * curve is one <polyline> with data-series="<split>_<metric>" and one point
 * per record, so a test can parse the picture back. The reader only needs
 * the records ringtrain writes, not general JSON.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"

#define MAX_CLASSES 256

typedef struct series {
    const char *name;
    size_t n, cap;
    double *x, *y;
} series;

typedef struct plot_data {
    series s[6]; /* train/val/test loss, train/val/test top1 */
    double max_epoch, steps_per_epoch;
    int classes;
    double conf[MAX_CLASSES * MAX_CLASSES];
    char conf_split[32];
    long conf_step;
} plot_data;

static const char *const names[6] = {"train_loss", "val_loss", "test_loss",
                                     "train_top1", "val_top1", "test_top1"};
static const char *const colors[3] = {"#1f77b4", "#ff7f0e", "#2ca02c"};

static int get_num(const char *line, const char *key, double *out)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    if (!p)
        return 0;
    p += strlen(pat);
    if (strncmp(p, "null", 4) == 0)
        return 0;
    char *end = NULL;
    double v = strtod(p, &end);
    if (end == p)
        return 0;
    *out = v;
    return 1;
}

static int get_str(const char *line, const char *key, char *out, size_t len)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *p = strstr(line, pat);
    if (!p)
        return 0;
    p += strlen(pat);
    const char *q = strchr(p, '"');
    if (!q)
        return 0;
    snprintf(out, len, "%.*s", (int)(q - p), p);
    return 1;
}

static int push(series *s, double x, double y)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        double *nx = realloc(s->x, cap * sizeof *nx),
               *ny = nx ? realloc(s->y, cap * sizeof *ny) : NULL;
        if (nx)
            s->x = nx;
        if (!ny)
            return -1;
        s->y = ny;
        s->cap = cap;
    }
    s->x[s->n] = x;
    s->y[s->n] = y;
    s->n++;
    return 0;
}

/* The confusion matrix of an eval record: rows of numbers in brackets. */
static int read_confusion(const char *line, plot_data *d)
{
    const char *p = strstr(line, "\"confusion\":[");
    if (!p)
        return 0;
    p += strlen("\"confusion\":[");
    int r = 0, c = 0, cols = 0;
    while (*p && *p != '\n') {
        if (*p == '[') {
            c = 0;
            p++;
        } else if (*p == ']') {
            if (c == 0)
                break; /* the outer ']' */
            cols = c;
            r++;
            c = 0;
            p++;
            if (*p == ']')
                break;
        } else if (*p == ',') {
            p++;
        } else {
            char *end = NULL;
            double v = strtod(p, &end);
            if (end == p || r >= MAX_CLASSES || c >= MAX_CLASSES)
                return 0;
            d->conf[r * MAX_CLASSES + c++] = v;
            p = end;
        }
    }
    if (r == 0 || r != cols)
        return 0;
    d->classes = r;
    return 1;
}

static int read_metrics(const char *path, const char *conf_split, plot_data *d, char *err,
                        size_t elen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, elen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 1 << 16;
    char *line = malloc(cap);
    int lineno = 0, rc = 0;
    while (rc == 0 && line && fgets(line, (int)cap, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == cap - 1 && line[len - 1] != '\n') {
            snprintf(err, elen, "%s:%d: line longer than %zu bytes", path, lineno, cap);
            rc = -1;
            break;
        }
        if (len <= 1)
            continue;
        char type[16] = "", split[32] = "";
        double step = 0, epoch = 0, loss = NAN, top1 = NAN;
        if (line[0] != '{' || !get_str(line, "type", type, sizeof type) ||
            !get_num(line, "step", &step)) {
            snprintf(err, elen, "%s:%d: not a ringtrain metrics record", path, lineno);
            rc = -1;
            break;
        }
        get_num(line, "epoch", &epoch);
        get_num(line, "loss", &loss);
        get_num(line, "top1", &top1);
        if (epoch > 0 && step > 0)
            d->steps_per_epoch = step / epoch;
        if (epoch > d->max_epoch)
            d->max_epoch = epoch;
        int k = -1;
        if (strcmp(type, "train") == 0) {
            k = 0;
        } else if (strcmp(type, "eval") == 0) {
            get_str(line, "split", split, sizeof split);
            k = strcmp(split, "test") == 0 ? 2 : 1;
            if (strstr(line, "\"restored_best\":true"))
                k = -1; /* a re-evaluation of an earlier step: not a new point */
            if ((!conf_split || strcmp(conf_split, split) == 0) && read_confusion(line, d)) {
                snprintf(d->conf_split, sizeof d->conf_split, "%s", split);
                d->conf_step = (long)step;
            }
        }
        if (k >= 0 && isfinite(loss) && push(&d->s[k], step, loss) != 0)
            rc = -1;
        if (k >= 0 && isfinite(top1) && push(&d->s[k + 3], step, top1) != 0)
            rc = -1;
    }
    if (!line)
        snprintf(err, elen, "out of memory"), rc = -1;
    free(line);
    fclose(f);
    return rc;
}

/* One panel: axes, grid, epoch marks and the three curves of a metric. */
static void panel(FILE *f, const plot_data *d, int first, const char *title, double y0, double top,
                  double max_step)
{
    const double left = 70, w = 520, h = 300;
    double ymin = INFINITY, ymax = -INFINITY;
    for (int k = first; k < first + 3; k++)
        for (size_t i = 0; i < d->s[k].n; i++) {
            ymin = fmin(ymin, d->s[k].y[i]);
            ymax = fmax(ymax, d->s[k].y[i]);
        }
    if (!isfinite(ymin)) {
        ymin = 0;
        ymax = 1;
    }
    if (first == 3) {
        ymax = fmin(1.0, ymax + 0.02);
        ymin = fmax(0.0, ymin - 0.02);
    }
    if (ymax - ymin < 1e-9)
        ymax = ymin + 1;
    fprintf(f, "<g class=\"panel\" data-metric=\"%s\">\n", first ? "top1" : "loss");
    fprintf(f, "<text x=\"%g\" y=\"%g\" font-size=\"15\" font-weight=\"bold\">%s</text>\n", left,
            top - 10, title);
    fprintf(f,
            "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" fill=\"none\" stroke=\"#333\"/>\n",
            left, top, w, h);
    for (int t = 0; t <= 4; t++) {
        double v = ymin + (ymax - ymin) * t / 4.0, yy = top + h - h * t / 4.0;
        fprintf(f, "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"#ddd\"/>\n", left, yy,
                left + w, yy);
        fprintf(f, "<text x=\"%g\" y=\"%g\" font-size=\"11\" text-anchor=\"end\">%.*f%s</text>\n",
                left - 5, yy + 4, first ? 1 : 3, first ? 100 * v : v, first ? "%" : "");
    }
    if (d->steps_per_epoch > 0)
        for (int e = 1; e <= (int)ceil(d->max_epoch); e++) {
            double xx = left + w * e * d->steps_per_epoch / max_step;
            if (xx > left + w + 0.5)
                break;
            fprintf(f,
                    "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"#bbb\" "
                    "stroke-dasharray=\"3,3\"/><text x=\"%g\" y=\"%g\" font-size=\"10\" "
                    "text-anchor=\"middle\">epoch %d</text>\n",
                    xx, top, xx, top + h, xx, top + h + 28, e);
        }
    fprintf(f, "<text x=\"%g\" y=\"%g\" font-size=\"11\" text-anchor=\"middle\">0</text>\n", left,
            top + h + 14);
    fprintf(f, "<text x=\"%g\" y=\"%g\" font-size=\"11\" text-anchor=\"middle\">step %.0f</text>\n",
            left + w, top + h + 14, max_step);
    for (int k = first; k < first + 3; k++) {
        const series *s = &d->s[k];
        if (!s->n)
            continue;
        fprintf(f,
                "<polyline class=\"curve\" data-series=\"%s\" fill=\"none\" stroke=\"%s\" "
                "stroke-width=\"2\" points=\"",
                s->name, colors[k - first]);
        for (size_t i = 0; i < s->n; i++)
            fprintf(f, "%s%.1f,%.1f", i ? " " : "", left + w * s->x[i] / max_step,
                    top + h - h * (s->y[i] - ymin) / (ymax - ymin));
        fprintf(f, "\"/>\n");
        double ly = top + 18 + 16 * (k - first);
        fprintf(f,
                "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"%s\" stroke-width=\"3\"/>"
                "<text x=\"%g\" y=\"%g\" font-size=\"12\">%s</text>\n",
                left + w - 120, ly, left + w - 100, ly, colors[k - first], left + w - 95, ly + 4,
                s->name);
    }
    (void)y0;
    fprintf(f, "</g>\n");
}

static int write_curves(const char *path, const plot_data *d, const char *src)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    double max_step = 1;
    for (int k = 0; k < 6; k++)
        for (size_t i = 0; i < d->s[k].n; i++)
            max_step = fmax(max_step, d->s[k].x[i]);
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"780\" "
               "viewBox=\"0 0 640 780\" font-family=\"sans-serif\">\n"
               "<rect width=\"640\" height=\"780\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"70\" y=\"24\" font-size=\"13\" fill=\"#555\">");
    for (const char *p = src; *p; p++) /* the file name, escaped */
        fputs(*p == '<' ? "&lt;" : *p == '>' ? "&gt;" : *p == '&' ? "&amp;" : (char[2]){*p, 0}, f);
    fprintf(f, "</text>\n");
    panel(f, d, 0, "loss (cross-entropy)", 0, 60, max_step);
    panel(f, d, 3, "top-1 accuracy", 0, 430, max_step);
    fprintf(f, "</svg>\n");
    return fclose(f) == 0 ? 0 : -1;
}

static int write_confusion(const char *path, const plot_data *d)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int n = d->classes;
    double cell = n <= 10 ? 44 : fmax(8, 440.0 / n), left = 80, top = 80;
    double size = left + cell * n + 40;
    fprintf(
        f,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
        "font-family=\"sans-serif\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
        size, size + 20);
    fprintf(f,
            "<text x=\"%g\" y=\"30\" font-size=\"15\" font-weight=\"bold\">confusion matrix (%s, "
            "step %ld)</text>\n",
            left, d->conf_split, d->conf_step);
    fprintf(f,
            "<text x=\"%g\" y=\"60\" font-size=\"12\" text-anchor=\"middle\">predicted "
            "class</text>\n",
            left + cell * n / 2);
    fprintf(f,
            "<text x=\"20\" y=\"%g\" font-size=\"12\" text-anchor=\"middle\" "
            "transform=\"rotate(-90 20 %g)\">true class</text>\n",
            top + cell * n / 2, top + cell * n / 2);
    for (int r = 0; r < n; r++) {
        double row = 0;
        for (int c = 0; c < n; c++)
            row += d->conf[r * MAX_CLASSES + c];
        if (cell >= 20) {
            fprintf(f, "<text x=\"%g\" y=\"%g\" font-size=\"11\" text-anchor=\"end\">%d</text>\n",
                    left - 6, top + cell * (r + 0.5) + 4, r);
            fprintf(f,
                    "<text x=\"%g\" y=\"%g\" font-size=\"11\" text-anchor=\"middle\">%d</text>\n",
                    left + cell * (r + 0.5), top - 6, r);
        }
        for (int c = 0; c < n; c++) {
            double v = d->conf[r * MAX_CLASSES + c], frac = row > 0 ? v / row : 0;
            int shade = (int)(255 - 200 * frac);
            fprintf(f,
                    "<rect class=\"cell\" data-row=\"%d\" data-col=\"%d\" data-count=\"%.0f\" "
                    "x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" fill=\"rgb(%d,%d,255)\" "
                    "stroke=\"#fff\"/>\n",
                    r, c, v, left + cell * c, top + cell * r, cell, cell, shade, shade);
            if (cell >= 20 && v > 0)
                fprintf(f,
                        "<text x=\"%g\" y=\"%g\" font-size=\"10\" text-anchor=\"middle\" "
                        "fill=\"%s\">%.0f</text>\n",
                        left + cell * (c + 0.5), top + cell * (r + 0.5) + 4,
                        frac > 0.5 ? "white" : "black", v);
        }
    }
    fprintf(f, "</svg>\n");
    return fclose(f) == 0 ? 0 : -1;
}

int cli_plot_main(int argc, char **argv)
{
    const char *metrics = NULL, *out = NULL, *split = NULL;
    int help = 0;
    cli_flag flags[] = {
        {"--metrics", "FILE", CLI_STRING, &metrics,
         "metrics file (train's metrics.jsonl, or eval --json output)", 1, 0},
        {"--out", "PREFIX", CLI_STRING, &out, "writes PREFIX-curves.svg and PREFIX-confusion.svg",
         1, 0},
        {"--split", "NAME", CLI_STRING, &split,
         "confusion matrix of the last evaluation of this split (default: the last one)", 0, 0},
        {"--help", NULL, CLI_FLAG, &help, "show this help", 0, 0},
        {NULL, NULL, 0, NULL, NULL, 0, 0},
    };
    core_error err = {{0}};
    int parsed = cli_args_command(flags, argc, argv, 2,
                                  "plot --metrics FILE --out PREFIX [--split NAME]", 1, &err);
    if (parsed != 0)
        return parsed > 0 ? 0 : cli_usage_error("plot", 1, &err);
    plot_data *d = calloc(1, sizeof *d);
    if (!d) {
        fprintf(stderr, "ringtrain: error: out of memory\n");
        return 1;
    }
    for (int k = 0; k < 6; k++)
        d->s[k].name = names[k];
    char msg[1200], path[1100];
    int rc = read_metrics(metrics, split, d, msg, sizeof msg);
    size_t points = 0;
    for (int k = 0; k < 6; k++)
        points += d->s[k].n;
    if (rc == 0 && points == 0 && d->classes == 0) {
        snprintf(msg, sizeof msg, "%s: no records to plot", metrics);
        rc = -1;
    }
    if (rc == 0 && points > 0) {
        snprintf(path, sizeof path, "%s-curves.svg", out);
        if (write_curves(path, d, metrics) != 0) {
            snprintf(msg, sizeof msg, "%s: cannot write: %s", path, strerror(errno));
            rc = -1;
        } else {
            printf("wrote %s\n", path);
        }
    }
    if (rc == 0 && d->classes > 0) {
        snprintf(path, sizeof path, "%s-confusion.svg", out);
        if (write_confusion(path, d) != 0) {
            snprintf(msg, sizeof msg, "%s: cannot write: %s", path, strerror(errno));
            rc = -1;
        } else {
            printf("wrote %s\n", path);
        }
    }
    for (int k = 0; k < 6; k++) {
        free(d->s[k].x);
        free(d->s[k].y);
    }
    free(d);
    if (rc != 0)
        fprintf(stderr, "ringtrain: error: %s\n", msg);
    return rc == 0 ? 0 : 1;
}
