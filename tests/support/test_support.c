/*
 * tests/support/test_support.c: helpers shared by the cmocka tests.
 */
#include "test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/rng.h"

const char *test_tmpdir(const char *tag)
{
    static char path[512];
    const char *base = getenv("RT_TEST_TMP");
    if (!base || !*base)
        base = "/tmp";
    mkdir(base, 0755);
    snprintf(path, sizeof path, "%s/%s.%ld", base, tag, (long)getpid());
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fail_msg("cannot clear %s", path);
    if (mkdir(path, 0755) != 0)
        fail_msg("cannot create %s", path);
    return path;
}

void test_fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi)
{
    core_rng r = core_rng_make(seed, 77);
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * core_rng_uniform(&r);
}

double test_max_rel_diff(const float *a, const float *b, size_t n)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        double s = fmax(1.0, fmax(fabs((double)a[i]), fabs((double)b[i])));
        if (d / s > worst)
            worst = d / s;
    }
    return worst;
}
