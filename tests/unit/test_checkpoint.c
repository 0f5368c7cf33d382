/*
 * tests/unit/test_checkpoint.c: checkpoints of a real (small) model: a bitwise
 * round trip, the latest pointer and its fallbacks, and every way a read or a
 * write can fail, checking that the message is clear and that nothing already
 * loaded or saved is damaged; the optimizer state written from a source and
 * read into a sink range by range (the state sharded across ranks).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "test_support.h"

#include "core/mem.h"
#include "train/checkpoint.h"

static const char *SPEC = "input 1 8 8\n"
                          "conv 4 3 same relu\n"
                          "maxpool 2\n"
                          "flatten\n"
                          "dense 10\n"
                          "loss softmax_cross_entropy\n";

/* Same layers, five filters instead of four: conv1.weight is the first
 * tensor (in spec order) whose shape differs. */
static const char *SPEC_WIDER = "input 1 8 8\n"
                                "conv 5 3 same relu\n"
                                "maxpool 2\n"
                                "flatten\n"
                                "dense 10\n"
                                "loss softmax_cross_entropy\n";

static const char *CONFIG = "optimizer=adam\nlr=0.001\nbatch=32\n";

typedef struct fixture {
    nn_model *model;
    optim opt;
    size_t n;
} fixture;

static void fixture_make(fixture *fx, const char *spec, optim_kind kind, uint64_t seed, int steps)
{
    core_error err = {{0}};
    if (nn_model_create(spec, "test.spec", 4, &fx->model, &err) != 0)
        fail_msg("%s", err.msg);
    nn_model_init_params(fx->model, seed);
    fx->n = nn_model_param_count(fx->model);
    optim_config c = optim_config_default(kind);
    assert_int_equal(optim_create(&fx->opt, &c, fx->n, &err), 0);
    /* A few steps on random gradients so every state buffer is non-trivial. */
    float *g = malloc(fx->n * sizeof *g);
    assert_non_null(g);
    for (int s = 0; s < steps; s++) {
        test_fill_uniform(g, fx->n, seed * 100 + (uint64_t)s, -1.0f, 1.0f);
        optim_step(&fx->opt, nn_model_params(fx->model), g, c.lr);
    }
    free(g);
}

static void fixture_free(fixture *fx)
{
    optim_destroy(&fx->opt);
    nn_model_free(fx->model);
}

static train_progress progress_at(long step)
{
    train_progress p;
    memset(&p, 0, sizeof p);
    p.step = step;
    p.epoch = 2;
    p.batch_in_epoch = 17;
    p.seed = 0xfeedbeefcafe1234ull;
    p.rng = core_rng_make(p.seed, 9);
    for (int i = 0; i < 5; i++)
        core_rng_u64(&p.rng);
    return p;
}

static void write_ok(const char *dir, fixture *fx, long step, char *path, size_t len)
{
    core_error err = {{0}};
    train_progress p = progress_at(step);
    if (train_checkpoint_write(dir, fx->model, &fx->opt, &p, CONFIG, path, len, &err) != 0)
        fail_msg("write failed: %s", err.msg);
}

