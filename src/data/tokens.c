/*
 * data/tokens.c: the HDF5 token file (write, schema check, reads) and the
 * token window source behind data_loader_create_tokens (see data/tokens.h).
 *
 * A rank's part of the token stream is read once into memory; batches are
 * then cut from it synchronously (a memcpy-sized job, no thread needed).
 */
#include "data/tokens.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/rng.h"
#include "data/h5write.h"
#include "data/loader_source.h"

#define TOKENS_FORMAT "ringtrain-tokens"
#define DEFAULT_CAP   ((size_t)256 << 20)

static herr_t first_error_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    if (n == 0 && e->desc)
        snprintf(data, 256, "%s", e->desc);
    return 0;
}

static const char *h5_reason(char buf[256])
{
    buf[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, first_error_cb, buf);
    H5Eclear2(H5E_DEFAULT);
    if (!buf[0])
        snprintf(buf, 256, "HDF5 error");
    return buf;
}

/* ---- writing ---- */

static int write_attr_str(hid_t loc, const char *name, const char *value)
{
    hid_t ty = H5Tcopy(H5T_C_S1);
    H5Tset_size(ty, strlen(value) + 1);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, ty, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a >= 0 && H5Awrite(a, ty, value) >= 0 ? 0 : -1;
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(ty);
    return rc;
}

static int write_attr_int(hid_t loc, const char *name, long long v)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a >= 0 && H5Awrite(a, H5T_NATIVE_LLONG, &v) >= 0 ? 0 : -1;
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    return rc;
}

