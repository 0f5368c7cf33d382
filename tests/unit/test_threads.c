/*
 * tests/unit/test_threads.c: the rank's threads (core/par.c) and which ops
 * give the same bits at 1, 2 and 3 threads.
 *
 * Bit-identical at any thread count (fixed partitions: elements, planes,
 * rows of the column matrix, channels): im2col, col2im, bias + activation,
 * bias fill, activations and their derivatives, the bias gradient, max and
 * average pooling (with the folded relu), the convolution op where it runs by
 * Winograd (whole GEMMs per thread), the layout transposes, scale, mul,
 * zero, copy, the optimizer steps (Adam, AdamW, SGD with momentum and
 * Nesterov), softmax cross entropy (loss, hits, gradient), the sequence ops
 * (embedding, layer norm forward and backward, GELU, add, attention
 * forward) and the data's uint8 -> float32 widening.
 * Not bit-identical across thread counts: the GEMM, split into column blocks
 * (OpenBLAS's edge kernels sum in another order); it is checked against the
 * 1-thread result to a tolerance, and for the same bits at the same count.
 */
#include "test_support.h"

#include <stdlib.h>
#include <string.h>

#include "core/par.h"
#include "data/data.h"
#include "engine/engine.h"
#include "optim/optim.h"

#define OUT_MAX (1 << 22)

/* Each case builds its inputs from fixed seeds, runs the op and writes what
 * the op produced to out; returns the count of floats written. */
typedef size_t (*op_case)(const engine_ops *e, float *out);

static float *filled(size_t n, uint64_t seed)
{
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    test_fill_uniform(x, n, seed, -1.0f, 1.0f);
    return x;
}

static size_t put(float *out, size_t at, const float *x, size_t n)
{
    assert_true(at + n <= OUT_MAX);
    memcpy(out + at, x, n * sizeof *x);
    return at + n;
}

/* conv2 of the tutorial CNN: 32 channels 14x14, 3x3 'same', channel-major
 * (the flat shifted path), and a strided 'valid' one (the general path). */
static engine_conv_geom geom(int flat, int N)
{
    engine_conv_geom g = {32, 14, 14, 3, 1, 1, 1, 14, 14, 0, 0};
    if (!flat) {
        g.stride = 2;
        g.pad_h = g.pad_w = 0;
        g.OH = g.OW = 6;
    }
    g.c_stride = (size_t)N * 14 * 14;
    g.n_stride = 14 * 14;
    return g;
}

static size_t conv_case_run(const engine_ops *e, float *out, int flat)
{
    const int N = 6;
    engine_conv_geom g = geom(flat, N);
    size_t nx = (size_t)32 * N * 14 * 14, ncols = (size_t)32 * 9 * N * g.OH * g.OW;
    float *x = filled(nx, 1), *cols = calloc(ncols, sizeof(float)), *dx = filled(nx, 2);
    e->im2col(x, N, &g, cols);
    size_t at = put(out, 0, cols, ncols);
    test_fill_uniform(cols, ncols, 3, -1.0f, 1.0f);
    e->col2im(cols, N, &g, dx);
    at = put(out, at, dx, nx);
    free(x);
    free(cols);
    free(dx);
    return at;
}

static size_t case_conv_flat(const engine_ops *e, float *out)
{
    return conv_case_run(e, out, 1);
}

static size_t case_conv_strided(const engine_ops *e, float *out)
{
    return conv_case_run(e, out, 0);
}

/* The convolution op on conv2's shape, which the CPU engine runs by
 * Winograd: each of its 16 GEMMs is one OpenBLAS call on one thread, the
 * transforms split by channel, so forward and all three gradients keep
 * their bits at any thread count (unlike a split GEMM). */
