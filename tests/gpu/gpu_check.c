/*
 * tests/gpu/gpu_check.c: the GPU check, one process, no MPI, no HDF5
 * (docs/GPU.md; run by tests/gpu/run on a machine with a GPU).
 *
 *   gpu_check ops             every engine op on the CPU and the CUDA engine,
 *                             same random inputs: max relative error per op
 *                             (|a-b| / max(1, |a|, |b|)), PASS at <= 1e-4
 *   gpu_check train SPEC      a short training of SPEC (the tutorial CNN) on
 *                             the GPU on a learnable synthetic set: the loss
 *                             must fall to half of its start
 *   gpu_check bench SPEC B    images/s of SPEC at batch B: fp32 and bf16,
 *                             forward + backward + Adam, input copied in from
 *                             the host every step as in training
 *
 * Exit 0 when every check passed. The CPU engine's GEMM is tests/gpu's
 * reference sgemm here (the device machine need not have OpenBLAS).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rng.h"
#include "engine/engine.h"
#include "nn/model.h"
#include "gpu_check.h"

const engine_ops *C, *G;
int failures;
core_error err;

double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

float *host_rand(size_t n, uint64_t seed, float lo, float hi)
{
    float *x = malloc(n * sizeof *x + 16);
    core_rng r = core_rng_make(seed, 99);
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * core_rng_uniform(&r);
    return x;
}

void *dev_copy(const void *h, size_t bytes)
{
    void *d = G->alloc(bytes, "check buffer", &err);
    if (!d) {
        fprintf(stderr, "gpu_check: %s\n", err.msg);
        exit(2);
    }
    G->upload(d, h, bytes);
    return d;
}

float *dev_f(const float *h, size_t n)
{
    return dev_copy(h, n * sizeof(float));
}

double max_rel(const float *a, const float *b, size_t n)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        double s = fmax(1.0, fmax(fabs((double)a[i]), fabs((double)b[i])));
        if (!(d / s <= worst))
            worst = isnan(d) ? INFINITY : d / s;
    }
    return worst;
}

/* Compares host `want` with device `got` (n floats) and prints one row. */
void report(const char *op, const float *want, const float *got_dev, size_t n)
{
    float *got = malloc(n * sizeof *got + 16);
    G->download(got, got_dev, n * sizeof *got);
    double e = max_rel(want, got, n);
    int ok = e <= TOL;
    failures += !ok;
    printf("  %-34s n=%-9zu max rel err %.2e  %s\n", op, n, e, ok ? "PASS" : "FAIL");
    free(got);
}

void report_value(const char *op, double want, double got, double tol)
{
    double e = fabs(want - got) / fmax(1.0, fabs(want));
    int ok = e <= tol;
    failures += !ok;
    printf("  %-34s %-11s max rel err %.2e  %s\n", op, "", e, ok ? "PASS" : "FAIL");
}

static void check_gemm(void)
{
    const int M = 67, N = 129, K = 45;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            float *A = host_rand((size_t)M * K, 1, -1, 1), *B = host_rand((size_t)K * N, 2, -1, 1);
            float *Cm = host_rand((size_t)M * N, 3, -1, 1);
            int lda = ta ? M : K, ldb = tb ? K : N;
            float *dA = dev_f(A, (size_t)M * K), *dB = dev_f(B, (size_t)K * N);
            float *dC = dev_f(Cm, (size_t)M * N);
            C->gemm(ta, tb, M, N, K, 0.7f, A, lda, B, ldb, 0.3f, Cm, N);
            G->gemm(ta, tb, M, N, K, 0.7f, dA, lda, dB, ldb, 0.3f, dC, N);
            char name[64];
            snprintf(name, sizeof name, "gemm trans_a=%d trans_b=%d", ta, tb);
            report(name, Cm, dC, (size_t)M * N);
            G->free(dA), G->free(dB), G->free(dC), free(A), free(B), free(Cm);
        }
}

