/*
 * train/memplan.c: the memory plan of a training rank (see memplan.h).
 */
#include "train/memplan.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mem.h"
#include "dist/dist.h"

static const char *const part_names[TRAIN_MEM_PARTS] = {
    "parameters",  "gradients",  "optimizer state", "activations", "workspace",
    "data loader", "all-reduce", "checkpoint",      "process"};

const char *train_memplan_part_name(int part)
{
    return part >= 0 && part < TRAIN_MEM_PARTS ? part_names[part] : "?";
}

double train_memplan_optim_bytes(const optim_config *cfg, size_t n, double fraction)
{
    int states = cfg->kind == OPTIM_ADAM ? 2 : 1;
    return 4.0 * states * (double)n * fraction;
}

void train_memplan_make(train_memplan *p, const nn_model *m, const optim_config *o,
                        double optim_fraction, int micro_batch, double loader, double comm,
                        double eval, double process, int ckpt)
{
    nn_model_mem mm;
    nn_model_memory(m, &mm);
    size_t n = nn_model_param_count(m);
    memset(p, 0, sizeof *p);
    p->bytes[TRAIN_MEM_PARAMS] = mm.params;
    p->bytes[TRAIN_MEM_GRADS] = mm.grads;
    p->bytes[TRAIN_MEM_OPTIM] = train_memplan_optim_bytes(o, n, optim_fraction);
    p->bytes[TRAIN_MEM_ACT] = mm.activations;
    p->bytes[TRAIN_MEM_WORK] = mm.workspace + eval;
    p->bytes[TRAIN_MEM_LOADER] = loader;
    p->bytes[TRAIN_MEM_COMM] = comm;
    /* rank 0 builds each checkpoint in memory before writing it: the
     * parameters and the whole optimizer state */
    p->bytes[TRAIN_MEM_CKPT] = ckpt ? mm.params + train_memplan_optim_bytes(o, n, 1.0) : 0.0;
    p->bytes[TRAIN_MEM_PROCESS] = process;
    for (int i = 0; i < TRAIN_MEM_PARTS; i++)
        p->total += p->bytes[i];
    p->optim_fraction = optim_fraction;
    p->recompute_saves = mm.recompute_saves;
    p->micro_batch = micro_batch;
}

int train_memplan_biggest(const train_memplan *p)
{
    int big = 0; /* among the parts a flag or the model shrinks: not the process itself */
    for (int i = 1; i < TRAIN_MEM_PROCESS; i++)
        if (p->bytes[i] > p->bytes[big])
            big = i;
    return big;
}

/* What shrinks a part, for the refusal's message. */
static void part_remedy(const train_memplan *p, int part, char *buf, size_t len)
{
    char h[32];
    switch (part) {
    case TRAIN_MEM_OPTIM:
        snprintf(buf, len,
                 "shard it across ranks with --shard-optimizer, or use "
                 "--optimizer sgd (one state buffer instead of two)");
        return;
    case TRAIN_MEM_ACT:
        if (p->recompute_saves > 0.0)
            snprintf(buf, len,
                     "lower --batch-size, raise --accumulate, or use --recompute blocks "
                     "(saves %s)",
                     core_format_bytes(p->recompute_saves, h, sizeof h));
        else
            snprintf(buf, len, "lower --batch-size or raise --accumulate");
        return;
    case TRAIN_MEM_WORK:
        snprintf(buf, len, "lower --batch-size or raise --accumulate");
        return;
    case TRAIN_MEM_LOADER:
        snprintf(buf, len, "lower --loader-mem or use more ranks");
        return;
    case TRAIN_MEM_COMM:
        snprintf(buf, len, "use more ranks");
        return;
    default:
        snprintf(buf, len,
                 "use a smaller model (fewer or narrower layers) or give each rank "
                 "more memory");
        return;
    }
}

