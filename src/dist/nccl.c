/*
 * dist/nccl.c: the NCCL all-reduce backend (--allreduce nccl), built only
 * where CMake finds NCCL (RINGTRAIN_HAVE_NCCL); see docs/GPU.md.
 *
 * Set-up (dist_nccl_init, collective): rank 0 creates the NCCL unique id and
 * broadcasts it over the control communicator; every rank then joins the
 * NCCL communicator on its GPU (one rank per GPU, the device chosen by
 * dist_gpu_select, the same as the engine's). NCCL gets its own stream.
 *
 * Overlap with backward, the same shape as the CPU path: the bucket
 * scheduler calls dist_nccl_mark(i) on the compute thread when backward has
 * QUEUED the kernels that complete bucket i, which records event i on the
 * engine's compute stream; the comm thread makes the NCCL stream wait for
 * that event (a device-side dependency, the host never blocks on compute),
 * issues ncclAllReduce in place on the device gradient slice, and waits for
 * its completion with the same backoff and watchdog as the MPI backends
 * (cudaEventQuery + ncclCommGetAsyncError, never a blocking sync).
 */
#include "dist/dist_internal.h"

#include <cuda_runtime_api.h>
#include <nccl.h>
#include <stdlib.h>
#include <string.h>

struct dist_nccl {
    ncclComm_t comm;
    cudaStream_t stream;  /* NCCL's own */
    cudaStream_t compute; /* the engine's, where backward is queued */
    cudaEvent_t done;
    cudaEvent_t *ready; /* one per bucket, recorded on the compute stream */
    int *marked;
    int nready, current, device;
};

static int cuda_fail(core_error *err, const char *what, cudaError_t rc)
{
    return core_error_set(err, "dist: nccl: %s: %s", what, cudaGetErrorString(rc));
}

static int nccl_fail(core_error *err, const char *what, ncclResult_t rc)
{
    return core_error_set(err, "dist: nccl: %s: %s", what, ncclGetErrorString(rc));
}

int dist_nccl_init(dist_world *w, int device, void *compute_stream, core_error *err)
{
    if (w->nccl)
        return 0;
    struct dist_nccl *n = calloc(1, sizeof *n);
    if (!n)
        return core_error_set(err, "dist: nccl: out of memory");
    w->nccl = n;
    n->device = device;
    n->compute = (cudaStream_t)compute_stream;
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    int failed = 0;
    if (w->rank == 0) {
        ncclResult_t rc = ncclGetUniqueId(&id);
        if (rc != ncclSuccess)
            failed = nccl_fail(err, "ncclGetUniqueId", rc) != 0;
    }
    /* Every rank takes part in the broadcast, even after rank 0 failed. */
    int rc = MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, w->ctl);
    if (rc != MPI_SUCCESS)
        return dist_mpi_error(w, err, rc, "dist: nccl: broadcast of the unique id");
    if (failed)
        return -1;
    cudaError_t crc = cudaSetDevice(device);
    if (crc == cudaSuccess)
        crc = cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking);
    if (crc == cudaSuccess)
        crc = cudaEventCreateWithFlags(&n->done, cudaEventDisableTiming);
    if (crc != cudaSuccess)
        cuda_fail(err, "stream set-up", crc);
    /* ncclCommInitRank waits for every rank: nobody enters it alone. */
    int first = dist_first_failed(w, crc != cudaSuccess);
    if (first >= 0)
        return crc != cudaSuccess
                   ? -1
                   : core_error_set(err, "dist: nccl: rank %d could not set up its stream", first);
    ncclResult_t nrc = ncclCommInitRank(&n->comm, w->size, id, w->rank);
    if (nrc != ncclSuccess) {
        n->comm = NULL;
        return nccl_fail(err, "ncclCommInitRank", nrc);
    }
    return 0;
}

int dist_nccl_buckets(dist_world *w, int nb, core_error *err)
{
    struct dist_nccl *n = w->nccl;
    if (!n)
        return core_error_set(err, "dist: --allreduce nccl needs the GPU engine (--device cuda)");
    n->ready = calloc((size_t)nb, sizeof *n->ready);
    n->marked = calloc((size_t)nb, sizeof *n->marked);
    if (!n->ready || !n->marked)
        return core_error_set(err, "dist: nccl: out of memory for %d bucket events", nb);
    for (int i = 0; i < nb; i++) {
        cudaError_t rc = cudaEventCreateWithFlags(&n->ready[i], cudaEventDisableTiming);
        if (rc != cudaSuccess)
            return cuda_fail(err, "bucket events", rc);
        n->nready++;
    }
    return 0;
}

/* Compute thread: bucket i's gradients are queued on the compute stream. */
void dist_nccl_mark(dist_world *w, int i)
{
    struct dist_nccl *n = w->nccl;
    if (!n || i >= n->nready)
        return;
    cudaEventRecord(n->ready[i], n->compute);
    n->marked[i] = 1;
}

/* Reducing thread, before bucket i: without overlap the bucket was never
 * marked, and backward is fully queued by now, so mark it here. */
void dist_nccl_begin_bucket(dist_world *w, int i)
{
    struct dist_nccl *n = w->nccl;
    if (!n || i >= n->nready)
        return;
    if (!n->marked[i])
        cudaEventRecord(n->ready[i], n->compute);
    n->marked[i] = 0;
    n->current = i;
}

int dist_nccl_allreduce(dist_world *w, float *buf, size_t count, core_error *err)
{
    struct dist_nccl *n = w->nccl;
    if (!n || !n->comm)
        return core_error_set(err, "dist: --allreduce nccl needs the GPU engine (--device cuda)");
    cudaError_t crc = cudaSetDevice(n->device); /* the current device is per thread */
    if (crc == cudaSuccess && n->nready)
        crc = cudaStreamWaitEvent(n->stream, n->ready[n->current], 0);
    if (crc != cudaSuccess)
        return cuda_fail(err, "waiting for the bucket's gradients", crc);
    ncclResult_t rc = ncclAllReduce(buf, buf, count, ncclFloat, ncclSum, n->comm, n->stream);
    if (rc != ncclSuccess)
        return nccl_fail(err, "ncclAllReduce", rc);
    if ((crc = cudaEventRecord(n->done, n->stream)) != cudaSuccess)
        return cuda_fail(err, "cudaEventRecord", crc);
    dist_backoff b;
    dist_backoff_start(&b);
    for (;;) {
        crc = cudaEventQuery(n->done);
        if (crc == cudaSuccess)
            return 0;
        if (crc != cudaErrorNotReady)
            return cuda_fail(err, "ncclAllReduce completion", crc);
        ncclResult_t async = ncclSuccess;
        if (ncclCommGetAsyncError(n->comm, &async) == ncclSuccess && async != ncclSuccess)
            return nccl_fail(err, "ncclAllReduce (asynchronous error)", async);
        dist_backoff_pause(w, &b, -1);
    }
}

void dist_nccl_free(dist_world *w)
{
    struct dist_nccl *n = w->nccl;
    if (!n)
        return;
    if (n->comm)
        ncclCommDestroy(n->comm);
    for (int i = 0; i < n->nready; i++)
        cudaEventDestroy(n->ready[i]);
    if (n->done)
        cudaEventDestroy(n->done);
    if (n->stream)
        cudaStreamDestroy(n->stream);
    free(n->ready);
    free(n->marked);
    free(n);
    w->nccl = NULL;
}