static void check_conv(int chan_major, int K, int S, int pad)
{
    const int Nb = 5, Cc = 3, H = 13, W = 11;
    engine_conv_geom g = {Cc, H, W, K, S, pad, pad, 0, 0, 0, 0};
    g.OH = (H + 2 * pad - K) / S + 1;
    g.OW = (W + 2 * pad - K) / S + 1;
    size_t plane = (size_t)H * W, nx = (size_t)Nb * Cc * plane;
    g.c_stride = chan_major ? (size_t)Nb * plane : plane;
    g.n_stride = chan_major ? plane : (size_t)Cc * plane;
    size_t ncols = (size_t)Cc * K * K * Nb * g.OH * g.OW;
    float *x = host_rand(nx, 4, -1, 1), *cols = host_rand(ncols, 5, 0, 0);
    float *dx = dev_f(x, nx), *dcols = dev_f(cols, ncols);
    C->im2col(x, Nb, &g, cols);
    G->im2col(dx, Nb, &g, dcols);
    char name[64];
    snprintf(name, sizeof name, "im2col %s K%d S%d pad%d", chan_major ? "CNHW" : "NCHW", K, S, pad);
    report(name, cols, dcols, ncols);
    float *dy = host_rand(ncols, 6, -1, 1), *acc = host_rand(nx, 7, -1, 1);
    float *ddy = dev_f(dy, ncols), *dacc = dev_f(acc, nx);
    C->col2im(dy, Nb, &g, acc);
    G->col2im(ddy, Nb, &g, dacc);
    snprintf(name, sizeof name, "col2im %s K%d S%d pad%d", chan_major ? "CNHW" : "NCHW", K, S, pad);
    report(name, acc, dacc, nx);
    G->free(dx), G->free(dcols), G->free(ddy), G->free(dacc);
    free(x), free(cols), free(dy), free(acc);
}

/* (F, N, S) -> (N, F, S) on the host: the CPU engine's channel-major conv
 * output in the GPU engine's layout (or the reverse with to_nc = 0). */
static void host_relayout(float *dst, const float *src, int F, int N, size_t S, int to_nc)
{
    for (int f = 0; f < F; f++)
        for (int n = 0; n < N; n++) {
            const float *a = src + (to_nc ? ((size_t)f * N + n) : ((size_t)n * F + f)) * S;
            float *b = dst + (to_nc ? ((size_t)n * F + f) : ((size_t)f * N + n)) * S;
            memcpy(b, a, S * sizeof *a);
        }
}

static float *engine_buf(const engine_ops *e, size_t n)
{
    float *p = e->alloc((n ? n : 1) * sizeof(float), "conv work", &err);
    if (!p) {
        fprintf(stderr, "gpu_check: %s\n", err.msg);
        exit(2);
    }
    return p;
}

/* The convolution op, forward and backward, against the CPU engine: `same`
 * uses conv.c's padding rule (TensorFlow's: an odd total puts the extra pixel
 * bottom/right, which cuDNN cannot express and the GPU engine runs through
 * its GEMM fallback), else `pad` on every side. The plan is made for a
 * larger batch than the one run, as a model's is. */
/* A device copy of h placed `off` floats into its allocation: the model
 * packs its parameters without padding, so a layer's weights can start at
 * any float. Free with G->free(p - off). */
static float *dev_f_at(const float *h, size_t n, int off)
{
    float *d = engine_buf(G, n + (size_t)off) + off;
    G->upload(d, h, n * sizeof *h);
    return d;
}

