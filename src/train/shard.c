/*
 * train/shard.c: the optimizer split over ranks (see shard.h): the mode
 * flag, the optimizer of a rank's slice, and checkpoints of a state that no
 * rank holds whole.
 */
#include "train/shard.h"

#include <string.h>

#include "core/log.h"
#include "core/mem.h"

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
    core_error drain_err;
    size_t longest = 0;
    train_checkpoint_ranges(m, states, longest_range, &longest);
    s.dst =
        core_alloc((longest ? longest : 1) * sizeof(float), "checkpoint drain buffer", &drain_err);
    s.err = &drain_err;
    if (!s.dst || train_checkpoint_ranges(m, states, serve_range, &s) != 0)
        core_log_error("%s", drain_err.msg);
    core_free(s.dst);
    return rc;
}

int train_optim_scatter(dist_world *w, const optim *whole, optim *o, core_error *err)
{
    int root = dist_rank(w) == 0;
    for (int k = 0; k < optim_state_count(o); k++) {
        float *mine = k == 0 ? o->m : o->v;
        const float *src = root ? state_of(whole, k) : NULL;
        for (size_t lo = 0; lo < o->n; lo += TRAIN_CKPT_RANGE) {
            size_t hi = o->n - lo < TRAIN_CKPT_RANGE ? o->n : lo + TRAIN_CKPT_RANGE;
            if (dist_zero_scatter(w, mine, o->n, lo, hi, src ? src + lo : NULL, err) != 0)
                return -1;
        }
    }
    long step = root ? whole->step : 0;
    if (dist_broadcast(w, &step, sizeof step, 0, err) != 0)
        return -1;
    o->step = step;
    return 0;
}
