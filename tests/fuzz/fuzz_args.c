/*
 * tests/fuzz/fuzz_args.c: libFuzzer target for the CLI flag parser
 * (src/cli/args.c). The input is split at NUL bytes into argv; a table with
 * one flag of every kind is parsed, and the help text is printed into
 * /dev/null from the values left behind.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"

#define MAX_ARGS 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *devnull;
    if (!devnull)
        devnull = fopen("/dev/null", "w");
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *argv[MAX_ARGS + 2] = {"ringtrain", "train"};
    int argc = 2;
    for (size_t i = 0; i <= size && argc < MAX_ARGS + 2;) {
        argv[argc++] = buf + i;
        i += strlen(buf + i) + 1;
    }
    const char *s = "default";
    int pos = 5, nonneg = 0, flag = 0;
    long l = 0;
    uint64_t u = 0;
    float pf = 1.0f, nf = 0.0f;
    cli_flag flags[] = {
        {"--model", "FILE", CLI_STRING, &s, "a string", 0, 0},
        {"--epochs", "N", CLI_POS_INT, &pos, "a positive int", 0, 0},
        {"--log-every", "N", CLI_NONNEG_INT, &nonneg, "a non-negative int", 0, 0},
        {"--train-limit", "N", CLI_NONNEG_LONG, &l, "a long", 0, 0},
        {"--seed", "N", CLI_U64, &u, "a u64", 0, 0},
        {"--lr", "X", CLI_POS_FLOAT, &pf, "a positive float", 0, 0},
        {"--momentum", "X", CLI_NONNEG_FLOAT, &nf, "a non-negative float", 0, 0},
        {"--no-overlap", NULL, CLI_FLAG, &flag, "a flag", 0, 0},
        {"--data", "FILE", CLI_STRING, &s, "required", 1, 0},
        {NULL, NULL, 0, NULL, NULL, 0, 0},
    };
    core_error err = {{0}};
    if (cli_args_parse(flags, argc, argv, 2, &err) != 0) {
        if (!err.msg[0])
            abort(); /* a failure always says why */
    } else if (pos < 1 || nonneg < 0 || l < 0 || !(pf > 0.0f) || !(nf >= 0.0f)) {
        abort(); /* a value the table's kind forbids got through */
    }
    cli_args_help(devnull, flags);
    cli_args_find(flags, argv[argc - 1]);
    free(buf);
    return 0;
}