static void check_conv_op(int chan_major, int K, int S, int same, int pad, engine_act act,
                          int accumulate, int misalign)
{
    const int Nb = 6, Cc = 3, H = 13, W = 11, F = 5, max_batch = 9;
    engine_conv_geom g = {Cc, H, W, K, S, pad, pad, 0, 0, 0, 0};
    if (same) {
        g.OH = (H + S - 1) / S;
        g.OW = (W + S - 1) / S;
        int ph = (g.OH - 1) * S + K - H, pw = (g.OW - 1) * S + K - W;
        g.pad_h = ph > 0 ? ph / 2 : 0;
        g.pad_w = pw > 0 ? pw / 2 : 0;
    } else {
        g.OH = (H + 2 * pad - K) / S + 1;
        g.OW = (W + 2 * pad - K) / S + 1;
    }
    size_t plane = (size_t)H * W, nx = (size_t)Nb * Cc * plane, oplane = (size_t)g.OH * g.OW;
    size_t ny = (size_t)Nb * F * oplane, nw = (size_t)F * Cc * K * K;
    g.c_stride = chan_major ? (size_t)Nb * plane : plane;
    g.n_stride = chan_major ? plane : (size_t)Cc * plane;
    float *x = host_rand(nx, 11, -1, 1), *w = host_rand(nw, 12, -0.5f, 0.5f);
    float *b = host_rand((size_t)F, 13, -0.5f, 0.5f), *dy = host_rand(ny, 14, -1, 1);
    float *dw = host_rand(nw, 15, -1, 1), *db = host_rand((size_t)F, 16, -1, 1);
    float *y = malloc(ny * sizeof *y), *dx = malloc(nx * sizeof *dx);
    float *want = malloc(ny * sizeof *want), *dy_c = malloc(ny * sizeof *dy_c);
    float *gx = dev_f(x, nx), *gw = dev_f_at(w, nw, misalign), *gb = dev_f(b, (size_t)F);
    float *gdy = dev_f(dy, ny), *gdw = dev_f_at(dw, nw, misalign), *gdb = dev_f(db, (size_t)F);
    float *gy = engine_buf(G, ny), *gdx = engine_buf(G, nx);
    size_t cw, cs, gw_n, gs_n;
    C->conv_plan(&g, F, max_batch, &cw, &cs);
    G->conv_plan(&g, F, max_batch, &gw_n, &gs_n);
    float *cwork = engine_buf(C, cw), *cscratch = engine_buf(C, cs);
    float *gwork = engine_buf(G, gw_n), *gscratch = engine_buf(G, gs_n);

    C->conv_forward(y, x, w, b, Nb, F, &g, act, cwork, cscratch);
    G->conv_forward(gy, gx, gw, gb, Nb, F, &g, act, gwork, gscratch);
    /* compare in the GPU engine's output layout; dy is given in it */
    if (C->conv_out_chan_major && !G->conv_out_chan_major) {
        host_relayout(want, y, F, Nb, oplane, 1);
        host_relayout(dy_c, dy, F, Nb, oplane, 0);
    } else {
        memcpy(want, y, ny * sizeof *y);
        memcpy(dy_c, dy, ny * sizeof *dy);
    }
    char name[96];
    static const char *acts[] = {"", " relu", " tanh", " sigmoid"};
    snprintf(name, sizeof name, "conv fwd %s K%d S%d %s%s", chan_major ? "CNHW" : "NCHW", K, S,
             same ? "same" : "pad", acts[act]);
    report(name, want, gy, ny);
    C->conv_backward(dx, dw, db, dy_c, x, w, Nb, F, &g, accumulate, cwork, cscratch);
    G->conv_backward(gdx, gdw, gdb, gdy, gx, gw, Nb, F, &g, accumulate, gwork, gscratch);
    const char *acc = accumulate ? " acc" : "";
    snprintf(name, sizeof name, "conv dx %s K%d S%d %s", chan_major ? "CNHW" : "NCHW", K, S,
             same ? "same" : "pad");
    report(name, dx, gdx, nx);
    snprintf(name, sizeof name, "conv dw K%d S%d %s%s%s", K, S, same ? "same" : "pad", acc,
             misalign ? " w+1" : "");
    report(name, dw, gdw, nw);
    snprintf(name, sizeof name, "conv dbias K%d S%d%s", K, S, acc);
    report(name, db, gdb, (size_t)F);
    G->free(gx), G->free(gw - misalign), G->free(gb), G->free(gdy), G->free(gdw - misalign);
    G->free(gdb);
    G->free(gy), G->free(gdx), G->free(gwork), G->free(gscratch);
    C->free(cwork), C->free(cscratch);
    free(x), free(w), free(b), free(dy), free(dw), free(db), free(y), free(dx), free(want);
    free(dy_c);
}

