/*
 * datasets/rt_text2h5.c: plain text -> ringtrain token files (data/tokens.h,
 * docs/SEQUENCE_MODELS.md).
 *
 * Language modelling (default):
 *   rt_text2h5 --out PREFIX [--tokenizer char|byte|bpe] [--vocab-size N]
 *              [--val-fraction F] FILE...
 * holds out the last F of every FILE, concatenates the rest of the FILEs (in
 * the order given) into the training text and the held-out ends into the
 * validation text, tokenizes both with one vocabulary and writes
 * PREFIX-train.h5 and PREFIX-val.h5. The char vocabulary is the
 * bytes of the whole text (so validation has no unknown characters); BPE
 * merges are learned on the training text only.
 *
 * Text classification:
 *   rt_text2h5 --classify --out PREFIX [--length T] [--separator LINE]
 *              [--test-fraction F] FILE...
 * one class per FILE, one sample per record (records are separated by lines
 * equal to the separator, default "%", the fortune(6) format). A sample is
 * the first T character tokens of its record, padded with spaces; records
 * shorter than 8 bytes are skipped. Samples are shuffled (fixed seed) and
 * split into PREFIX-train.h5 and PREFIX-test.h5 with datasets "text" (N, T)
 * uint16 token ids (train with --x-name text) and "labels" (N,) uint8, the
 * vocabulary group, and the attribute class_names.
 */
#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "data/data.h"
#include "data/tokens.h"

typedef struct text2h5_options {
    const char *out;
    data_tok_kind kind;
    int vocab_size;
    double val_fraction;
    int classify;
    int length;
    const char *separator;
    int nfiles;
    char **files;
} text2h5_options;

