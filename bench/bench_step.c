/*
 * bench/bench_step.c: times ringtrain's training step in one process, with no
 * loader and no communication, so engine changes can be measured in
 * isolation. Also measures OpenBLAS's SGEMM at the shapes the model uses and
 * at a large square, in the same process, so FLOP/s can be quoted against it.
 *
 *   bench_step --model models/fashion_cnn.spec [--batch 64] [--steps 50]
 *              [--warmup 5] [--layers] [--sgemm]
 *
 * Prints key=value lines (parsed by bench/cnn_vs_torch.sh). A step is what
 * train/fit.c does: forward, backward, scale by 1/batch, Adam. Besides wall
 * time it reports the thread's CPU time per step, which is what to compare
 * on a machine shared with other jobs (OpenBLAS runs on the calling thread
 * with OPENBLAS_NUM_THREADS=1).
 * Not a test; never run by ctest.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/mem.h"
#include "core/rng.h"
#include "nn/layer.h"
#include "nn/model.h"
#include "optim/optim.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU time of this thread: on a shared machine, wall time also counts the
 * time other processes held the core; CPU time does not. */
static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s)
        s[n] = '\0';
    fclose(f);
    return s;
}

/* Multiply-add FLOPs of one training sample: forward, weight gradient, and the
 * input gradient for every layer but the first. */
static double flops_per_sample(nn_model *m)
{
    double total = 0.0;
    for (int i = 0; i < nn_model_layer_count(m); i++) {
        nn_layer *l = nn_model_layer(m, i);
        double fwd = 0.0;
        if (l->kind == &nn_kind_conv)
            fwd = 2.0 * (double)l->tensor[0].count * l->out.d[1] * l->out.d[2];
        else if (l->kind == &nn_kind_dense)
            fwd = 2.0 * (double)l->tensor[0].count;
        total += fwd * (i == 0 ? 2.0 : 3.0);
    }
    return total;
}

