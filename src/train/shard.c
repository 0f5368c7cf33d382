/*
 * train/shard.c: the optimizer split over ranks (see shard.h): the mode
 * flag, the optimizer of a rank's slice, and checkpoints of a state that no
 * rank holds whole.
 */
#include "train/shard.h"

#include <string.h>

#include "core/log.h"
#include "core/mem.h"
#include "train/eval.h"

int train_shard_mode_parse(const char *name, int *mode, core_error *err)
{
    static const struct {
        const char *name;
        int mode;
    } names[] = {{"off", TRAIN_SHARD_OFF},
                 {"node", TRAIN_SHARD_NODE},
                 {"on", TRAIN_SHARD_NODE},
                 {"all", TRAIN_SHARD_ALL}};
    for (size_t i = 0; name && i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i].name) == 0) {
            *mode = names[i].mode;
            return 0;
        }
    return core_error_set(err, "--shard-optimizer expects off, node (or on) or all, got '%s'",
                          name ? name : "(null)");
}

const char *train_shard_mode_name(int mode)
{
    return mode == TRAIN_SHARD_ALL ? "all" : mode == TRAIN_SHARD_NODE ? "node" : "off";
}

size_t train_optim_state_bytes(const optim_config *cfg, size_t n, int mode, int world, int rank,
                               int device_memory)
{
    size_t a = 0, b = n;
    if (mode == TRAIN_SHARD_ALL && !device_memory)
        dist_zero_slice(n, world, rank, &a, &b);
    return optim_state_bytes(cfg->kind, b - a);
}

int train_optim_create(dist_world *w, const engine_ops *e, const optim_config *cfg, size_t n,
                       int mode, optim *o, size_t *a, size_t *b, core_error *err)
{
    *a = 0;
    *b = n;
    int zero = mode == TRAIN_SHARD_ALL && !e->device_memory;
    if (mode == TRAIN_SHARD_ALL && e->device_memory && dist_rank(w) == 0)
        core_log_warn("--shard-optimizer all: the GPU engine keeps the whole optimizer state on "
                      "every rank (the sharded step runs on the CPU engine only)");
    if (zero)
        dist_zero_slice(n, dist_size(w), dist_rank(w), a, b);
    if (optim_create_range(o, cfg, n, *a, *b, err) != 0)
        return -1;
    o->sharded = zero;
    return zero;
}

/* ---- checkpoints of a sharded state ---- */

typedef struct save_ctx {
    dist_world *w;
    const optim *o;
    long filled;     /* ranges rank 0's writer has asked for so far */
    int comm_failed; /* a gather failed: the exchange cannot go on */
    float *dst;      /* the other ranks' (and a drain's) receive buffer */
    core_error *err;
} save_ctx;

static const float *state_of(const optim *o, int k)
{
    return k == 0 ? o->m : o->v;
}

/* Rank 0's writer asks for range [lo, hi) of state k: the owners send it. */
static int save_fill(void *ctx, int k, size_t lo, size_t hi, float *dst, core_error *err)
{
    save_ctx *s = ctx;
    s->filled++;
    if (dist_zero_gather(s->w, state_of(s->o, k), s->o->n, lo, hi, dst, err) != 0) {
        s->comm_failed = 1;
        return -1;
    }
    return 0;
}

/* The other ranks' side of the same exchange, range by range; also rank
 * 0's drain of the ranges its writer did not reach (s->filled to skip). */
static int serve_range(void *ctx, int k, size_t lo, size_t hi)
{
    save_ctx *s = ctx;
    if (s->filled > 0) {
        s->filled--;
        return 0;
    }
    return dist_zero_gather(s->w, state_of(s->o, k), s->o->n, lo, hi, s->dst, s->err) != 0 ? -1 : 0;
}

static int longest_range(void *ctx, int k, size_t lo, size_t hi)
{
    size_t *longest = ctx;
    (void)k;
    *longest = hi - lo > *longest ? hi - lo : *longest;
    return 0;
}

