/*
 * core/par.c: see par.h.
 *
 * Why a pool of our own rather than OpenMP: the GEMMs are split over the same
 * threads (engine/cpu), so one set of threads runs the whole step and
 * OpenBLAS's pool stays at 1; OpenMP beside OpenBLAS's pthread pool would be
 * two sets of spinning threads on the same cores. It also keeps the spin,
 * the sleep and the partition in view, in about a page.
 */
#define _GNU_SOURCE
#include "core/par.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#define PAR_MAX_THREADS 256
/* Polls before a waiting worker sleeps: some hundreds of microseconds, longer
 * than the gaps between the ops of a step, shorter than a step. */
#define PAR_SPIN 20000

static struct {
    int n;
    pthread_t tid[PAR_MAX_THREADS];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_mutex_t dispatch; /* one caller at a time uses the workers */
    atomic_uint gen;          /* bumped for each job */
    unsigned start_gen;       /* gen when the workers were started */
    atomic_int pending;       /* workers still inside the current job */
    atomic_int sleepers;
    atomic_int stop;
    core_par_fn fn;
    void *ctx;
    int parts;
} pool = {.n = 1,
          .mu = PTHREAD_MUTEX_INITIALIZER,
          .cv = PTHREAD_COND_INITIALIZER,
          .dispatch = PTHREAD_MUTEX_INITIALIZER};

static _Thread_local int in_part;

static inline void relax(int spins)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
    if ((spins & 63) == 63)
        sched_yield();
}

static void run_parts(int first, int step)
{
    in_part = 1;
    for (int p = first; p < pool.parts; p += step)
        pool.fn(pool.ctx, p, pool.parts);
    in_part = 0;
}

static void *worker(void *arg)
{
    const int id = (int)(size_t)arg;
    unsigned seen = pool.start_gen; /* not gen now: a job may already have started */
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load(&pool.gen)) == seen && !atomic_load(&pool.stop)) {
            if (++spins < PAR_SPIN) {
                relax(spins);
                continue;
            }
            pthread_mutex_lock(&pool.mu);
            atomic_fetch_add(&pool.sleepers, 1);
            while (atomic_load(&pool.gen) == seen && !atomic_load(&pool.stop))
                pthread_cond_wait(&pool.cv, &pool.mu);
            atomic_fetch_sub(&pool.sleepers, 1);
            pthread_mutex_unlock(&pool.mu);
            spins = 0;
        }
        if (atomic_load(&pool.stop))
            return NULL;
        seen = g;
        run_parts(id, pool.n);
        atomic_fetch_sub(&pool.pending, 1);
    }
}

static void wake_all(void)
{
    if (atomic_load(&pool.sleepers) == 0)
        return;
    pthread_mutex_lock(&pool.mu);
    pthread_cond_broadcast(&pool.cv);
    pthread_mutex_unlock(&pool.mu);
}

static void stop_workers(void)
{
    if (pool.n <= 1)
        return;
    atomic_store(&pool.stop, 1);
    pthread_mutex_lock(&pool.mu);
    pthread_cond_broadcast(&pool.cv);
    pthread_mutex_unlock(&pool.mu);
    for (int i = 1; i < pool.n; i++)
        pthread_join(pool.tid[i], NULL);
    atomic_store(&pool.stop, 0);
    pool.n = 1;
}

int core_par_set_threads(int n)
{
    if (n < 1)
        n = 1;
    if (n > PAR_MAX_THREADS)
        n = PAR_MAX_THREADS;
    pthread_mutex_lock(&pool.dispatch);
    if (n != pool.n) {
        stop_workers();
        pool.start_gen = atomic_load(&pool.gen);
        int started = 1;
        for (; started < n; started++)
            if (pthread_create(&pool.tid[started], NULL, worker, (void *)(size_t)started) != 0)
                break;
        pool.n = started;
    }
    pthread_mutex_unlock(&pool.dispatch);
    return pool.n;
}

int core_par_threads(void)
{
    return pool.n;
}

void core_par_run(core_par_fn fn, void *ctx, int parts)
{
    if (parts <= 0)
        return;
    if (parts == 1 || pool.n <= 1 || in_part || pthread_mutex_trylock(&pool.dispatch) != 0) {
        for (int p = 0; p < parts; p++)
            fn(ctx, p, parts);
        return;
    }
    if (pool.n <= 1) { /* resized to 1 between the check and the lock */
        pthread_mutex_unlock(&pool.dispatch);
        for (int p = 0; p < parts; p++)
            fn(ctx, p, parts);
        return;
    }
    pool.fn = fn;
    pool.ctx = ctx;
    pool.parts = parts;
    atomic_store(&pool.pending, pool.n - 1);
    atomic_fetch_add(&pool.gen, 1);
    wake_all();
    run_parts(0, pool.n);
    for (int spins = 0; atomic_load(&pool.pending) > 0;)
        relax(++spins);
    pthread_mutex_unlock(&pool.dispatch);
}

int core_par_parts(size_t n, size_t grain)
{
    if (grain < 1)
        grain = 1;
    size_t most = n / grain;
    if (most < 1)
        return 1;
    return most < (size_t)pool.n ? (int)most : pool.n;
}

void core_par_range(size_t n, int part, int parts, size_t align, size_t *lo, size_t *hi)
{
    if (align < 1)
        align = 1;
    size_t units = (n + align - 1) / align;
    size_t a = units * (size_t)part / (size_t)parts * align;
    size_t b = units * (size_t)(part + 1) / (size_t)parts * align;
    *lo = a < n ? a : n;
    *hi = b < n ? b : n;
}

typedef struct range_job {
    core_par_range_fn fn;
    void *ctx;
    size_t n, align;
} range_job;

static void range_part(void *p, int part, int parts)
{
    const range_job *j = p;
    size_t lo, hi;
    core_par_range(j->n, part, parts, j->align, &lo, &hi);
    if (hi > lo)
        j->fn(j->ctx, lo, hi);
}

void core_par_for(size_t n, size_t grain, size_t align, core_par_range_fn fn, void *ctx)
{
    if (n == 0)
        return;
    int parts = core_par_parts(n, grain);
    if (parts <= 1) {
        fn(ctx, 0, n);
        return;
    }
    range_job j = {fn, ctx, n, align};
    core_par_run(range_part, &j, parts);
}

int core_par_default_threads(int local_ranks, const char **why)
{
    const char *env = getenv("OMP_NUM_THREADS");
    if (env && atoi(env) > 0) {
        if (why)
            *why = "OMP_NUM_THREADS";
        return atoi(env);
    }
    cpu_set_t set;
    int mine = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    /* Ranks bound to a set they share (unbound, or Open MPI's default
     * --bind-to socket beyond 2 ranks) would each see it all: no rank takes
     * more than its share of the node. */
    int share = local_ranks > 1 && online > 0 ? (int)(online / local_ranks) : mine;
    if (share < 1)
        share = 1;
    if (share < mine) {
        if (why)
            *why = "the node's CPUs shared among its ranks";
        return share;
    }
    if (why)
        *why = "the CPUs the rank is bound to";
    return mine > 0 ? mine : 1;
}