static char *read_text_file(const char *path)
{
    static char buf[512];
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Copies src to dst, keeping only the first `keep` bytes (all if keep < 0). */
static void copy_prefix(const char *src, const char *dst, long keep)
{
    FILE *in = fopen(src, "rb");
    FILE *out = fopen(dst, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[4096];
    long total = 0;
    size_t r;
    while ((r = fread(buf, 1, sizeof buf, in)) > 0) {
        if (keep >= 0 && total + (long)r > keep)
            r = (size_t)(keep - total);
        fwrite(buf, 1, r, out);
        total += (long)r;
        if (keep >= 0 && total >= keep)
            break;
    }
    fclose(in);
    fclose(out);
}

static long file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (long)st.st_size;
}

/* Snapshot of everything a failed read must leave untouched. */
typedef struct snapshot {
    float *params, *m, *v;
    long step;
} snapshot;

static snapshot snap_take(fixture *fx)
{
    snapshot s = {0};
    size_t bytes = fx->n * sizeof(float);
    s.params = malloc(bytes);
    s.m = malloc(bytes);
    assert_non_null(s.params);
    assert_non_null(s.m);
    memcpy(s.params, nn_model_params(fx->model), bytes);
    memcpy(s.m, fx->opt.m, bytes);
    if (fx->opt.v) {
        s.v = malloc(bytes);
        assert_non_null(s.v);
        memcpy(s.v, fx->opt.v, bytes);
    }
    s.step = fx->opt.step;
    return s;
}

static void snap_check_and_free(fixture *fx, snapshot *s)
{
    size_t bytes = fx->n * sizeof(float);
    assert_memory_equal(s->params, nn_model_params(fx->model), bytes);
    assert_memory_equal(s->m, fx->opt.m, bytes);
    if (s->v)
        assert_memory_equal(s->v, fx->opt.v, bytes);
    assert_int_equal(s->step, fx->opt.step);
    free(s->params);
    free(s->m);
    free(s->v);
}

/* Reads path into fx and expects failure with every `needles` substring in
 * the message, the path among them, and fx unchanged. */
static void expect_read_error(const char *path, fixture *fx, optim *o, const char *needle1,
                              const char *needle2)
{
    core_error err = {{0}};
    snapshot s = snap_take(fx);
    train_progress p = progress_at(-1);
    train_progress p0 = p;
    if (train_checkpoint_read(path, fx->model, o, &p, &err) == 0)
        fail_msg("read of %s succeeded, expected an error about '%s'", path, needle1);
    print_message("    message: %s\n", err.msg);
    if (!strstr(err.msg, path) || !strstr(err.msg, needle1) ||
        (needle2 && !strstr(err.msg, needle2)))
        fail_msg("unexpected message: %s (wanted '%s'%s%s)", err.msg, needle1,
                 needle2 ? " and " : "", needle2 ? needle2 : "");
    assert_null(strchr(err.msg, '\n'));
    assert_memory_equal(&p, &p0, sizeof p);
    snap_check_and_free(fx, &s);
}

static void test_round_trip_adam(void **state)
{
    char dir[512], path[1024], expect[1100];
    snprintf(dir, sizeof dir, "%s/run", test_tmpdir("ckpt_rt"));
    fixture a, b;
    fixture_make(&a, SPEC, OPTIM_ADAM, 1, 3);
    fixture_make(&b, SPEC, OPTIM_ADAM, 2, 0);
    write_ok(dir, &a, 3, path, sizeof path);
    snprintf(expect, sizeof expect, "%s/ckpt-000000003.h5", dir);
    assert_string_equal(path, expect);
    char latest[1100];
    snprintf(latest, sizeof latest, "%s/latest", dir);
    assert_string_equal(read_text_file(latest), "ckpt-000000003.h5\n");

    core_error err = {{0}};
    train_progress p;
    memset(&p, 0, sizeof p);
    if (train_checkpoint_read(path, b.model, &b.opt, &p, &err) != 0)
        fail_msg("%s", err.msg);
    size_t bytes = a.n * sizeof(float);
    assert_memory_equal(nn_model_params(a.model), nn_model_params(b.model), bytes);
    assert_memory_equal(a.opt.m, b.opt.m, bytes);
    assert_memory_equal(a.opt.v, b.opt.v, bytes);
    assert_int_equal(b.opt.step, 3);
    train_progress want = progress_at(3);
    assert_int_equal(p.step, want.step);
    assert_int_equal(p.epoch, want.epoch);
    assert_int_equal(p.batch_in_epoch, want.batch_in_epoch);
    assert_true(p.seed == want.seed);
    assert_true(p.rng.seed == want.rng.seed && p.rng.stream == want.rng.stream &&
                p.rng.counter == want.rng.counter);
    assert_true(core_rng_u64(&p.rng) == core_rng_u64(&want.rng));

    char *spec = NULL, *config = NULL;
    if (train_checkpoint_read_text(path, &spec, &config, &err) != 0)
        fail_msg("%s", err.msg);
    assert_string_equal(spec, nn_model_spec_text(a.model));
    assert_string_equal(config, CONFIG);
    core_free(spec);
    core_free(config);
    fixture_free(&a);
    fixture_free(&b);
}

static void test_round_trip_sgd_and_params_only(void **state)
{
    char path[1024];
    const char *dir = test_tmpdir("ckpt_sgd");
    fixture a, b;
    fixture_make(&a, SPEC, OPTIM_SGD, 3, 2);
    fixture_make(&b, SPEC, OPTIM_SGD, 4, 0);
    write_ok(dir, &a, 2, path, sizeof path);
    core_error err = {{0}};
    /* Parameters only: o and p may be NULL; the optimizer is not touched. */
    if (train_checkpoint_read(path, b.model, NULL, NULL, &err) != 0)
        fail_msg("%s", err.msg);
    size_t bytes = a.n * sizeof(float);
    assert_memory_equal(nn_model_params(a.model), nn_model_params(b.model), bytes);
    assert_int_equal(b.opt.step, 0);
    if (train_checkpoint_read(path, b.model, &b.opt, NULL, &err) != 0)
        fail_msg("%s", err.msg);
    assert_memory_equal(a.opt.m, b.opt.m, bytes);
    assert_int_equal(b.opt.step, 2);
    /* A directory is accepted too and resolved through its pointer. */
    if (train_checkpoint_read(dir, b.model, &b.opt, NULL, &err) != 0)
        fail_msg("%s", err.msg);
    fixture_free(&a);
    fixture_free(&b);
}

static void test_latest_moves_and_resolve_falls_back(void **state)
{
    char dir[512], p3[1024], p10[1024], got[1024], buf[1100], latest[1100];
    snprintf(dir, sizeof dir, "%s", test_tmpdir("ckpt_latest"));
    snprintf(latest, sizeof latest, "%s/latest", dir);
    fixture a;
    fixture_make(&a, SPEC, OPTIM_ADAM, 5, 1);
    core_error err = {{0}};
    write_ok(dir, &a, 3, p3, sizeof p3);
    write_ok(dir, &a, 10, p10, sizeof p10);
    assert_string_equal(read_text_file(latest), "ckpt-000000010.h5\n");
    assert_int_equal(train_checkpoint_resolve(dir, got, sizeof got, &err), 0);
    assert_string_equal(got, p10);

    /* A half-written file from a crash: never picked, whatever its number. */
    snprintf(buf, sizeof buf, "%s/ckpt-999999999.h5.tmp", dir);
    copy_prefix(p10, buf, file_size(p10) / 2);
    assert_int_equal(train_checkpoint_resolve(dir, got, sizeof got, &err), 0);
    assert_string_equal(got, p10);

    /* No pointer: the newest complete ckpt-*.h5 by step. */
    assert_int_equal(unlink(latest), 0);
    assert_int_equal(train_checkpoint_resolve(dir, got, sizeof got, &err), 0);
    assert_string_equal(got, p10);

    /* A newer but truncated file (e.g. copied in by hand) is skipped. */
    snprintf(buf, sizeof buf, "%s/ckpt-000000020.h5", dir);
    copy_prefix(p10, buf, file_size(p10) / 2);
    assert_int_equal(train_checkpoint_resolve(dir, got, sizeof got, &err), 0);
    assert_string_equal(got, p10);

    /* A pointer naming a missing file falls back as well. */
    FILE *f = fopen(latest, "w");
    assert_non_null(f);
    fputs("ckpt-000000042.h5\n", f);
    fclose(f);
    assert_int_equal(train_checkpoint_resolve(dir, got, sizeof got, &err), 0);
    assert_string_equal(got, p10);

    /* A pointer to an older complete checkpoint is followed (the user may
     * have rolled back on purpose). */
    f = fopen(latest, "w");
    assert_non_null(f);
    fputs("ckpt-000000003.h5\n", f);
    fclose(f);
    assert_int_equal(train_checkpoint_resolve(dir, got, sizeof got, &err), 0);
    assert_string_equal(got, p3);

    /* A file path resolves to itself. */
    assert_int_equal(train_checkpoint_resolve(p3, got, sizeof got, &err), 0);
    assert_string_equal(got, p3);
    fixture_free(&a);
}

static void test_resolve_empty_and_missing_dir(void **state)
{
    char dir[512], got[1024], missing[600];
    snprintf(dir, sizeof dir, "%s", test_tmpdir("ckpt_empty"));
    core_error err = {{0}};
    assert_int_equal(train_checkpoint_resolve(dir, got, sizeof got, &err), -1);
    assert_non_null(strstr(err.msg, dir));
    assert_non_null(strstr(err.msg, "no checkpoint"));

    /* Only a stray .tmp: still nothing to resume from. */
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s/ckpt-000000001.h5.tmp", dir);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs("partial", f);
    fclose(f);
    assert_int_equal(train_checkpoint_resolve(dir, got, sizeof got, &err), -1);
    assert_non_null(strstr(err.msg, "no checkpoint"));

    snprintf(missing, sizeof missing, "%s/nope", dir);
    assert_int_equal(train_checkpoint_resolve(missing, got, sizeof got, &err), -1);
    assert_non_null(strstr(err.msg, missing));
    assert_non_null(strstr(err.msg, strerror(ENOENT)));
}

static void test_truncated_and_not_hdf5(void **state)
{
    char path[1024], bad[1100];
    const char *dir = test_tmpdir("ckpt_trunc");
    fixture a, b;
    fixture_make(&a, SPEC, OPTIM_ADAM, 6, 2);
    fixture_make(&b, SPEC, OPTIM_ADAM, 7, 1);
    write_ok(dir, &a, 2, path, sizeof path);

    snprintf(bad, sizeof bad, "%s/cut.h5", dir);
    copy_prefix(path, bad, file_size(path) * 2 / 3);
    expect_read_error(bad, &b, &b.opt, "truncated", NULL);

    FILE *f = fopen(bad, "w");
    assert_non_null(f);
    fputs("this is not HDF5\n", f);
    fclose(f);
    expect_read_error(bad, &b, &b.opt, "not an HDF5 file", NULL);

    snprintf(bad, sizeof bad, "%s/absent.h5", dir);
    expect_read_error(bad, &b, &b.opt, strerror(ENOENT), NULL);
    fixture_free(&a);
    fixture_free(&b);
}

static void test_different_model_names_tensor(void **state)
{
    char path[1024];
    const char *dir = test_tmpdir("ckpt_model");
    fixture a, b;
    fixture_make(&a, SPEC, OPTIM_SGD, 8, 1);
    fixture_make(&b, SPEC_WIDER, OPTIM_SGD, 9, 1);
    write_ok(dir, &a, 1, path, sizeof path);
    expect_read_error(path, &b, &b.opt, "'conv1.weight'", "different model");
    expect_read_error(path, &b, NULL, "(4,1,3,3)", "(5,1,3,3)");
    fixture_free(&a);
    fixture_free(&b);
}

static void test_optimizer_kind_mismatch(void **state)
{
    char path[1024];
    const char *dir = test_tmpdir("ckpt_kind");
    fixture adam, sgd;
    fixture_make(&adam, SPEC, OPTIM_ADAM, 10, 2);
    fixture_make(&sgd, SPEC, OPTIM_SGD, 11, 2);
    write_ok(dir, &adam, 2, path, sizeof path);
    expect_read_error(path, &sgd, &sgd.opt, "adam", "sgd");
    write_ok(dir, &sgd, 5, path, sizeof path);
    expect_read_error(path, &adam, &adam.opt, "sgd", "adam");

    /* Written without an optimizer: fine for parameters, an error for o. */
    core_error err = {{0}};
    train_progress p = progress_at(7);
    assert_int_equal(
        train_checkpoint_write(dir, adam.model, NULL, &p, NULL, path, sizeof path, &err), 0);
    expect_read_error(path, &adam, &adam.opt, "no optimizer state", NULL);
    assert_int_equal(train_checkpoint_read(path, sgd.model, NULL, NULL, &err), 0);
    fixture_free(&adam);
    fixture_free(&sgd);
}

/* Edits a written checkpoint with HDF5 directly to fake a newer format, a
 * wrong dtype and a missing optimizer tensor. */
static void set_version(const char *path, int64_t v)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    assert_true(a >= 0);
    assert_true(H5Awrite(a, H5T_NATIVE_INT64, &v) >= 0);
    H5Aclose(a);
    H5Fclose(f);
}

