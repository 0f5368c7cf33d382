/*
 * cli/bench.c: `ringtrain bench allreduce` (and `bench idle`), the
 * benchmarks behind docs/COMMUNICATION.md.
 *
 *   ringtrain bench allreduce [--sizes 4K,1M,...] [--iters N]
 *                             [--backends ring,mpi,hier] [--segment BYTES]
 *
 * prints one row per size with every backend side by side in the same run
 * (time per call, algbw, busbw as nccl-tests define them, correct) and each
 * backend's ratio to MPI_Allreduce. `bench idle` measures what a waiting
 * comm thread costs compute (dist_bench_idle).
 */
#include "cli/bench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cpu.h"
#include "core/log.h"
#include "train/bench_step.h"

#define BENCH_MAX_N 32

static int finish(dist_world *w, int code)
{
    dist_world_finalize(w);
    return code;
}

/* "4K" / "1M" / "1G" (powers of 1024) or plain bytes. */
static int parse_size(const char *s, size_t *out, core_error *err)
{
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno != 0)
        return core_error_set(err, "--sizes: '%s' is not a size (e.g. 4K, 1M, 256M)", s);
    int shift = 0;
    if (*end == 'K' || *end == 'k')
        shift = 10;
    else if (*end == 'M' || *end == 'm')
        shift = 20;
    else if (*end == 'G' || *end == 'g')
        shift = 30;
    if (shift)
        end++;
    if (*end == 'i' && end[1] == 'B')
        end += 2;
    else if (*end == 'B')
        end++;
    if (*end != '\0' || v == 0 || v > (1ull << 40) >> shift)
        return core_error_set(err, "--sizes: '%s' is not a size from 1 B to 1 TiB (e.g. 4K, 1M)",
                              s);
    *out = (size_t)(v << shift);
    return 0;
}

/* Splits a comma list into items (modifies text); returns the count or -1. */
static int split_list(char *text, char **items, int max, const char *flag, core_error *err)
{
    int n = 0;
    for (char *tok = strtok(text, ","); tok; tok = strtok(NULL, ",")) {
        if (n == max)
            return core_error_set(err, "%s: at most %d entries", flag, max);
        items[n++] = tok;
    }
    if (n == 0)
        return core_error_set(err, "%s: empty list", flag);
    return n;
}

typedef struct bench_args {
    const char *sizes, *backends;
    int iters;
    long segment;
    int help;
} bench_args;

static int usage_error(dist_world *w, const core_error *err)
{
    if (dist_rank(w) == 0)
        fprintf(stderr, "ringtrain bench: %s\n", err->msg);
    return finish(w, CLI_EXIT_USAGE);
}

static int bench_allreduce(dist_world *w, int argc, char **argv)
{
    bench_args a = {"4K,16K,64K,256K,1M,4M,16M,64M,256M", "ring,mpi,hier", 20, 0, 0};
    cli_flag flags[] = {
        {"--sizes", "LIST", CLI_STRING, &a.sizes, "message sizes, comma-separated (K/M/G = KiB..)",
         0, 0},
        {"--backends", "LIST", CLI_STRING, &a.backends, "backends side by side: ring,mpi,hier", 0,
         0},
        {"--iters", "N", CLI_POS_INT, &a.iters, "timed calls per size and backend (median)", 0, 0},
        {"--segment", "BYTES", CLI_NONNEG_LONG, &a.segment, "ring segment (0: the default)", 0, 0},
        {"--help", NULL, CLI_FLAG, &a.help, "show this help", 0, 0},
        {NULL, NULL, 0, NULL, NULL, 0, 0},
    };
    core_error err = {{0}};
    int rc =
        cli_args_command(flags, argc, argv, 3, "bench allreduce [flags]", dist_rank(w) == 0, &err);
    if (rc != 0)
        return rc > 0 ? finish(w, 0) : usage_error(w, &err);
    char sizes_text[1024], kinds_text[256];
    snprintf(sizes_text, sizeof sizes_text, "%s", a.sizes);
    snprintf(kinds_text, sizeof kinds_text, "%s", a.backends);
    char *items[BENCH_MAX_N];
    size_t bytes[BENCH_MAX_N];
    dist_allreduce_kind kinds[BENCH_MAX_N];
    int nsizes = split_list(sizes_text, items, BENCH_MAX_N, "--sizes", &err);
    if (nsizes < 0)
        return usage_error(w, &err);
    for (int i = 0; i < nsizes; i++)
        if (parse_size(items[i], &bytes[i], &err) != 0)
            return usage_error(w, &err);
    int nkinds = split_list(kinds_text, items, 8, "--backends", &err);
    if (nkinds < 0)
        return usage_error(w, &err);
    for (int i = 0; i < nkinds; i++)
        if (dist_allreduce_kind_parse(items[i], &kinds[i], &err) != 0)
            return usage_error(w, &err);
    if (a.segment > 0 && dist_world_set_ring_segment(w, (size_t)a.segment, &err) != 0)
        return usage_error(w, &err);
    dist_bench_config cfg = {bytes, nsizes, kinds, nkinds, a.iters};
    rc = dist_bench_allreduce_run(w, &cfg, &err);
    return finish(w, rc == 0 ? 0 : cli_run_error(dist_rank(w) == 0, &err));
}