static size_t case_conv_winograd(const engine_ops *e, float *out)
{
    const int N = 9, F = 64;
    engine_conv_geom g = geom(1, N);
    size_t nx = (size_t)32 * N * 14 * 14, ny = (size_t)F * N * 14 * 14, nw = (size_t)F * 32 * 9;
    size_t work, scratch;
    e->conv_plan(&g, F, N, &work, &scratch);
    float *x = filled(nx, 11), *w = filled(nw, 12), *b = filled(F, 13), *dy = filled(ny, 14);
    float *y = malloc(ny * sizeof *y), *dx = malloc(nx * sizeof *dx), *dw = malloc(nw * 4);
    float *db = malloc(F * sizeof *db), *wk = calloc(work + 1, 4), *sc = calloc(scratch + 1, 4);
    e->conv_forward(y, x, w, b, N, F, &g, ENGINE_ACT_RELU, wk, sc);
    size_t at = put(out, 0, y, ny);
    e->conv_backward(dx, dw, db, dy, x, w, N, F, &g, 0, wk, sc);
    at = put(out, at, dx, nx);
    at = put(out, at, dw, nw);
    at = put(out, at, db, F);
    free(x), free(w), free(b), free(dy), free(y), free(dx), free(dw), free(db), free(wk);
    free(sc);
    return at;
}

static size_t case_bias_act(const engine_ops *e, float *out)
{
    const int outer = 8, ch = 32, inner = 196;
    size_t n = (size_t)outer * ch * inner, at = 0;
    float *b = filled(ch, 4), *y = malloc(n * sizeof *y), *dx = malloc(n * sizeof *dx);
    const engine_act acts[] = {ENGINE_ACT_RELU, ENGINE_ACT_TANH, ENGINE_ACT_SIGMOID};
    for (int a = 0; a < 3; a++) {
        test_fill_uniform(y, n, 5 + (uint64_t)a, -1.0f, 1.0f);
        e->bias_act_forward(y, b, outer, ch, inner, acts[a]);
        at = put(out, at, y, n);
        float *dy = filled(n, 9);
        e->act_backward(dx, dy, y, n, acts[a]);
        at = put(out, at, dx, n);
        e->act_forward(dx, dy, n, acts[a]);
        at = put(out, at, dx, n);
        free(dy);
    }
    /* inner == 1: a dense layer's (batch, units) output */
    test_fill_uniform(y, n, 10, -1.0f, 1.0f);
    e->bias_act_forward(y, b, (int)(n / ch), ch, 1, ENGINE_ACT_RELU);
    at = put(out, at, y, n);
    e->bias_fill(y, b, outer, ch, inner);
    at = put(out, at, y, n);
    free(b);
    free(y);
    free(dx);
    return at;
}

static size_t case_bias_backward(const engine_ops *e, float *out)
{
    const int outer = 16, ch = 64, inner = 196;
    float *dy = filled((size_t)outer * ch * inner, 11), db[64], dbd[64];
    e->bias_backward(db, dy, outer, ch, inner, 0);
    e->bias_backward(db, dy, outer, ch, inner, 1);
    e->bias_backward(dbd, dy, outer * inner, ch, 1, 0); /* dense layout */
    size_t at = put(out, 0, db, 64);
    at = put(out, at, dbd, 64);
    free(dy);
    return at;
}

static size_t pool_run(const engine_ops *e, float *out, int H, int K, int S, int relu)
{
    const int planes = 7 * 32, OH = (H - K) / S + 1;
    size_t nx = (size_t)planes * H * H, ny = (size_t)planes * OH * OH;
    float *x = filled(nx, 12), *y = malloc(ny * sizeof *y), *dy = filled(ny, 13);
    float *dx = malloc(nx * sizeof *dx), *am_f = malloc(ny * sizeof *am_f);
    int32_t *am = malloc(ny * sizeof *am);
    e->maxpool_forward(y, am, x, planes, H, H, K, S, OH, OH, relu);
    e->maxpool_backward(dx, dy, am, relu ? y : NULL, planes, H, H, K, S, OH, OH);
    for (size_t i = 0; i < ny; i++)
        am_f[i] = (float)am[i];
    size_t at = put(out, 0, y, ny);
    at = put(out, at, am_f, ny);
    at = put(out, at, dx, nx);
    e->avgpool_forward(y, x, planes, H, H, K, S, OH, OH);
    e->avgpool_backward(dx, dy, planes, H, H, K, S, OH, OH);
    at = put(out, at, y, ny);
    at = put(out, at, dx, nx);
    free(x);
    free(y);
    free(dy);
    free(dx);
    free(am_f);
    free(am);
    return at;
}

