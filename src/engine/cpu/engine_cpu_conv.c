/*
 * engine/cpu/engine_cpu_conv.c: the CPU engine's convolution.
 *
 * The batch is unrolled by im2col into a (C*K*K) x (N*OH*OW) column matrix
 * and multiplied by the (F, C*K*K) weight, in groups of images whose columns
 * fill the L2 cache (read at run time: 5 images for the tutorial's second
 * conv with a 1 MiB L2, 32 for its first), so sgemm reads the columns from
 * cache right after im2col wrote them. Per-sample GEMMs would have N = OH*OW
 * (196 for the tutorial's second conv), too narrow for OpenBLAS; a group of
 * a few images measured as fast as one GEMM over the whole batch (N = 12544)
 * and saves the trip through memory. The output comes out channel-major
 * (F, N, OH, OW), which pooling and activations do not care about and
 * `flatten` undoes once.
 *
 * Backward rebuilds each group's columns from x for the weight gradient (in
 * L2, cheaper than keeping a batch-sized copy from forward and reading it
 * back from memory; the layer holds one group's columns, not the batch's),
 * and the group's column gradient W^T * dY goes to the scratch shared by all
 * layers and straight into col2im.
 *
 * 3x3 stride-1 convolutions with 8 or more input channels and filters go to
 * Winograd's F(2x2, 3x3) instead (engine_cpu_winograd.c: 2.25x fewer FLOPs
 * in GEMMs of the same size). RINGTRAIN_CPU_CONV=im2col keeps every
 * convolution on im2col (the method of earlier versions, whose rounding a
 * run may want to reproduce); =winograd or unset: the choice above.
 */
#include "engine/cpu/engine_cpu_conv.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/cpu/engine_cpu_winograd.h"

/* 1 when this convolution runs by Winograd. */
static int use_winograd(const engine_conv_geom *g, int F)
{
    static int allowed = -1;
    if (allowed < 0) {
        const char *v = getenv("RINGTRAIN_CPU_CONV");
        allowed = !(v && strcmp(v, "im2col") == 0);
    }
    return allowed && engine_cpu_winograd_fits(g, F);
}

int engine_cpu_conv_check_env(core_error *err)
{
    const char *v = getenv("RINGTRAIN_CPU_CONV");
    if (v && *v && strcmp(v, "winograd") != 0 && strcmp(v, "im2col") != 0)
        return core_error_set(err,
                              "RINGTRAIN_CPU_CONV=%s: expected 'winograd' (the default: 3x3 "
                              "stride-1 convolutions with 8+ channels by Winograd) or 'im2col'",
                              v);
    return 0;
}

const char *engine_cpu_conv_method(const engine_conv_geom *g, int F)
{
    return use_winograd(g, F) ? "winograd F(2x2,3x3)" : "im2col";
}

size_t engine_cpu_l2_floats(void)
{
    static size_t floats;
    if (floats)
        return floats;
    long l2 = -1;
#ifdef _SC_LEVEL2_CACHE_SIZE
    l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    if (l2 < 256 * 1024 || l2 > 64 * 1024 * 1024)
        l2 = 1024 * 1024;
    floats = (size_t)l2 / sizeof(float);
    return floats;
}

/* The most images whose columns fit in one group. */
static int group_max(const engine_conv_geom *g)
{
    size_t per_image = (size_t)g->C * g->K * g->K * g->OH * g->OW;
    size_t most = per_image ? engine_cpu_l2_floats() / per_image : 1;
    return most < 1 ? 1 : most > 1 << 20 ? 1 << 20 : (int)most;
}

/* Images per group at this batch: as many groups as the cache asks for, of
 * equal size (no small last group), never more than group_max. */
static int group_for(const engine_conv_geom *g, int batch)
{
    int most = group_max(g);
    int groups = (batch + most - 1) / most;
    return (batch + groups - 1) / groups;
}

void engine_cpu_conv_plan(const engine_conv_geom *g, int F, int max_batch, size_t *work,
                          size_t *scratch)
{
    if (use_winograd(g, F)) {
        engine_cpu_winograd_plan(g, F, max_batch, work, scratch);
        return;
    }
    size_t per_image = (size_t)g->C * g->K * g->K * g->OH * g->OW;
    int most = group_max(g);
    *work = per_image * (size_t)(most < max_batch ? most : max_batch);
    *scratch = *work;
}

void engine_cpu_conv_forward(float *y, const float *x, const float *w, const float *bias, int batch,
                             int F, const engine_conv_geom *g, engine_act act, float *work,
                             float *scratch)
{
    if (use_winograd(g, F)) {
        engine_cpu_winograd_forward(y, x, w, bias, batch, F, g, act, work, scratch);
        return;
    }
    const engine_ops *e = engine_cpu();
    int ckk = g->C * g->K * g->K, plane = g->OH * g->OW, n = batch * plane;
    int group = group_for(g, batch);
    if (bias)
        e->bias_fill(y, bias, 1, F, n);
    else
        e->zero(y, (size_t)F * n);
    for (int i0 = 0; i0 < batch; i0 += group) {
        int nb = batch - i0 < group ? batch - i0 : group, ng = nb * plane;
        e->im2col(x + (size_t)i0 * g->n_stride, nb, g, work);
        e->gemm(0, 0, F, ng, ckk, 1.0f, w, ckk, work, ng, 1.0f, y + (size_t)i0 * plane, n);
    }
    if (act != ENGINE_ACT_NONE)
        e->act_forward(y, y, (size_t)F * n, act);
}

void engine_cpu_conv_backward(float *dx, float *dw, float *dbias, float *dy, const float *x,
                              const float *w, int batch, int F, const engine_conv_geom *g,
                              int accumulate, float *work, float *scratch)
{
    if (use_winograd(g, F)) {
        engine_cpu_winograd_backward(dx, dw, dbias, dy, x, w, batch, F, g, accumulate, work,
                                     scratch);
        return;
    }
    const engine_ops *e = engine_cpu();
    int ckk = g->C * g->K * g->K, plane = g->OH * g->OW, n = batch * plane;
    int group = group_for(g, batch);
    if (dbias)
        e->bias_backward(dbias, dy, 1, F, n, accumulate);
    if (dx)
        e->zero(dx, (size_t)batch * g->C * g->H * g->W);
    for (int i0 = 0; i0 < batch; i0 += group) {
        int nb = batch - i0 < group ? batch - i0 : group, ng = nb * plane;
        /* the columns again, rather than kept from forward: rebuilt from x
         * in L2, they cost less than reading a batch-sized copy back */
        e->im2col(x + (size_t)i0 * g->n_stride, nb, g, work);
        const float *dyg = dy + (size_t)i0 * plane;
        float beta = accumulate || i0 > 0 ? 1.0f : 0.0f;
        e->gemm(0, 1, F, ckk, ng, 1.0f, dyg, n, work, ng, beta, dw, ckk);
        if (!dx)
            continue;
        /* the group's column gradient lives in the shared scratch, in cache
         * for col2im */
        e->gemm(1, 0, ckk, ng, F, 1.0f, w, ckk, dyg, n, 0.0f, scratch, ng);
        e->col2im(scratch, nb, g, dx + (size_t)i0 * g->n_stride);
    }
}
