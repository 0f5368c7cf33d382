/*
 * cli/sample.h: `ringtrain sample`, text from a language-model checkpoint.
 */
#ifndef CLI_SAMPLE_H
#define CLI_SAMPLE_H

#include "dist/dist.h"

/* Runs the subcommand on rank 0 (other ranks return at once); returns the
 * exit code (0, 1 failure, 2 usage). */
int cli_sample(dist_world *w, int argc, char **argv);

#endif
