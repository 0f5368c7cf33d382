/* A tiny MPI check used by cluster/ tests: every rank reports its host and
 * network namespace, the ranks all-reduce a vector whose sum is known, and
 * with "bw MiB" ranks 0 and 1 ping-pong a MiB-sized message to measure the
 * point-to-point bandwidth. Exit status 0 only when the all-reduce is exact.
 *   mpi_hello            -> "hello rank R of N on HOST netns NS" per rank,
 *                           "allreduce ok: N ranks, sum S" on rank 0
 *   mpi_hello bw 64      -> also "bandwidth: X MB/s (64 MiB, ...)" on rank 0 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The namespace name when run under `ip netns exec` (it sets no variable, so
 * compare this process's net namespace inode with /run/netns/<name>). */
static void netns_name(char *out, size_t n)
{
    struct stat self;
    snprintf(out, n, "-");
    if (stat("/proc/self/ns/net", &self) != 0)
        return;
    FILE *p = popen("ls /run/netns 2>/dev/null", "r");
    if (!p)
        return;
    char name[256];
    while (fgets(name, sizeof name, p)) {
        name[strcspn(name, "\n")] = 0;
        char path[300];
        struct stat st;
        snprintf(path, sizeof path, "/run/netns/%s", name);
        if (stat(path, &st) == 0 && st.st_ino == self.st_ino && st.st_dev == self.st_dev) {
            snprintf(out, n, "%s", name);
            break;
        }
    }
    pclose(p);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size, len;
    char host[MPI_MAX_PROCESSOR_NAME], ns[256];
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Get_processor_name(host, &len);
    netns_name(ns, sizeof ns);
    printf("hello rank %d of %d on %s netns %s\n", rank, size, host, ns);
    fflush(stdout);

    /* all-reduce: element i of rank r is r + i; the sum is exact in doubles */
    enum { N = 1 << 16 };
    double *v = malloc(N * sizeof *v), *s = malloc(N * sizeof *s);
    for (int i = 0; i < N; i++)
        v[i] = rank + i;
    MPI_Allreduce(v, s, N, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    int bad = 0;
    for (int i = 0; i < N; i++)
        if (s[i] != (double)size * (size - 1) / 2 + (double)size * i)
            bad++;
    int allbad = 0;
    MPI_Allreduce(&bad, &allbad, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) {
        if (allbad)
            printf("allreduce FAILED: %d wrong elements\n", allbad);
        else
            printf("allreduce ok: %d ranks, sum[0] %.0f\n", size, s[0]);
    }

    if (argc >= 3 && strcmp(argv[1], "bw") == 0 && size >= 2) {
        size_t bytes = (size_t)atoi(argv[2]) << 20;
        char *buf = calloc(bytes, 1);
        int reps = 4;
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        for (int r = 0; r < reps; r++) {
            if (rank == 0) {
                MPI_Send(buf, (int)bytes, MPI_BYTE, 1, 0, MPI_COMM_WORLD);
                MPI_Recv(buf, (int)bytes, MPI_BYTE, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            } else if (rank == 1) {
                MPI_Recv(buf, (int)bytes, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                MPI_Send(buf, (int)bytes, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
            }
        }
        double t = MPI_Wtime() - t0;
        if (rank == 0)
            printf("bandwidth: %.1f MB/s (%zu MiB x %d round trips, rank 0 <-> 1, %.3f s)\n",
                   2.0 * reps * bytes / t / 1e6, bytes >> 20, reps, t);
        free(buf);
    }
    free(v);
    free(s);
    MPI_Finalize();
    return allbad ? 1 : 0;
}