/* Rank 0's side of the ranges its writer or reader did not reach, when it
 * failed part way: fn walks every range and skips those already exchanged,
 * with *buf a (zeroed) buffer of the longest range and *err its own error,
 * both set here for the walk. The run is failing already: a failure here is
 * only logged. */
static void drain(const nn_model *m, int states, train_ckpt_range_fn fn, void *ctx, float **buf,
                  core_error **err)
{
    core_error e, *outer = *err;
    size_t longest = 0;
    train_checkpoint_ranges(m, states, longest_range, &longest);
    *buf = core_alloc((longest ? longest : 1) * sizeof(float), "checkpoint drain buffer", &e);
    *err = &e;
    if (!*buf || train_checkpoint_ranges(m, states, fn, ctx) != 0)
        core_log_error("%s", e.msg);
    core_free(*buf);
    *buf = NULL;
    *err = outer;
}

int train_checkpoint_save(dist_world *w, const char *dir, nn_model *m, const optim *o,
                          const train_progress *p, const char *config_text, char *path_out,
                          size_t path_len, core_error *err)
{
    int rank = dist_rank(w);
    if (!o->sharded)
        return rank == 0
                   ? train_checkpoint_write(dir, m, o, p, config_text, path_out, path_len, err)
                   : 0;
    int states = optim_state_count(o);
    save_ctx s = {w, o, 0, 0, NULL, err};
    if (rank != 0)
        return train_checkpoint_ranges(m, states, serve_range, &s) != 0 ? -1 : 0;
    train_ckpt_source src = {save_fill, &s};
    int rc = train_checkpoint_write_from(dir, m, o, &src, p, config_text, path_out, path_len, err);
    if (rc == 0 || s.comm_failed)
        return rc;
    /* The write failed part way: the other ranks still send every range. */
    drain(m, states, serve_range, &s, &s.dst, &s.err);
    return rc;
}

typedef struct load_ctx {
    dist_world *w;
    optim *o;
    long sent;       /* ranges rank 0 has handed out so far */
    int comm_failed; /* a scatter failed: the exchange cannot go on */
    float *zeros;    /* rank 0's drain: what the ranges it could not read get */
    core_error *err;
} load_ctx;

/* Rank 0 has read range [lo, hi) of state k: to its owners. */
static int load_sink(void *ctx, int k, size_t lo, size_t hi, const float *src, core_error *err)
{
    load_ctx *s = ctx;
    s->sent++;
    float *mine = k == 0 ? s->o->m : s->o->v;
    if (dist_zero_scatter(s->w, mine, s->o->n, lo, hi, src, err) != 0) {
        s->comm_failed = 1;
        return -1;
    }
    return 0;
}

/* The other ranks' side, range by range; also rank 0's drain of the ranges
 * it did not send (s->sent to skip). */
static int take_range(void *ctx, int k, size_t lo, size_t hi)
{
    load_ctx *s = ctx;
    if (s->sent > 0) {
        s->sent--;
        return 0;
    }
    float *mine = k == 0 ? s->o->m : s->o->v;
    return dist_zero_scatter(s->w, mine, s->o->n, lo, hi, s->zeros, s->err) != 0 ? -1 : 0;
}

int train_checkpoint_load(dist_world *w, const char *path, nn_model *m, optim *o, train_progress *p,
                          core_error *err)
{
    int states = optim_state_count(o);
    load_ctx s = {w, o, 0, 0, NULL, err};
    int failed = 0;
    if (dist_rank(w) != 0) {
        if (train_checkpoint_ranges(m, states, take_range, &s) != 0)
            return -1;
    } else {
        failed = train_checkpoint_read(path, m, NULL, p, err) != 0 ||
                 train_checkpoint_read_state(path, m, o, load_sink, &s, err) != 0;
        if (s.comm_failed)
            return -1;
        if (failed) /* the other ranks still take every range (zeros) */
            drain(m, states, take_range, &s, &s.zeros, &s.err);
    }
    if (train_agree(w, failed, err) != 0)
        return -1;
    return dist_broadcast(w, &o->step, sizeof o->step, 0, err);
}
