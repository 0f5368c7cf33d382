/*
 * cli/bench.h: `ringtrain bench <what>`, the benchmarks behind the figures
 * in docs/ (see cli/bench.c).
 */
#ifndef CLI_BENCH_H
#define CLI_BENCH_H

#include "dist/dist.h"

/* argv[1] is "bench"; finalizes the world and returns the exit code. */
int cli_bench_main(dist_world *w, int argc, char **argv);

#endif