static void replace_with_f64(const char *path, const char *dset, const nn_tensor *t)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    assert_true(H5Ldelete(f, dset, H5P_DEFAULT) >= 0);
    hsize_t dims[NN_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++)
        dims[i] = (hsize_t)t->dims[i];
    hid_t sp = H5Screate_simple(t->ndim, dims, NULL);
    hid_t ds = H5Dcreate2(f, dset, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(ds >= 0);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Fclose(f);
}

static void delete_link(const char *path, const char *name)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    assert_true(H5Ldelete(f, name, H5P_DEFAULT) >= 0);
    H5Fclose(f);
}

static void test_version_dtype_and_missing_state(void **state)
{
    char path[1024], name[256];
    const char *dir = test_tmpdir("ckpt_edit");
    fixture a, b;
    fixture_make(&a, SPEC, OPTIM_ADAM, 12, 2);
    fixture_make(&b, SPEC, OPTIM_ADAM, 13, 1);
    const nn_tensor *t = nn_model_tensor(a.model, 0);

    write_ok(dir, &a, 1, path, sizeof path);
    set_version(path, 7);
    expect_read_error(path, &b, &b.opt, "written by format version 7, this build reads 1", NULL);

    write_ok(dir, &a, 2, path, sizeof path);
    snprintf(name, sizeof name, "/params/%s", t->name);
    replace_with_f64(path, name, t);
    expect_read_error(path, &b, &b.opt, name, "dtype float64, expected float32");

    write_ok(dir, &a, 3, path, sizeof path);
    snprintf(name, sizeof name, "/optim/v/%s", t->name);
    delete_link(path, name);
    expect_read_error(path, &b, &b.opt, name, "missing");

    write_ok(dir, &a, 4, path, sizeof path);
    delete_link(path, "/optim");
    expect_read_error(path, &b, &b.opt, "/optim/m", "missing");
    fixture_free(&a);
    fixture_free(&b);
}

