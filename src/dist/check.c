/*
 * dist/check.c: agreement between ranks - the start-up consistency check
 * (same model spec, parameter layout, data schema and global batch on every
 * rank) and the per-step flags exchange (non-finite values, preemption,
 * failure).
 *
 * Both are single small collectives on the control communicator, tested
 * with backoff under the watchdog (wait.c), and both end with the same
 * answer on every rank: a mismatch or a raised flag is known everywhere at
 * once, so every rank can stop (or skip) together instead of some ranks
 * entering a collective that others never reach.
 */
#include "dist/dist_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* FNV-1a, 64 bits: no table, stable across machines, good enough to tell
 * two configurations apart (this is a consistency check, not security). */
static uint64_t fnv1a64(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    /* The length too, so that "" and a run of zero bytes differ. */
    for (int i = 0; i < 8; i++) {
        h ^= (uint64_t)(len >> (8 * i)) & 0xff;
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Gathers one u64 from every rank into w->lengths, watched. */
static int gather_u64(dist_world *w, uint64_t mine, const char *what, core_error *err)
{
    char watch_what[160];
    snprintf(watch_what, sizeof watch_what, "the consistency check of %s", what);
    int outer = dist_watch_active();
    if (!outer)
        dist_watch_begin(watch_what, w->timeout_s);
    MPI_Request req;
    int rc = MPI_Iallgather(&mine, 1, MPI_UINT64_T, w->lengths, 1, MPI_UINT64_T, w->ctl, &req);
    if (rc == MPI_SUCCESS)
        rc = dist_wait_req(w, &req, -1, "dist: consistency check", err) == 0 ? MPI_SUCCESS : -1;
    else
        dist_mpi_error(w, err, rc, "dist: consistency check");
    if (!outer)
        dist_watch_end();
    return rc == MPI_SUCCESS ? 0 : -1;
}

/* "1, 3, 4" (at most 8 ranks named, then "and N more") of the ranks whose
 * entry differs from rank 0's; returns how many differ. */
static int list_differing(const dist_world *w, char *out, size_t cap)
{
    int k = 0, len = 0;
    out[0] = '\0';
    for (int r = 1; r < w->size; r++) {
        if (w->lengths[r] == w->lengths[0])
            continue;
        if (k < 8 && (size_t)len < cap)
            len += snprintf(out + len, cap - (size_t)len, "%s%d", k ? ", " : "", r);
        k++;
    }
    if (k > 8 && (size_t)len < cap)
        snprintf(out + len, cap - (size_t)len, " and %d more", k - 8);
    return k;
}

int dist_check_same(dist_world *w, const char *what, const void *data, size_t len, core_error *err)
{
    uint64_t h = fnv1a64(data, len);
    if (gather_u64(w, h, what, err) != 0)
        return core_error_prefix(err, "dist: checking %s", what);
    char ranks[256];
    int k = list_differing(w, ranks, sizeof ranks);
    if (k == 0)
        return 0;
    return core_error_set(err,
                          "dist: rank%s %s differ%s from rank 0 in %s (hash %016llx vs rank 0's "
                          "%016llx); every rank must start with the same configuration",
                          k > 1 ? "s" : "", ranks, k > 1 ? "" : "s", what,
                          (unsigned long long)w->lengths[ranks[0] ? atoi(ranks) : 0],
                          (unsigned long long)w->lengths[0]);
}

int dist_check_same_i64(dist_world *w, const char *what, int64_t value, core_error *err)
{
    if (gather_u64(w, (uint64_t)value, what, err) != 0)
        return core_error_prefix(err, "dist: checking %s", what);
    char ranks[256];
    int k = list_differing(w, ranks, sizeof ranks);
    if (k == 0)
        return 0;
    int first = atoi(ranks);
    return core_error_set(err,
                          "dist: rank%s %s differ%s from rank 0 in %s (rank %d has %lld, rank 0 "
                          "has %lld); every rank must start with the same configuration",
                          k > 1 ? "s" : "", ranks, k > 1 ? "" : "s", what, first,
                          (long long)(int64_t)w->lengths[first], (long long)(int64_t)w->lengths[0]);
}

int dist_agree_flags(dist_world *w, long step, const int *local, int *first_rank, int n,
                     core_error *err)
{
    if (n < 0 || n > DIST_MAX_FLAGS)
        return core_error_set(err, "dist: %d step flags; at most %d", n, DIST_MAX_FLAGS);
    /* MAX of (size - rank) over the ranks that raised a flag is the lowest
     * such rank: one MAX reduction says both whether and who. */
    int32_t v[DIST_MAX_FLAGS];
    for (int k = 0; k < n; k++)
        v[k] = local[k] ? (int32_t)(w->size - w->rank) : 0;
    char what[96];
    snprintf(what, sizeof what, "the flag agreement at step %ld", step);
    int outer = dist_watch_active();
    if (!outer)
        dist_watch_begin(what, w->timeout_s);
    int failed = 0;
    if (!dist_hier_agree_max(w, v, n)) {
        MPI_Request req;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, v, n, MPI_INT32_T, MPI_MAX, w->ctl, &req);
        if (rc != MPI_SUCCESS)
            failed = dist_mpi_error(w, err, rc, "dist: step flag agreement");
        else
            failed = dist_wait_req(w, &req, -1, "dist: step flag agreement", err);
    }
    if (!outer)
        dist_watch_end();
    if (failed)
        return -1;
    for (int k = 0; k < n; k++)
        first_rank[k] = v[k] ? w->size - v[k] : -1;
    return 0;
}

int dist_any_nonfinite(dist_world *w, long step, int local_nonfinite, int *first_rank,
                       core_error *err)
{
    return dist_agree_flags(w, step, &local_nonfinite, first_rank, 1, err);
}

int dist_has_nonfinite(const float *x, size_t n)
{
    /* Exponent all ones is Inf or NaN; an OR over integers vectorizes
     * without -ffast-math (a float sum would not). */
    const uint32_t *u = (const uint32_t *)(const void *)x;
    uint32_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad |= (uint32_t)((u[i] & 0x7f800000u) == 0x7f800000u);
    return bad != 0;
}

int dist_nonfinite_policy_parse(const char *name, dist_nonfinite_policy *out, core_error *err)
{
    if (name && strcmp(name, "skip") == 0) {
        *out = DIST_NONFINITE_SKIP;
        return 0;
    }
    if (name && strcmp(name, "stop") == 0) {
        *out = DIST_NONFINITE_STOP;
        return 0;
    }
    return core_error_set(err, "unknown non-finite policy '%s'; expected 'skip' or 'stop'",
                          name ? name : "(none)");
}

int dist_nonfinite_decide(dist_nonfinite_policy policy, long step, int first_rank, core_error *err)
{
    if (first_rank < 0)
        return 0;
    if (policy == DIST_NONFINITE_SKIP)
        return 1;
    return core_error_set(err,
                          "non-finite loss or gradient (NaN or Inf) on rank %d at step %ld; "
                          "stopping before the optimizer step, so parameters and optimizer "
                          "state are those of step %ld (lower the learning rate, check the "
                          "data, or use --nonfinite skip)",
                          first_rank, step, step - 1);
}
