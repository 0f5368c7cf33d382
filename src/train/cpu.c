/*
 * train/cpu.c: the rank's compute threads and the start-up line that says
 * which BLAS kernel and how many threads a run uses (see train.h).
 */
#include <stdlib.h>

#include "core/log.h"
#include "core/par.h"
#include "engine/cpu/engine_cpu_blas.h"
#include "train/train.h"

int train_cpu_setup(dist_world *w, int requested)
{
    const char *why = "--threads", *feature = NULL;
    int n = requested > 0 ? requested : core_par_default_threads(dist_local_size(w), &why);
    n = engine_cpu_set_threads(n);
    engine_cpu_blas_best(&feature);
    core_log_info("cpu: OpenBLAS kernel %s (CPU: %s), %d thread(s) per rank (%s)",
                  engine_cpu_blas_core(), feature ? feature : "no AVX", n, why);
    return n;
}