static size_t case_pool(const engine_ops *e, float *out)
{
    size_t at = pool_run(e, out, 28, 2, 2, 1);
    at += pool_run(e, out + at, 14, 2, 2, 0);
    at += pool_run(e, out + at, 13, 3, 2, 1);
    return at;
}

static size_t case_layout_and_elementwise(const engine_ops *e, float *out)
{
    const int C = 32, N = 64;
    const size_t S = 49, n = (size_t)C * N * S;
    float *a = filled(n, 14), *b = filled(n, 15), *y = malloc(n * sizeof *y);
    e->cn_to_nc(y, a, C, N, S);
    size_t at = put(out, 0, y, n);
    e->nc_to_cn(y, a, C, N, S);
    at = put(out, at, y, n);
    e->mul(y, a, b, n);
    at = put(out, at, y, n);
    e->scale(y, n, 0.37f);
    at = put(out, at, y, n);
    e->copy(y, b, n);
    at = put(out, at, y, n);
    e->zero(y, n / 2 + 3);
    at = put(out, at, y, n);
    free(a);
    free(b);
    free(y);
    return at;
}

static size_t optim_run(float *out, size_t at, optim_config cfg)
{
    const size_t n = 300001;
    float *p = filled(n, 16);
    optim o;
    core_error err = {{0}};
    assert_int_equal(optim_create(&o, &cfg, n, &err), 0);
    for (int step = 0; step < 3; step++) {
        float *g = filled(n, 17 + (uint64_t)step);
        optim_step(&o, p, g, cfg.lr);
        free(g);
    }
    at = put(out, at, p, n);
    optim_destroy(&o);
    free(p);
    return at;
}

static size_t case_optim(const engine_ops *e, float *out)
{
    (void)e;
    optim_config adam = optim_config_default(OPTIM_ADAM), sgd = optim_config_default(OPTIM_SGD);
    adam.weight_decay = 0.01f;
    size_t at = optim_run(out, 0, adam);
    adam.decoupled = 1;
    at = optim_run(out, at, adam);
    at = optim_run(out, at, sgd);
    sgd.nesterov = 1;
    sgd.weight_decay = 0.001f;
    return optim_run(out, at, sgd);
}

static size_t gemm_run(const engine_ops *e, float *out)
{
    /* conv2's forward group shape and a dense layer's weight gradient */
    const int M = 64, N = 980, K = 288;
    float *A = filled((size_t)M * K, 21), *B = filled((size_t)K * N, 22);
    float *C = filled((size_t)M * N, 23);
    e->gemm(0, 0, M, N, K, 1.0f, A, K, B, N, 1.0f, C, N);
    size_t at = put(out, 0, C, (size_t)M * N);
    e->gemm(1, 0, K, N, M, 1.0f, A, K, C, N, 0.0f, B, N);
    at = put(out, at, B, (size_t)K * N);
    e->gemm(0, 1, M, K, N, 0.5f, C, N, B, N, 0.0f, A, K);
    at = put(out, at, A, (size_t)M * K);
    free(A);
    free(B);
    free(C);
    return at;
}

