/*
 * train/memplan.h: the memory plan of a training rank (docs/MEMORY.md).
 *
 * Before anything large is allocated, the trainer adds up what the rank
 * will hold: the model's buffers (nn_model_memory: parameters, gradients,
 * activations at the micro-batch, workspace), the optimizer state (the
 * rank's share of it), the data loader's buffers, the all-reduce scratch,
 * rank 0's in-memory checkpoint image, and what the process already holds
 * (libraries, MPI). The start-up summary prints the plan of every rank, and
 * a plan above --max-memory ends the run on every rank with one line that
 * names the biggest part and the flag that shrinks it.
 */
#ifndef TRAIN_MEMPLAN_H
#define TRAIN_MEMPLAN_H

#include <stddef.h>

#include "core/error.h"
#include "nn/model.h"
#include "optim/optim.h"

enum {
    TRAIN_MEM_PARAMS,
    TRAIN_MEM_GRADS,
    TRAIN_MEM_OPTIM,
    TRAIN_MEM_ACT,
    TRAIN_MEM_WORK,
    TRAIN_MEM_LOADER,
    TRAIN_MEM_COMM,
    TRAIN_MEM_CKPT,
    TRAIN_MEM_PROCESS,
    TRAIN_MEM_PARTS
};

typedef struct train_memplan {
    double bytes[TRAIN_MEM_PARTS]; /* by part, TRAIN_MEM_* */
    double total;
    double optim_fraction;  /* the share of the optimizer state this rank keeps */
    double recompute_saves; /* activation bytes --recompute blocks would save */
    int micro_batch;
} train_memplan;

/* Bytes of optimizer state for n parameters when a rank keeps `fraction`
 * of it: 1 for a whole copy (today's runs, the node-sharded step included),
 * slice / n for a rank that keeps only its slice (optimizer-state sharding
 * across ranks fills this in with its slice). SGD keeps one buffer (momentum),
 * Adam and AdamW two (first and second moment). */
double train_memplan_optim_bytes(const optim_config *cfg, size_t n, double fraction);

/* The plan of one rank. loader, comm, eval and process are bytes the
 * caller knows (data_loader_mem_bytes, the all-reduce scratch, the
 * evaluation's confusion matrix - train_eval_bytes, counted as workspace -
 * and the resident size now); ckpt: 1 on the rank that writes checkpoints. */
void train_memplan_make(train_memplan *p, const nn_model *m, const optim_config *o,
                        double optim_fraction, int micro_batch, double loader, double comm,
                        double eval, double process, int ckpt);

/* The part's name ("activations") and the flag that shrinks it. */
const char *train_memplan_part_name(int part);
int train_memplan_biggest(const train_memplan *p);

/* 0, or -1 with one line when the plan exceeds limit bytes (limit 0: no
 * limit). source: the model spec; why: where a default limit came from
 * (NULL or "" when the user set it). */
int train_memplan_check(const train_memplan *p, double limit, const char *source, const char *why,
                        core_error *err);

/* Collective: rank 0 logs every rank's plan (ranks with the same plan on
 * one line) and the limit; limit 0: none. */
struct dist_world;
int train_memplan_report(struct dist_world *w, const train_memplan *p, double limit,
                         const char *why, core_error *err);

/* "parameters 71.3 MiB, gradients ...; total 967.0 MiB" into buf. */
const char *train_memplan_format(const train_memplan *p, char *buf, size_t len);

/* --max-memory's default: what the Slurm allocation (SLURM_MEM_PER_CPU x
 * SLURM_CPUS_PER_TASK, or SLURM_MEM_PER_NODE over the node's ranks), the
 * cgroup (memory.max) or else the machine gives one of local_ranks ranks;
 * `why` says which. 0 when nothing is known. */
double train_memplan_default_limit(int local_ranks, char *why, size_t len);

/* "8G", "512M", "1.5GiB", "2T", plain bytes; 0 = no limit. */
int train_memplan_parse_size(const char *text, double *bytes, core_error *err);

/* The resident set of this process now (bytes; 0 if unknown). */
double train_memplan_resident(void);

#endif
