/*
 * tests/unit/test_gpu_select.c: the one rule for a rank's GPU (dist/gpu.c):
 * device = local rank mod the GPUs the rank sees, printed for a few layouts;
 * and which rank of a node shares a GPU: with every rank seeing the same
 * GPUs, each rank past the GPU count shares the GPU of a lower local rank;
 * under srun --gpus-per-task=1 every rank sees one GPU as device 0, but a
 * different one, and nobody shares. The collective refusal is
 * tests/e2e/gpu_ranks.sh.
 */
#include <stdio.h>
#include <string.h>

#include "test_support.h"

#include "dist/dist.h"

static void test_ordinal(void **state)
{
    (void)state;
    const int counts[] = {1, 2, 4, 8};
    for (int c = 0; c < 4; c++) {
        printf("GPUs seen %d: local rank -> device", counts[c]);
        for (int r = 0; r < 8; r++) {
            int d = dist_gpu_ordinal(r, counts[c]);
            printf(" %d->%d", r, d);
            assert_int_equal(d, r % counts[c]);
        }
        printf("\n");
    }
    assert_int_equal(dist_gpu_ordinal(3, 1), 0); /* srun --gpus-per-task=1 */
    assert_int_equal(dist_gpu_ordinal(5, 4), 1);
    assert_int_equal(dist_gpu_ordinal(0, 0), -1); /* no GPU */
    assert_int_equal(dist_gpu_ordinal(2, -1), -1);
}

static void test_shared(void **state)
{
    (void)state;
    char ids[4][DIST_GPU_ID_LEN];
    /* One node, every rank sees the same 2 GPUs: ranks 2 and 3 come second. */
    for (int r = 0; r < 4; r++)
        snprintf(ids[r], sizeof ids[r], "uuid-%d", dist_gpu_ordinal(r, 2));
    const int want2[4] = {-1, -1, 0, 1};
    for (int r = 0; r < 4; r++)
        assert_int_equal(dist_gpu_shared_with((const char(*)[DIST_GPU_ID_LEN])ids, 4, r), want2[r]);
    /* srun --gpus-per-task=1: device 0 everywhere, four different GPUs. */
    for (int r = 0; r < 4; r++)
        snprintf(ids[r], sizeof ids[r], "uuid-of-gpu-%d-as-device-%d", r, dist_gpu_ordinal(r, 1));
    for (int r = 0; r < 4; r++)
        assert_int_equal(dist_gpu_shared_with((const char(*)[DIST_GPU_ID_LEN])ids, 4, r), -1);
    /* One GPU, two ranks (the NCCL hang): rank 1 shares rank 0's. */
    snprintf(ids[0], sizeof ids[0], "h200");
    snprintf(ids[1], sizeof ids[1], "h200");
    assert_int_equal(dist_gpu_shared_with((const char(*)[DIST_GPU_ID_LEN])ids, 2, 0), -1);
    assert_int_equal(dist_gpu_shared_with((const char(*)[DIST_GPU_ID_LEN])ids, 2, 1), 0);
    /* Ranks that see no GPU (empty id) share nothing; the engine reports. */
    ids[0][0] = ids[1][0] = '\0';
    assert_int_equal(dist_gpu_shared_with((const char(*)[DIST_GPU_ID_LEN])ids, 2, 1), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ordinal),
        cmocka_unit_test(test_shared),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
