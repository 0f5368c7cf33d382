/*
 * cli/commands.h: the subcommands beyond `train`, and the training flags of
 * the workflow (validation, regularization, schedules, early stopping,
 * progress, fine-tuning), each in its own file so that main.c only
 * dispatches. Every command returns the process exit code (0, 1 failure,
 * 2 usage); main.c finalizes MPI and exits with it.
 */
#ifndef CLI_COMMANDS_H
#define CLI_COMMANDS_H

#include "cli/args.h"
#include "data/data.h"
#include "nn/model.h"
#include "dist/dist.h"
#include "train/train.h"

/* Workflow flags of `ringtrain train` (cli/train_flags.c). */
typedef struct cli_wf_args {
    train_wf_config *wc;
    const char *schedule, *progress, *layout;
    int adamw;
} cli_wf_args;

/* Appends the workflow flags to `flags` (which holds n entries, no
 * terminator yet, room for max); returns the new count or -1 if full. */
int cli_wf_flags(cli_wf_args *a, train_config *cfg, cli_flag *flags, int n, int max);
/* Right after parsing: maps --optimizer adamw to adam (decoupled). */
int cli_wf_resolve(cli_wf_args *a, const char **optimizer, core_error *err);
/* Before train_fit: enumerations, AdamW's decoupled decay (default 0.01). */
int cli_wf_apply(cli_wf_args *a, const cli_flag *flags, train_config *cfg, core_error *err);

/* eval and predict: data_dataset_match_input against the input of a model
 * loaded from the checkpoint ckpt_path. */
int cli_match_input(data_dataset *d, const nn_model *m, data_image_layout layout,
                    const char *ckpt_path, core_error *err);

int cli_eval_main(dist_world *w, int argc, char **argv);
int cli_predict_main(dist_world *w, int argc, char **argv);
int cli_quantize_main(dist_world *w, int argc, char **argv);
int cli_plot_main(int argc, char **argv);

#endif