static int bench_idle(dist_world *w, int argc, char **argv)
{
    const char *backend = "ring";
    int trials = 5, help = 0;
    cli_flag flags[] = {
        {"--backend", "NAME", CLI_STRING, &backend, "backend the comm thread waits in", 0, 0},
        {"--trials", "N", CLI_POS_INT, &trials, "trials per case (median)", 0, 0},
        {"--help", NULL, CLI_FLAG, &help, "show this help", 0, 0},
        {NULL, NULL, 0, NULL, NULL, 0, 0},
    };
    core_error err = {{0}};
    dist_allreduce_kind kind;
    int rc = cli_args_command(flags, argc, argv, 3, "bench idle [flags]", dist_rank(w) == 0, &err);
    if (rc > 0)
        return finish(w, 0);
    if (rc < 0 || dist_allreduce_kind_parse(backend, &kind, &err) != 0)
        return usage_error(w, &err);
    rc = dist_bench_idle(w, kind, trials, &err);
    return finish(w, rc == 0 ? 0 : cli_run_error(dist_rank(w) == 0, &err));
}

/* --allreduce and --shard-optimizer of bench step and bench scaling. */
static int backend_and_shard(const char *backend, const char *shard, dist_allreduce_kind *kind,
                             int *shard_on, core_error *err)
{
    if (dist_allreduce_kind_parse(backend, kind, err) != 0)
        return -1;
    if (strcmp(shard, "on") != 0 && strcmp(shard, "off") != 0)
        return core_error_set(err, "--shard-optimizer expects on or off, got '%s'", shard);
    *shard_on = strcmp(shard, "on") == 0;
    return 0;
}

/* --threads and --blas-coretype of bench step and bench scaling. */
// clang-format off
#define CPU_FLAGS(threads, coretype)                                                               \
    {"--threads", "N", CLI_POS_INT, threads,                                                       \
     "compute threads per rank (default: the CPUs the rank is bound to)", 0, 0},                   \
    {"--blas-coretype", "NAME", CLI_STRING, coretype,                                              \
     "OpenBLAS kernel to run (openblas: its own choice, uncorrected; default: corrected when "     \
     "outdated)", 0, 0}
// clang-format on

