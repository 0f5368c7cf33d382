/*
 * tests/unit/test_engine_cpu.c: the CPU engine op by op against naive
 * references: convolution (im2col + one sgemm) against direct convolution in
 * both batch layouts, col2im as the exact adjoint of im2col, the layout
 * transposes, the convolution op (forward and the three gradients), the
 * conv layer's fused bias + relu output, and max pooling
 * (with and without the folded relu) against a naive loop.
 */
#include "test_support.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cpu/engine_cpu_winograd.h"
#include "engine/engine.h"
#include "nn/layer.h"

typedef struct conv_case {
    int N, C, H, W, F, K, S, pad_h, pad_w, OH, OW;
} conv_case;

/* x in (N,C,H,W) or (C,N,H,W); y in (F,N,OH,OW), the conv layer's layout. */
static float x_at(const float *x, const conv_case *c, int chan_major, int n, int ch, int h, int w)
{
    if (h < 0 || h >= c->H || w < 0 || w >= c->W)
        return 0.0f;
    size_t plane = (size_t)c->H * c->W;
    size_t base = chan_major ? ((size_t)ch * c->N + n) * plane : ((size_t)n * c->C + ch) * plane;
    return x[base + (size_t)h * c->W + w];
}

static void conv_direct(const conv_case *c, int chan_major, const float *x, const float *wt,
                        float *y)
{
    for (int f = 0; f < c->F; f++)
        for (int n = 0; n < c->N; n++)
            for (int oh = 0; oh < c->OH; oh++)
                for (int ow = 0; ow < c->OW; ow++) {
                    double s = 0.0;
                    for (int ch = 0; ch < c->C; ch++)
                        for (int ki = 0; ki < c->K; ki++)
                            for (int kj = 0; kj < c->K; kj++)
                                s += (double)wt[((f * c->C + ch) * c->K + ki) * c->K + kj] *
                                     x_at(x, c, chan_major, n, ch, oh * c->S - c->pad_h + ki,
                                          ow * c->S - c->pad_w + kj);
                    y[(((size_t)f * c->N + n) * c->OH + oh) * c->OW + ow] = (float)s;
                }
}

static engine_conv_geom geom_of(const conv_case *c, int chan_major)
{
    engine_conv_geom g = {c->C, c->H, c->W, c->K, c->S, c->pad_h, c->pad_w, c->OH, c->OW, 0, 0};
    size_t plane = (size_t)c->H * c->W;
    g.c_stride = chan_major ? (size_t)c->N * plane : plane;
    g.n_stride = chan_major ? plane : (size_t)c->C * plane;
    return g;
}

static void check_conv(const conv_case *c, int chan_major)
{
    const engine_ops *e = engine_cpu();
    engine_conv_geom g = geom_of(c, chan_major);
    size_t nx = (size_t)c->N * c->C * c->H * c->W;
    size_t ckk = (size_t)c->C * c->K * c->K;
    size_t ncol = (size_t)c->N * c->OH * c->OW;
    float *x = malloc(nx * sizeof *x), *w = malloc((size_t)c->F * ckk * sizeof *w);
    float *cols = malloc(ckk * ncol * sizeof *cols);
    float *y = malloc((size_t)c->F * ncol * sizeof *y), *ref = malloc((size_t)c->F * ncol * 4);
    test_fill_uniform(x, nx, 1, -1.0f, 1.0f);
    test_fill_uniform(w, (size_t)c->F * ckk, 2, -1.0f, 1.0f);
    e->im2col(x, c->N, &g, cols);
    e->gemm(0, 0, c->F, (int)ncol, (int)ckk, 1.0f, w, (int)ckk, cols, (int)ncol, 0.0f, y,
            (int)ncol);
    conv_direct(c, chan_major, x, w, ref);
    assert_true(test_max_rel_diff(y, ref, (size_t)c->F * ncol) < 1e-5);

    /* adjoint: <im2col(x), r> == <x, col2im(r)> */
    float *r = malloc(ckk * ncol * sizeof *r), *back = calloc(nx, sizeof *back);
    test_fill_uniform(r, ckk * ncol, 3, -1.0f, 1.0f);
    e->col2im(r, c->N, &g, back);
    double lhs = 0.0, rhs = 0.0;
    for (size_t i = 0; i < ckk * ncol; i++)
        lhs += (double)cols[i] * r[i];
    for (size_t i = 0; i < nx; i++)
        rhs += (double)x[i] * back[i];
    assert_true(fabs(lhs - rhs) < 1e-3 * (1.0 + fabs(lhs)));
    free(x), free(w), free(cols), free(y), free(ref), free(r), free(back);
}

