/*
 * cli/args.h: table-driven flag parsing. Each subcommand declares one table
 * of flags; parsing, validation and the help text all come from that table,
 * so the help can never drift from what is accepted.
 */
#ifndef CLI_ARGS_H
#define CLI_ARGS_H

#include <stddef.h>
#include <stdio.h>

#include "core/error.h"

typedef enum cli_kind {
    CLI_STRING,       /* const char * */
    CLI_POS_INT,      /* int > 0 */
    CLI_NONNEG_INT,   /* int >= 0 */
    CLI_NONNEG_LONG,  /* long >= 0 */
    CLI_U64,          /* uint64_t */
    CLI_POS_FLOAT,    /* float > 0 */
    CLI_NONNEG_FLOAT, /* float >= 0 */
    CLI_FLAG,         /* int set to 1, takes no value */
} cli_kind;

typedef struct cli_flag {
    const char *name;    /* "--epochs" */
    const char *metavar; /* "N" */
    cli_kind kind;
    void *dst;
    const char *help;
    int required;
    int seen; /* set by cli_args_parse */
} cli_flag;

/* Parses argv[first..argc) against the table (terminated by a NULL name).
 * Accepts "--flag value" and "--flag=value". Errors name the flag and the
 * value, and suggest the nearest flag for a typo. */
int cli_args_parse(cli_flag *flags, int argc, char **argv, int first, core_error *err);
/* Prints "  --name METAVAR   help (default: X)" lines, defaults read from dst. */
void cli_args_help(FILE *out, const cli_flag *flags);
/* Finds a flag by name (to ask whether it was given). */
const cli_flag *cli_args_find(const cli_flag *flags, const char *name);

/* Exit status of a command line that cannot run. */
#define CLI_EXIT_USAGE 2

/* The start of every command: with --help among argv[first..] it prints
 * "usage: ringtrain USAGE" and the flags to stdout (when speak: rank 0) and
 * returns 1; else it parses argv[first..] and returns 0, or -1 with err set. */
int cli_args_command(cli_flag *flags, int argc, char **argv, int first, const char *usage,
                     int speak, core_error *err);
/* "ringtrain NAME: <err>" on stderr when speak; returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *name, int speak, const core_error *err);
/* "ringtrain: error: <err>" on stderr when speak; returns 1. */
int cli_run_error(int speak, const core_error *err);

#endif
