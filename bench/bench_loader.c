/*
 * bench/bench_loader.c: how fast the data loader delivers training batches
 * from an HDF5 file, to set beside what training consumes (bench_step's
 * images/s). Runs the loader exactly as train/fit.c does (shuffled, drop
 * last, the memory cap of --loader-mem) over whole epochs and reports
 * samples per second seen by the consumer, which does nothing with them.
 *
 *   bench_loader --data F.h5 [--batch 64] [--epochs 2] [--loader-mem MiB]
 *                [--x-name images] [--y-name labels]
 *
 * Prints key=value lines. Not a test; never run by ctest.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/data.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    const char *path = NULL, *xn = "images", *yn = "labels";
    int batch = 64, epochs = 2, mem_mib = 256;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--data") && i + 1 < argc)
            path = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--epochs") && i + 1 < argc)
            epochs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--loader-mem") && i + 1 < argc)
            mem_mib = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--x-name") && i + 1 < argc)
            xn = argv[++i];
        else if (!strcmp(argv[i], "--y-name") && i + 1 < argc)
            yn = argv[++i];
        else
            path = NULL, i = argc;
    }
    if (!path || batch < 1 || epochs < 1 || mem_mib < 1) {
        fprintf(stderr,
                "usage: %s --data F.h5 [--batch N] [--epochs N] [--loader-mem MiB] "
                "[--x-name NAME] [--y-name NAME]\n",
                argv[0]);
        return 2;
    }
    core_error err = {{0}};
    data_dataset *d = NULL;
    data_loader *l = NULL;
    double t_open = now();
    if (data_dataset_open(path, xn, yn, 0, &d, &err) != 0) {
        fprintf(stderr, "bench_loader: %s\n", err.msg);
        return 1;
    }
    data_loader_config lc = {0};
    data_shard_range(data_dataset_count(d), 0, 1, &lc.shard_start, &lc.shard_count);
    lc.batch = batch;
    lc.shuffle = 1;
    lc.drop_last = 1;
    lc.seed = 1;
    lc.mem_cap_bytes = (size_t)mem_mib << 20;
    if (data_loader_create(d, &lc, &l, &err) != 0) {
        fprintf(stderr, "bench_loader: %s\n", err.msg);
        return 1;
    }
    t_open = now() - t_open;
    long samples = 0;
    double t0 = now();
    for (int ep = 0; ep < epochs; ep++) {
        if (data_loader_begin_epoch(l, ep, 0, &err) != 0) {
            fprintf(stderr, "bench_loader: %s\n", err.msg);
            return 1;
        }
        data_batch b;
        int rc;
        while ((rc = data_loader_next(l, &b, &err)) == 1)
            samples += b.n;
        if (rc < 0) {
            fprintf(stderr, "bench_loader: %s\n", err.msg);
            return 1;
        }
    }
    double t = now() - t0;
    printf("file=%s\nchunk_samples=%zu\nstreaming=%d\nloader_mem_bytes=%zu\n", path,
           data_dataset_chunk_samples(d), data_loader_streaming(l), data_loader_mem_bytes(l));
    printf("open_and_create_s=%.3f\nsamples=%ld\nsamples_per_s=%.0f\n", t_open, samples,
           samples / t);
    data_loader_free(l);
    data_dataset_close(d);
    return 0;
}