static void test_unwritable_target_keeps_previous(void **state)
{
    char dir[512], good[1024], blocker[600], target[700], got[1024];
    snprintf(dir, sizeof dir, "%s", test_tmpdir("ckpt_unwritable"));
    fixture a, b;
    fixture_make(&a, SPEC, OPTIM_ADAM, 14, 2);
    fixture_make(&b, SPEC, OPTIM_ADAM, 15, 0);
    write_ok(dir, &a, 2, good, sizeof good);

    /* The target directory would live under a regular file. */
    snprintf(blocker, sizeof blocker, "%s/a_file", dir);
    FILE *f = fopen(blocker, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(target, sizeof target, "%s/ckpts/run1", blocker);
    core_error err = {{0}};
    train_progress p = progress_at(5);
    assert_int_equal(
        train_checkpoint_write(target, a.model, &a.opt, &p, CONFIG, got, sizeof got, &err), -1);
    print_message("    message: %s\n", err.msg);
    assert_non_null(strstr(err.msg, target));
    assert_non_null(strstr(err.msg, strerror(ENOTDIR)));

    /* A directory we may not write into (meaningless as root, who may). */
    if (geteuid() != 0) {
        assert_int_equal(chmod(dir, 0555), 0);
        assert_int_equal(
            train_checkpoint_write(dir, a.model, &a.opt, &p, CONFIG, got, sizeof got, &err), -1);
        assert_non_null(strstr(err.msg, dir));
        assert_non_null(strstr(err.msg, strerror(EACCES)));
        assert_int_equal(chmod(dir, 0755), 0);
    }

    /* The earlier checkpoint is still what the directory resolves to, and loads. */
    assert_int_equal(train_checkpoint_resolve(dir, got, sizeof got, &err), 0);
    assert_string_equal(got, good);
    if (train_checkpoint_read(got, b.model, &b.opt, NULL, &err) != 0)
        fail_msg("%s", err.msg);
    assert_memory_equal(nn_model_params(a.model), nn_model_params(b.model), a.n * sizeof(float));
    fixture_free(&a);
    fixture_free(&b);
}

/* The data order and the epoch's segments survive a round trip; segments
 * of an earlier epoch are not written. */
static void test_data_order_round_trip(void **state)
{
    const char *dir = test_tmpdir("ckpt_order");
    fixture a;
    fixture_make(&a, SPEC, OPTIM_ADAM, 1, 2);
    train_progress p = progress_at(4);
    p.world = 3;
    p.batch = 48;
    p.order_samples = 960;
    p.order_cap = 12345;
    p.nseg = 2;
    p.seg_epoch = p.epoch;
    p.seg[0] = (data_segment){2, 48, 7};
    p.seg[1] = (data_segment){5, 50, 1};
    char path[1024];
    core_error err = {{0}};
    assert_int_equal(
        train_checkpoint_write(dir, a.model, &a.opt, &p, CONFIG, path, sizeof path, &err), 0);
    train_progress q;
    memset(&q, 0, sizeof q);
    if (train_checkpoint_read(path, a.model, &a.opt, &q, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(q.world, 3);
    assert_int_equal(q.batch, 48);
    assert_true(q.order_samples == 960 && q.order_cap == 12345);
    assert_int_equal(q.nseg, 2);
    assert_int_equal(q.seg_epoch, q.epoch);
    assert_memory_equal(q.seg, p.seg, 2 * sizeof p.seg[0]);

    p.step = 5;
    p.seg_epoch = p.epoch - 1;
    assert_int_equal(
        train_checkpoint_write(dir, a.model, &a.opt, &p, CONFIG, path, sizeof path, &err), 0);
    memset(&q, 0, sizeof q);
    if (train_checkpoint_read(path, a.model, &a.opt, &q, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(q.nseg, 0);
    assert_int_equal(q.world, 3);
    fixture_free(&a);
}

/* A model with a tensor of more than TRAIN_CKPT_RANGE floats in many rows
 * (dense3.weight, 2000 x 600: two ranges of whole rows) and one whose single
 * row is longer than a range (dense1.weight, 2 x 1100000: one row per
 * range). */
static const char *SPEC_BIG = "input 1 1 1100000\n"
                              "flatten\n"
                              "dense 2\n"
                              "dense 600\n"
                              "dense 2000\n"
                              "loss softmax_cross_entropy\n";

/* The state of a checkpoint moves range by range: a source that takes each
 * range from a whole optimizer, and a sink that puts each back into whole
 * buffers. Both see every float of every state exactly once, in ranges of
 * whole rows of one tensor, at most one range or one row long. */
typedef struct range_log {
    const nn_model *m;
    const optim *from;
    float *into[2];
    unsigned char *seen[2];
    int calls, fail_at;
} range_log;

static void log_range(range_log *r, int k, size_t lo, size_t hi)
{
    assert_true(k >= 0 && k < 2 && lo < hi);
    int in_one = 0;
    for (int i = 0; i < nn_model_tensor_count(r->m); i++) {
        const nn_tensor *t = nn_model_tensor(r->m, i);
        size_t row = t->count / (size_t)t->dims[0];
        if (lo >= t->offset && hi <= t->offset + t->count) {
            in_one = (lo - t->offset) % row == 0 && (hi - lo) % row == 0 &&
                     (hi - lo <= TRAIN_CKPT_RANGE || hi - lo == row);
        }
    }
    if (!in_one)
        fail_msg("range [%zu, %zu) of state %d is not whole rows of one tensor", lo, hi, k);
    for (size_t i = lo; i < hi; i++) {
        assert_int_equal(r->seen[k][i], 0);
        r->seen[k][i] = 1;
    }
    r->calls++;
}

static int fill_from(void *ctx, int k, size_t lo, size_t hi, float *dst, core_error *err)
{
    range_log *r = ctx;
    log_range(r, k, lo, hi);
    if (r->calls == r->fail_at)
        return core_error_set(err, "range %d refused", r->calls);
    memcpy(dst, (k == 0 ? r->from->m : r->from->v) + lo, (hi - lo) * sizeof(float));
    return 0;
}

static int sink_into(void *ctx, int k, size_t lo, size_t hi, const float *src, core_error *err)
{
    range_log *r = ctx;
    (void)err;
    log_range(r, k, lo, hi);
    memcpy(r->into[k] + lo, src, (hi - lo) * sizeof(float));
    return 0;
}

static void range_log_reset(range_log *r, size_t n)
{
    for (int k = 0; k < 2; k++)
        memset(r->seen[k], 0, n);
    r->calls = 0;
}

static void test_state_by_ranges(void **state)
{
    char dir[512], path[1024], whole_path[1024];
    snprintf(dir, sizeof dir, "%s/run", test_tmpdir("ckpt_ranges"));
    fixture a, b;
    fixture_make(&a, SPEC_BIG, OPTIM_ADAM, 6, 2);
    fixture_make(&b, SPEC_BIG, OPTIM_ADAM, 7, 0);
    size_t n = a.n, bytes = n * sizeof(float);
    range_log r = {a.model, &a.opt, {malloc(bytes), malloc(bytes)}, {malloc(n), malloc(n)}, 0, -1};
    for (int k = 0; k < 2; k++) {
        assert_non_null(r.into[k]);
        assert_non_null(r.seen[k]);
    }
    core_error err = {{0}};
    train_progress p = progress_at(2);
    write_ok(dir, &a, 1, whole_path, sizeof whole_path);

    /* written from a source: the same checkpoint */
    range_log_reset(&r, n);
    train_ckpt_source src = {fill_from, &r};
    if (train_checkpoint_write_from(dir, a.model, &a.opt, &src, &p, CONFIG, path, sizeof path,
                                    &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(r.calls, 16); /* per state: 2 + 1 + 1 + 1 + 2 + 1 */
    for (int k = 0; k < 2; k++)
        assert_null(memchr(r.seen[k], 0, n));
    if (train_checkpoint_read(path, b.model, &b.opt, NULL, &err) != 0)
        fail_msg("%s", err.msg);
    assert_memory_equal(nn_model_params(a.model), nn_model_params(b.model), bytes);
    assert_memory_equal(a.opt.m, b.opt.m, bytes);
    assert_memory_equal(a.opt.v, b.opt.v, bytes);

    /* read into a sink: the state, whole again, and the step */
    range_log_reset(&r, n);
    optim c;
    optim_config oc = optim_config_default(OPTIM_ADAM);
    assert_int_equal(optim_create_range(&c, &oc, n, 0, 0, &err), 0);
    if (train_checkpoint_read_state(whole_path, b.model, &c, sink_into, &r, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(r.calls, 16);
    assert_int_equal(c.step, 2);
    assert_memory_equal(r.into[0], a.opt.m, bytes);
    assert_memory_equal(r.into[1], a.opt.v, bytes);
    optim_destroy(&c);

    /* the state of another optimizer: refused before any range */
    range_log_reset(&r, n);
    oc = optim_config_default(OPTIM_SGD);
    assert_int_equal(optim_create_range(&c, &oc, n, 0, 0, &err), 0);
    assert_int_equal(train_checkpoint_read_state(whole_path, b.model, &c, sink_into, &r, &err), -1);
    assert_non_null(strstr(err.msg, "optimizer state is for adam, this run uses sgd"));
    assert_int_equal(r.calls, 0);
    optim_destroy(&c);

    /* a source that fails part way: no file, the previous one kept */
    range_log_reset(&r, n);
    r.fail_at = 3;
    p.step = 9;
    assert_int_equal(train_checkpoint_write_from(dir, a.model, &a.opt, &src, &p, CONFIG, path,
                                                 sizeof path, &err),
                     -1);
    assert_non_null(strstr(err.msg, "range 3 refused; the checkpoint was not written"));
    assert_null(strchr(err.msg, '\n'));
    char gone[1100];
    snprintf(gone, sizeof gone, "%s/ckpt-000000009.h5", dir);
    assert_int_equal(access(gone, F_OK), -1);
    snprintf(gone, sizeof gone, "%s/ckpt-000000009.h5.tmp", dir);
    assert_int_equal(access(gone, F_OK), -1);
    for (int k = 0; k < 2; k++) {
        free(r.into[k]);
        free(r.seen[k]);
    }
    fixture_free(&a);
    fixture_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_adam),
        cmocka_unit_test(test_round_trip_sgd_and_params_only),
        cmocka_unit_test(test_latest_moves_and_resolve_falls_back),
        cmocka_unit_test(test_resolve_empty_and_missing_dir),
        cmocka_unit_test(test_truncated_and_not_hdf5),
        cmocka_unit_test(test_different_model_names_tensor),
        cmocka_unit_test(test_optimizer_kind_mismatch),
        cmocka_unit_test(test_version_dtype_and_missing_state),
        cmocka_unit_test(test_unwritable_target_keeps_previous),
        cmocka_unit_test(test_data_order_round_trip),
        cmocka_unit_test(test_state_by_ranges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