static int bench_step(dist_world *w, int argc, char **argv)
{
    train_bench_step_config c = {NULL, 64, 20, 3, DIST_ALLREDUCE_HIER, 0, 0, 1, 0};
    const char *backend = "hier", *shard = "on", *coretype = NULL;
    float bucket_mib = 25.0f, first_mib = 1.0f;
    int help = 0;
    cli_flag flags[] = {
        {"--model", "FILE", CLI_STRING, &c.model_path, "model spec", 1, 0},
        {"--batch-size", "N", CLI_POS_INT, &c.batch, "global batch", 0, 0},
        {"--steps", "N", CLI_POS_INT, &c.steps, "timed steps per mode (median)", 0, 0},
        {"--warmup", "N", CLI_NONNEG_INT, &c.warmup, "untimed steps per mode", 0, 0},
        {"--allreduce", "ring|mpi|hier", CLI_STRING, &backend, "all-reduce backend", 0, 0},
        {"--bucket-mib", "X", CLI_POS_FLOAT, &bucket_mib, "bucket size", 0, 0},
        {"--first-bucket-mib", "X", CLI_POS_FLOAT, &first_mib, "first bucket size", 0, 0},
        {"--shard-optimizer", "on|off", CLI_STRING, &shard,
         "hier: each rank of a node updates a slice of the parameters, as train does", 0, 0},
        CPU_FLAGS(&c.threads, &coretype),
        {"--help", NULL, CLI_FLAG, &help, "show this help", 0, 0},
        {NULL, NULL, 0, NULL, NULL, 0, 0},
    };
    core_error err = {{0}};
    int rc = cli_args_command(flags, argc, argv, 3, "bench step --model FILE [flags]",
                              dist_rank(w) == 0, &err);
    if (rc > 0)
        return finish(w, 0);
    if (rc < 0 || backend_and_shard(backend, shard, &c.kind, &c.shard_optim, &err) != 0 ||
        cli_cpu_check(coretype, dist_rank(w) == 0, &err) != 0)
        return usage_error(w, &err);
    c.bucket_bytes = (size_t)((double)bucket_mib * (1 << 20));
    c.first_bucket_bytes = (size_t)((double)first_mib * (1 << 20));
    rc = train_bench_step(w, &c, &err);
    return finish(w, rc == 0 ? 0 : cli_run_error(dist_rank(w) == 0, &err));
}

static int bench_scaling(dist_world *w, int argc, char **argv)
{
    train_bench_scaling_config c = {NULL, 32, 15, 20, DIST_ALLREDUCE_HIER, 1, 0};
    const char *backend = "hier", *shard = "on", *coretype = NULL;
    int help = 0;
    cli_flag flags[] = {
        {"--model", "FILE", CLI_STRING, &c.model_path, "model spec", 1, 0},
        {"--batch-per-rank", "N", CLI_POS_INT, &c.local_batch, "samples per rank in both phases", 0,
         0},
        {"--rounds", "N", CLI_POS_INT, &c.rounds, "rounds (each: one phase alone, one together)", 0,
         0},
        {"--steps", "N", CLI_POS_INT, &c.steps, "steps per phase", 0, 0},
        {"--allreduce", "ring|mpi|hier", CLI_STRING, &backend, "all-reduce backend", 0, 0},
        {"--shard-optimizer", "on|off", CLI_STRING, &shard,
         "hier: each rank of a node updates a slice of the parameters, as train does", 0, 0},
        CPU_FLAGS(&c.threads, &coretype),
        {"--help", NULL, CLI_FLAG, &help, "show this help", 0, 0},
        {NULL, NULL, 0, NULL, NULL, 0, 0},
    };
    core_error err = {{0}};
    int rc = cli_args_command(flags, argc, argv, 3, "bench scaling --model FILE [flags]",
                              dist_rank(w) == 0, &err);
    if (rc > 0)
        return finish(w, 0);
    if (rc < 0 || backend_and_shard(backend, shard, &c.kind, &c.shard_optim, &err) != 0 ||
        cli_cpu_check(coretype, dist_rank(w) == 0, &err) != 0)
        return usage_error(w, &err);
    rc = train_bench_scaling(w, &c, &err);
    return finish(w, rc == 0 ? 0 : cli_run_error(dist_rank(w) == 0, &err));
}

int cli_bench_main(dist_world *w, int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[2], "scaling") == 0)
        return bench_scaling(w, argc, argv);
    if (argc >= 3 && strcmp(argv[2], "step") == 0)
        return bench_step(w, argc, argv);
    if (argc >= 3 && strcmp(argv[2], "allreduce") == 0)
        return bench_allreduce(w, argc, argv);
    if (argc >= 3 && strcmp(argv[2], "idle") == 0)
        return bench_idle(w, argc, argv);
    if (dist_rank(w) == 0)
        fprintf(stderr, "usage: ringtrain bench allreduce [--sizes LIST] [--iters N] "
                        "[--backends ring,mpi,hier] [--segment BYTES]\n"
                        "       ringtrain bench idle [--backend NAME] [--trials N]\n"
                        "       ringtrain bench step --model FILE [--batch-size N] [--steps N]\n"
                        "       ringtrain bench scaling --model FILE [--batch-per-rank N] "
                        "[--rounds N] [--steps N]\n");
    return finish(w, CLI_EXIT_USAGE);
}
