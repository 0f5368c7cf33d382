/*
 * dist/cuda.c: the CUDA runtime calls of dist/, built only with the CUDA
 * engine (RINGTRAIN_HAVE_CUDA; gpu.c has the stubs): the GPUs a rank sees,
 * and host staging of device gradients for the MPI backends (docs/GPU.md,
 * "Ranks and GPUs").
 *
 * Staging, bucket by bucket, overlapped with backward (as Horovod does over
 * MPI): when backward has QUEUED bucket i, the compute thread records event
 * ready[i] on the engine's compute stream; the "down" stream waits for it
 * and copies the bucket into pinned host memory, then records down[i]. The
 * comm thread polls down[i] (never blocking the host on compute), sums the
 * host bucket with ring, hier or mpi, and queues the copy back on the "up"
 * stream, recording `up`. After the last bucket the compute stream waits for
 * `up`, so the optimizer step (and the non-finite scan and the norm) read
 * the summed gradients. The streams never block the compute stream except at
 * that join. All three streams are the engine's device's.
 */
#include "dist/dist_internal.h"

#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int dist_cuda_visible(void)
{
    int count = 0;
    return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
}

int dist_cuda_gpu_id(int device, char *id, size_t len)
{
    struct cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, device) != cudaSuccess) {
        snprintf(id, len, "device-%d", device);
        return -1;
    }
    size_t at = 0;
    for (int i = 0; i < 16 && at + 3 <= len; i++)
        at += (size_t)snprintf(id + at, len - at, "%02x", (unsigned char)p.uuid.bytes[i]);
    return 0;
}

typedef struct cuda_stage {
    int device;
    cudaStream_t compute, down_stream, up_stream;
    cudaEvent_t *ready, *down, up;
    int nb;
    float *host;
    cudaError_t failed; /* the first error of a call that cannot report one */
} cuda_stage;

static int fail(core_error *err, const char *what, cudaError_t rc)
{
    return core_error_set(err, "dist: host staging: %s: %s", what, cudaGetErrorString(rc));
}

static void destroy(void *ctx)
{
    cuda_stage *s = ctx;
    if (!s)
        return;
    cudaSetDevice(s->device);
    for (int i = 0; i < s->nb; i++) {
        if (s->ready && s->ready[i])
            cudaEventDestroy(s->ready[i]);
        if (s->down && s->down[i])
            cudaEventDestroy(s->down[i]);
    }
    if (s->up)
        cudaEventDestroy(s->up);
    if (s->down_stream)
        cudaStreamDestroy(s->down_stream);
    if (s->up_stream)
        cudaStreamDestroy(s->up_stream);
    if (s->host)
        cudaFreeHost(s->host);
    free(s->ready);
    free(s->down);
    free(s);
}

static int setup(void *ctx, int nb, size_t n, float **host, core_error *err)
{
    cuda_stage *s = ctx;
    cudaError_t rc = cudaSetDevice(s->device);
    if (rc != cudaSuccess)
        return fail(err, "cudaSetDevice", rc);
    s->ready = calloc((size_t)nb, sizeof *s->ready);
    s->down = calloc((size_t)nb, sizeof *s->down);
    if (!s->ready || !s->down)
        return core_error_set(err, "dist: host staging: out of memory for %d buckets", nb);
    s->nb = nb;
    for (int i = 0; i < nb && rc == cudaSuccess; i++) {
        rc = cudaEventCreateWithFlags(&s->ready[i], cudaEventDisableTiming);
        if (rc == cudaSuccess)
            rc = cudaEventCreateWithFlags(&s->down[i], cudaEventDisableTiming);
    }
    if (rc == cudaSuccess)
        rc = cudaEventCreateWithFlags(&s->up, cudaEventDisableTiming);
    if (rc == cudaSuccess)
        rc = cudaStreamCreateWithFlags(&s->down_stream, cudaStreamNonBlocking);
    if (rc == cudaSuccess)
        rc = cudaStreamCreateWithFlags(&s->up_stream, cudaStreamNonBlocking);
    if (rc != cudaSuccess)
        return fail(err, "streams and events", rc);
    rc = cudaMallocHost((void **)&s->host, (n ? n : 1) * sizeof(float));
    if (rc != cudaSuccess)
        return fail(err, "pinned host memory for the gradients", rc);
    *host = s->host;
    return 0;
}

/* Compute thread: bucket i's kernels are queued; copy it down once they ran. */
static void down(void *ctx, int i, float *host, const float *dev, size_t n)
{
    cuda_stage *s = ctx;
    cudaError_t rc = cudaEventRecord(s->ready[i], s->compute);
    if (rc == cudaSuccess)
        rc = cudaStreamWaitEvent(s->down_stream, s->ready[i], 0);
    if (rc == cudaSuccess && n)
        rc = cudaMemcpyAsync(host, dev, n * sizeof(float), cudaMemcpyDeviceToHost, s->down_stream);
    if (rc == cudaSuccess)
        rc = cudaEventRecord(s->down[i], s->down_stream);
    if (rc != cudaSuccess && s->failed == cudaSuccess)
        s->failed = rc;
}

/* Comm thread: 0 when bucket i is in host memory, 1 not yet, -1 error. */
static int down_done(void *ctx, int i, core_error *err)
{
    cuda_stage *s = ctx;
    if (s->failed != cudaSuccess)
        return fail(err, "copying the gradients to the host", s->failed);
    cudaError_t rc = cudaSetDevice(s->device); /* the current device is per thread */
    if (rc == cudaSuccess)
        rc = cudaEventQuery(s->down[i]);
    if (rc == cudaErrorNotReady)
        return 1;
    if (rc != cudaSuccess)
        return fail(err, "copying the gradients to the host", rc);
    return 0;
}

/* Comm thread: the summed bucket goes back to the device. */
static int up(void *ctx, int i, float *dev, const float *host, size_t n, core_error *err)
{
    (void)i;
    cuda_stage *s = ctx;
    cudaError_t rc = cudaSetDevice(s->device); /* the current device is per thread */
    if (rc == cudaSuccess && n)
        rc = cudaMemcpyAsync(dev, host, n * sizeof(float), cudaMemcpyHostToDevice, s->up_stream);
    if (rc == cudaSuccess)
        rc = cudaEventRecord(s->up, s->up_stream);
    return rc == cudaSuccess ? 0 : fail(err, "copying the summed gradients back", rc);
}

/* Compute thread, after the last bucket: what follows on the compute stream
 * waits for every copy back (one stream, in order: its last event). */
static int join(void *ctx, core_error *err)
{
    cuda_stage *s = ctx;
    cudaError_t rc = cudaStreamWaitEvent(s->compute, s->up, 0);
    return rc == cudaSuccess ? 0 : fail(err, "joining the compute stream", rc);
}

int dist_stage_cuda(void *compute_stream, dist_stage *out, core_error *err)
{
    memset(out, 0, sizeof *out);
    cuda_stage *s = calloc(1, sizeof *s);
    if (!s)
        return core_error_set(err, "dist: host staging: out of memory");
    cudaError_t rc = cudaGetDevice(&s->device);
    if (rc != cudaSuccess) {
        free(s);
        return fail(err, "cudaGetDevice", rc);
    }
    s->compute = (cudaStream_t)compute_stream;
    *out = (dist_stage){s, setup, down, down_done, up, join, destroy};
    return 0;
}