static void check_acts(void)
{
    const size_t n = 100003;
    static const char *names[] = {"none", "relu", "tanh", "sigmoid"};
    for (int a = 0; a <= ENGINE_ACT_SIGMOID; a++) {
        char name[64];
        float *x = host_rand(n, 8, -4, 4), *y = host_rand(n, 9, 0, 0);
        float *dx = dev_f(x, n), *dyv = dev_f(y, n);
        C->act_forward(y, x, n, (engine_act)a);
        G->act_forward(dyv, dx, n, (engine_act)a);
        snprintf(name, sizeof name, "act_forward %s", names[a]);
        report(name, y, dyv, n);
        float *g = host_rand(n, 10, -1, 1), *dg = dev_f(g, n);
        C->act_backward(g, g, y, n, (engine_act)a);
        G->act_backward(dg, dg, dyv, n, (engine_act)a);
        snprintf(name, sizeof name, "act_backward %s", names[a]);
        report(name, g, dg, n);
        for (int inner = 1; inner <= 49; inner += 48) {
            const int outer = 31, ch = 17;
            size_t m = (size_t)outer * ch * inner;
            float *v = host_rand(m, 11, -2, 2), *b = host_rand(ch, 12, -1, 1);
            float *dv = dev_f(v, m), *db = dev_f(b, ch);
            if (a == 0) {
                C->bias_fill(v, b, outer, ch, inner);
                G->bias_fill(dv, db, outer, ch, inner);
                snprintf(name, sizeof name, "bias_fill inner=%d", inner);
                report(name, v, dv, (size_t)outer * ch * inner);
            }
            C->bias_act_forward(v, b, outer, ch, inner, (engine_act)a);
            G->bias_act_forward(dv, db, outer, ch, inner, (engine_act)a);
            snprintf(name, sizeof name, "bias_act_forward %s inner=%d", names[a], inner);
            report(name, v, dv, m);
            if (a == 0)
                for (int accum = 0; accum < 2; accum++) {
                    C->bias_backward(b, v, outer, ch, inner, accum);
                    G->bias_backward(db, dv, outer, ch, inner, accum);
                    snprintf(name, sizeof name, "bias_backward inner=%d acc=%d", inner, accum);
                    report(name, b, db, ch);
                }
            G->free(dv), G->free(db), free(v), free(b);
        }
        G->free(dx), G->free(dyv), G->free(dg), free(x), free(y), free(g);
    }
}

static void check_pool(int K, int S)
{
    const int planes = 37, H = 14, W = 12, OH = (H - K) / S + 1, OW = (W - K) / S + 1;
    size_t nx = (size_t)planes * H * W, ny = (size_t)planes * OH * OW;
    float *x = host_rand(nx, 13, -1, 1), *y = host_rand(ny, 0, 0, 0);
    int32_t *am = calloc(ny, sizeof *am);
    float *dxv = dev_f(x, nx), *dyv = dev_f(y, ny);
    int32_t *dam = dev_copy(am, ny * sizeof *am);
    char name[64];
    float *g = host_rand(ny, 14, -1, 1), *dx = host_rand(nx, 0, 0, 0);
    float *dg = dev_f(g, ny), *ddx = dev_f(dx, nx);
    for (int relu = 0; relu < 2; relu++) {
        C->maxpool_forward(y, am, x, planes, H, W, K, S, OH, OW, relu);
        G->maxpool_forward(dyv, dam, dxv, planes, H, W, K, S, OH, OW, relu);
        snprintf(name, sizeof name, "maxpool_forward K%d S%d relu%d", K, S, relu);
        report(name, y, dyv, ny);
        C->maxpool_backward(dx, g, am, relu ? y : NULL, planes, H, W, K, S, OH, OW);
        G->maxpool_backward(ddx, dg, dam, relu ? dyv : NULL, planes, H, W, K, S, OH, OW);
        snprintf(name, sizeof name, "maxpool_backward K%d S%d relu%d", K, S, relu);
        report(name, dx, ddx, nx);
    }
    C->avgpool_forward(y, x, planes, H, W, K, S, OH, OW);
    G->avgpool_forward(dyv, dxv, planes, H, W, K, S, OH, OW);
    snprintf(name, sizeof name, "avgpool_forward K%d S%d", K, S);
    report(name, y, dyv, ny);
    C->avgpool_backward(dx, g, planes, H, W, K, S, OH, OW);
    G->avgpool_backward(ddx, dg, planes, H, W, K, S, OH, OW);
    snprintf(name, sizeof name, "avgpool_backward K%d S%d", K, S);
    report(name, dx, ddx, nx);
    G->free(dxv), G->free(dyv), G->free(dam), G->free(dg), G->free(ddx);
    free(x), free(y), free(am), free(g), free(dx);
}