static void test_conv_vs_direct(void **state)
{
    static const conv_case cases[] = {
        /* N  C  H  W  F  K  S  ph pw OH OW */
        {3, 2, 6, 6, 4, 3, 1, 1, 1, 6, 6},     /* same, stride 1 */
        {2, 3, 7, 5, 2, 3, 1, 0, 0, 5, 3},     /* valid */
        {2, 2, 7, 7, 3, 3, 2, 1, 1, 4, 4},     /* same, stride 2, odd */
        {2, 2, 6, 6, 3, 3, 2, 0, 0, 3, 3},     /* same, stride 2, even: pad (0, 1) */
        {1, 1, 9, 8, 2, 4, 3, 0, 0, 2, 2},     /* valid, stride 3, even kernel */
        {2, 3, 5, 5, 5, 1, 1, 0, 0, 5, 5},     /* 1x1 */
        {2, 1, 5, 5, 2, 5, 1, 2, 2, 5, 5},     /* kernel = input, same */
        {3, 3, 12, 10, 4, 3, 1, 1, 1, 12, 10}, /* same, H != W */
        {2, 2, 8, 9, 3, 5, 1, 2, 2, 8, 9},     /* same, 5x5 */
        /* same, a kernel far larger than the image: most shifts leave the
         * whole batch plane (found by fuzz_spec: a negative memcpy size) */
        {2, 2, 3, 4, 2, 13, 1, 6, 6, 3, 4},
        {1, 1, 2, 2, 1, 7, 1, 3, 3, 2, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check_conv(&cases[i], 0);
        check_conv(&cases[i], 1);
    }
}

/* The engine's convolution op (engine_ops.conv_*) against direct loops:
 * y = conv + bias; dw, dbias (overwritten, then accumulated), and dx, the
 * sum over every output pixel that read it. The plan is made for a larger
 * batch than the one run, and the last case is big enough for several
 * L2-sized groups of images. */
static void check_conv_op(const conv_case *c, int chan_major, double tol)
{
    const engine_ops *e = engine_cpu();
    engine_conv_geom g = geom_of(c, chan_major);
    size_t nx = (size_t)c->N * c->C * c->H * c->W, ckk = (size_t)c->C * c->K * c->K;
    size_t oplane = (size_t)c->OH * c->OW, ny = (size_t)c->F * c->N * oplane;
    size_t nw = (size_t)c->F * ckk, work, scratch;
    e->conv_plan(&g, c->F, c->N + 3, &work, &scratch);
    float *x = malloc(nx * 4), *w = malloc(nw * 4), *b = malloc((size_t)c->F * 4);
    float *y = malloc(ny * 4), *ref = malloc(ny * 4), *dy = malloc(ny * 4);
    float *dx = malloc(nx * 4), *dx_ref = calloc(nx, 8), *dw = malloc(nw * 4);
    float *dw_ref = calloc(nw, 8), *db = malloc((size_t)c->F * 4), *db_ref = calloc(c->F, 8);
    float *wk = malloc((work + 1) * 4), *sc = malloc((scratch + 1) * 4);
    test_fill_uniform(x, nx, 21, -1.0f, 1.0f);
    test_fill_uniform(w, nw, 22, -1.0f, 1.0f);
    test_fill_uniform(b, (size_t)c->F, 23, -1.0f, 1.0f);
    test_fill_uniform(dy, ny, 24, -1.0f, 1.0f);
    assert_int_equal(e->conv_out_chan_major, 1);
    e->conv_forward(y, x, w, b, c->N, c->F, &g, ENGINE_ACT_NONE, wk, sc);
    conv_direct(c, chan_major, x, w, ref);
    for (size_t i = 0; i < ny; i++)
        ref[i] += b[i / ((size_t)c->N * oplane)];
    assert_true(test_max_rel_diff(y, ref, ny) < tol);
    /* the same with the fused relu */
    e->conv_forward(y, x, w, b, c->N, c->F, &g, ENGINE_ACT_RELU, wk, sc);
    for (size_t i = 0; i < ny; i++)
        ref[i] = ref[i] > 0.0f ? ref[i] : 0.0f;
    assert_true(test_max_rel_diff(y, ref, ny) < tol);

    double *dwd = (double *)dw_ref, *dbd = (double *)db_ref, *dxd = (double *)dx_ref;
    size_t plane = (size_t)c->H * c->W;
    for (int f = 0; f < c->F; f++)
        for (int n = 0; n < c->N; n++)
            for (int oh = 0; oh < c->OH; oh++)
                for (int ow = 0; ow < c->OW; ow++) {
                    float d = dy[(((size_t)f * c->N + n) * c->OH + oh) * c->OW + ow];
                    dbd[f] += d;
                    for (int ch = 0; ch < c->C; ch++)
                        for (int ki = 0; ki < c->K; ki++)
                            for (int kj = 0; kj < c->K; kj++) {
                                int h = oh * c->S - c->pad_h + ki, wc = ow * c->S - c->pad_w + kj;
                                if (h < 0 || h >= c->H || wc < 0 || wc >= c->W)
                                    continue;
                                size_t wi = ((size_t)(f * c->C + ch) * c->K + ki) * c->K + kj;
                                size_t xi = (chan_major ? ((size_t)ch * c->N + n)
                                                        : ((size_t)n * c->C + ch)) *
                                                plane +
                                            (size_t)h * c->W + wc;
                                dwd[wi] += (double)d * x[xi];
                                dxd[xi] += (double)d * w[wi];
                            }
                }
    float *dwf = malloc(nw * 4), *dbf = malloc((size_t)c->F * 4);
    for (size_t i = 0; i < nw; i++)
        dwf[i] = (float)dwd[i];
    for (int f = 0; f < c->F; f++)
        dbf[f] = (float)dbd[f];
    float *dxf = malloc(nx * 4);
    for (size_t i = 0; i < nx; i++)
        dxf[i] = (float)dxd[i];
    test_fill_uniform(dw, nw, 25, -9.0f, 9.0f); /* overwritten */
    e->conv_backward(dx, dw, db, dy, x, w, c->N, c->F, &g, 0, wk, sc);
    /* dw sums N*OH*OW products in float: 3072 of them in the last case */
    assert_true(test_max_rel_diff(dx, dxf, nx) < tol);
    assert_true(test_max_rel_diff(dw, dwf, nw) < 1e-4);
    assert_true(test_max_rel_diff(db, dbf, (size_t)c->F) < 1e-5);
    /* accumulate: the same gradients again, added; no dx */
    e->conv_backward(NULL, dw, db, dy, x, w, c->N, c->F, &g, 1, wk, sc);
    for (size_t i = 0; i < nw; i++)
        dwf[i] *= 2.0f;
    for (int f = 0; f < c->F; f++)
        dbf[f] *= 2.0f;
    assert_true(test_max_rel_diff(dw, dwf, nw) < 1e-4);
    assert_true(test_max_rel_diff(db, dbf, (size_t)c->F) < 1e-5);
    free(x), free(w), free(b), free(y), free(ref), free(dy), free(dx), free(dx_ref), free(dw);
    free(dw_ref), free(db), free(db_ref), free(wk), free(sc), free(dwf), free(dbf), free(dxf);
}

static void test_conv_op_vs_direct(void **state)
{
    static const conv_case cases[] = {
        /* N  C  H  W  F  K  S  ph pw OH OW */
        {3, 2, 6, 6, 4, 3, 1, 1, 1, 6, 6},
        {2, 3, 7, 5, 2, 3, 1, 0, 0, 5, 3},
        {2, 2, 6, 6, 3, 3, 2, 0, 0, 3, 3},
        {2, 1, 5, 5, 2, 5, 1, 2, 2, 5, 5},
        /* 16*25*32*32 floats a column matrix per image: one image per group */
        {3, 16, 32, 32, 4, 5, 1, 2, 2, 32, 32},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check_conv_op(&cases[i], 0, 1e-5);
        check_conv_op(&cases[i], 1, 1e-5);
    }
}

/* 3x3 stride-1 convolutions with 8+ channels and filters go to Winograd's
 * F(2x2, 3x3) (engine_cpu_winograd.c): the same checks against direct
 * loops, with odd output sizes (tiles past the edge), valid and asymmetric
 * padding, the tutorial's second convolution, and a batch of several
 * L2-sized groups. The transforms' sums carry about 2.5x the rounding of
 * im2col's (1.3e-5 against 5e-6 on conv2's dx here), hence the tolerance. */
static void test_conv_op_winograd(void **state)
{
    static const conv_case cases[] = {
        /* N  C  H  W  F  K  S  ph pw OH OW */
        {2, 8, 6, 6, 8, 3, 1, 1, 1, 6, 6},        /* same, even */
        {3, 9, 7, 5, 10, 3, 1, 1, 1, 7, 5},       /* same, odd sizes */
        {2, 8, 7, 9, 8, 3, 1, 0, 0, 5, 7},        /* valid */
        {2, 8, 6, 6, 9, 3, 1, 0, 0, 5, 5},        /* pad (0, 1): bottom/right only */
        {1, 8, 2, 3, 8, 3, 1, 1, 1, 2, 3},        /* a single row of tiles */
        {5, 32, 14, 14, 64, 3, 1, 1, 1, 14, 14},  /* fashion_cnn's conv2 */
        {40, 16, 10, 10, 24, 3, 1, 1, 1, 10, 10}, /* several groups */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        engine_conv_geom g = geom_of(&cases[i], 0);
        assert_true(engine_cpu_winograd_fits(&g, cases[i].F));
        check_conv_op(&cases[i], 0, 4e-5);
        check_conv_op(&cases[i], 1, 4e-5);
    }
}

static void test_layout_transpose(void **state)
{
    const engine_ops *e = engine_cpu();
    enum { C = 3, N = 4, S = 5 };
    float a[C * N * S], b[C * N * S], c[C * N * S];
    test_fill_uniform(a, C * N * S, 4, -1.0f, 1.0f);
    e->cn_to_nc(b, a, C, N, S);
    for (int ch = 0; ch < C; ch++)
        for (int n = 0; n < N; n++)
            for (int s = 0; s < S; s++)
                assert_true(b[(n * C + ch) * S + s] == a[(ch * N + n) * S + s]);
    e->nc_to_cn(c, b, C, N, S);
    assert_memory_equal(a, c, sizeof a);
}

/* The conv layer (bias + relu fused) against direct convolution. */
static void test_conv_layer_output(void **state)
{
    core_error err = {{0}};
    nn_model *m = NULL;
    assert_int_equal(nn_model_create("input 2 7 7\nconv 3 3 stride 2 same relu\nflatten\n"
                                     "loss softmax_cross_entropy\n",
                                     "t.spec", 3, &m, &err),
                     0);
    nn_model_init_params(m, 9);
    float *p = nn_model_params(m);
    const nn_tensor *w = nn_model_tensor(m, 0), *b = nn_model_tensor(m, 1);
    assert_string_equal(w->name, "conv1.weight");
    for (size_t i = 0; i < b->count; i++)
        p[b->offset + i] = 0.1f * (float)i - 0.1f;
    float x[3 * 2 * 7 * 7], ref[3 * 3 * 4 * 4];
    test_fill_uniform(x, sizeof x / sizeof x[0], 8, -1.0f, 1.0f);
    nn_model_forward(m, x, NULL, 3, 0, NULL);
    conv_case c = {3, 2, 7, 7, 3, 3, 2, 1, 1, 4, 4};
    conv_direct(&c, 0, x, p + w->offset, ref);
    for (int f = 0; f < 3; f++)
        for (int i = 0; i < 3 * 16; i++) {
            float v = ref[f * 48 + i] + p[b->offset + f];
            ref[f * 48 + i] = v > 0.0f ? v : 0.0f;
        }
    assert_true(test_max_rel_diff(nn_model_layer(m, 0)->y, ref, 3 * 48) < 1e-5);
    nn_model_free(m);
}

/* Max pooling against a naive loop: outputs, argmax (the first maximum in
 * window order), the backward scatter, and the scatter with relu folded in
 * (gradient only where the pooled output is > 0). Sizes cover the blocked
 * rows (output widths 4..14, both even and odd), the last row, and windows
 * that do not tile the input. Inputs are distinct within a window. */
static void check_maxpool(int planes, int H, int W, int K, int S)
{
    const engine_ops *e = engine_cpu();
    int OH = (H - K) / S + 1, OW = (W - K) / S + 1;
    size_t nx = (size_t)planes * H * W, ny = (size_t)planes * OH * OW;
    float *x = malloc(nx * sizeof *x), *dx = malloc(nx * sizeof *dx), *ref = malloc(nx * 4);
    float *y = malloc(ny * sizeof *y), *dy = malloc(ny * sizeof *dy);
    int32_t *am = malloc(ny * sizeof *am);
    test_fill_uniform(x, nx, 5, -1.0f, 1.0f);
    test_fill_uniform(dy, ny, 6, -1.0f, 1.0f);
    e->maxpool_forward(y, am, x, planes, H, W, K, S, OH, OW, 0);
    for (int p = 0; p < planes; p++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                const float *in = x + (size_t)p * H * W;
                int best = oh * S * W + ow * S;
                for (int ki = 0; ki < K; ki++)
                    for (int kj = 0; kj < K; kj++) {
                        int idx = (oh * S + ki) * W + ow * S + kj;
                        if (in[idx] > in[best])
                            best = idx;
                    }
                size_t o = ((size_t)p * OH + oh) * OW + ow;
                assert_int_equal(am[o], best);
                assert_true(y[o] == in[best]);
            }
    /* relu on the output: same argmax, outputs max(y, 0) */
    float *yr = malloc(ny * sizeof *yr);
    int32_t *amr = malloc(ny * sizeof *amr);
    e->maxpool_forward(yr, amr, x, planes, H, W, K, S, OH, OW, 1);
    for (size_t o = 0; o < ny; o++) {
        assert_int_equal(amr[o], am[o]);
        assert_true(yr[o] == (y[o] > 0.0f ? y[o] : 0.0f));
    }
    free(yr), free(amr);
    for (int relu = 0; relu < 2; relu++) {
        memset(ref, 0, nx * sizeof *ref);
        for (int p = 0; p < planes; p++)
            for (int i = 0; i < OH * OW; i++) {
                size_t o = (size_t)p * OH * OW + i;
                if (!relu || y[o] > 0.0f)
                    ref[(size_t)p * H * W + am[o]] += dy[o];
            }
        e->maxpool_backward(dx, dy, am, relu ? y : NULL, planes, H, W, K, S, OH, OW);
        assert_memory_equal(dx, ref, nx * sizeof *dx);
    }
    free(x), free(dx), free(ref), free(y), free(dy), free(am);
}

static void test_maxpool_vs_naive(void **state)
{
    static const int sizes[][2] = {{28, 28}, {14, 14}, {8, 8}, {10, 12}, {18, 16},
                                   {4, 4},   {2, 6},   {7, 7}, {9, 15},  {3, 3}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        check_maxpool(3, sizes[i][0], sizes[i][1], 2, 2);
        check_maxpool(1, sizes[i][0], sizes[i][1], 2, 2);
    }
    check_maxpool(2, 7, 7, 3, 2);
    check_maxpool(2, 9, 8, 3, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_vs_direct),    cmocka_unit_test(test_conv_op_vs_direct),
        cmocka_unit_test(test_conv_op_winograd),  cmocka_unit_test(test_layout_transpose),
        cmocka_unit_test(test_conv_layer_output), cmocka_unit_test(test_maxpool_vs_naive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
