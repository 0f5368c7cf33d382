/*
 * cli/cpu.c: see cpu.h. OpenBLAS reads OPENBLAS_CORETYPE once, when the
 * library is loaded, before main(); the only sure way to change its kernel is
 * to start the program again with the variable set. RINGTRAIN_BLAS_REEXEC
 * carries the kernel OpenBLAS had chosen into the restarted process, which
 * both reports it and never restarts again.
 *
 * Test hook: RINGTRAIN_TEST_BLAS_NOT_USER=1 says that OPENBLAS_CORETYPE was
 * set by the test to force a wrong kernel, not chosen by the user, so the
 * check corrects it as it would OpenBLAS's own wrong choice
 * (tests/e2e/blas_kernel.sh).
 */
#include "cli/cpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/log.h"
#include "engine/cpu/engine_cpu_blas.h"
#include "engine/cpu/engine_cpu_conv.h"

#define REEXEC_ENV "RINGTRAIN_BLAS_REEXEC"

static int restart_failed;

/* The value of --blas-coretype in argv ("--blas-coretype X" or "=X"). */
static const char *flag_value(int argc, char **argv)
{
    static const char name[] = "--blas-coretype";
    const size_t len = sizeof name - 1;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], name, len) != 0)
            continue;
        if (argv[i][len] == '=')
            return argv[i] + len + 1;
        if (argv[i][len] == '\0' && i + 1 < argc)
            return argv[i + 1];
    }
    return NULL;
}

void cli_cpu_reexec(int argc, char **argv)
{
    if (getenv(REEXEC_ENV))
        return;
    const char *core = engine_cpu_blas_core(), *forced = flag_value(argc, argv), *target = NULL;
    const char *user = getenv("OPENBLAS_CORETYPE");
    int user_chose = user && *user && !getenv("RINGTRAIN_TEST_BLAS_NOT_USER");
    if (forced && strcasecmp(forced, "openblas") == 0)
        return; /* OpenBLAS's own choice, as it is */
    if (forced && *forced) {
        if (strcasecmp(core, forced) != 0)
            target = forced;
    } else if (!user_chose && !engine_cpu_blas_outdated(&target, NULL)) {
        target = NULL;
    }
    if (!target || !engine_cpu_blas_dynamic())
        return;
    if (setenv("OPENBLAS_CORETYPE", target, 1) != 0 || setenv(REEXEC_ENV, core, 1) != 0)
        return;
    execvp(argv[0], argv);
    execv("/proc/self/exe", argv);
    restart_failed = 1; /* reported by cli_cpu_check */
    unsetenv(REEXEC_ENV);
}

int cli_cpu_check(const char *blas_coretype, int rank0, core_error *err)
{
    const char *core = engine_cpu_blas_core(), *was = getenv(REEXEC_ENV);
    if (engine_cpu_conv_check_env(err) != 0)
        return -1;
    if (blas_coretype && strcasecmp(blas_coretype, "openblas") == 0)
        return 0;
    if (blas_coretype) {
        if (!engine_cpu_blas_dynamic())
            return core_error_set(err,
                                  "--blas-coretype %s: this OpenBLAS has one kernel (%s), built "
                                  "without DYNAMIC_ARCH",
                                  blas_coretype, core);
        if (strcasecmp(core, blas_coretype) != 0)
            return core_error_set(err,
                                  "--blas-coretype %s: this OpenBLAS has no such kernel for this "
                                  "CPU (it runs %s; e.g. Haswell, SkylakeX, Sandybridge, "
                                  "Prescott)",
                                  blas_coretype, core);
        return 0;
    }
    const char *best = NULL, *feature = NULL;
    int outdated = engine_cpu_blas_outdated(&best, &feature);
    if (!rank0)
        return 0;
    if (was && !outdated)
        core_log_info("BLAS: OpenBLAS chose its %s kernel on a CPU with %s; restarted with "
                      "OPENBLAS_CORETYPE=%s (--blas-coretype NAME overrides)",
                      was, feature ? feature : "?", core);
    else if (outdated && getenv("OPENBLAS_CORETYPE") && !was && !restart_failed)
        return 0; /* the user's own choice */
    else if (outdated)
        fprintf(stderr,
                "ringtrain: warning: OpenBLAS runs its %s kernel on a CPU with %s (%s); GEMMs "
                "may be several times slower%s\n",
                core, feature ? feature : "?", best,
                engine_cpu_blas_dynamic()
                    ? (restart_failed ? ": the restart with OPENBLAS_CORETYPE failed" : "")
                    : ": this OpenBLAS was built without DYNAMIC_ARCH");
    return 0;
}
