/*
 * cli/main.c: the `ringtrain` command. The only place that decides to end
 * the process: library calls return errors, this file prints them (once, on
 * rank 0) and picks the exit code.
 *
 * Exit codes: 0 success, 1 the run failed (bad data, model, checkpoint...),
 * 2 bad command line, 75 stopped by a signal after checkpointing (requeue).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/bench.h"
#include "cli/commands.h"
#include "cli/cpu.h"
#include "cli/sample.h"
#include "core/log.h"
#include "dist/dist.h"
#include "train/eval.h"
#include "train/memplan.h"
#include "train/shard.h"
#include "train/train.h"
#include "cli/device_flags.h"

typedef struct train_args {
    train_config cfg;
    const char *optimizer;
    const char *allreduce;
    float lr, momentum, weight_decay;
    int loader_mem_mib;
    const char *stop_signals;
    const char *nonfinite;
    float bucket_mib, first_bucket_mib, comm_timeout;
    int no_overlap;
    const char *overlap;
    const char *shard;
    int help;
    const char *device, *precision;
    const char *max_memory, *recompute, *blas_coretype;
} train_args;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ringtrain <command> [flags]\n\n"
            "commands:\n"
            "  train     train a model data-parallel over the ranks of the job\n"
            "  bench     benchmarks: 'bench allreduce' (backends side by side), 'bench idle'\n"
            "  eval      evaluate a checkpoint (float or int8) on an HDF5 split\n"
            "  predict   classify samples of an HDF5 file or image files (PGM)\n"
            "  quantize  post-training int8 quantization of a checkpoint, with a report\n"
            "  plot      draw a metrics file (and its confusion matrix) as SVG\n"
            "  sample    generate text from a language-model checkpoint\n"
            "  help      this text; 'ringtrain <command> --help' for its flags\n\n"
            "Run under mpirun or srun for several ranks, e.g.\n"
            "  mpirun -np 2 ringtrain train --model models/fashion_cnn.spec \\\n"
            "      --data data/fashion-mnist-train.h5 --test-data data/fashion-mnist-test.h5\n");
}

static int finish(dist_world *w, int code)
{
    dist_world_finalize(w);
    return code;
}

/* Collective: a bad command line on ANY rank (an MPMD launch can give ranks
 * different flags) ends every rank with that rank's message, printed once by
 * rank 0. Returns -1 when some rank failed. */
static int agree_usage(dist_world *w, int failed, const char *cmd, core_error *err)
{
    int first = dist_first_failed(w, failed);
    if (first < 0)
        return 0;
    /* rank 0's own message needs no broadcast and no "rank 0:" prefix */
    if (first != 0)
        train_report_rank(w, first, err);
    cli_usage_error(cmd, dist_rank(w) == 0, err);
    return -1;
}

/* --max-memory and --recompute into the configuration. */
static int resolve_memory(train_args *a, core_error *err)
{
    if (a->max_memory && strcmp(a->max_memory, "none") == 0)
        a->cfg.max_memory = -1.0;
    else if (a->max_memory) {
        if (train_memplan_parse_size(a->max_memory, &a->cfg.max_memory, err) != 0)
            return -1;
        if (a->cfg.max_memory <= 0.0)
            return core_error_set(err, "--max-memory must be positive (or none), got '%s'",
                                  a->max_memory);
    }
    if (strcmp(a->recompute, "none") == 0)
        a->cfg.recompute = NN_RECOMPUTE_NONE;
    else if (strcmp(a->recompute, "blocks") == 0)
        a->cfg.recompute = NN_RECOMPUTE_BLOCKS;
    else
        return core_error_set(err, "--recompute expects none or blocks, got '%s'", a->recompute);
    return 0;
}

