/*
 * train/progress.c: progress bar or plain timestamped lines (see progress.h).
 */
#include "train/progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"

/* The command name and parent of a process, from /proc/PID/stat. */
static int proc_parent(long pid, char *comm, size_t len, long *ppid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *open = strchr(buf, '('), *close = strrchr(buf, ')');
    if (!open || !close || close < open || sscanf(close + 1, " %*c %ld", ppid) != 1)
        return -1;
    snprintf(comm, len, "%.*s", (int)(close - open - 1), open + 1);
    return 0;
}

/* Open MPI gives every rank a pseudo-terminal as its stdout, even when
 * mpirun's own output goes to a file or a pipe, so under Open MPI the
 * question is asked of the launcher: the nearest ancestor that is mpirun (or
 * the orted of a remote node; a wrapper script may sit in between) must
 * have a terminal as its stdout. Anything unreadable counts as no terminal. */
static int launcher_has_terminal(void)
{
    static const char *const launchers[] = {"mpirun", "mpiexec", "orterun",
                                            "orted",  "prterun", "prted"};
    long pid = (long)getppid();
    for (int depth = 0; depth < 16 && pid > 1; depth++) {
        char comm[64], path[64], target[256];
        long ppid = 0;
        if (proc_parent(pid, comm, sizeof comm, &ppid) != 0)
            return 0;
        for (size_t i = 0; i < sizeof launchers / sizeof launchers[0]; i++) {
            if (strcmp(comm, launchers[i]) != 0)
                continue;
            snprintf(path, sizeof path, "/proc/%ld/fd/1", pid);
            ssize_t n = readlink(path, target, sizeof target - 1);
            if (n <= 0)
                return 0;
            target[n] = '\0';
            return strncmp(target, "/dev/pts/", 9) == 0 || strncmp(target, "/dev/tty", 8) == 0;
        }
        pid = ppid;
    }
    return 0;
}

/* A terminal; under Slurm only with `srun --pty` (a batch job's ranks may
 * still get a pty from srun); under Open MPI's mpirun only when mpirun
 * writes to a terminal too. */
static int looks_interactive(FILE *out)
{
    const char *term = getenv("TERM");
    if (!isatty(fileno(out)) || !term || strcmp(term, "dumb") == 0)
        return 0;
    if (getenv("SLURM_JOB_ID"))
        return getenv("SLURM_PTY_PORT") != NULL;
    return !getenv("OMPI_COMM_WORLD_SIZE") || launcher_has_terminal();
}

int train_progress_mode_parse(const char *name, train_progress_mode *out, core_error *err)
{
    static const char *const names[] = {"auto", "bar", "plain", "none"};
    for (int i = 0; i < 4; i++)
        if (name && strcmp(name, names[i]) == 0) {
            *out = (train_progress_mode)i;
            return 0;
        }
    return core_error_set(err, "unknown --progress '%s'; expected auto, bar, plain or none",
                          name ? name : "(null)");
}

void train_progress_init(train_progress_view *v, train_progress_mode mode, int rank, int epochs,
                         long per_step, const char *unit, FILE *out)
{
    memset(v, 0, sizeof *v);
    if (mode == TRAIN_PROGRESS_AUTO)
        mode = looks_interactive(out) ? TRAIN_PROGRESS_BAR : TRAIN_PROGRESS_PLAIN;
    v->mode = rank == 0 ? mode : TRAIN_PROGRESS_NONE;
    v->out = out;
    v->epochs = epochs;
    v->per_step = per_step;
    v->unit = unit ? unit : "img/s";
    v->loss = v->top1 = -1.0;
}

void train_progress_epoch_begin(train_progress_view *v, int epoch, long total, long first)
{
    v->epoch = epoch;
    v->total = total;
    v->first = first;
    v->t0 = core_now();
    v->last_draw = 0.0;
    v->drawn = 0;
}

static void fmt_eta(char *buf, size_t len, double s)
{
    long t = s > 0 ? (long)(s + 0.5) : 0;
    if (t >= 3600)
        snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else
        snprintf(buf, len, "%ld:%02ld", t / 60, t % 60);
}

static void draw_bar(train_progress_view *v, long done, double t)
{
    enum { WIDTH = 30 };
    double el = t - v->t0, steps = (double)(done - v->first);
    double ips = el > 0 ? steps * (double)v->per_step / el : 0.0;
    double eta = steps > 0 ? el / steps * (double)(v->total - done) : 0.0;
    int fill = v->total ? (int)((double)WIDTH * (double)done / (double)v->total) : WIDTH;
    char bar[WIDTH + 1], eta_s[32], loss_s[32] = "";
    for (int i = 0; i < WIDTH; i++)
        bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[WIDTH] = '\0';
    fmt_eta(eta_s, sizeof eta_s, eta);
    if (v->loss >= 0)
        snprintf(loss_s, sizeof loss_s, "  loss %.4f", v->loss);
    fprintf(v->out, "\repoch %d/%d [%s] %ld/%ld  %.0f %s%s  ETA %s\033[K", v->epoch, v->epochs, bar,
            done, v->total, ips, v->unit, loss_s, eta_s);
    fflush(v->out);
    v->drawn = 1;
}

void train_progress_step(train_progress_view *v, long done)
{
    if (v->mode != TRAIN_PROGRESS_BAR)
        return;
    double t = core_now();
    if (done < v->total && t - v->last_draw < 0.1)
        return;
    v->last_draw = t;
    draw_bar(v, done, t);
}

void train_progress_log(train_progress_view *v, long done, double loss, double top1, double top5,
                        double lr, double images_per_s)
{
    v->loss = loss;
    v->top1 = top1;
    if (v->mode != TRAIN_PROGRESS_PLAIN)
        return;
    double el = core_now() - v->t0, steps = (double)(done - v->first);
    char stamp[32], eta_s[32];
    time_t wall = time(NULL);
    struct tm tmv;
    localtime_r(&wall, &tmv);
    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tmv);
    fmt_eta(eta_s, sizeof eta_s, steps > 0 ? el / steps * (double)(v->total - done) : 0.0);
    fprintf(v->out,
            "%s epoch %d/%d step %ld/%ld  loss %.4f  acc %.2f%%  top5 %.2f%%  lr %.3g  %.0f %s  "
            "ETA %s\n",
            stamp, v->epoch, v->epochs, done, v->total, loss, 100.0 * top1, 100.0 * top5, lr,
            images_per_s, v->unit, eta_s);
    fflush(v->out);
}

void train_progress_epoch_end(train_progress_view *v)
{
    if (v->mode == TRAIN_PROGRESS_BAR && v->drawn) {
        fputc('\n', v->out);
        fflush(v->out);
    }
    v->drawn = 0;
}
