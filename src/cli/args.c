/*
 * cli/args.c: table-driven flag parsing (see args.h).
 */
#include "cli/args.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 64;
    size_t prev[64], cur[64];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof(size_t) * (lb + 1));
    }
    return prev[lb];
}

static cli_flag *find_flag(cli_flag *flags, const char *name, size_t len)
{
    for (cli_flag *f = flags; f->name; f++)
        if (strlen(f->name) == len && strncmp(f->name, name, len) == 0)
            return f;
    return NULL;
}

const cli_flag *cli_args_find(const cli_flag *flags, const char *name)
{
    for (const cli_flag *f = flags; f->name; f++)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

static int unknown_flag(const cli_flag *flags, const char *arg, size_t len, core_error *err)
{
    char name[128];
    snprintf(name, sizeof name, "%.*s", (int)(len < 100 ? len : 100), arg);
    const char *best = NULL;
    size_t best_d = 4;
    for (const cli_flag *f = flags; f->name; f++) {
        size_t d = edit_distance(name, f->name);
        if (d < best_d) {
            best_d = d;
            best = f->name;
        }
    }
    if (best)
        return core_error_set(err, "unknown flag '%s' (did you mean %s?)", name, best);
    return core_error_set(err, "unknown flag '%s' (see --help)", name);
}

static int parse_value(cli_flag *f, const char *v, core_error *err)
{
    char *end = NULL;
    errno = 0;
    switch (f->kind) {
    case CLI_STRING:
        if (!*v)
            return core_error_set(err, "%s expects %s, got an empty value", f->name, f->metavar);
        *(const char **)f->dst = v;
        return 0;
    case CLI_POS_INT:
    case CLI_NONNEG_INT: {
        long x = strtol(v, &end, 10);
        long lo = f->kind == CLI_POS_INT ? 1 : 0;
        if (errno || end == v || *end || x < lo || x > INT_MAX)
            return core_error_set(err, "%s expects a %s integer, got '%s'", f->name,
                                  lo ? "positive" : "non-negative", v);
        *(int *)f->dst = (int)x;
        return 0;
    }
    case CLI_NONNEG_LONG: {
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || x < 0)
            return core_error_set(err, "%s expects a non-negative integer, got '%s'", f->name, v);
        *(long *)f->dst = x;
        return 0;
    }
    case CLI_U64: {
        if (*v == '-')
            return core_error_set(err, "%s expects a non-negative integer, got '%s'", f->name, v);
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || end == v || *end)
            return core_error_set(err, "%s expects a non-negative integer, got '%s'", f->name, v);
        *(uint64_t *)f->dst = (uint64_t)x;
        return 0;
    }
    case CLI_POS_FLOAT:
    case CLI_NONNEG_FLOAT: {
        float x = strtof(v, &end);
        int bad = errno || end == v || *end || !isfinite(x);
        if (bad || x < 0.0f || (f->kind == CLI_POS_FLOAT && x == 0.0f))
            return core_error_set(err, "%s expects a %s number, got '%s'", f->name,
                                  f->kind == CLI_POS_FLOAT ? "positive" : "non-negative", v);
        *(float *)f->dst = x;
        return 0;
    }
    case CLI_FLAG:
        break;
    }
    return core_error_set(err, "%s takes no value", f->name);
}

int cli_args_parse(cli_flag *flags, int argc, char **argv, int first, core_error *err)
{
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0)
            return core_error_set(err, "unexpected argument '%s' (flags start with --)", arg);
        const char *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        cli_flag *f = find_flag(flags, arg, len);
        if (!f)
            return unknown_flag(flags, arg, len, err);
        if (f->seen)
            return core_error_set(err, "%s given twice", f->name);
        f->seen = 1;
        if (f->kind == CLI_FLAG) {
            if (eq)
                return core_error_set(err, "%s takes no value", f->name);
            *(int *)f->dst = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v) {
            if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)
                return core_error_set(err, "%s needs a value (%s)", f->name, f->metavar);
            v = argv[++i];
        }
        if (parse_value(f, v, err) != 0)
            return -1;
    }
    for (cli_flag *f = flags; f->name; f++)
        if (f->required && !f->seen)
            return core_error_set(err, "%s %s is required", f->name, f->metavar);
    return 0;
}

static void format_default(const cli_flag *f, char *buf, size_t len)
{
    buf[0] = '\0';
    switch (f->kind) {
    case CLI_STRING:
        if (*(const char **)f->dst)
            snprintf(buf, len, "%s", *(const char **)f->dst);
        break;
    case CLI_POS_INT:
    case CLI_NONNEG_INT:
        snprintf(buf, len, "%d", *(int *)f->dst);
        break;
    case CLI_NONNEG_LONG:
        snprintf(buf, len, "%ld", *(long *)f->dst);
        break;
    case CLI_U64:
        snprintf(buf, len, "%" PRIu64, *(uint64_t *)f->dst);
        break;
    case CLI_POS_FLOAT:
    case CLI_NONNEG_FLOAT:
        snprintf(buf, len, "%g", (double)*(float *)f->dst);
        break;
    case CLI_FLAG:
        break;
    }
}

void cli_args_help(FILE *out, const cli_flag *flags)
{
    for (const cli_flag *f = flags; f->name; f++) {
        char left[64], def[128];
        snprintf(left, sizeof left, "%s%s%s", f->name, f->metavar ? " " : "",
                 f->metavar ? f->metavar : "");
        format_default(f, def, sizeof def);
        if (f->required)
            fprintf(out, "  %-26s %s (required)\n", left, f->help);
        else if (def[0])
            fprintf(out, "  %-26s %s (default: %s)\n", left, f->help, def);
        else
            fprintf(out, "  %-26s %s\n", left, f->help);
    }
}

int cli_args_command(cli_flag *flags, int argc, char **argv, int first, const char *usage,
                     int speak, core_error *err)
{
    for (int i = first; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0) {
            if (speak) {
                printf("usage: ringtrain %s\n\n", usage);
                cli_args_help(stdout, flags);
            }
            return 1;
        }
    return cli_args_parse(flags, argc, argv, first, err) == 0 ? 0 : -1;
}

int cli_usage_error(const char *name, int speak, const core_error *err)
{
    if (speak)
        fprintf(stderr, "ringtrain %s: %s\n", name, err->msg);
    return CLI_EXIT_USAGE;
}

int cli_run_error(int speak, const core_error *err)
{
    if (speak)
        fprintf(stderr, "ringtrain: error: %s\n", err->msg);
    return 1;
}