static int read_all(const char *path, uint8_t **buf, size_t *len, core_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return core_error_set(err, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    uint8_t *b = malloc(cap);
    while (b) {
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
        if (n == cap) {
            uint8_t *bigger = realloc(b, cap * 2);
            if (!bigger) {
                free(b);
                b = NULL;
                break;
            }
            b = bigger;
            cap *= 2;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!b || bad) {
        free(b);
        return core_error_set(err, "%s: %s", path, b ? "read error" : "out of memory");
    }
    *buf = b;
    *len = n;
    return 0;
}

/* Reads the files into one buffer: the first (1-F) of every file, in order,
 * then the last F of every file; *n_val is the length of that second part. */
static int read_corpus(const text2h5_options *o, uint8_t **text, size_t *n, size_t *n_val,
                       core_error *err)
{
    uint8_t **parts = calloc((size_t)o->nfiles, sizeof *parts);
    size_t *lens = calloc((size_t)o->nfiles, sizeof *lens), total = 0, val = 0;
    int rc = parts && lens ? 0 : core_error_set(err, "out of memory");
    for (int i = 0; rc == 0 && i < o->nfiles; i++) {
        rc = read_all(o->files[i], &parts[i], &lens[i], err);
        total += lens[i];
        val += (size_t)((double)lens[i] * o->val_fraction);
    }
    *text = rc == 0 ? malloc(total + 1) : NULL;
    if (rc == 0 && !*text)
        rc = core_error_set(err, "out of memory for %zu bytes", total);
    if (rc == 0 && total == 0)
        rc = core_error_set(err, "the input text is empty");
    size_t a = 0, b = total - val;
    for (int i = 0; rc == 0 && i < o->nfiles; i++) {
        size_t hold = (size_t)((double)lens[i] * o->val_fraction);
        memcpy(*text + a, parts[i], lens[i] - hold);
        memcpy(*text + b, parts[i] + lens[i] - hold, hold);
        a += lens[i] - hold;
        b += hold;
    }
    for (int i = 0; parts && i < o->nfiles; i++)
        free(parts[i]);
    free(parts);
    free(lens);
    *n = total;
    *n_val = val;
    return rc;
}

static int language_model(const text2h5_options *o, core_error *err)
{
    uint8_t *text = NULL;
    size_t n, n_val;
    if (read_corpus(o, &text, &n, &n_val, err)) {
        free(text);
        return -1;
    }
    size_t n_train = n - n_val;
    data_tokenizer t;
    /* char: the whole text's bytes; bpe: merges from the training text only */
    size_t fit_n = o->kind == DATA_TOK_BPE ? n_train : n;
    if (data_tokenizer_train(&t, o->kind, text, fit_n, o->vocab_size, err)) {
        free(text);
        return -1;
    }
    int32_t *tok = malloc((n ? n : 1) * sizeof *tok);
    long nt_train = tok ? data_tokenizer_encode(&t, text, n_train, tok, err) : -1;
    long nt_val =
        nt_train >= 0 ? data_tokenizer_encode(&t, text + n_train, n_val, tok + nt_train, err) : -1;
    char path[4096], source[2048];
    int len = 0;
    for (int i = 0; i < o->nfiles && len < (int)sizeof source; i++)
        len +=
            snprintf(source + len, sizeof source - (size_t)len, "%s%s", i ? " " : "", o->files[i]);
    int rc = tok && nt_val >= 0 ? 0 : -1;
    if (!tok)
        core_error_set(err, "out of memory for %zu tokens", n);
    if (rc == 0) {
        snprintf(path, sizeof path, "%s-train.h5", o->out);
        rc = data_tokens_write(path, &t, tok, (size_t)nt_train, source, err);
    }
    if (rc == 0) {
        snprintf(path, sizeof path, "%s-val.h5", o->out);
        rc = data_tokens_write(path, &t, tok + nt_train, (size_t)nt_val, source, err);
    }
    if (rc == 0)
        printf("%d files, %zu bytes -> %ld training + %ld validation tokens, %s vocabulary of %d "
               "-> %s-train.h5, %s-val.h5\n",
               o->nfiles, n, nt_train, nt_val, data_tok_kind_name(t.kind), t.vocab, o->out, o->out);
    free(tok);
    free(text);
    data_tokenizer_free(&t);
    return rc;
}

/* ---- classification ---- */

typedef struct record {
    size_t start, len;
    int label;
} record;

static int split_records(const uint8_t *text, size_t n, const char *sep, int label, size_t offset,
                         record **recs, size_t *nrec, size_t *cap)
{
    size_t seplen = strlen(sep), rs = 0;
    for (size_t i = 0; i <= n; i++) {
        int at_line = i == 0 || text[i - 1] == '\n';
        int is_sep = i < n && at_line && i + seplen <= n && memcmp(text + i, sep, seplen) == 0 &&
                     (i + seplen == n || text[i + seplen] == '\n');
        if (!is_sep && i < n)
            continue;
        if (i - rs >= 8) {
            if (*nrec == *cap) {
                *cap = *cap ? *cap * 2 : 1024;
                record *g = realloc(*recs, *cap * sizeof *g);
                if (!g)
                    return -1;
                *recs = g;
            }
            (*recs)[(*nrec)++] = (record){offset + rs, i - rs, label};
        }
        if (i < n) {
            i += seplen;
            rs = i + 1;
        }
    }
    return 0;
}

static int write_class_file(const char *path, const data_tokenizer *t, const uint16_t *x,
                            const uint8_t *y, size_t n, int T, const text2h5_options *o,
                            core_error *err)
{
    /* the vocabulary first (data_tokens_write makes the file), then the arrays */
    int32_t none = 0;
    if (data_tokens_write(path, t, &none, 0, "classification", err))
        return -1;
    data_hdf5_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0)
        return core_error_set(err, "%s: cannot reopen to add samples", path);
    H5Ldelete(f, "tokens", H5P_DEFAULT); /* not a token stream: a sample set */
    hsize_t dx[2] = {n, (hsize_t)T}, dy = n;
    hid_t sx = H5Screate_simple(2, dx, NULL), sy = H5Screate_simple(1, &dy, NULL);
    hid_t ax = H5Dcreate2(f, "text", H5T_STD_U16LE, sx, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t ay = H5Dcreate2(f, "labels", H5T_STD_U8LE, sy, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = ax >= 0 && ay >= 0 &&
                     (n == 0 ||
                      (H5Dwrite(ax, H5T_NATIVE_UINT16, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0 &&
                       H5Dwrite(ay, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, y) >= 0))
                 ? 0
                 : -1;
    char names[4096];
    int len = 0;
    for (int i = 0; i < o->nfiles && len < (int)sizeof names; i++) {
        const char *base = strrchr(o->files[i], '/');
        len += snprintf(names + len, sizeof names - (size_t)len, "%s%s", i ? "," : "",
                        base ? base + 1 : o->files[i]);
    }
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, strlen(names) + 1);
    hid_t ss = H5Screate(H5S_SCALAR);
    hid_t at = H5Acreate2(f, "class_names", st, ss, H5P_DEFAULT, H5P_DEFAULT);
    if (at < 0 || H5Awrite(at, st, names) < 0)
        rc = -1;
    if (at >= 0)
        H5Aclose(at);
    H5Sclose(ss);
    H5Tclose(st);
    if (ax >= 0)
        H5Dclose(ax);
    if (ay >= 0)
        H5Dclose(ay);
    H5Sclose(sx);
    H5Sclose(sy);
    if (H5Fclose(f) < 0)
        rc = -1;
    return rc ? core_error_set(err, "%s: writing the samples failed", path) : 0;
}

static int classify(const text2h5_options *o, core_error *err)
{
    if (o->nfiles < 2 || o->nfiles > 255)
        return core_error_set(err, "--classify needs 2 to 255 files, one per class");
    uint8_t *text = NULL;
    size_t n = 0, nrec = 0, cap = 0;
    record *recs = NULL;
    for (int i = 0; i < o->nfiles; i++) {
        uint8_t *b;
        size_t len;
        if (read_all(o->files[i], &b, &len, err))
            return -1;
        uint8_t *g = realloc(text, n + len + 1);
        if (!g || split_records(b, len, o->separator, i, n, &recs, &nrec, &cap)) {
            free(b);
            return core_error_set(err, "out of memory reading %s", o->files[i]);
        }
        text = g;
        memcpy(text + n, b, len);
        n += len;
        free(b);
    }
    text[n] = ' ';
    data_tokenizer t;
    if (data_tokenizer_train(&t, DATA_TOK_CHAR, text, n + 1, 0, err))
        return -1;
    /* fixed-seed shuffle, then the last test_fraction is the test set */
    core_rng r = core_rng_make(20261129, 1);
    for (size_t i = nrec; i > 1; i--) {
        size_t j = (size_t)core_rng_below(&r, i);
        record tmp = recs[i - 1];
        recs[i - 1] = recs[j];
        recs[j] = tmp;
    }
    int T = o->length;
    uint16_t *x = malloc((nrec ? nrec : 1) * (size_t)T * sizeof *x);
    uint8_t *y = malloc(nrec ? nrec : 1);
    int32_t *row = malloc((size_t)T * sizeof *row);
    if (!x || !y || !row)
        return core_error_set(err, "out of memory for %zu samples", nrec);
    int32_t space = t.byte_id[' '];
    for (size_t i = 0; i < nrec; i++) {
        size_t len = recs[i].len < (size_t)T ? recs[i].len : (size_t)T;
        long k = data_tokenizer_encode(&t, text + recs[i].start, len, row, err);
        for (int j = 0; j < T; j++)
            x[i * (size_t)T + (size_t)j] = (uint16_t)(j < k ? row[j] : space);
        y[i] = (uint8_t)recs[i].label;
    }
    size_t n_test = (size_t)((double)nrec * o->val_fraction), n_train = nrec - n_test;
    char path[4096];
    snprintf(path, sizeof path, "%s-train.h5", o->out);
    int rc = write_class_file(path, &t, x, y, n_train, T, o, err);
    snprintf(path, sizeof path, "%s-test.h5", o->out);
    if (rc == 0)
        rc = write_class_file(path, &t, x + n_train * (size_t)T, y + n_train, n_test, T, o, err);
    if (rc == 0)
        printf("%d classes, %zu records -> %zu training + %zu test samples of %d characters "
               "(vocabulary %d) -> %s-train.h5, %s-test.h5\n",
               o->nfiles, nrec, n_train, n_test, T, t.vocab, o->out, o->out);
    free(x);
    free(y);
    free(row);
    free(recs);
    free(text);
    data_tokenizer_free(&t);
    return rc;
}

static int usage(void)
{
    fprintf(stderr, "usage: rt_text2h5 --out PREFIX [--tokenizer char|byte|bpe] [--vocab-size N]\n"
                    "                  [--val-fraction F] FILE...\n"
                    "       rt_text2h5 --classify --out PREFIX [--length T] [--separator LINE]\n"
                    "                  [--test-fraction F] FILE...   (one class per file)\n");
    return 2;
}

static int parse_args(int argc, char **argv, text2h5_options *o, core_error *err)
{
    memset(o, 0, sizeof *o);
    o->kind = DATA_TOK_CHAR;
    o->vocab_size = 512;
    o->val_fraction = 0.05;
    o->length = 128;
    o->separator = "%";
    o->files = calloc((size_t)argc, sizeof *o->files);
    if (!o->files)
        return core_error_set(err, "out of memory");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = strcmp(a, "--out") == 0 || strcmp(a, "--tokenizer") == 0 ||
                    strcmp(a, "--vocab-size") == 0 || strcmp(a, "--val-fraction") == 0 ||
                    strcmp(a, "--test-fraction") == 0 || strcmp(a, "--length") == 0 ||
                    strcmp(a, "--separator") == 0;
        if (takes && !v)
            return core_error_set(err, "%s needs a value", a);
        if (strcmp(a, "--out") == 0)
            o->out = v;
        else if (strcmp(a, "--tokenizer") == 0) {
            if (data_tok_kind_parse(v, &o->kind, err))
                return -1;
        } else if (strcmp(a, "--vocab-size") == 0)
            o->vocab_size = atoi(v);
        else if (strcmp(a, "--val-fraction") == 0 || strcmp(a, "--test-fraction") == 0)
            o->val_fraction = atof(v);
        else if (strcmp(a, "--length") == 0)
            o->length = atoi(v);
        else if (strcmp(a, "--separator") == 0)
            o->separator = v;
        else if (strcmp(a, "--classify") == 0)
            o->classify = 1;
        else if (a[0] == '-' && a[1] == '-')
            return core_error_set(err, "unknown flag '%s'", a);
        else
            o->files[o->nfiles++] = argv[i];
        i += takes;
    }
    if (!o->out || o->nfiles == 0)
        return core_error_set(err, "--out and at least one input FILE are required");
    if (!(o->val_fraction >= 0.0 && o->val_fraction < 1.0))
        return core_error_set(err, "the held-out fraction must be in [0, 1)");
    if (o->length < 1 || o->length > 65536)
        return core_error_set(err, "--length must be in [1, 65536]");
    return 0;
}

#ifndef RT_TEXT2H5_NO_MAIN
int main(int argc, char **argv)
{
    text2h5_options o;
    core_error err = {{0}};
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return usage();
    if (parse_args(argc, argv, &o, &err)) {
        fprintf(stderr, "rt_text2h5: %s\n", err.msg);
        free(o.files);
        return usage();
    }
    int rc = o.classify ? classify(&o, &err) : language_model(&o, &err);
    free(o.files);
    if (rc) {
        fprintf(stderr, "rt_text2h5: error: %s\n", err.msg);
        return 1;
    }
    return 0;
}
#endif