static void check_layout_and_loss(void)
{
    const int Cc = 7, Nn = 9;
    const size_t S = 25, n = (size_t)Cc * Nn * S;
    float *x = host_rand(n, 15, -1, 1), *y = host_rand(n, 0, 0, 0);
    float *dx = dev_f(x, n), *dy = dev_f(y, n);
    C->cn_to_nc(y, x, Cc, Nn, S);
    G->cn_to_nc(dy, dx, Cc, Nn, S);
    report("cn_to_nc", y, dy, n);
    C->nc_to_cn(y, x, Cc, Nn, S);
    G->nc_to_cn(dy, dx, Cc, Nn, S);
    report("nc_to_cn", y, dy, n);

    const int B = 300, K = 10;
    float *z = host_rand((size_t)B * K, 16, -6, 6), *p = host_rand((size_t)B * K, 0, 0, 0);
    int32_t *lab = malloc(B * sizeof *lab);
    for (int b = 0; b < B; b++)
        lab[b] = (b * 7) % K;
    float *dz = dev_f(z, (size_t)B * K), *dp = dev_f(p, (size_t)B * K);
    int32_t *dlab = dev_copy(lab, B * sizeof *lab);
    long c1 = 0, c2 = 0;
    double l1 = C->softmax_xent_forward(p, z, lab, B, K, &c1);
    double l2 = G->softmax_xent_forward(dp, dz, dlab, B, K, &c2);
    report("softmax_xent_forward probs", p, dp, (size_t)B * K);
    report_value("softmax_xent_forward loss sum", l1, l2, TOL);
    report_value("softmax_xent_forward top-1 count", (double)c1, (double)c2, 0.0);
    C->softmax_xent_backward(z, p, lab, B, K);
    G->softmax_xent_backward(dz, dp, dlab, B, K);
    report("softmax_xent_backward", z, dz, (size_t)B * K);
    G->free(dx), G->free(dy), G->free(dz), G->free(dp), G->free(dlab);
    free(x), free(y), free(z), free(p), free(lab);
}

static void check_elementwise_and_optim(void)
{
    const size_t n = 1000003;
    float *a = host_rand(n, 17, -1, 1), *b = host_rand(n, 18, -1, 1);
    float *da = dev_f(a, n), *db = dev_f(b, n);
    C->scale(a, n, 0.37f);
    G->scale(da, n, 0.37f);
    report("scale", a, da, n);
    C->mul(a, a, b, n);
    G->mul(da, da, db, n);
    report("mul", a, da, n);
    C->dropout_mask(a, n, 0.3f, 1234, 5678);
    G->dropout_mask(da, n, 0.3f, 1234, 5678);
    report("dropout_mask (exact: same RNG)", a, da, n);
    report_value("sumsq", C->sumsq(b, n), G->sumsq(db, n), 1e-9);
    report_value("nonfinite (finite)", C->nonfinite(b, n), G->nonfinite(db, n), 0.0);
    float inf = INFINITY;
    b[n / 2] = inf;
    G->upload(db + n / 2, &inf, sizeof inf);
    report_value("nonfinite (one Inf)", C->nonfinite(b, n), G->nonfinite(db, n), 0.0);
    b[n / 2] = 0.5f;
    G->upload(db + n / 2, b + n / 2, sizeof(float));

    float *p = host_rand(n, 19, -1, 1), *m = host_rand(n, 20, -0.1f, 0.1f);
    float *v = host_rand(n, 21, 0, 0.01f);
    float *dp = dev_f(p, n), *dm = dev_f(m, n), *dv = dev_f(v, n);
    for (int step = 1; step <= 3; step++) {
        C->adam_update(p, b, m, v, n, 0.99f, 1e-3f / 0.1f, 0.03f, 0.9f, 0.999f, 1e-8f, 0.01f);
        G->adam_update(dp, db, dm, dv, n, 0.99f, 1e-3f / 0.1f, 0.03f, 0.9f, 0.999f, 1e-8f, 0.01f);
    }
    report("adam_update params (3 steps)", p, dp, n);
    report("adam_update first moment", m, dm, n);
    report("adam_update second moment", v, dv, n);
    for (int nest = 0; nest < 2; nest++) {
        C->sgd_update(p, b, m, n, 0.01f, 0.9f, 1e-4f, nest);
        G->sgd_update(dp, db, dm, n, 0.01f, 0.9f, 1e-4f, nest);
    }
    report("sgd_update params (momentum, nesterov)", p, dp, n);
    report("sgd_update momentum buffer", m, dm, n);
    C->copy(a, p, n);
    G->copy(da, dp, n);
    report("copy", a, da, n);
    C->zero(a, n);
    G->zero(da, n);
    report("zero", a, da, n);
    G->free(da), G->free(db), G->free(dp), G->free(dm), G->free(dv);
    free(a), free(b), free(p), free(m), free(v);
}