int train_memplan_check(const train_memplan *p, double limit, const char *source, const char *why,
                        core_error *err)
{
    if (limit <= 0.0 || p->total <= limit)
        return 0;
    int big = train_memplan_biggest(p);
    char total[32], lim[32], part[32], remedy[160], extra[48] = "", whence[192] = "";
    part_remedy(p, big, remedy, sizeof remedy);
    if (big == TRAIN_MEM_ACT || big == TRAIN_MEM_WORK)
        snprintf(extra, sizeof extra, " at micro-batch %d", p->micro_batch);
    if (why && *why)
        snprintf(whence, sizeof whence, " (the default: %s)", why);
    return core_error_set(err,
                          "%s: the memory plan needs %s, more than --max-memory %s%s; the "
                          "biggest part is %s (%s%s): %s",
                          source, core_format_bytes(p->total, total, sizeof total),
                          core_format_bytes(limit, lim, sizeof lim), whence, part_names[big],
                          core_format_bytes(p->bytes[big], part, sizeof part), extra, remedy);
}

const char *train_memplan_format(const train_memplan *p, char *buf, size_t len)
{
    size_t k = 0;
    buf[0] = '\0';
    for (int i = 0; i < TRAIN_MEM_PARTS && k < len; i++) {
        char h[32];
        if (p->bytes[i] <= 0.0 && i == TRAIN_MEM_CKPT)
            continue;
        k += (size_t)snprintf(buf + k, len - k, "%s%s %s", k ? ", " : "", part_names[i],
                              core_format_bytes(p->bytes[i], h, sizeof h));
        if (i == TRAIN_MEM_OPTIM && p->optim_fraction < 1.0 && k < len)
            k += (size_t)snprintf(buf + k, len - k, " (a %.3g share)", p->optim_fraction);
    }
    if (k < len) {
        char h[32];
        snprintf(buf + k, len - k, "; total %s", core_format_bytes(p->total, h, sizeof h));
    }
    return buf;
}

static double env_mib(const char *name)
{
    const char *v = getenv(name);
    char *end = NULL;
    double x = v ? strtod(v, &end) : 0.0;
    return v && end != v && x > 0.0 ? x * 1048576.0 : 0.0;
}

/* cgroup v2's memory.max of this process (0: none or unknown). */
static double cgroup_limit(void)
{
    FILE *f = fopen("/sys/fs/cgroup/memory.max", "r");
    if (!f)
        return 0.0;
    char line[64] = "";
    double v = 0.0;
    if (fgets(line, sizeof line, f) && strncmp(line, "max", 3) != 0)
        v = strtod(line, NULL);
    fclose(f);
    return v > 0.0 ? v : 0.0;
}

double train_memplan_default_limit(int local_ranks, char *why, size_t len)
{
    char h[32];
    int ranks = local_ranks > 0 ? local_ranks : 1;
    double per_cpu = env_mib("SLURM_MEM_PER_CPU"), per_node = env_mib("SLURM_MEM_PER_NODE");
    if (per_cpu > 0.0) {
        const char *c = getenv("SLURM_CPUS_PER_TASK");
        int cpus = c && atoi(c) > 0 ? atoi(c) : 1;
        snprintf(why, len, "the Slurm allocation: %s per CPU x %d CPU(s) per task",
                 core_format_bytes(per_cpu, h, sizeof h), cpus);
        return per_cpu * cpus;
    }
    if (per_node > 0.0) {
        snprintf(why, len, "the Slurm allocation: %s per node over %d rank(s)",
                 core_format_bytes(per_node, h, sizeof h), ranks);
        return per_node / ranks;
    }
    double phys = core_mem_physical(), cg = cgroup_limit();
    if (cg > 0.0 && (phys <= 0.0 || cg < phys)) {
        snprintf(why, len, "the cgroup's %s over %d rank(s)", core_format_bytes(cg, h, sizeof h),
                 ranks);
        return cg / ranks;
    }
    if (phys <= 0.0) {
        snprintf(why, len, "unknown: no limit");
        return 0.0;
    }
    snprintf(why, len, "the machine's %s over %d rank(s)", core_format_bytes(phys, h, sizeof h),
             ranks);
    return phys / ranks;
}