static size_t case_seq(const engine_ops *e, float *out)
{
    const int rows = 512, C = 128, V = 100;
    const size_t n = (size_t)rows * C;
    float *x = filled(n, 30), *w = filled(C, 31), *b = filled(C, 32), *dy = filled(n, 33);
    float *y = malloc(n * sizeof *y), *dx = filled(n, 34), mean[512], rstd[512], dw[128], db[128];
    e->layernorm_forward(y, mean, rstd, x, w, b, rows, C);
    size_t at = put(out, 0, y, n);
    at = put(out, at, mean, 512);
    at = put(out, at, rstd, 512);
    e->layernorm_backward(dx, dw, db, dy, x, mean, rstd, w, rows, C, 0);
    at = put(out, at, dx, n);
    at = put(out, at, dw, 128);
    at = put(out, at, db, 128);
    e->gelu_forward(y, x, n);
    at = put(out, at, y, n);
    e->gelu_backward(y, dy, x, n);
    at = put(out, at, y, n);
    e->add(y, x, dy, n);
    at = put(out, at, y, n);
    e->add_broadcast(y, x, w, rows, (size_t)C);
    at = put(out, at, y, n);
    for (size_t i = 0; i < (size_t)rows; i++)
        dx[i] = (float)(i * 7 % V);
    float *table = filled((size_t)V * C, 35);
    e->embed_forward(y, dx, table, (size_t)rows, V, C);
    at = put(out, at, y, n);
    free(x);
    free(w);
    free(b);
    free(dy);
    free(y);
    free(dx);
    free(table);
    return at;
}

static size_t case_attention(const engine_ops *e, float *out)
{
    const int B = 4, T = 64, H = 4, D = 64;
    const size_t nq = (size_t)B * T * 3 * D, np = (size_t)B * H * T * T;
    float *qkv = filled(nq, 36), *mask = filled(np, 37), *o = malloc((size_t)B * T * D * 4);
    float *P = malloc(np * sizeof *P), *Pd = malloc(np * sizeof *Pd);
    size_t at = 0;
    for (int causal = 0; causal < 2; causal++) {
        e->attn_forward(o, P, Pd, causal ? mask : NULL, qkv, B, T, H, D, causal);
        at = put(out, at, o, (size_t)B * T * D);
        at = put(out, at, P, np);
        if (causal)
            at = put(out, at, Pd, np);
    }
    free(qkv);
    free(mask);
    free(o);
    free(P);
    free(Pd);
    return at;
}

static size_t case_softmax(const engine_ops *e, float *out)
{
    const int batch = 4099, classes = 100;
    const size_t n = (size_t)batch * classes;
    float *z = filled(n, 38), *p = malloc(n * sizeof *p), *dz = malloc(n * sizeof *dz);
    int32_t *labels = malloc((size_t)batch * sizeof *labels);
    for (int i = 0; i < batch; i++)
        labels[i] = i * 13 % classes;
    long hits = 0;
    double loss = e->softmax_xent_forward(p, z, labels, batch, classes, &hits);
    e->softmax_xent_backward(dz, p, labels, batch, classes);
    float lh[4];
    memcpy(lh, &loss, sizeof loss);
    lh[2] = (float)hits;
    lh[3] = 0.0f;
    size_t at = put(out, 0, lh, 4);
    at = put(out, at, p, n);
    at = put(out, at, dz, n);
    free(z);
    free(p);
    free(dz);
    free(labels);
    return at;
}

/* The whole-shard widening of uint8 samples (data_dataset_widen). */
static size_t case_widen(const engine_ops *e, float *out)
{
    (void)e;
    static data_dataset *d;
    static unsigned char *raw;
    const int n = 500, ss = 784;
    if (!d) {
        raw = malloc((size_t)n * ss);
        int32_t *y = calloc((size_t)n, sizeof *y);
        for (size_t i = 0; i < (size_t)n * ss; i++)
            raw[i] = (unsigned char)(i * 31 + i / 7);
        d = test_open_dataset(test_write_h5("threads", "u8.h5", H5T_NATIVE_UCHAR, H5T_NATIVE_UCHAR,
                                            raw, y, n, ss, 0));
        free(y);
    }
    data_dataset_widen(d, raw, (size_t)n * ss, out);
    return (size_t)n * ss;
}

