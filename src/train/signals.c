/*
 * train/signals.c: preemption signals. A handler only sets a flag; the fit
 * loop agrees on it across ranks at the next step boundary, rank 0 writes a
 * checkpoint, and every rank returns so the CLI can exit with
 * TRAIN_EXIT_PREEMPTED, which batch scripts turn into a requeue.
 */
#include "train/train.h"

#include <signal.h>
#include <string.h>
#include <strings.h>

static volatile sig_atomic_t pending_signal = 0;

static void on_signal(int sig)
{
    pending_signal = sig;
}

static int signal_number(const char *name, size_t len)
{
    static const struct {
        const char *name;
        int sig;
    } table[] = {{"TERM", SIGTERM}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2},
                 {"INT", SIGINT},   {"HUP", SIGHUP},   {"XCPU", SIGXCPU}};
    if (len > 3 && strncasecmp(name, "SIG", 3) == 0) {
        name += 3;
        len -= 3;
    }
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strlen(table[i].name) == len && strncasecmp(name, table[i].name, len) == 0)
            return table[i].sig;
    return 0;
}

int train_signals_install(const char *spec, core_error *err)
{
    if (!spec || strcasecmp(spec, "none") == 0)
        return 0;
    int sigs[8], n = 0;
    for (const char *p = spec; *p;) {
        size_t len = strcspn(p, ",");
        int sig = signal_number(p, len);
        if (!sig || n == 8)
            return core_error_set(err,
                                  "--stop-signals: unknown signal '%.*s' (use names such as "
                                  "TERM,USR1,USR2,INT,HUP,XCPU or 'none')",
                                  (int)len, p);
        sigs[n++] = sig;
        p += len;
        if (*p == ',')
            p++;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (int i = 0; i < n; i++)
        if (sigaction(sigs[i], &sa, NULL) != 0)
            return core_error_set(err, "cannot install the handler for signal %d", sigs[i]);
    return 0;
}

int train_signals_pending(void)
{
    return pending_signal;
}