static int write_file(hid_t f, const data_tokenizer *t, const int32_t *tokens, size_t n,
                      const char *source)
{
    hid_t tok_type = t->vocab <= 256     ? H5T_STD_U8LE
                     : t->vocab <= 65536 ? H5T_STD_U16LE
                                         : H5T_STD_I32LE;
    hsize_t dn = n, db = (hsize_t)t->offsets[t->vocab], dv = (hsize_t)t->vocab + 1;
    hsize_t dm[2] = {(hsize_t)t->nmerges, 2};
    if (data_h5_write(f, "tokens", tok_type, H5T_NATIVE_INT32, 1, &dn, tokens))
        return -1;
    hid_t g = H5Gcreate2(f, "vocab", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0)
        return -1;
    int rc = data_h5_write(g, "bytes", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &db, t->bytes) ||
             data_h5_write(g, "offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &dv, t->offsets) ||
             (t->kind == DATA_TOK_BPE &&
              data_h5_write(g, "merges", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, dm, t->merges));
    H5Gclose(g);
    if (rc)
        return -1;
    return write_attr_str(f, "format", TOKENS_FORMAT) ||
           write_attr_str(f, "tokenizer", data_tok_kind_name(t->kind)) ||
           write_attr_int(f, "vocab_size", t->vocab) ||
           write_attr_str(f, "source", source ? source : "");
}

int data_tokens_write(const char *path, const data_tokenizer *t, const int32_t *tokens, size_t n,
                      const char *source, core_error *err)
{
    data_hdf5_quiet();
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return core_error_set(err, "%s: path too long", path);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    char r[256];
    if (f < 0)
        return core_error_set(err, "%s: cannot create (%s)", tmp, h5_reason(r));
    int rc = write_file(f, t, tokens, n, source);
    if (rc)
        h5_reason(r);
    if (H5Fclose(f) < 0 && rc == 0) {
        rc = -1;
        h5_reason(r);
    }
    if (rc) {
        remove(tmp);
        return core_error_set(err, "%s: writing the token file failed (%s)", path, r);
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return core_error_set(err, "%s: cannot rename from %s: %s", path, tmp, strerror(e));
    }
    return 0;
}

/* ---- reading ---- */

static hid_t open_file(const char *path, core_error *err)
{
    data_hdf5_quiet();
    FILE *probe = fopen(path, "rb");
    if (!probe) {
        core_error_set(err, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    fclose(probe);
    if (H5Fis_hdf5(path) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        core_error_set(err, "%s: not an HDF5 file", path);
        return -1;
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    char r[256];
    if (f < 0)
        core_error_set(err, "%s: cannot open (%s)", path, h5_reason(r));
    return f;
}

int data_tokens_is_token_file(const char *path)
{
    data_hdf5_quiet();
    FILE *probe = fopen(path, "rb");
    if (!probe)
        return 0;
    fclose(probe);
    if (H5Fis_hdf5(path) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return 0;
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        H5Eclear2(H5E_DEFAULT);
        return 0;
    }
    int yes = H5Lexists(f, "tokens", H5P_DEFAULT) > 0;
    H5Eclear2(H5E_DEFAULT);
    H5Fclose(f);
    return yes;
}

/* Opens a 1-D integer dataset; *n receives its length. */
static hid_t open_1d(hid_t f, const char *path, const char *name, size_t *n, core_error *err)
{
    if (H5Lexists(f, name, H5P_DEFAULT) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        core_error_set(err, "%s: no '%s' dataset; make token files with datasets/rt_text2h5", path,
                       name);
        return -1;
    }
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    hid_t sp = ds >= 0 ? H5Dget_space(ds) : -1;
    hid_t ty = ds >= 0 ? H5Dget_type(ds) : -1;
    hsize_t d[2] = {0, 0};
    int rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (rank == 1)
        H5Sget_simple_extent_dims(sp, d, NULL);
    int is_int = ty >= 0 && H5Tget_class(ty) == H5T_INTEGER;
    if (sp >= 0)
        H5Sclose(sp);
    if (ty >= 0)
        H5Tclose(ty);
    if (ds < 0 || rank != 1 || !is_int) {
        if (ds >= 0)
            H5Dclose(ds);
        char r[256];
        h5_reason(r);
        core_error_set(err, "%s: '%s' must be a 1-D integer array", path, name);
        return -1;
    }
    *n = (size_t)d[0];
    return ds;
}

static int read_range(hid_t ds, hid_t mem_type, size_t start, size_t count, void *out)
{
    if (count == 0)
        return 0;
    hsize_t off = start, cnt = count;
    hid_t fs = H5Dget_space(ds), ms = H5Screate_simple(1, &cnt, NULL);
    int rc = fs >= 0 && ms >= 0 &&
                     H5Sselect_hyperslab(fs, H5S_SELECT_SET, &off, NULL, &cnt, NULL) >= 0 &&
                     H5Dread(ds, mem_type, ms, fs, H5P_DEFAULT, out) >= 0
                 ? 0
                 : -1;
    if (fs >= 0)
        H5Sclose(fs);
    if (ms >= 0)
        H5Sclose(ms);
    return rc;
}

static int read_vocab(hid_t f, const char *path, data_tokenizer *t, core_error *err)
{
    char kind[16] = "";
    hid_t a = H5Aexists(f, "tokenizer") > 0 ? H5Aopen(f, "tokenizer", H5P_DEFAULT) : -1;
    if (a >= 0) {
        hid_t ty = H5Tcopy(H5T_C_S1);
        H5Tset_size(ty, sizeof kind);
        hid_t at = H5Aget_type(a);
        if (H5Tget_size(at) <= sizeof kind)
            H5Aread(a, ty, kind);
        H5Tclose(at);
        H5Tclose(ty);
        H5Aclose(a);
    }
    H5Eclear2(H5E_DEFAULT);
    core_error e2;
    if (data_tok_kind_parse(kind, &t->kind, &e2) != 0)
        return core_error_set(err, "%s: attribute 'tokenizer' is '%s', expected byte, char or bpe",
                              path, kind);
    size_t nb = 0, no = 0, nm = 0;
    hid_t db = open_1d(f, path, "vocab/bytes", &nb, err);
    hid_t dof = db >= 0 ? open_1d(f, path, "vocab/offsets", &no, err) : -1;
    int rc = db >= 0 && dof >= 0 ? 0 : -1;
    if (rc == 0 && (no < 2 || no > (1u << 24)))
        rc = core_error_set(err, "%s: vocab/offsets has %zu entries, expected V+1 >= 2", path, no);
    if (rc == 0) {
        t->vocab = (int)(no - 1);
        t->bytes = malloc(nb ? nb : 1);
        t->offsets = malloc(no * sizeof *t->offsets);
        if (!t->bytes || !t->offsets)
            rc = core_error_set(err, "%s: out of memory reading the vocabulary", path);
    }
    if (rc == 0 && (read_range(db, H5T_NATIVE_UINT8, 0, nb, t->bytes) ||
                    read_range(dof, H5T_NATIVE_INT64, 0, no, t->offsets)))
        rc = core_error_set(err, "%s: reading the vocabulary failed", path);
    for (size_t i = 0; rc == 0 && i + 1 < no; i++)
        if (t->offsets[0] != 0 || t->offsets[i] > t->offsets[i + 1] ||
            t->offsets[i + 1] > (int64_t)nb)
            rc =
                core_error_set(err, "%s: vocab/offsets is not increasing within vocab/bytes", path);
    if (db >= 0)
        H5Dclose(db);
    if (dof >= 0)
        H5Dclose(dof);
    if (rc)
        return rc;
    for (int i = 0; i < 256; i++)
        t->byte_id[i] = -1;
    for (int i = t->vocab - 1; i >= 0; i--)
        if (t->offsets[i + 1] - t->offsets[i] == 1)
            t->byte_id[t->bytes[t->offsets[i]]] = i;
    if (t->kind != DATA_TOK_BPE)
        return 0;
    if (H5Lexists(f, "vocab/merges", H5P_DEFAULT) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return 0;
    }
    hid_t dm = H5Dopen2(f, "vocab/merges", H5P_DEFAULT);
    hid_t sp = dm >= 0 ? H5Dget_space(dm) : -1;
    hsize_t d[2] = {0, 0};
    if (sp >= 0 && H5Sget_simple_extent_ndims(sp) == 2)
        H5Sget_simple_extent_dims(sp, d, NULL);
    nm = (size_t)d[0];
    if (sp >= 0)
        H5Sclose(sp);
    if (nm != (size_t)t->vocab - 256 || d[1] != 2)
        rc = core_error_set(err, "%s: vocab/merges must be (%d, 2)", path, t->vocab - 256);
    t->merges = rc == 0 ? malloc((nm ? nm : 1) * 2 * sizeof *t->merges) : NULL;
    if (rc == 0 && (!t->merges || (nm && H5Dread(dm, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL,
                                                 H5P_DEFAULT, t->merges) < 0)))
        rc = core_error_set(err, "%s: reading vocab/merges failed", path);
    t->nmerges = (int)nm;
    if (dm >= 0)
        H5Dclose(dm);
    return rc;
}

int data_tokenizer_read(const char *path, data_tokenizer *t, core_error *err)
{
    memset(t, 0, sizeof *t);
    hid_t f = open_file(path, err);
    if (f < 0)
        return -1;
    int rc = read_vocab(f, path, t, err);
    H5Fclose(f);
    if (rc)
        data_tokenizer_free(t);
    return rc;
}

int data_tokens_count(const char *path, size_t *n, core_error *err)
{
    hid_t f = open_file(path, err);
    if (f < 0)
        return -1;
    hid_t ds = open_1d(f, path, "tokens", n, err);
    if (ds >= 0)
        H5Dclose(ds);
    H5Fclose(f);
    return ds >= 0 ? 0 : -1;
}

int data_tokens_read(const char *path, size_t start, size_t count, int32_t *out, core_error *err)
{
    data_tokenizer t;
    if (data_tokenizer_read(path, &t, err))
        return -1;
    int vocab = t.vocab;
    data_tokenizer_free(&t);
    hid_t f = open_file(path, err);
    if (f < 0)
        return -1;
    size_t n = 0;
    hid_t ds = open_1d(f, path, "tokens", &n, err);
    int rc = ds >= 0 ? 0 : -1;
    if (rc == 0 && (start > n || count > n - start))
        rc = core_error_set(err, "%s: tokens [%zu, %zu) are outside the %zu tokens", path, start,
                            start + count, n);
    if (rc == 0 && read_range(ds, H5T_NATIVE_INT32, start, count, out)) {
        char r[256];
        rc = core_error_set(err, "%s: reading tokens [%zu, %zu) failed (%s)", path, start,
                            start + count, h5_reason(r));
    }
    for (size_t i = 0; rc == 0 && i < count; i++)
        if (out[i] < 0 || out[i] >= vocab)
            rc = core_error_set(err, "%s: token %zu is %d, outside the vocabulary of %d", path,
                                start + i, out[i], vocab);
    if (ds >= 0)
        H5Dclose(ds);
    H5Fclose(f);
    return rc;
}

/* ---- window source ---- */

/* The token windows behind a data_loader (loader_source.h). */
typedef struct data_token_src {
    data_token_loader_config cfg;
    char path[1024];
    int32_t *tok; /* this rank's part */
    size_t n;     /* its length */
    size_t nbatches, nwindows;
    float *x;
    int32_t *y;
    long epoch, next_batch;
    int active;
    size_t mem;
} data_token_src;

static void src_free(void *ctx)
{
    data_token_src *s = ctx;
    if (!s)
        return;
    core_free(s->tok);
    core_free(s->x);
    core_free(s->y);
    free(s);
}

static size_t src_batches(const void *ctx)
{
    return ((const data_token_src *)ctx)->nbatches;
}

static size_t src_mem_bytes(const void *ctx)
{
    return ((const data_token_src *)ctx)->mem;
}

static int src_begin_epoch(void *ctx, long epoch, long skip_batches, core_error *err)
{
    data_token_src *s = ctx;
    if (epoch < 0 || skip_batches < 0 || (size_t)skip_batches > s->nbatches)
        return core_error_set(err,
                              "%s: cannot start epoch %ld at batch %ld (an epoch has %zu batches)",
                              s->path, epoch, skip_batches, s->nbatches);
    s->epoch = epoch;
    s->next_batch = skip_batches;
    s->active = 1;
    return 0;
}

static void fill_window(data_token_src *s, int w, size_t start)
{
    size_t T = (size_t)s->cfg.T;
    float *x = s->x + (size_t)w * T;
    int32_t *y = s->y + (size_t)w * T;
    for (size_t t = 0; t < T; t++) {
        x[t] = (float)s->tok[start + t];
        y[t] = s->tok[start + t + 1];
    }
}

static int src_next(void *ctx, data_batch *b, core_error *err)
{
    data_token_src *s = ctx;
    if (!s->active)
        return core_error_set(err, "%s: data_loader_next called before data_loader_begin_epoch",
                              s->path);
    if ((size_t)s->next_batch >= s->nbatches)
        return 0;
    size_t k = (size_t)s->next_batch++, T = (size_t)s->cfg.T, B = (size_t)s->cfg.batch;
    int n = 0;
    if (s->cfg.eval) {
        for (size_t w = k * B; w < (k + 1) * B && w < s->nwindows; w++)
            fill_window(s, n++, w * T);
    } else {
        /* offsets of batch k of this epoch: a pure function of (seed, rank, epoch, k) */
        core_rng r =
            core_rng_make(s->cfg.seed ^ 0x746f6b656e73ULL,
                          ((uint64_t)(uint32_t)s->cfg.rank << 32) | (uint64_t)(uint32_t)s->epoch);
        r.counter = (uint64_t)k << 24;
        size_t span = s->n - T; /* starts in [0, n - T - 1] */
        for (; n < (int)B; n++)
            fill_window(s, n, (size_t)core_rng_below(&r, span));
    }
    b->x = s->x;
    b->y = s->y;
    b->n = n;
    return 1;
}

static int make_src(const char *path, const data_token_loader_config *cfg, int vocab,
                    data_token_src *s, core_error *err)
{
    size_t total = 0;
    if (data_tokens_count(path, &total, err))
        return -1;
    int limited = cfg->limit && cfg->limit < total;
    if (limited)
        total = cfg->limit;
    size_t start, count;
    data_shard_range(total, cfg->rank, cfg->world, &start, &count);
    size_t T = (size_t)cfg->T, B = (size_t)cfg->batch;
    if (count < T + 1 && limited)
        return core_error_set(err,
                              "%s: %s %zu counts tokens, and %zu tokens over %d rank(s) leave "
                              "rank %d a part of %zu, fewer than one window of %zu plus its next "
                              "token; set it to at least %zu (%d x %zu) or use fewer ranks",
                              path, cfg->limit_flag ? cfg->limit_flag : "the limit", cfg->limit,
                              total, cfg->world, cfg->rank, count, T, (size_t)cfg->world * (T + 1),
                              cfg->world, T + 1);
    if (count < T + 1)
        return core_error_set(err,
                              "%s: rank %d's part has %zu tokens, fewer than one window of %zu "
                              "plus its next token; use fewer ranks or a longer text",
                              path, cfg->rank, count, T);
    size_t cap = cfg->mem_cap_bytes ? cfg->mem_cap_bytes : DEFAULT_CAP;
    s->mem = count * sizeof(int32_t) + B * T * (sizeof(float) + sizeof(int32_t));
    if (s->mem > cap)
        return core_error_set(err,
                              "%s: rank %d's %zu tokens need %zu MiB, over the loader's %zu "
                              "MiB; raise --loader-mem or use more ranks",
                              path, cfg->rank, count, s->mem >> 20, cap >> 20);
    s->tok = core_alloc(count * sizeof *s->tok, "token part", err);
    s->x = s->tok ? core_alloc(B * T * sizeof *s->x, "token windows", err) : NULL;
    s->y = s->x ? core_alloc(B * T * sizeof *s->y, "token window labels", err) : NULL;
    if (!s->y)
        return -1;
    if (data_tokens_read(path, start, count, s->tok, err))
        return -1;
    for (size_t i = 0; vocab > 0 && i < count; i++)
        if (s->tok[i] >= vocab)
            return core_error_set(err,
                                  "%s: token %zu is %d but the model's vocabulary has %d "
                                  "entries; match 'embed V' and 'linear V' to the file's "
                                  "vocab_size",
                                  path, start + i, s->tok[i], vocab);
    s->n = count;
    s->nwindows = (count - 1) / T;
    s->nbatches = cfg->eval ? (s->nwindows + B - 1) / B : count / (B * T);
    return 0;
}

int data_loader_create_tokens(const char *path, const data_token_loader_config *cfg, int vocab,
                              data_loader **out, core_error *err)
{
    *out = NULL;
    if (cfg->T <= 0 || cfg->batch <= 0)
        return core_error_set(err, "%s: window %d and batch %d must be positive", path, cfg->T,
                              cfg->batch);
    data_token_src *s = calloc(1, sizeof *s);
    if (!s)
        return core_error_set(err, "%s: out of memory creating the token loader", path);
    s->cfg = *cfg;
    snprintf(s->path, sizeof s->path, "%s", path);
    if (make_src(path, cfg, vocab, s, err)) {
        src_free(s);
        return -1;
    }
    data_loader_source src = {.ctx = s,
                              .free = src_free,
                              .batches = src_batches,
                              .mem_bytes = src_mem_bytes,
                              .begin_epoch = src_begin_epoch,
                              .next = src_next};
    *out = data_loader_wrap_source(&src);
    if (!*out) {
        src_free(s);
        return core_error_set(err, "%s: out of memory creating the token loader", path);
    }
    return 0;
}