static float *outs[4];

static size_t run_at(int threads, op_case fn, float *out)
{
    core_par_set_threads(threads);
    assert_int_equal(core_par_threads(), threads);
    return fn(engine_cpu(), out);
}

static void same_bits(op_case fn, const char *name)
{
    size_t n1 = run_at(1, fn, outs[1]);
    for (int t = 2; t <= 3; t++) {
        size_t n = run_at(t, fn, outs[t]);
        assert_int_equal(n, n1);
        if (memcmp(outs[1], outs[t], n * sizeof(float)) != 0)
            fail_msg("%s: %d threads differ from 1 (max rel diff %g)", name, t,
                     test_max_rel_diff(outs[1], outs[t], n));
    }
    core_par_set_threads(1);
}

#define SAME_BITS(name)                                                                            \
    static void test_##name(void **state)                                                          \
    {                                                                                              \
        (void)state;                                                                               \
        same_bits(case_##name, #name);                                                             \
    }
SAME_BITS(conv_flat)
SAME_BITS(conv_strided)
SAME_BITS(conv_winograd)
SAME_BITS(bias_act)
SAME_BITS(bias_backward)
SAME_BITS(pool)
SAME_BITS(layout_and_elementwise)
SAME_BITS(optim)
SAME_BITS(seq)
SAME_BITS(attention)
SAME_BITS(softmax)
SAME_BITS(widen)

/* The GEMM: close to the 1-thread result at 2 and 3 threads, and the same
 * bits when repeated at the same count. */
static void test_gemm(void **state)
{
    (void)state;
    size_t n1 = run_at(1, gemm_run, outs[1]);
    for (int t = 2; t <= 3; t++) {
        assert_int_equal(run_at(t, gemm_run, outs[t]), n1);
        assert_true(test_max_rel_diff(outs[1], outs[t], n1) < 1e-5);
        assert_int_equal(run_at(t, gemm_run, outs[0]), n1);
        assert_memory_equal(outs[0], outs[t], n1 * sizeof(float));
    }
    core_par_set_threads(1);
}

/* Parts cover [0, n) exactly, in order, with inner bounds on the alignment. */
static void test_ranges(void **state)
{
    (void)state;
    const size_t ns[] = {0, 1, 15, 16, 17, 1000, 123457};
    for (size_t k = 0; k < sizeof ns / sizeof *ns; k++)
        for (int parts = 1; parts <= 7; parts++) {
            size_t next = 0;
            for (int p = 0; p < parts; p++) {
                size_t lo, hi;
                core_par_range(ns[k], p, parts, 16, &lo, &hi);
                assert_int_equal(lo, next);
                assert_true(hi >= lo);
                if (hi < ns[k])
                    assert_int_equal(hi % 16, 0);
                next = hi;
            }
            assert_int_equal(next, ns[k]);
        }
}

static int group_setup(void **state)
{
    (void)state;
    for (int i = 0; i < 4; i++) {
        outs[i] = malloc(OUT_MAX * sizeof(float));
        if (!outs[i])
            return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < 4; i++)
        free(outs[i]);
    core_par_set_threads(1);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ranges),       cmocka_unit_test(test_conv_flat),
        cmocka_unit_test(test_conv_strided), cmocka_unit_test(test_conv_winograd),
        cmocka_unit_test(test_bias_act),     cmocka_unit_test(test_bias_backward),
        cmocka_unit_test(test_pool),         cmocka_unit_test(test_layout_and_elementwise),
        cmocka_unit_test(test_optim),        cmocka_unit_test(test_seq),
        cmocka_unit_test(test_attention),    cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_widen),        cmocka_unit_test(test_gemm),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
