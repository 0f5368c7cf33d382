/*
 * engine/cpu/engine_cpu_blas.c: see engine_cpu_blas.h.
 */
#include "engine/cpu/engine_cpu_blas.h"

#include <cblas.h>
#include <string.h>
#include <strings.h>

#include "core/par.h"

const char *engine_cpu_blas_core(void)
{
    const char *s = openblas_get_corename();
    return s ? s : "unknown";
}

int engine_cpu_blas_dynamic(void)
{
    const char *cfg = openblas_get_config();
    return cfg && strstr(cfg, "DYNAMIC_ARCH") != NULL;
}

int engine_cpu_blas_level(const char *core)
{
    static const char *const avx512[] = {"skylakex", "cooperlake", "sapphirerapids"};
    static const char *const avx2[] = {"haswell", "zen"};
    static const char *const avx[] = {"sandybridge", "bulldozer", "piledriver", "steamroller",
                                      "excavator"};
    for (size_t i = 0; i < sizeof avx512 / sizeof *avx512; i++)
        if (strcasecmp(core, avx512[i]) == 0)
            return 3;
    for (size_t i = 0; i < sizeof avx2 / sizeof *avx2; i++)
        if (strcasecmp(core, avx2[i]) == 0)
            return 2;
    for (size_t i = 0; i < sizeof avx / sizeof *avx; i++)
        if (strcasecmp(core, avx[i]) == 0)
            return 1;
    return 0;
}

const char *engine_cpu_blas_best(const char **feature)
{
    const char *f = NULL, *best = NULL;
#if defined(__x86_64__) && defined(__GNUC__)
    /* libgcc's cpuid checks also ask the OS (XGETBV) whether it saves the
     * vector registers, as OpenBLAS does. */
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512bf16"))
        f = "AVX-512 BF16", best = "Cooperlake";
    else if (__builtin_cpu_supports("avx512f"))
        f = "AVX-512", best = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        f = "AVX2", best = "Haswell";
    else if (__builtin_cpu_supports("avx"))
        f = "AVX", best = "Sandybridge";
#endif
    if (feature)
        *feature = f;
    return best;
}

int engine_cpu_blas_outdated(const char **best, const char **feature)
{
    const char *b = engine_cpu_blas_best(feature);
    if (best)
        *best = b;
    return b && engine_cpu_blas_level(engine_cpu_blas_core()) < engine_cpu_blas_level(b);
}

int engine_cpu_set_threads(int n)
{
    n = core_par_set_threads(n);
    openblas_set_num_threads(1);
    return n;
}