static int cmd_ops(void)
{
    printf("== every engine op: CPU engine vs %s (PASS: max rel err <= %.0e)\n", G->name, TOL);
    check_gemm();
    check_conv(0, 3, 1, 1);
    check_conv(1, 3, 1, 1);
    check_conv(1, 5, 2, 2);
    check_conv(0, 2, 2, 0);
    /* cuDNN: packed NCHW inputs with symmetric padding; weights at an odd
     * float offset (w+1) go through the engine's aligned staging */
    check_conv_op(0, 3, 1, 1, 0, ENGINE_ACT_NONE, 0, 0);
    check_conv_op(0, 3, 1, 1, 0, ENGINE_ACT_RELU, 1, 1);
    check_conv_op(0, 5, 2, 1, 0, ENGINE_ACT_TANH, 0, 1);
    check_conv_op(0, 2, 2, 0, 0, ENGINE_ACT_RELU, 1, 0);
    check_conv_op(0, 3, 2, 0, 1, ENGINE_ACT_NONE, 0, 0);
    /* the fallback: asymmetric 'same' padding, NCHW (ph = pw = 3 at stride 2)
     * and channel-major inputs */
    check_conv_op(0, 4, 1, 1, 0, ENGINE_ACT_RELU, 1, 1);
    check_conv_op(0, 4, 2, 1, 0, ENGINE_ACT_NONE, 0, 0);
    check_conv_op(1, 3, 1, 1, 0, ENGINE_ACT_RELU, 1, 0);
    check_conv_op(1, 4, 1, 1, 0, ENGINE_ACT_NONE, 0, 1);
    check_acts();
    check_pool(2, 2);
    check_pool(3, 2);
    check_layout_and_loss();
    check_elementwise_and_optim();
    gpu_check_seq_ops();
    printf("ops: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}

/* ---- training and throughput ---- */

char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* A learnable set: class k is a fixed random template plus noise. */
static void make_batch(float *x, int32_t *y, int batch, size_t in, int classes, core_rng *r,
                       const float *templates)
{
    for (int b = 0; b < batch; b++) {
        int k = (int)core_rng_below(r, (uint64_t)classes);
        y[b] = k;
        for (size_t i = 0; i < in; i++)
            x[(size_t)b * in + i] = templates[(size_t)k * in + i] + 0.5f * core_rng_normal(r);
    }
}

typedef struct run {
    nn_model *m;
    float *mom, *var, *x;
    int32_t *y;
    size_t n, in;
    int classes, batch;
    long step;
    float *templates;
    core_rng r;
} run;

static int run_open(run *t, const char *spec_path, const engine_ops *e, int batch)
{
    memset(t, 0, sizeof *t);
    const char *spec = read_file(spec_path);
    if (!spec || nn_model_create_on(spec, spec_path, batch, e, &t->m, &err) != 0) {
        fprintf(stderr, "gpu_check: %s\n", spec ? err.msg : "cannot read the spec");
        return -1;
    }
    nn_model_init_params(t->m, 1);
    t->n = nn_model_param_count(t->m);
    t->in = nn_model_input_size(t->m);
    t->classes = nn_model_num_classes(t->m);
    t->batch = batch;
    t->mom = e->alloc(t->n * sizeof(float), "m", &err);
    t->var = e->alloc(t->n * sizeof(float), "v", &err);
    t->x = malloc((size_t)batch * t->in * sizeof(float));
    t->y = malloc((size_t)batch * sizeof(int32_t));
    t->templates = host_rand((size_t)t->classes * t->in, 77, -1, 1);
    t->r = core_rng_make(5, 6);
    return t->mom && t->var ? 0 : -1;
}

static void run_close(run *t, const engine_ops *e)
{
    e->free(t->mom), e->free(t->var);
    nn_model_free(t->m);
    free(t->x), free(t->y), free(t->templates);
}

/* One Adam step (lr 1e-3), as train/device.c takes it; returns the mean loss. */
static double run_step(run *t, const engine_ops *e, int fresh_batch)
{
    if (fresh_batch)
        make_batch(t->x, t->y, t->batch, t->in, t->classes, &t->r, t->templates);
    nn_stats s = {0};
    nn_model_forward(t->m, t->x, t->y, t->batch, 1, &s);
    nn_model_backward(t->m, 0, NULL, NULL);
    float *g = nn_model_grads(t->m);
    e->scale(g, t->n, 1.0f / (float)t->batch);
    t->step++;
    double bc1 = 1.0 - pow(0.9, (double)t->step), bc2 = 1.0 - pow(0.999, (double)t->step);
    e->adam_update(nn_model_engine_params(t->m), g, t->mom, t->var, t->n, 1.0f, (float)(1e-3 / bc1),
                   (float)sqrt(bc2), 0.9f, 0.999f, 1e-8f, 0.0f);
    return s.loss_sum / t->batch;
}

static int cmd_train(const char *spec)
{
    run t;
    if (run_open(&t, spec, G, 64) != 0)
        return 2;
    printf("== training %s on %s: batch 64, Adam lr 1e-3, 300 steps, synthetic 10-class set\n",
           spec, G->name);
    double first = 0, last = 0;
    for (int s = 1; s <= 300; s++) {
        double l = run_step(&t, G, 1);
        if (s <= 10)
            first += l / 10;
        if (s > 290)
            last += l / 10;
        if (s == 1 || s % 50 == 0)
            printf("  step %3d  loss %.4f\n", s, l);
    }
    int ok = isfinite(last) && last < 0.5 * first;
    printf("train: mean loss of steps 1-10 %.4f, of steps 291-300 %.4f: %s (needs < half)\n", first,
           last, ok ? "PASS" : "FAIL");
    run_close(&t, G);
    return ok ? 0 : 1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Images/s of training steps at `batch`: the median of 5 timed windows of
 * `steps` steps each, after 10 warm-up steps (the first of each shape times
 * cuDNN's algorithms). */
static double images_per_s(const char *spec, const engine_ops *e, int batch, int steps)
{
    run t;
    if (run_open(&t, spec, e, batch) != 0)
        return -1;
    make_batch(t.x, t.y, batch, t.in, t.classes, &t.r, t.templates);
    for (int i = 0; i < 10; i++)
        run_step(&t, e, 0);
    e->sync();
    double rate[5];
    for (int w = 0; w < 5; w++) {
        double t0 = now();
        for (int i = 0; i < steps; i++)
            run_step(&t, e, 0);
        e->sync();
        rate[w] = (double)batch * steps / (now() - t0);
    }
    run_close(&t, e);
    if (e->status(&err) != 0) {
        fprintf(stderr, "gpu_check: %s\n", err.msg);
        return -1;
    }
    qsort(rate, 5, sizeof rate[0], cmp_double);
    return rate[2];
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: gpu_check ops | train SPEC | bench SPEC BATCH [fp32|tf32|bf16] | "
                        "seqbench SPEC B T [bf16]\n");
        return 2;
    }
    /* seqbench makes its own engine (its precision is its last argument) */
    if (strcmp(argv[1], "seqbench") == 0)
        return gpu_check_seq_bench(argc, argv);
    int flags = 0;
    if (argc > 4 && strcmp(argv[4], "bf16") == 0)
        flags = ENGINE_CUDA_BF16;
    else if (argc > 4 && strcmp(argv[4], "tf32") == 0)
        flags = ENGINE_CUDA_TF32;
    C = engine_cpu();
    G = engine_cuda(0, flags, &err);
    if (!G) {
        fprintf(stderr, "gpu_check: %s\n", err.msg);
        return 2;
    }
    if (strcmp(argv[1], "ops") == 0)
        return cmd_ops();
    if (strcmp(argv[1], "train") == 0 && argc > 2)
        return cmd_train(argv[2]);
    if (strcmp(argv[1], "bench") == 0 && argc > 3) {
        int batch = atoi(argv[3]);
        int steps = batch > 0 && 25600 / batch > 20 ? 25600 / batch : 20;
        double ips = images_per_s(argv[2], G, batch, steps);
        printf("bench: %s batch %d on %s: median of 5 windows of %d steps (forward + backward "
               "+ Adam, input uploaded each step): %.0f images/s\n",
               argv[2], batch, G->name, steps, ips);
        return ips > 0 ? 0 : 1;
    }
    fprintf(stderr, "gpu_check: unknown command '%s'\n", argv[1]);
    return 2;
}
