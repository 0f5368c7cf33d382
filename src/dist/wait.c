/*
 * dist/wait.c: how dist/ waits for peers without stealing a core, and the
 * collective watchdog.
 *
 * Open MPI's MPI_Wait and blocking collectives spin in the progress engine.
 * The comm thread shares its rank's cores with compute, so it tests requests
 * instead: a short spin (a peer about to answer costs no sleep), then a
 * doubling nanosleep capped at DIST_WAIT_SLEEP_MAX_NS. See
 * docs/COMMUNICATION.md, "Waiting without a core" for the measurement.
 *
 * The watchdog lives in the same loop: a thread running a watched operation
 * (dist_watch_begin) checks its deadline at every pause; past it, it prints
 * which operation and which peer it was waiting on and ends the job with
 * MPI_Abort, because a collective that never completes cannot be left
 * cleanly by any rank.
 */
#include "dist/dist_internal.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct dist_watch {
    char what[192];
    double start;
    double timeout_s; /* <= 0: not watched */
} dist_watch;

static _Thread_local dist_watch watch;
static _Thread_local int may_sleep;

int dist_wait_may_sleep(int on)
{
    int was = may_sleep;
    may_sleep = on;
    return was;
}

double dist_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void dist_watch_begin(const char *what, double timeout_s)
{
    snprintf(watch.what, sizeof watch.what, "%s", what);
    watch.start = dist_now();
    watch.timeout_s = timeout_s;
}

void dist_watch_end(void)
{
    watch.timeout_s = 0.0;
}

int dist_watch_active(void)
{
    return watch.timeout_s > 0.0;
}

void dist_watch_fire(dist_world *w, const char *what, double waited_s, const char *on_whom)
{
    fprintf(stderr,
            "ringtrain: [rank %d] watchdog: %s has not completed after %.1f s; waiting on %s; "
            "aborting the job (raise --comm-timeout if this step is legitimately slow)\n",
            w->rank, what, waited_s, on_whom);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, DIST_WATCHDOG_EXIT);
    abort(); /* MPI_Abort does not return; keep the noreturn promise if it does */
}

static void watch_check(dist_world *w, int peer)
{
    if (watch.timeout_s <= 0.0)
        return;
    double waited = dist_now() - watch.start;
    if (waited < watch.timeout_s)
        return;
    char who[64];
    if (peer >= 0)
        snprintf(who, sizeof who, "rank %d", peer);
    else
        snprintf(who, sizeof who, "an unknown peer (inside the MPI library)");
    dist_watch_fire(w, watch.what, waited, who);
}

void dist_backoff_start(dist_backoff *b)
{
    b->start = dist_now();
    b->sleep_ns = 1000;
    b->polls = 0;
}

void dist_backoff_pause(dist_world *w, dist_backoff *b, int peer)
{
    /* Reading the clock on every poll costs more than the poll; every 64th. */
    if ((++b->polls & 63) != 0)
        return;
    double waited = dist_now() - b->start;
    watch_check(w, peer);
    if (w->wait_spin || waited * 1e9 < DIST_WAIT_SPIN_NS)
        return;
    if (!may_sleep) {
        sched_yield();
        return;
    }
    struct timespec ts = {0, b->sleep_ns};
    nanosleep(&ts, NULL);
    b->sleep_ns *= 2;
    if (b->sleep_ns > DIST_WAIT_SLEEP_MAX_NS)
        b->sleep_ns = DIST_WAIT_SLEEP_MAX_NS;
}

int dist_wait_req(dist_world *w, MPI_Request *req, int peer, const char *what, core_error *err)
{
    dist_backoff b;
    dist_backoff_start(&b);
    for (;;) {
        int done = 0;
        int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS)
            return dist_mpi_error(w, err, rc, what);
        if (done)
            return 0;
        dist_backoff_pause(w, &b, peer);
    }
}
