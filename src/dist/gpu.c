/*
 * dist/gpu.c: which GPU a rank uses - one rule for the CUDA engine and NCCL
 * (docs/GPU.md, "Ranks and GPUs").
 *
 * A rank uses GPU (local rank mod the GPUs it sees). cudaGetDeviceCount
 * honours CUDA_VISIBLE_DEVICES, so under `srun --gpus-per-task=1` every rank
 * sees one GPU, as device 0, and uses it; on a node whose ranks all see every
 * GPU, local rank r uses GPU r. Two ranks of a node that would use the same
 * physical GPU (same UUID) are refused, collectively, before anything can
 * block on a peer (NCCL's set-up does, with one GPU and two ranks), unless
 * sharing is allowed (RINGTRAIN_GPUS_SHARED=1, host-staged backends only).
 *
 * Test-only hook: RINGTRAIN_TEST_GPU_COUNT=k makes every rank see k GPUs
 * (the same k on every rank of a node, as on a machine without
 * CUDA_VISIBLE_DEVICES), without asking CUDA; it is read here only, so that
 * CI without a GPU can test the refusal.
 */
#include "dist/dist_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

int dist_gpu_ordinal(int local_rank, int visible)
{
    if (visible <= 0 || local_rank < 0)
        return -1;
    return local_rank % visible;
}

int dist_gpu_shared_with(const char (*ids)[DIST_GPU_ID_LEN], int nlocal, int me)
{
    if (ids[me][0] == '\0')
        return -1;
    for (int r = 0; r < me && r < nlocal; r++)
        if (strncmp(ids[r], ids[me], DIST_GPU_ID_LEN) == 0)
            return r;
    return -1;
}

#ifndef RINGTRAIN_HAVE_CUDA
int dist_cuda_visible(void)
{
    return -1;
}

int dist_cuda_gpu_id(int device, char *id, size_t len)
{
    (void)device;
    if (len)
        id[0] = '\0';
    return -1;
}

int dist_stage_cuda(void *compute_stream, dist_stage *out, core_error *err)
{
    (void)compute_stream;
    memset(out, 0, sizeof *out);
    return core_error_set(err, "dist: host staging of GPU gradients: ringtrain was built "
                               "without CUDA");
}
#endif

/* The GPUs this rank sees: the test hook, else CUDA (-1: unknown, 0: none). */
static int visible_gpus(int *hooked)
{
    const char *t = getenv("RINGTRAIN_TEST_GPU_COUNT");
    *hooked = t && *t;
    return *hooked ? atoi(t) : dist_cuda_visible();
}

static void describe_visible(char *out, size_t cap, int visible)
{
    const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
    if (cvd)
        snprintf(out, cap, "%d GPU(s) (CUDA_VISIBLE_DEVICES=%s)", visible, cvd);
    else
        snprintf(out, cap, "%d GPU(s) (CUDA_VISIBLE_DEVICES unset)", visible);
}

int dist_gpu_select(dist_world *w, int allow_shared, int *device, core_error *err)
{
    int hooked = 0;
    int visible = visible_gpus(&hooked);
    *device = visible > 0 ? dist_gpu_ordinal(w->local_rank, visible) : 0;
    char(*ids)[DIST_GPU_ID_LEN] = calloc((size_t)w->local_size, DIST_GPU_ID_LEN);
    char mine[DIST_GPU_ID_LEN] = "";
    if (visible > 0 && hooked)
        snprintf(mine, sizeof mine, "test-gpu-%d", *device);
    else if (visible > 0)
        dist_cuda_gpu_id(*device, mine, sizeof mine);
    /* Collective even without memory: every rank takes part. */
    int rc = MPI_Allgather(mine, DIST_GPU_ID_LEN, MPI_CHAR, ids ? ids[0] : NULL,
                           ids ? DIST_GPU_ID_LEN : 0, MPI_CHAR, w->local);
    int failed = 0, other = -1;
    if (rc != MPI_SUCCESS)
        failed = dist_mpi_error(w, err, rc, "dist: exchanging the GPUs of the node") != 0;
    else if (!ids)
        failed = core_error_set(err, "dist: out of memory for the GPU table") != 0;
    else
        other =
            dist_gpu_shared_with((const char(*)[DIST_GPU_ID_LEN])ids, w->local_size, w->local_rank);
    free(ids);
    if (!failed && other >= 0 && !allow_shared) {
        char seen[192];
        describe_visible(seen, sizeof seen, visible);
        failed = core_error_set(err,
                                "rank %d (local rank %d of %d on its node) sees %s and would "
                                "share GPU %d with local rank %d; start at most %d rank(s) per "
                                "node, give each rank its own GPU (srun --gpus-per-task=1), or "
                                "allow sharing with RINGTRAIN_GPUS_SHARED=1 (--allreduce "
                                "ring|hier|mpi only)",
                                w->rank, w->local_rank, w->local_size, seen, *device, other,
                                visible) != 0;
    }
    int first = dist_first_failed(w, failed);
    if (first < 0) {
        int sharer = dist_first_failed(w, other >= 0); /* collective: said once, by rank 0 */
        if (sharer >= 0)
            core_log_info("GPUs shared by ranks of a node, from rank %d on "
                          "(RINGTRAIN_GPUS_SHARED=1)",
                          sharer);
        return 0;
    }
    /* The first failed rank's line, on every rank. */
    char msg[CORE_ERROR_MAX];
    memcpy(msg, err->msg, sizeof msg);
    msg[sizeof msg - 1] = '\0';
    if (MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, first, w->ctl) != MPI_SUCCESS)
        snprintf(msg, sizeof msg, "rank %d: GPU selection failed (message lost)", first);
    return core_error_set(err, "%s", msg);
}