static double sgemm_rate(int M, int N, int K, int ta, int tb, int reps)
{
    float *A = core_alloc((size_t)M * K * sizeof(float), "A", NULL);
    float *B = core_alloc((size_t)K * N * sizeof(float), "B", NULL);
    float *C = core_alloc((size_t)M * N * sizeof(float), "C", NULL);
    for (size_t i = 0; i < (size_t)M * K; i++)
        A[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)K * N; i++)
        B[i] = (float)(i % 5) * 0.1f;
    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) {
        double t = now();
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    M, N, K, 1.0f, A, ta ? M : K, B, tb ? K : N, 0.0f, C, N);
        t = now() - t;
        if (r > 0 && t < best)
            best = t;
    }
    core_free(A);
    core_free(B);
    core_free(C);
    return 2.0 * M * N * K / best / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const char *model_path = "models/fashion_cnn.spec";
    int batch = 64, steps = 50, warmup = 5, layers = 0, sgemm = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc)
            model_path = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
            steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc)
            warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--layers"))
            layers = 1;
        else if (!strcmp(argv[i], "--sgemm"))
            sgemm = 1;
        else {
            fprintf(stderr,
                    "usage: %s [--model F] [--batch N] [--steps N] [--warmup N] [--layers] "
                    "[--sgemm]\n",
                    argv[0]);
            return 2;
        }
    }
    if (batch < 1 || steps < 1 || warmup < 0) {
        fprintf(stderr, "bench_step: --batch and --steps must be positive\n");
        return 2;
    }
    char *spec = read_file(model_path);
    if (!spec) {
        fprintf(stderr, "bench_step: cannot read %s\n", model_path);
        return 1;
    }
    core_error err = {0};
    nn_model *m = NULL;
    if (nn_model_create(spec, model_path, batch, &m, &err) != 0) {
        fprintf(stderr, "bench_step: %s\n", err.msg);
        return 1;
    }
    nn_model_init_params(m, 1);
    optim opt;
    optim_config oc = optim_config_default(OPTIM_ADAM);
    if (optim_create(&opt, &oc, nn_model_param_count(m), &err) != 0) {
        fprintf(stderr, "bench_step: %s\n", err.msg);
        return 1;
    }

    /* Synthetic data shaped like Fashion-MNIST: values in [0, 1], 10 classes. */
    size_t in = nn_model_input_size(m);
    int classes = nn_model_num_classes(m);
    float *x = core_alloc((size_t)batch * in * sizeof(float), "x", &err);
    int32_t *y = core_alloc((size_t)batch * sizeof(int32_t), "y", &err);
    core_rng r = core_rng_make(7, 0);
    for (size_t i = 0; i < (size_t)batch * in; i++)
        x[i] = core_rng_uniform(&r);
    for (int i = 0; i < batch; i++)
        y[i] = (int32_t)core_rng_below(&r, (uint64_t)classes);

    int nl = nn_model_layer_count(m);
    double *tf = calloc((size_t)nl, sizeof *tf), *tb = calloc((size_t)nl, sizeof *tb);
    double *step_t = calloc((size_t)steps, sizeof *step_t);
    double *step_c = calloc((size_t)steps, sizeof *step_c);
    double t_opt = 0.0;
    size_t np = nn_model_param_count(m);
    const engine_ops *e = engine_cpu();
    nn_stats st0 = {0};
    nn_model_forward(m, x, y, batch, 1, &st0);
    for (int s = -warmup; s < steps; s++) {
        double t0 = now(), c0 = thread_cpu();
        nn_stats st = {0};
        if (!layers) {
            nn_model_forward(m, x, y, batch, 1, &st);
            nn_model_backward(m, 0, NULL, NULL);
        } else {
            /* The same work as nn_model_forward/backward, timed layer by layer
             * (the forward before the loop set the input, labels and batch). */
            for (int i = 0; i < nl; i++) {
                nn_layer *l = nn_model_layer(m, i);
                double t = now();
                l->kind->forward(l, e, batch);
                if (s >= 0)
                    tf[i] += now() - t;
            }
            for (int i = nl - 1; i >= 0; i--) {
                nn_layer *l = nn_model_layer(m, i);
                double t = now();
                l->kind->backward(l, e, batch, i > 0, 0);
                if (s >= 0)
                    tb[i] += now() - t;
            }
        }
        double to = now();
        float *g = nn_model_grads(m);
        float scale = 1.0f / (float)batch;
        for (size_t i = 0; i < np; i++)
            g[i] *= scale;
        optim_step(&opt, nn_model_params(m), g, oc.lr);
        double t1 = now();
        if (s >= 0) {
            step_t[s] = t1 - t0;
            step_c[s] = thread_cpu() - c0;
            t_opt += t1 - to;
        }
    }
    qsort(step_t, (size_t)steps, sizeof *step_t, cmp_double);
    qsort(step_c, (size_t)steps, sizeof *step_c, cmp_double);
    double med = step_t[steps / 2];
    double fps = flops_per_sample(m);
    printf("model=%s\nbatch=%d\nsteps=%d\n", model_path, batch, steps);
    printf("ms_per_step_median=%.3f\nms_per_step_min=%.3f\n", med * 1e3, step_t[0] * 1e3);
    printf("cpu_ms_per_step_median=%.3f\n", step_c[steps / 2] * 1e3);
    printf("images_per_s=%.1f\n", batch / med);
    printf("mflop_per_image=%.3f\n", fps / 1e6);
    printf("gflops=%.2f\n", fps * batch / med / 1e9);
    if (layers) {
        double sum = 0.0;
        for (int i = 0; i < nl; i++) {
            nn_layer *l = nn_model_layer(m, i);
            printf("layer %-9s fwd_ms=%.3f bwd_ms=%.3f\n", l->name, tf[i] / steps * 1e3,
                   tb[i] / steps * 1e3);
            sum += tf[i] + tb[i];
        }
        printf("layer %-9s ms=%.3f\nlayer %-9s ms=%.3f\n", "optim", t_opt / steps * 1e3, "sum",
               (sum + t_opt) / steps * 1e3);
    }
    if (sgemm) {
        /* The tutorial CNN's conv2 shapes at this batch, then a large square. */
        int n2 = batch * 14 * 14;
        printf("sgemm_conv2_fwd_gflops=%.2f\n", sgemm_rate(64, n2, 288, 0, 0, 5));
        printf("sgemm_conv2_dw_gflops=%.2f\n", sgemm_rate(64, 288, n2, 0, 1, 5));
        printf("sgemm_conv2_dx_gflops=%.2f\n", sgemm_rate(288, n2, 64, 1, 0, 5));
        printf("sgemm_square2048_gflops=%.2f\n", sgemm_rate(2048, 2048, 2048, 0, 0, 3));
    }
    optim_destroy(&opt);
    core_free(x);
    core_free(y);
    free(tf);
    free(tb);
    free(step_t);
    free(step_c);
    nn_model_free(m);
    free(spec);
    return 0;
}