int train_memplan_parse_size(const char *text, double *bytes, core_error *err)
{
    char *end = NULL;
    errno = 0;
    double v = text ? strtod(text, &end) : 0.0;
    if (!text || end == text || errno || !(v >= 0.0) || isinf(v))
        return core_error_set(err,
                              "--max-memory expects a size such as 8G, 512M or 1.5GiB, got '%s'",
                              text ? text : "");
    static const struct {
        const char *unit;
        double scale;
    } units[] = {{"", 1.0},
                 {"B", 1.0},
                 {"K", 1024.0},
                 {"KiB", 1024.0},
                 {"M", 1048576.0},
                 {"MiB", 1048576.0},
                 {"G", 1073741824.0},
                 {"GiB", 1073741824.0},
                 {"T", 1099511627776.0},
                 {"TiB", 1099511627776.0}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcasecmp(end, units[i].unit) == 0) {
            *bytes = v * units[i].scale;
            return 0;
        }
    return core_error_set(err, "--max-memory: unknown unit '%s' in '%s' (expected K, M, G or T)",
                          end, text);
}

double train_memplan_resident(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0.0;
    unsigned long size = 0, resident = 0;
    int got = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return got == 2 && page > 0 ? (double)resident * (double)page : 0.0;
}

static int same_plan(const double *a, const double *b)
{
    return memcmp(a, b, (TRAIN_MEM_PARTS + 3) * sizeof *a) == 0;
}

/* The slot a rank's plan travels in. */
static void pack(const train_memplan *p, double *slot)
{
    memcpy(slot, p->bytes, TRAIN_MEM_PARTS * sizeof *slot);
    slot[TRAIN_MEM_PARTS] = p->optim_fraction;
    slot[TRAIN_MEM_PARTS + 1] = p->recompute_saves;
    slot[TRAIN_MEM_PARTS + 2] = p->micro_batch;
}

static void unpack(const double *slot, train_memplan *p)
{
    memset(p, 0, sizeof *p);
    memcpy(p->bytes, slot, TRAIN_MEM_PARTS * sizeof *slot);
    for (int i = 0; i < TRAIN_MEM_PARTS; i++)
        p->total += p->bytes[i];
    p->optim_fraction = slot[TRAIN_MEM_PARTS];
    p->recompute_saves = slot[TRAIN_MEM_PARTS + 1];
    p->micro_batch = (int)slot[TRAIN_MEM_PARTS + 2];
}

int train_memplan_report(dist_world *w, const train_memplan *p, double limit, const char *why,
                         core_error *err)
{
    int size = dist_size(w), rank = dist_rank(w), k = TRAIN_MEM_PARTS + 3;
    double *all = calloc((size_t)size * (size_t)k, sizeof *all);
    int32_t failed = !all;
    if (dist_max_i32(w, &failed, 1, err) != 0 || failed) {
        free(all);
        return failed ? core_error_set(err, "out of memory gathering the memory plans") : -1;
    }
    pack(p, all + (size_t)rank * k);
    if (dist_sum_f64(w, all, size * k, err) != 0) {
        free(all);
        return -1;
    }
    char lim[32], line[640];
    if (limit > 0.0)
        core_log_info("memory plan per rank (--max-memory %s%s%s):",
                      core_format_bytes(limit, lim, sizeof lim),
                      why && *why ? ", the default: " : "", why ? why : "");
    else
        core_log_info("memory plan per rank (no --max-memory limit):");
    for (int r = 0; r < size;) {
        int last = r;
        while (last + 1 < size && same_plan(all + (size_t)r * k, all + (size_t)(last + 1) * k))
            last++;
        train_memplan q;
        unpack(all + (size_t)r * k, &q);
        char who[32];
        if (last == r)
            snprintf(who, sizeof who, "rank %d", r);
        else
            snprintf(who, sizeof who, "ranks %d-%d", r, last);
        core_log_info("  %s: %s (micro-batch %d)", who, train_memplan_format(&q, line, sizeof line),
                      q.micro_batch);
        r = last + 1;
    }
    free(all);
    return 0;
}
