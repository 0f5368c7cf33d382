/*
 * cli/train_flags.c: the workflow flags of `ringtrain train` (see
 * commands.h, docs/WORKFLOW.md), kept apart from main.c's base table.
 */
#include <string.h>

#include "cli/commands.h"
#include "optim/schedule.h"
#include "train/progress.h"

int cli_wf_flags(cli_wf_args *a, train_config *cfg, cli_flag *flags, int n, int max)
{
    train_wf_config *wc = &cfg->wf;
    a->wc = wc;
    a->schedule = "constant";
    a->progress = "auto";
    a->layout = "auto";
    a->adamw = 0; /* main.c's cli_wf_args is not zeroed */
    const cli_flag more[] = {
        {"--layout", "auto|nchw|nhwc", CLI_STRING, &a->layout,
         "axis order of image samples; nhwc: channels-last (H, W, C), transposed while read "
         "(auto: the dataset's 'layout' attribute, else nchw)",
         0, 0},
        {"--val-data", "FILE", CLI_STRING, &wc->val_path, "HDF5 validation set", 0, 0},
        {"--val-fraction", "F", CLI_NONNEG_FLOAT, &wc->val_fraction,
         "hold out the last fraction F of the training file for validation", 0, 0},
        {"--val-limit", "N", CLI_NONNEG_LONG, &wc->val_limit,
         "use only the first N samples of --val-data (0: all)", 0, 0},
        {"--eval-every", "N", CLI_NONNEG_LONG, &wc->eval_every,
         "validate every N steps (0: after every epoch)", 0, 0},
        {"--metrics", "FILE", CLI_STRING, &wc->metrics_path,
         "JSON-lines metrics file (default: DIR/metrics.jsonl with --checkpoint-dir)", 0, 0},
        {"--l1", "X", CLI_NONNEG_FLOAT, &wc->l1, "L1 coefficient: adds X*sign(w) to the gradient",
         0, 0},
        {"--clip-norm", "X", CLI_NONNEG_FLOAT, &wc->clip_norm,
         "clip the global gradient norm to X (0: off)", 0, 0},
        {"--lr-schedule", "constant|step|cosine", CLI_STRING, &a->schedule,
         "learning-rate schedule", 0, 0},
        {"--warmup-steps", "N", CLI_NONNEG_LONG, &wc->warmup, "linear warm-up steps", 0, 0},
        {"--lr-step-size", "N", CLI_NONNEG_LONG, &wc->lr_step_size,
         "step schedule: decay every N steps", 0, 0},
        {"--lr-gamma", "X", CLI_POS_FLOAT, &wc->lr_gamma, "step schedule: decay factor", 0, 0},
        {"--min-lr", "X", CLI_NONNEG_FLOAT, &wc->min_lr, "cosine schedule: final learning rate", 0,
         0},
        {"--early-stop", "val_loss|val_top1|val_top5", CLI_STRING, &wc->early_metric,
         "stop when this validation metric stops improving", 0, 0},
        {"--patience", "N", CLI_NONNEG_INT, &wc->patience,
         "evaluations without improvement before stopping (0: never stop)", 0, 0},
        {"--min-delta", "X", CLI_NONNEG_FLOAT, &wc->min_delta,
         "smallest change that counts as an improvement", 0, 0},
        {"--restore-best", NULL, CLI_FLAG, &wc->restore_best,
         "load the best weights back at the end", 0, 0},
        {"--progress", "auto|bar|plain|none", CLI_STRING, &a->progress,
         "bar on a terminal (under mpirun: mpirun's own stdout), timestamped lines otherwise", 0,
         0},
        {"--init-from", "FILE|DIR", CLI_STRING, &wc->init_from,
         "start from the layers of this checkpoint that match by name and shape", 0, 0},
        {"--freeze-loaded", NULL, CLI_FLAG, &wc->freeze_loaded,
         "keep the layers loaded by --init-from fixed", 0, 0},
    };
    int k = (int)(sizeof more / sizeof more[0]);
    if (n + k > max)
        return -1;
    memcpy(flags + n, more, sizeof more);
    return n + k;
}

int cli_wf_resolve(cli_wf_args *a, const char **optimizer, core_error *err)
{
    if (*optimizer && strcmp(*optimizer, "adamw") == 0) {
        a->adamw = 1;
        *optimizer = "adam";
    }
    return 0;
}

int cli_wf_apply(cli_wf_args *a, const cli_flag *flags, train_config *cfg, core_error *err)
{
    train_wf_config *wc = &cfg->wf;
    if (optim_sched_kind_parse(a->schedule, &wc->schedule, err) != 0 ||
        train_progress_mode_parse(a->progress, &wc->progress, err) != 0 ||
        data_image_layout_parse(a->layout, &wc->layout, err) != 0)
        return -1;
    if (a->adamw) {
        cfg->optim.decoupled = 1;
        if (!cli_args_find(flags, "--weight-decay")->seen)
            cfg->optim.weight_decay = 0.01f; /* torch.optim.AdamW's default */
    }
    if (cli_args_find(flags, "--lr-step-size")->seen && wc->schedule != OPTIM_SCHED_STEP)
        return core_error_set(err, "--lr-step-size applies to --lr-schedule step only");
    if (cli_args_find(flags, "--min-lr")->seen && wc->schedule != OPTIM_SCHED_COSINE)
        return core_error_set(err, "--min-lr applies to --lr-schedule cosine only");
    return 0;
}