static int cmd_train(dist_world *w, int argc, char **argv)
{
    train_args a;
    memset(&a, 0, sizeof a);
    train_config_defaults(&a.cfg);
    a.optimizer = optim_kind_name(a.cfg.optim.kind);
    a.allreduce = dist_allreduce_kind_name(a.cfg.allreduce);
    a.overlap = "auto";
    a.shard = "node";
    a.lr = a.cfg.optim.lr;
    a.momentum = optim_config_default(OPTIM_SGD).momentum;
    a.weight_decay = 0.0f;
    a.loader_mem_mib = 256;
    a.stop_signals = "TERM,USR1";
    a.nonfinite = "skip";
    a.bucket_mib = (float)DIST_BUCKET_DEFAULT / (1 << 20);
    a.first_bucket_mib = (float)DIST_FIRST_BUCKET_DEFAULT / (1 << 20);
    a.comm_timeout = (float)DIST_COMM_TIMEOUT_DEFAULT;
    a.device = "cpu";
    a.precision = "fp32";
    a.recompute = "none";
    cli_flag base[] = {
        {"--model", "FILE", CLI_STRING, &a.cfg.model_path, "model spec (see docs/MODEL_SPEC.md)", 1,
         0},
        {"--data", "FILE", CLI_STRING, &a.cfg.train_path, "HDF5 training set (docs/DATA_FORMAT.md)",
         1, 0},
        {"--test-data", "FILE", CLI_STRING, &a.cfg.test_path,
         "HDF5 test set, evaluated after every epoch", 0, 0},
        {"--x-name", "NAME", CLI_STRING, &a.cfg.x_name, "name of the sample dataset", 0, 0},
        {"--y-name", "NAME", CLI_STRING, &a.cfg.y_name, "name of the label dataset", 0, 0},
        {"--epochs", "N", CLI_POS_INT, &a.cfg.epochs, "epochs to train", 0, 0},
        {"--batch-size", "N", CLI_POS_INT, &a.cfg.batch, "GLOBAL batch, split across ranks", 0, 0},
        {"--optimizer", "adam|adamw|sgd", CLI_STRING, &a.optimizer, "optimizer", 0, 0},
        {"--lr", "X", CLI_POS_FLOAT, &a.lr, "learning rate (sgd: 0.01)", 0, 0},
        {"--momentum", "X", CLI_NONNEG_FLOAT, &a.momentum, "SGD momentum", 0, 0},
        {"--weight-decay", "X", CLI_NONNEG_FLOAT, &a.weight_decay, "L2 weight decay", 0, 0},
        {"--seed", "N", CLI_U64, &a.cfg.seed, "seed of initialization and shuffling", 0, 0},
        {"--checkpoint-dir", "DIR", CLI_STRING, &a.cfg.ckpt_dir,
         "rank 0 writes a checkpoint here after every epoch", 0, 0},
        {"--resume", "DIR|FILE|auto", CLI_STRING, &a.cfg.resume,
         "continue from the latest checkpoint in DIR (or FILE); auto: from --checkpoint-dir "
         "when it holds one",
         0, 0},
        {"--overwrite", NULL, CLI_FLAG, &a.cfg.overwrite,
         "start fresh in a --checkpoint-dir that holds another run's checkpoints, removing them "
         "(without it such a directory is refused)",
         0, 0},
        {"--checkpoint-every", "N", CLI_NONNEG_LONG, &a.cfg.ckpt_every,
         "also checkpoint every N steps (0: after each epoch only)", 0, 0},
        {"--keep-checkpoints", "K", CLI_NONNEG_INT, &a.cfg.keep_ckpts,
         "keep only the newest K checkpoints (0: all)", 0, 0},
        {"--stop-signals", "LIST", CLI_STRING, &a.stop_signals,
         "signals that checkpoint and stop with exit 75 (none: disable)", 0, 0},
        {"--allreduce", "ring|mpi|hier|nccl", CLI_STRING, &a.allreduce,
         "gradient all-reduce: own ring, MPI_Allreduce, shared memory within a node + ring, or "
         "NCCL (--device cuda)",
         0, 0},
        {"--bucket-mib", "X", CLI_POS_FLOAT, &a.bucket_mib, "all-reduce bucket size", 0, 0},
        {"--first-bucket-mib", "X", CLI_POS_FLOAT, &a.first_bucket_mib,
         "size of the first (earliest ready) bucket", 0, 0},
        {"--overlap", "auto|on|off", CLI_STRING, &a.overlap,
         "all-reduce buckets during backward on a comm thread (auto: when a rank has more than "
         "one CPU or a GPU)",
         0, 0},
        {"--no-overlap", NULL, CLI_FLAG, &a.no_overlap, "same as --overlap off", 0, 0},
        {"--shard-optimizer", "off|node|all", CLI_STRING, &a.shard,
         "node (or on; hier, CPU): each rank of a node updates a slice of the parameters and "
         "takes the others' from shared memory; all (CPU): each rank holds the optimizer state "
         "of its slice only (1/ranks of the memory), parameters all-gathered (same results)",
         0, 0},
        {"--accumulate", "N", CLI_POS_INT, &a.cfg.accumulate,
         "compute each local batch in N micro-batches, reduce once", 0, 0},
        {"--max-memory", "SIZE|none", CLI_STRING, &a.max_memory,
         "memory per rank (8G, 512M, ...); a run whose memory plan exceeds it stops at start-up "
         "(default: what the machine, its cgroup or the Slurm allocation gives a rank)",
         0, 0},
        {"--recompute", "none|blocks", CLI_STRING, &a.recompute,
         "blocks: Transformer blocks keep no activations and re-run their forward in backward "
         "(same gradients, less memory, about a third more compute)",
         0, 0},
        {"--comm-timeout", "S", CLI_POS_FLOAT, &a.comm_timeout,
         "watchdog: a collective stuck this long ends the job, naming the peer", 0, 0},
        {"--nonfinite", "skip|stop", CLI_STRING, &a.nonfinite,
         "NaN/Inf in any rank's loss or gradients: skip the step everywhere, or stop", 0, 0},
        {"--diverge-after", "N", CLI_NONNEG_LONG, &a.cfg.diverge_after,
         "skip: end the run as diverged after N skipped steps in a row (0: never; an epoch "
         "with every step skipped always ends it)",
         0, 0},
        {"--log-every", "N", CLI_NONNEG_INT, &a.cfg.log_every,
         "progress line and metrics record every N steps (0: per epoch only)", 0, 0},
        {"--train-limit", "N", CLI_NONNEG_LONG, &a.cfg.train_limit,
         "use only the first N training samples; on a token file the first N TOKENS, which "
         "every rank's part must hold a window of T+1 of (0: all)",
         0, 0},
        {"--test-limit", "N", CLI_NONNEG_LONG, &a.cfg.test_limit,
         "use only the first N test samples; on a token file the first N tokens (0: all)", 0, 0},
        {"--loader-mem", "MiB", CLI_POS_INT, &a.loader_mem_mib,
         "memory cap of each rank's data loader", 0, 0},
        {"--device", "cpu|cuda", CLI_STRING, &a.device,
         "compute engine: CPU, or the CUDA engine on GPU (local rank mod the GPUs the rank "
         "sees; docs/GPU.md)",
         0, 0},
        {"--precision", "fp32|tf32|bf16", CLI_STRING, &a.precision,
         "cuda: fp32 exact; tf32 GEMMs and convolutions on TF32 tensor cores; bf16 GEMMs on "
         "bf16 tensor cores (convolutions TF32); fp32 storage, master weights and reductions",
         0, 0},
        {"--threads", "N", CLI_POS_INT, &a.cfg.threads,
         "compute threads per rank (default: the CPUs the rank is bound to, or OMP_NUM_THREADS)", 0,
         0},
        {"--blas-coretype", "NAME", CLI_STRING, &a.blas_coretype,
         "OpenBLAS kernel to run (e.g. Haswell, SkylakeX; openblas: its own choice, uncorrected); "
         "default: OpenBLAS's choice, corrected when older than the CPU supports",
         0, 0},
    };
    /* the workflow's flags (cli/train_flags.c) follow the base table */
    cli_flag flags[80];
    cli_wf_args wa;
    int nf = (int)(sizeof base / sizeof base[0]);
    memcpy(flags, base, sizeof base);
    nf = cli_wf_flags(&wa, &a.cfg, flags, nf, 78);
    flags[nf++] = (cli_flag){"--help", NULL, CLI_FLAG, &a.help, "show this help", 0, 0};
    flags[nf] = (cli_flag){NULL, NULL, 0, NULL, NULL, 0, 0};
    core_error err = {{0}};
    int parsed = cli_args_command(flags, argc, argv, 2, "train --model FILE --data FILE [flags]",
                                  dist_rank(w) == 0, &err);
    if (parsed > 0)
        return finish(w, 0);
    if (parsed < 0 || cli_wf_resolve(&wa, &a.optimizer, &err) != 0)
        goto bad_usage;
    optim_kind kind;
    if (optim_kind_parse(a.optimizer, &kind, &err) != 0 ||
        dist_allreduce_kind_parse(a.allreduce, &a.cfg.allreduce, &err) != 0 ||
        dist_nonfinite_policy_parse(a.nonfinite, &a.cfg.nonfinite, &err) != 0)
        goto bad_usage;
    if (cli_device_resolve(a.device, a.precision, &a.cfg, &err) != 0 ||
        resolve_memory(&a, &err) != 0 ||
        cli_cpu_check(a.blas_coretype, dist_rank(w) == 0, &err) != 0)
        goto bad_usage;
    if (a.no_overlap)
        a.overlap = "off";
    if (strcmp(a.overlap, "auto") == 0)
        a.cfg.overlap = TRAIN_OVERLAP_AUTO;
    else if (strcmp(a.overlap, "on") == 0 || strcmp(a.overlap, "off") == 0)
        a.cfg.overlap = strcmp(a.overlap, "on") == 0;
    else {
        core_error_set(&err, "--overlap expects auto, on or off, got '%s'", a.overlap);
        goto bad_usage;
    }
    if (train_shard_mode_parse(a.shard, &a.cfg.shard_optim, &err) != 0)
        goto bad_usage;
    a.cfg.bucket_bytes = (size_t)((double)a.bucket_mib * (1 << 20));
    a.cfg.first_bucket_bytes = (size_t)((double)a.first_bucket_mib * (1 << 20));
    a.cfg.comm_timeout = a.comm_timeout;
    a.cfg.optim = optim_config_default(kind);
    if (cli_args_find(flags, "--lr")->seen)
        a.cfg.optim.lr = a.lr;
    if (cli_args_find(flags, "--momentum")->seen) {
        if (kind != OPTIM_SGD) {
            core_error_set(&err, "--momentum applies to --optimizer sgd only");
            goto bad_usage;
        }
        a.cfg.optim.momentum = a.momentum;
    }
    a.cfg.optim.weight_decay = a.weight_decay;
    a.cfg.loader_mem_cap = (size_t)a.loader_mem_mib << 20;
    if (a.cfg.resume && strcmp(a.cfg.resume, "auto") == 0) {
        if (!a.cfg.ckpt_dir) {
            core_error_set(&err, "--resume auto needs --checkpoint-dir");
            goto bad_usage;
        }
        a.cfg.resume_auto = 1;
        a.cfg.resume = NULL;
    }
    if (a.cfg.overwrite && (!a.cfg.ckpt_dir || a.cfg.resume || a.cfg.resume_auto)) {
        core_error_set(&err, a.cfg.ckpt_dir ? "--overwrite starts over; it cannot be combined "
                                              "with --resume"
                                            : "--overwrite needs --checkpoint-dir");
        goto bad_usage;
    }
    if (a.cfg.ckpt_every > 0 && !a.cfg.ckpt_dir) {
        core_error_set(&err, "--checkpoint-every needs --checkpoint-dir");
        goto bad_usage;
    }
    if (train_signals_install(a.stop_signals, &err) != 0 ||
        cli_wf_apply(&wa, flags, &a.cfg, &err) != 0)
        goto bad_usage;

    if (agree_usage(w, 0, "train", &err) != 0)
        return finish(w, CLI_EXIT_USAGE);
    train_result res;
    if (train_fit(w, &a.cfg, &res, &err) != 0)
        return finish(w, cli_run_error(dist_rank(w) == 0, &err));
    if (res.preempted)
        return finish(w, TRAIN_EXIT_PREEMPTED);
    if (res.test_accuracy == res.test_accuracy)
        core_log_info("final: %d epochs, %ld steps, test accuracy %.2f%%, test loss %.4f, "
                      "%.0f %s",
                      res.epochs_done, res.steps, 100.0 * res.test_accuracy, res.test_loss,
                      res.images_per_second, res.per_token ? "tokens/s" : "images/s");
    else if (res.epochs_run == 0) /* a relaunch of a finished run: no loss or rate to report */
        core_log_info("final: %d epochs, %ld steps", res.epochs_done, res.steps);
    else
        core_log_info("final: %d epochs, %ld steps, train loss %.4f, %.0f %s", res.epochs_done,
                      res.steps, res.final_loss, res.images_per_second,
                      res.per_token ? "tokens/s" : "images/s");
    return finish(w, 0);
bad_usage:
    agree_usage(w, 1, "train", &err);
    return finish(w, CLI_EXIT_USAGE);
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "plot") == 0)
        return cli_plot_main(argc, argv); /* no MPI: a picture from a file */
    if (strcmp(argv[1], "--version") == 0) {
        printf("ringtrain 0.1.0\n");
        return 0;
    }
    cli_cpu_reexec(argc, argv);
    core_error err = {{0}};
    dist_world *w = NULL;
    if (dist_world_init(&argc, &argv, &w, &err) != 0) {
        fprintf(stderr, "ringtrain: error: %s\n", err.msg);
        return EXIT_FAILURE;
    }
    if (strcmp(argv[1], "train") == 0)
        return cmd_train(w, argc, argv);
    if (strcmp(argv[1], "bench") == 0)
        return cli_bench_main(w, argc, argv);
    if (strcmp(argv[1], "eval") == 0)
        return finish(w, cli_eval_main(w, argc, argv));
    if (strcmp(argv[1], "predict") == 0)
        return finish(w, cli_predict_main(w, argc, argv));
    if (strcmp(argv[1], "quantize") == 0)
        return finish(w, cli_quantize_main(w, argc, argv));
    if (strcmp(argv[1], "sample") == 0)
        return finish(w, cli_sample(w, argc, argv));
    if (dist_rank(w) == 0)
        fprintf(stderr, "ringtrain: unknown command '%s' (try 'ringtrain help')\n", argv[1]);
    return finish(w, CLI_EXIT_USAGE);
}
