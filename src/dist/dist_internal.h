/*
 * dist/dist_internal.h: the world's layout, shared by the files of dist/ only.
 *
 * Nothing outside src/dist/ includes this file; it is what keeps MPI out of
 * the rest of ringtrain while letting world.c, ring.c, allreduce.c and
 * bench.c see the same communicators.
 */
#ifndef DIST_INTERNAL_H
#define DIST_INTERNAL_H

#include <mpi.h>
#include <stddef.h>

#include "core/error.h"
#include "dist/dist.h"

/* Default ring segment: 256 KiB of floats (see docs/COMMUNICATION.md). */
#define DIST_RING_SEGMENT_DEFAULT ((size_t)(256 * 1024) / sizeof(float))
/* Segments in flight per direction in one ring step. */
#define DIST_RING_WINDOW 4

struct dist_world {
    /* Control traffic: small collectives, barriers, failure agreement. Used by
     * the main thread. */
    MPI_Comm ctl;
    /* Gradient traffic: ring and MPI all-reduces. Used by the comm thread once
     * it exists, so that its collectives never interleave with the main
     * thread's on one communicator. */
    MPI_Comm grad;
    /* Ranks that share memory with this one (one node). */
    MPI_Comm local;
    int rank, size;
    int local_rank, local_size;
    int thread_level;  /* what MPI_Init_thread provided */
    int owns_mpi;      /* 1 when dist_world_init initialized MPI */
    size_t reserved_n; /* all-reduces of up to this many floats need no allocation */
    float *scratch;    /* ceil(reserved_n / size) floats */
    size_t segment;    /* ring segment, in floats */
};

/* Fills err with "<what>: <MPI error text> (rank r)" for an MPI return code; returns -1. */
int dist_mpi_error(const dist_world *w, core_error *err, int rc, const char *what);

#endif
